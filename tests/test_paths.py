"""Expansion of dependency entries (files, folders, frame/tile patterns, globs) on a real disk."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from prefect_conductor.conductor_cloud.errors import FieldError
from prefect_conductor.conductor_cloud.job.frames import FrameList
from prefect_conductor.conductor_cloud.job.paths import (
    MAX_MISSING_FRAME_WARNINGS,
    ExpandedFiles,
    expand_dependencies,
    local_posix_path,
    node_path,
)


def touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(name.encode())


def names(result: ExpandedFiles, root: Path) -> list[str]:
    return [str(path.relative_to(root)) for path in result.files]


@pytest.fixture
def seq(tmp_path: Path) -> Path:
    """Frames 1, 2, 3, 10 and 1000 at several paddings, plus decoys a `*` glob would take."""
    for frame in (1, 2, 3, 10, 1000):
        touch(tmp_path, f"seq/img.{frame:04d}.exr", f"seq/h.{frame}.exr")
    touch(tmp_path, "seq/img.final.exr", "seq/img.00007.exr", "seq/img.7.exr", "seq/h.007.exr")
    return tmp_path


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("seq/img.####.exr", ["0001", "0002", "0003", "0010", "1000"]),
        ("seq/img.@@@@.exr", ["0001", "0002", "0003", "0010", "1000"]),
        ("seq/img.%04d.exr", ["0001", "0002", "0003", "0010", "1000"]),
        ("seq/img.$F4.exr", ["0001", "0002", "0003", "0010", "1000"]),
        ("seq/img.${F4}.exr", ["0001", "0002", "0003", "0010", "1000"]),
        ("seq/img.#####.exr", ["00007"]),
    ],
)
def test_padded_frame_tokens_match_exactly_their_padding(
    seq: Path, entry: str, expected: list[str]
) -> None:
    result = expand_dependencies([entry], base_dir=seq)
    assert names(result, seq) == [f"seq/img.{frame}.exr" for frame in expected]
    assert result.warnings == ()


@pytest.mark.parametrize("entry", ["seq/h.$F.exr", "seq/h.@.exr", "seq/h.%d.exr", "seq/h.#.exr"])
def test_unpadded_frame_tokens_take_unpadded_numbers_only(seq: Path, entry: str) -> None:
    result = expand_dependencies([entry], base_dir=seq)
    assert names(result, seq) == [f"seq/h.{n}.exr" for n in ("1", "10", "1000", "2", "3")]


def test_udim_takes_four_digit_tiles_from_1001(tmp_path: Path) -> None:
    touch(tmp_path, "tex/c.1001.png", "tex/c.1002.png", "tex/c.1011.png")
    touch(tmp_path, "tex/c.0999.png", "tex/c.10001.png", "tex/c.abcd.png")
    result = expand_dependencies(["tex/c.<UDIM>.png"], base_dir=tmp_path)
    assert names(result, tmp_path) == ["tex/c.1001.png", "tex/c.1002.png", "tex/c.1011.png"]


def test_uvtile_takes_u_v_tiles(tmp_path: Path) -> None:
    touch(tmp_path, "tex/m.u1_v1.tif", "tex/m.u2_v10.tif", "tex/m.u1.tif", "tex/m.1001.tif")
    result = expand_dependencies(["tex/m.<UVTILE>.tif"], base_dir=tmp_path)
    assert names(result, tmp_path) == ["tex/m.u1_v1.tif", "tex/m.u2_v10.tif"]


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("g/*.png", ["g/a.png", "g/b.png", "g/c1.png"]),
        ("g/?.png", ["g/a.png", "g/b.png"]),
        ("g/[ab].*", ["g/a.png", "g/a.tif", "g/b.png"]),
        ("g/[!a].png", ["g/b.png"]),
        ("g/c[0-9].png", ["g/c1.png"]),
        ("*/a.tif", ["g/a.tif"]),
    ],
)
def test_globs(tmp_path: Path, entry: str, expected: list[str]) -> None:
    touch(tmp_path, "g/a.png", "g/b.png", "g/c1.png", "g/a.tif", "g/.hidden.png")
    assert names(expand_dependencies([entry], base_dir=tmp_path), tmp_path) == expected


def test_frame_token_in_folder_and_file_must_name_the_same_frame(tmp_path: Path) -> None:
    touch(tmp_path, "shot_0001/img.0001.exr", "shot_0001/img.0002.exr", "shot_0002/img.0002.exr")
    result = expand_dependencies(["shot_####/img.####.exr"], base_dir=tmp_path)
    assert names(result, tmp_path) == ["shot_0001/img.0001.exr", "shot_0002/img.0002.exr"]


def test_a_frame_pattern_uploads_every_matching_file_and_warns_per_missing_rendered_frame(
    seq: Path,
) -> None:
    frames = FrameList.from_iterable([1000, 5, 3, 1, 3])
    result = expand_dependencies(["seq/img.####.exr"], base_dir=seq, frames=frames)
    assert names(result, seq) == [
        "seq/img.0001.exr",
        "seq/img.0002.exr",
        "seq/img.0003.exr",
        "seq/img.0010.exr",
        "seq/img.1000.exr",
    ]
    assert result.warnings == (f"dependencies: frame 5 has no file {seq}/seq/img.0005.exr",)


def test_motion_blur_frame_reads_the_next_cache_frame_so_it_is_uploaded(tmp_path: Path) -> None:
    touch(tmp_path, *(f"cache/sim.{frame:04d}.abc" for frame in range(1, 13)))
    result = expand_dependencies(["cache/sim.####.abc"], base_dir=tmp_path, frames=range(9, 11))
    uploaded = names(result, tmp_path)
    assert "cache/sim.0011.abc" in uploaded
    assert len(uploaded) == 12
    assert result.warnings == ()


def test_frame_pattern_keeps_the_other_tokens_of_a_pattern(tmp_path: Path) -> None:
    touch(tmp_path, "t/d.0001.1001.png", "t/d.0001.1002.png", "t/d.0002.1001.png")
    result = expand_dependencies(["t/d.####.<UDIM>.png"], base_dir=tmp_path, frames=[1])
    assert names(result, tmp_path) == [
        "t/d.0001.1001.png",
        "t/d.0001.1002.png",
        "t/d.0002.1001.png",
    ]


def test_frame_aware_caps_the_warning_lines(seq: Path) -> None:
    result = expand_dependencies(["seq/img.####.exr"], base_dir=seq, frames=range(1, 101))
    assert len(result.warnings) == MAX_MISSING_FRAME_WARNINGS + 1
    assert result.warnings[-1] == (
        f"dependencies: {100 - 4 - MAX_MISSING_FRAME_WARNINGS} more frames have no file for"
        " 'seq/img.####.exr'"
    )


def test_no_file_for_any_rendered_frame_still_uploads_the_matches_with_warnings(
    seq: Path,
) -> None:
    result = expand_dependencies(["seq/img.####.exr"], base_dir=seq, frames=[500, 501])
    assert len(result.files) == 5
    assert [line.split(" has no file")[0] for line in result.warnings] == [
        "dependencies: frame 500",
        "dependencies: frame 501",
    ]


def test_frame_filter_ignores_patterns_without_a_frame_token(tmp_path: Path) -> None:
    touch(tmp_path, "tex/c.1001.png", "tex/c.1002.png")
    result = expand_dependencies(["tex/c.<UDIM>.png"], base_dir=tmp_path, frames=[1])
    assert names(result, tmp_path) == ["tex/c.1001.png", "tex/c.1002.png"]


def test_folder_is_walked_recursively_following_symlinked_folders(tmp_path: Path) -> None:
    touch(tmp_path, "assets/a.txt", "assets/deep/er/b.txt", "elsewhere/c.txt")
    (tmp_path / "assets/linked").symlink_to(tmp_path / "elsewhere")
    result = expand_dependencies(["assets"], base_dir=tmp_path)
    assert names(result, tmp_path) == [
        "assets/a.txt",
        "assets/deep/er/b.txt",
        "assets/linked/c.txt",
    ]
    assert result.warnings == ()


def test_symlink_loops_are_not_followed(tmp_path: Path) -> None:
    touch(tmp_path, "loop/a.txt", "loop/sub/b.txt")
    (tmp_path / "loop/sub/up").symlink_to("..")
    (tmp_path / "loop/sub/self").symlink_to("self")
    (tmp_path / "loop/broken").symlink_to("nowhere")
    result = expand_dependencies(["loop"], base_dir=tmp_path)
    assert names(result, tmp_path) == ["loop/a.txt", "loop/sub/b.txt"]
    assert f"dependencies: skipped symbolic link loop {tmp_path}/loop/sub/up" in result.warnings
    assert any(
        w.startswith(f"dependencies: skipped {tmp_path}/loop/sub/self: too many")
        for w in result.warnings
    )
    assert any(
        w.startswith(f"dependencies: skipped {tmp_path}/loop/broken: no such")
        for w in result.warnings
    )


def test_empty_folder_is_a_warning_not_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty/nested").mkdir(parents=True)
    result = expand_dependencies(["empty"], base_dir=tmp_path)
    assert result.files == ()
    assert result.warnings == (f"dependencies: folder {tmp_path}/empty holds no files",)


def test_relative_entries_are_anchored_on_base_dir_and_normalised(tmp_path: Path) -> None:
    touch(tmp_path, "proj/tex/a.png", "shared/b.png")
    result = expand_dependencies(
        ["tex/a.png", "../shared/b.png", "./tex/../tex/a.png"], base_dir=tmp_path / "proj"
    )
    assert result.files == (tmp_path / "proj/tex/a.png", tmp_path / "shared/b.png")
    assert all(path.is_absolute() for path in result.files)


def test_environment_variables_expand_but_never_eat_frame_tokens(
    seq: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEQROOT", str(seq / "seq"))
    monkeypatch.setenv("F", "not-a-frame")
    monkeypatch.setenv("F4", "not-a-frame")
    result = expand_dependencies(
        ["$SEQROOT/h.$F.exr", "${SEQROOT}/img.$F4.exr"], base_dir=Path("/")
    )
    assert len(result.files) == 10


def test_existing_names_with_pattern_characters_are_taken_literally(tmp_path: Path) -> None:
    touch(tmp_path, "take@v2[1]/file#1.txt", "take@v2[1]/img.0001.exr")
    result = expand_dependencies(
        ["take@v2[1]/file#1.txt", "take@v2[1]/img.####.exr"], base_dir=tmp_path
    )
    assert names(result, tmp_path) == ["take@v2[1]/file#1.txt", "take@v2[1]/img.0001.exr"]


def test_results_are_unique_and_sorted_across_entries(seq: Path) -> None:
    result = expand_dependencies(
        ["seq/img.1000.exr", "seq/img.####.exr", str(seq / "seq/img.0001.exr")], base_dir=seq
    )
    assert names(result, seq) == [
        f"seq/img.{f}.exr" for f in ("0001", "0002", "0003", "0010", "1000")
    ]


@pytest.mark.parametrize("entry", ["missing.txt", "seq/nothing.####.exr", "nofolder/*.png", ""])
def test_nothing_matching_is_a_field_error_naming_the_entry(seq: Path, entry: str) -> None:
    if not entry:
        assert expand_dependencies([entry], base_dir=seq).files == ()
        return
    with pytest.raises(FieldError) as raised:
        expand_dependencies([entry], base_dir=seq, field="extra_uploads")
    assert str(raised.value) == f"extra_uploads: no files match {entry!r}"
    assert raised.value.field == "extra_uploads"


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A folder another (unprivileged) user can traverse, unlike pytest's 0700 tmp_path."""
    folder = Path(tempfile.mkdtemp(prefix="pc-paths-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


@pytest.mark.usefixtures("cli_subprocess")
def test_unreadable_file_is_a_field_error_naming_it(shared_tmp: Path) -> None:
    touch(shared_tmp, "secret/locked.txt", "secret/fine.txt")
    (shared_tmp / "secret").chmod(0o755)
    (shared_tmp / "secret/locked.txt").chmod(0o000)
    # Root reads anything, so the expansion runs in a child that drops to "nobody" when root.
    script = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        from prefect_conductor.conductor_cloud.errors import FieldError
        from prefect_conductor.conductor_cloud.job.paths import expand_dependencies
        if os.getuid() == 0:
            os.setgid(65534)
            os.setuid(65534)
        for entry in ("secret", "secret/locked.txt"):
            try:
                expand_dependencies([entry], base_dir=Path({str(shared_tmp)!r}))
                print("no error")
            except FieldError as error:
                print(error)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    expected = f"dependencies: cannot read {shared_tmp}/secret/locked.txt: permission denied"
    assert done.stdout.splitlines() == [expected, expected]


def test_special_files_are_skipped_with_a_warning(tmp_path: Path) -> None:
    touch(tmp_path, "d/a.txt")
    os.mkfifo(tmp_path / "d/pipe")
    result = expand_dependencies(["d"], base_dir=tmp_path)
    assert names(result, tmp_path) == ["d/a.txt"]
    assert result.warnings == (f"dependencies: skipped special file {tmp_path}/d/pipe",)
    with pytest.raises(FieldError, match="is not a regular file or folder"):
        expand_dependencies(["d/pipe"], base_dir=tmp_path)


# ------------------------------------------------------------------ Windows paths, as the reference

WINDOWS_CASES = [
    # (local path, on the render node (command, render package), in output_path / destinations)
    ("C:\\proj\\shot 010\\a.tx", "/proj/shot 010/a.tx", "C:/proj/shot 010/a.tx"),
    ("c:/proj/renders", "/proj/renders", "c:/proj/renders"),
    ("Z:\\", "/", "Z:/"),
    ("\\\\server\\share\\tex\\a.tx", "//server/share/tex/a.tx", "//server/share/tex/a.tx"),
    ("//server/share/tex/a.tx", "//server/share/tex/a.tx", "//server/share/tex/a.tx"),
    ("/mnt/proj/a.tx", "/mnt/proj/a.tx", "/mnt/proj/a.tx"),
    ("renders\\beauty", "renders/beauty", "renders/beauty"),
    ("renders/beauty", "renders/beauty", "renders/beauty"),
    ("/cat/c:/dog.txt", "/cat/c:/dog.txt", "/cat/c:/dog.txt"),
]


@pytest.mark.parametrize(("local", "on_node", "in_payload"), WINDOWS_CASES)
def test_drive_letters_are_stripped_on_the_node_and_kept_in_the_payload(
    local: str, on_node: str, in_payload: str
) -> None:
    assert node_path(local) == on_node
    assert local_posix_path(local) == in_payload


@pytest.mark.parametrize(("local", "on_node", "in_payload"), WINDOWS_CASES)
def test_node_paths_agree_with_ciocores_drive_stripping(
    local: str, on_node: str, in_payload: str
) -> None:
    from ciocore.file_utils import strip_drive_letter

    reference = strip_drive_letter(local).replace("\\", "/") or "/"
    assert node_path(local) == reference
