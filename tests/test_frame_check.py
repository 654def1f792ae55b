"""Frame checks of rendered outputs: real files on disk, read back through fileseq."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from prefect_conductor.conductor_cloud.transfers.frame_check import (
    check_image,
    frame_ranges,
    image_name,
    relocate,
)


def write_frames(
    folder: Path, name: str, frames: list[int], *, empty: tuple[int, ...] = ()
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for frame in frames:
        (folder / name.format(frame=frame)).write_bytes(b"" if frame in empty else b"EXR")


def test_missing_frames_are_one_line_naming_the_image_and_the_range(tmp_path: Path) -> None:
    write_frames(tmp_path, "beauty.{frame:04d}.exr", [1, 2, 3, 5, 6, 8, 9, 10])
    check = check_image("beauty", f"{tmp_path}/beauty.####.exr", range(1, 11))
    assert check.problems == ["beauty: missing 4, 7 of 1-10"]
    assert not check.ok


def test_empty_frames_are_reported_apart_from_missing_ones(tmp_path: Path) -> None:
    write_frames(tmp_path, "shadow.{frame:04d}.exr", list(range(1, 11)), empty=(3,))
    check = check_image("shadow", f"{tmp_path}/shadow.####.exr", range(1, 11))
    assert check.missing == () and check.empty == (3,)
    assert check.problems == ["shadow: empty 3 of 1-10"]


def test_a_complete_image_has_no_problems(tmp_path: Path) -> None:
    write_frames(tmp_path, "beauty.{frame:04d}.exr", list(range(1, 11, 2)))
    check = check_image("beauty", f"{tmp_path}/beauty.####.exr", range(1, 11, 2))
    assert check.ok and check.problems == []


def test_padding_must_match_exactly(tmp_path: Path) -> None:
    """``beauty.4.exr`` is not frame 4 of ``beauty.####.exr``; the reference globs ``*``."""
    write_frames(tmp_path, "beauty.{frame:04d}.exr", [1, 2, 3])
    write_frames(tmp_path, "beauty.{frame}.exr", [4])
    check = check_image("beauty", f"{tmp_path}/beauty.####.exr", range(1, 5))
    assert check.missing == (4,)


def test_every_frame_token_form_is_read(tmp_path: Path) -> None:
    write_frames(tmp_path, "a.{frame:03d}.exr", [1, 2])
    write_frames(tmp_path, "b.{frame:04d}.exr", [1, 2])
    write_frames(tmp_path, "c.{frame}.exr", [1, 2])
    write_frames(tmp_path, "d.{frame:04d}.exr", [1])
    assert check_image("a", f"{tmp_path}/a.%03d.exr", [1, 2]).ok
    assert check_image("b", f"{tmp_path}/b.$F4.exr", [1, 2]).ok
    assert check_image("c", f"{tmp_path}/c.@.exr", [1, 2]).ok
    assert check_image("d", f"{tmp_path}/d.${{F4}}.exr", [1, 2]).missing == (2,)


def test_a_frame_token_in_a_folder_name_is_checked_file_by_file(tmp_path: Path) -> None:
    for frame in (1, 3):
        write_frames(tmp_path / f"f{frame:04d}", "beauty.exr", [frame])
    check = check_image("beauty", f"{tmp_path}/f####/beauty.exr", [1, 2, 3])
    assert check.missing == (2,)


def test_nothing_on_disk_is_every_frame_missing(tmp_path: Path) -> None:
    check = check_image("beauty", f"{tmp_path}/none/beauty.####.exr", range(1, 11))
    assert check.problems == ["beauty: missing 1-10 of 1-10"]


def test_negative_frames(tmp_path: Path) -> None:
    write_frames(tmp_path, "neg.{frame:04d}.exr", [-2, 0, 1])
    check = check_image("neg", f"{tmp_path}/neg.####.exr", [-2, -1, 0, 1])
    assert check.missing == (-1,)


@settings(max_examples=25, deadline=None)
@given(
    frames=st.sets(st.integers(min_value=1, max_value=400), min_size=1, max_size=40),
    data=st.data(),
)
def test_missing_is_exactly_what_was_not_written(
    tmp_path_factory: object, frames: set[int], data: st.DataObject
) -> None:
    folder = tmp_path_factory.mktemp("frames")  # type: ignore[attr-defined]
    written = data.draw(st.sets(st.sampled_from(sorted(frames))))
    write_frames(folder, "img.{frame:04d}.exr", sorted(written))
    check = check_image("img", f"{folder}/img.####.exr", frames)
    assert set(check.missing) == frames - written
    assert check.empty == ()


def test_names_and_ranges_read_as_a_person_writes_them() -> None:
    assert image_name("project://scene/beauty") == "beauty"
    assert frame_ranges([1, 2, 3, 5, 7, 8]) == "1-3, 5, 7-8"


def test_outputs_keep_their_place_below_the_output_path(tmp_path: Path) -> None:
    assert relocate("renders/beauty/b.####.exr", "renders", tmp_path) == str(
        tmp_path / "beauty" / "b.####.exr"
    )
    assert relocate("C:\\shots\\renders\\b.####.exr", "C:/shots/renders", tmp_path) == str(
        tmp_path / "b.####.exr"
    )
    assert relocate("/elsewhere/b.####.exr", "renders", tmp_path) == str(tmp_path / "b.####.exr")
