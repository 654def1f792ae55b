"""Frame specs with Conductor's semantics, chunking, scouts, per-image frames and Frames Info."""

from __future__ import annotations

import gc
import json
import pickle
import subprocess
import sys
import tracemalloc
from pathlib import Path

import fileseq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prefect_conductor.conductor_cloud.errors import FieldError, FrameSpecError, UserError
from prefect_conductor.conductor_cloud.job.frames import (
    MAX_FRAME_NUMBER,
    FrameList,
    PlanLimits,
    ScoutSpec,
    image_range,
    parse_frame_spec,
    parse_scout_spec,
    plan_frames,
    resolve_scout,
)
from prefect_conductor.conductor_cloud.submission.plan import plan_for_job
from tests.scenes import make_job, make_scene


def frames(text: str) -> list[int]:
    return list(parse_frame_spec(text))


# cioseq's answers (Conductor's frame library), where we agree with it. Where we do
# not: a pair prints as "3,8" (cioseq "3-8x5"), and "10-1x2" is anchored at 10 (cioseq: 1..9).
@pytest.mark.parametrize(
    ("text", "spec", "expected"),
    [
        ("1-10", "1-10", list(range(1, 11))),
        ("1-100x3", "1-100x3", list(range(1, 101, 3))),
        ("1-10x2", "1-9x2", [1, 3, 5, 7, 9]),
        ("3,8", "3,8", [3, 8]),
        ("8,3", "3,8", [3, 8]),
        ("5-1", "1-5", [1, 2, 3, 4, 5]),
        ("-1--5x2", "-5--1x2", [-5, -3, -1]),
        ("0-10x3, 100, -10--2x2", "-10-0x2,3-9x3,100", [-10, -8, -6, -4, -2, 0, 3, 6, 9, 100]),
        ("1-10, 8-20x2, 19, 17", "1-10,12-16x2,17-20", [*range(1, 11), 12, 14, 16, 17, 18, 19, 20]),
        ("3,3,3", "3", [3]),
        ("007", "7", [7]),
        ("0100-0105", "100-105", list(range(100, 106))),
        ("1 2 3", "1-3", [1, 2, 3]),
        ("1,,2", "1-2", [1, 2]),
        ("1 -10", "-10,1", [-10, 1]),
    ],
)
def test_cioseq_table(text: str, spec: str, expected: list[int]) -> None:
    parsed = parse_frame_spec(text)
    assert list(parsed) == expected
    assert parsed.spec == spec
    assert str(parsed) == spec


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (" 1-10 ", list(range(1, 11))),
        ("\t1-3\n", [1, 2, 3]),
        ("1 , 5 ,9", [1, 5, 9]),
        ("1,\n2", [1, 2]),
        ("1-3,2-4,3", [1, 2, 3, 4]),
        ("-10--2x2", [-10, -8, -6, -4, -2]),
        ("-3-3", [-3, -2, -1, 0, 1, 2, 3]),
        ("3--3", [-3, -2, -1, 0, 1, 2, 3]),
        ("-2--7x2", [-6, -4, -2]),
        ("1-10,", list(range(1, 11))),
        ("5", [5]),
        ("0", [0]),
        ("1000000000", [MAX_FRAME_NUMBER]),
        ("-1000000000", [-MAX_FRAME_NUMBER]),
    ],
)
def test_more_accepted_specs(text: str, expected: list[int]) -> None:
    assert frames(text) == expected


def test_descending_stepped_range_is_anchored_at_the_first_number() -> None:
    """fileseq's reading: the artist who writes 10 first gets frame 10 (cioseq gives 1,3,..9)."""
    assert frames("10-1x2") == [2, 4, 6, 8, 10]
    assert frames("10-1x3") == [1, 4, 7, 10]
    assert frames("10-2x3") == [4, 7, 10]
    assert frames("2-10x3") == [2, 5, 8]
    assert list(fileseq.FrameSet("10-2x3")) == [10, 7, 4]  # same frames as fileseq, sorted


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "no frames"),
        ("   ", "no frames"),
        (",,,", "no frames"),
        (" , ", "no frames"),
        ("1-", "a range has no end"),
        ("1-5,7-", "a range has no end ('7-')"),
        ("a-b", "not a frame"),
        ("1-10x0", "at least 1"),
        ("1-10x-2", "positive whole number"),
        ("10-1x-2", "positive whole number"),
        ("1-10y2", "only the x step"),
        ("1-10:2", "only the x step"),
        ("1:10", "only the x step"),
        ("1.5", "subframes"),
        ("1-2x0.5", "subframes"),
        ("+5", "not a frame"),
        ("1-10 x2", "not a frame, a range A-B or a stepped range A-BxS ('x2')"),
        ("\u0661-\u0663", "not a frame"),  # Arabic-Indic digits are not frame numbers
        ("1000000001", "beyond"),
        ("-1000000001-5", "beyond"),
        ("1-99999999999", "beyond"),
        ("1-20000000", "more than the 10000000 allowed"),
        ("1-10x", "no step"),
    ],
)
def test_rejected_specs_name_field_and_text(text: str, reason: str) -> None:
    with pytest.raises(FrameSpecError) as caught:
        parse_frame_spec(text, field="custom_frames")
    error = caught.value
    assert isinstance(error, UserError)
    message = str(error)
    assert message.startswith("custom_frames: ")
    assert reason in message
    assert repr(text) in message
    assert error.field == "custom_frames" and error.text == text
    assert "\n" not in message


def test_huge_ranges_are_refused_without_memory() -> None:
    """The count is arithmetic: 10^9-frame specs fail before a single frame is made."""
    tracemalloc.start()
    try:
        for text in ("1-99999999", "-999999999-999999999", "1-10,1-900000000x2", "1-6000000 " * 2):
            with pytest.raises(FrameSpecError, match="allowed"):
                parse_frame_spec(text)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, peak


def test_frame_list_is_an_immutable_sorted_set() -> None:
    assert parse_frame_spec("1-3") == parse_frame_spec("3,2,1")
    assert hash(parse_frame_spec("1-3")) == hash(FrameList.from_iterable([2, 3, 1, 3]))
    assert FrameList((3, 1, 3)) == FrameList((1, 3))  # the constructor keeps the invariant
    assert FrameList([5, 4]).frames == (4, 5)  # type: ignore[arg-type]
    assert 5 in parse_frame_spec("1-9x2") and 4 not in parse_frame_spec("1-9x2")
    assert "5" not in parse_frame_spec("1-9x2")
    assert len(parse_frame_spec("1-9x2")) == 5 and parse_frame_spec("1-9x2")
    assert not FrameList() and FrameList().spec == ""
    assert (parse_frame_spec("4-9").first, parse_frame_spec("4-9").last) == (4, 9)
    with pytest.raises(ValueError, match="no first frame"):
        _ = FrameList().first
    with pytest.raises(ValueError, match="no last frame"):
        _ = FrameList().last
    with pytest.raises(AttributeError):
        parse_frame_spec("1").frames = (2,)  # type: ignore[misc]


def test_host_dialect_handles_negatives() -> None:
    """cioseq's to(':', '%', ';') corrupts -10--2x2,5 into :10::2%2;5 (weakness 33)."""
    assert parse_frame_spec("-10--2x2,5").host_spec() == "-10:-2%2;5"
    assert parse_frame_spec("1-10,12").host_spec() == "1:10;12"
    assert parse_frame_spec("1-9x2,22-25").host_spec() == "1:9%2;22:25"
    assert parse_frame_spec("3,8").host_spec() == "3;8"


def test_frames_info_matches_the_quick_start() -> None:
    plan = plan_frames(parse_frame_spec("1-10"), 2, scout=parse_frame_spec("3,8"))
    assert plan.info == "2 Scout / 10 Frames -- 5 Chunks -- 1-10"
    assert [c.spec for c in plan.chunks] == ["1-2", "3-4", "5-6", "7-8", "9-10"]
    assert sorted(plan.scout_chunk_indexes) == [1, 3]
    assert [t.chunk_index for t in plan.scout_tasks] == [1, 3]
    assert [t.chunk_index for t in plan.other_tasks] == [0, 2, 4]
    assert plan_frames(parse_frame_spec("1-10"), 2).info == "10 Frames -- 5 Chunks -- 1-10"


def test_frames_info_counts_only_scouts_inside_and_shows_the_canonical_spec() -> None:
    plan = plan_frames(parse_frame_spec("10-1, 3, 12"), 4, scout=parse_frame_spec("3,50"))
    assert plan.info == "1 Scout / 11 Frames -- 3 Chunks -- 1-10,12"
    assert plan.scout_frames == FrameList((3,))
    outside = plan_frames(parse_frame_spec("1-10"), 5, scout=parse_frame_spec("50"))
    assert outside.info == "0 Scout / 10 Frames -- 2 Chunks -- 1-10"
    assert not outside.scout_tasks


def test_tiles_multiply_tasks_and_keep_scout_flags() -> None:
    plan = plan_frames(parse_frame_spec("1-10"), 2, scout=parse_frame_spec("3,8"), tiles=4)
    assert plan.info == "2 Scout / 10 Frames -- 5 Chunks -- 1-10 -- 4 Tiles"
    assert len(plan.tasks) == 20
    assert [t.index for t in plan.tasks] == list(range(20))
    assert [(t.chunk_index, t.tile_number, t.tiles, t.scout) for t in plan.tasks[4:8]] == [
        (1, 1, 4, True),
        (1, 2, 4, True),
        (1, 3, 4, True),
        (1, 4, 4, True),
    ]
    assert len(plan.scout_tasks) == 8 and len(plan.other_tasks) == 12
    assert all(t.frames == plan.chunks[t.chunk_index] for t in plan.tasks)
    assert plan.tasks[-1] == list(plan.tasks)[-1] and plan.tasks[5] == plan.tasks[-15]
    with pytest.raises(IndexError):
        _ = plan.tasks[20]


def test_per_image_frames_when_ranges_differ() -> None:
    main = FrameList.from_iterable(range(1, 21))
    images = {
        "a": image_range(1, 20),
        "b": image_range(5, 8),
        "c": image_range(1, 20, 5),
        "d": image_range(-5, 40),
        "e": image_range(30, 40),
    }
    plan = plan_frames(main, 5, image_frames=images)
    first, second, third = plan.tasks[0], plan.tasks[1], plan.tasks[2]
    assert first.image_frames["a"] is first.frames  # the whole range shares the chunk
    assert first.image_frames["d"] is first.frames  # so does a range that covers it
    assert list(first.image_frames["b"]) == [5]
    assert list(second.image_frames["b"]) == [6, 7, 8]
    assert list(first.image_frames["c"]) == [1]
    assert list(first.image_frames) == ["a", "b", "c", "d"]  # image order kept
    assert "b" not in third.image_frames  # frames 11-15: b has none
    assert all("e" not in task.image_frames for task in plan.tasks)  # no frame in the sequence
    assert image_range(5, 1) == FrameList() and image_range(1, 5, 0) == FrameList()
    assert list(image_range(1, 10, 4)) == [1, 5, 9]


# cioseq's subsample and calc_fml on 1-10; ours agree there.
@pytest.mark.parametrize(
    ("spec", "scouts"),
    [
        ("auto:3", [2, 6, 9]),
        ("auto:1", [6]),
        ("AUTO: 2", [3, 8]),
        ("fml:3", [1, 6, 10]),
        ("fml:2", [1, 10]),
        ("fml:1", [1]),
        ("fml:10", list(range(1, 11))),
        ("auto:50", list(range(1, 11))),
        ("3,8", [3, 8]),
        ("30", [30]),  # literal scouts are not intersected here; validation reports them
    ],
)
def test_scout_specs(spec: str, scouts: list[int]) -> None:
    assert list(resolve_scout(parse_scout_spec(spec), parse_frame_spec("1-10"))) == scouts


def test_scout_keywords_are_exactly_spaced() -> None:
    """Integer arithmetic: no float drift, and fml spaces its middles evenly (cioseq's calc_fml
    gives 0,3,6,9,12,15,17 here: the truncated bucket crowds them towards the start)."""
    eighteen = FrameList.from_iterable(range(18))
    assert list(resolve_scout(ScoutSpec("fml", count=7), eighteen)) == [0, 3, 6, 9, 11, 14, 17]
    big = FrameList.from_iterable(range(0, 3_000_000, 3))
    picked = resolve_scout(ScoutSpec("auto", count=1000), big)
    assert len(picked) == 1000
    assert picked.first == 1500 and picked.last == 2_998_500
    assert resolve_scout(ScoutSpec("auto", count=3), FrameList()) == FrameList()


@pytest.mark.parametrize("text", ["auto:0", "auto:", "fml:x", "auto:-1", "fml: 1.5", "auto:\u0663"])
def test_bad_scout_keywords_are_named(text: str) -> None:
    with pytest.raises(FrameSpecError, match=r"^scout_frames: (auto|fml): needs a whole number"):
        parse_scout_spec(text)


def test_literal_scout_specs_use_frame_rules() -> None:
    assert parse_scout_spec("8,3") == ScoutSpec("frames", frames=FrameList((3, 8)))
    with pytest.raises(FrameSpecError, match="^scout_frames: only the x step"):
        parse_scout_spec("1-10y2")


def test_chunking_a_million_frames() -> None:
    big = parse_frame_spec("1-1000000")
    plan = plan_frames(big, 10, scout=parse_frame_spec("5,999995"))
    assert len(plan.chunks) == 100_000
    assert sorted(plan.scout_chunk_indexes) == [0, 99_999]
    assert plan.info == "2 Scout / 1000000 Frames -- 100000 Chunks -- 1-1000000"


def test_planning_builds_nothing_and_touches_no_process_state() -> None:
    """A plan holds no chunk or task (they are made when read) and leaves the collector alone."""
    big = parse_frame_spec("1-1000000")
    limits = PlanLimits(max_frames=10**7, max_tiles=4, max_tasks=10**7)
    gc.disable()
    try:
        plan_frames(big, 1, tiles=4, limits=limits)
        assert not gc.isenabled()
    finally:
        gc.enable()
    tracemalloc.start()
    try:
        plan = plan_frames(big, 1, scout=parse_frame_spec("7"), tiles=4, limits=limits)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100_000, peak  # four million tasks, none of them built
    assert gc.isenabled()
    assert len(plan.tasks) == 4_000_000 and plan.tasks[27].frames == FrameList((7,))
    assert [t.index for t in plan.scout_tasks] == [24, 25, 26, 27]


def test_plan_survives_pickling() -> None:
    """Prefect hashes and may persist task inputs: a plan must pickle and compare equal."""
    plan = plan_frames(
        parse_frame_spec("1-10"),
        3,
        scout=parse_frame_spec("4"),
        tiles=2,
        image_frames={"a": image_range(1, 10), "b": image_range(4, 6)},
    )
    assert plan.info  # caches nothing that breaks pickling
    copy = pickle.loads(pickle.dumps(plan))
    assert copy == plan and copy.tasks == plan.tasks
    assert copy.info == plan.info


@pytest.mark.parametrize(("chunk_size", "tiles"), [(0, 1), (-3, 1), (2, 0)])
def test_bad_chunk_size_and_tiles_are_named(chunk_size: int, tiles: int) -> None:
    field = "chunk_size" if chunk_size < 1 else "tiles"
    bad = chunk_size if chunk_size < 1 else tiles
    with pytest.raises(FieldError, match=rf"^{field}: must be at least 1 \(got {bad}\)$"):
        plan_frames(parse_frame_spec("1-10"), chunk_size, tiles=tiles)


frame_sets = st.sets(st.integers(min_value=-10_000, max_value=10_000), min_size=1, max_size=300)


@settings(max_examples=150, deadline=None)
@given(frame_sets, st.integers(min_value=1, max_value=50), st.data())
def test_chunks_partition_the_frames(
    values: set[int], chunk_size: int, data: st.DataObject
) -> None:
    all_frames = FrameList.from_iterable(values)
    inside = data.draw(st.sets(st.sampled_from(sorted(values)), max_size=60))
    strays = data.draw(st.sets(st.integers(-20_000, 20_000).filter(lambda f: f not in values)))
    plan = plan_frames(all_frames, chunk_size, scout=FrameList.from_iterable(inside | strays))
    joined = [f for chunk in plan.chunks for f in chunk]
    assert joined == sorted(values)
    assert all(len(c) == chunk_size for c in plan.chunks[:-1])
    assert 1 <= len(plan.chunks[-1]) <= chunk_size
    scout_chunks = {i for i, chunk in enumerate(plan.chunks) if any(f in inside for f in chunk)}
    assert plan.scout_chunk_indexes == scout_chunks
    assert list(plan.scout_frames) == sorted(inside)
    assert [t.chunk_index for t in plan.tasks] == list(range(len(plan.chunks)))
    assert [t.scout for t in plan.tasks] == [i in scout_chunks for i in range(len(plan.chunks))]


@settings(max_examples=100, deadline=None)
@given(frame_sets, st.lists(frame_sets, min_size=1, max_size=3), st.integers(1, 20))
def test_image_frames_are_the_chunk_within_the_image(
    values: set[int], images: list[set[int]], chunk_size: int
) -> None:
    main = FrameList.from_iterable(values)
    lists = {f"image{n}": FrameList.from_iterable(image) for n, image in enumerate(images)}
    lists["covering"] = FrameList.from_iterable(values | images[0])
    plan = plan_frames(main, chunk_size, image_frames=lists)
    for task in plan.tasks:
        for path, image in lists.items():
            expected = [f for f in task.frames if f in image]
            if expected:
                assert list(task.image_frames[path]) == expected
            else:
                assert path not in task.image_frames
        assert task.image_frames["covering"] is task.frames
    tasks = plan.tasks  # read in order (bulk cuts) and one by one (binary search): the same
    assert list(tasks) == [tasks[index] for index in range(len(tasks))]


@settings(max_examples=200, deadline=None)
@given(frame_sets)
def test_canonical_spec_round_trips_and_matches_fileseq(values: set[int]) -> None:
    original = FrameList.from_iterable(values)
    assert parse_frame_spec(original.spec) == original
    assert parse_frame_spec(original.spec).spec == original.spec
    assert original.spec == fileseq.framesToFrameRange(sorted(values), sort=True, compress=True)
    host = original.host_spec().replace(":", "-").replace("%", "x").replace(";", ",")
    assert host == original.spec  # same runs, other separators (negatives are numbers, not text)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(-500, 500), st.integers(-500, 500), st.integers(1, 7)),
        min_size=1,
        max_size=6,
    )
)
def test_specs_mean_their_ranges(parts: list[tuple[int, int, int]]) -> None:
    """Every range is anchored at the number written first, in either direction."""
    text = ", ".join(f"{a}-{b}x{s}" for a, b, s in parts)
    expected: set[int] = set()
    for a, b, s in parts:
        expected.update(range(a, b + 1, s) if a <= b else range(a, b - 1, -s))
    assert list(parse_frame_spec(text)) == sorted(expected)
    assert set(fileseq.FrameSet(text.replace(" ", ""))) == expected


@settings(max_examples=100, deadline=None)
@given(frame_sets, st.integers(1, 400), st.sampled_from(["auto", "fml"]))
def test_scout_keywords_pick_exactly_n_frames(values: set[int], count: int, kind: str) -> None:
    all_frames = FrameList.from_iterable(values)
    picked = resolve_scout(parse_scout_spec(f"{kind}:{count}"), all_frames)
    assert len(picked) == min(count, len(values))
    assert all(f in all_frames for f in picked)
    if kind == "fml" and count >= 2:
        assert picked.first == all_frames.first and picked.last == all_frames.last


@pytest.mark.usefixtures("cli_subprocess")
def test_frames_command_with_tiles_and_auto_scouts() -> None:
    """The real console entry point, as a person runs it (one process for both cases)."""
    script = (
        "import sys\n"
        "from prefect_conductor.cli.main import main\n"
        "for args in (['frames', '10-1', '--chunk-size', '3', '--scout', 'auto:2', '--tiles', '4',"
        " '--json'], ['frames', '1-99999999999', '--chunk-size', '3'],"
        " ['frames', '1-10', '--tiles', '100000000']):\n"
        "    sys.argv = ['prefect-conductor', *args]\n"
        "    try:\n"
        "        main()\n"
        "    except SystemExit as exit:\n"
        "        print('exit', exit.code)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    lines = result.stdout.splitlines()
    assert json.loads(lines[0]) == {
        "frames": "1-10",
        "chunks": ["1-3", "4-6", "7-9", "10"],
        "scout_chunks": [0, 2],
        "info": "2 Scout / 10 Frames -- 4 Chunks -- 1-10 -- 4 Tiles",
    }
    assert lines[1:] == ["exit 0", "exit 2", "exit 2"]
    assert result.stderr.strip().splitlines() == [
        "error: frames: frame 99999999999 is beyond ±1000000000 in '1-99999999999'",
        "error: tiles: 100000000 tiles is more than the 1024 allowed (PREFECT_CONDUCTOR_MAX_TILES)",
    ]


def test_tiles_and_tasks_beyond_the_limits_are_refused_before_building() -> None:
    """Bounded before anything is built: ``--tiles 100000000`` once hung and ``1-1000000`` at
    chunk size 1 ran out of memory."""
    million = parse_frame_spec("1-1000000")
    with pytest.raises(FieldError, match=r"^tiles: 100000000 tiles is more than the 1024 allowed"):
        plan_frames(parse_frame_spec("1-10"), 1, tiles=100_000_000)
    with pytest.raises(FieldError) as caught:
        plan_frames(million, 1)
    assert str(caught.value) == (
        "chunk_size: 1000000 frames at chunk size 1 make 1000000 tasks, more than the 100000 a"
        " job may have (PREFECT_CONDUCTOR_MAX_TASKS_PER_JOB); use a larger chunk size"
    )
    with pytest.raises(FieldError, match=r"^tiles: 100000 frames at chunk size 1 and 1024 tiles"):
        plan_frames(parse_frame_spec("1-100000"), 1, tiles=1024)
    assert len(plan_frames(million, 10).tasks) == 100_000  # exactly the limit is allowed


def test_limits_come_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_CONDUCTOR_MAX_TASKS_PER_JOB", "4")
    monkeypatch.setenv("PREFECT_CONDUCTOR_MAX_TILES", "2")
    monkeypatch.setenv("PREFECT_CONDUCTOR_MAX_FRAMES", "10")
    assert len(plan_frames(parse_frame_spec("1-8"), 2).tasks) == 4
    with pytest.raises(FieldError, match="^chunk_size: 9 frames at chunk size 2 make 5 tasks"):
        plan_frames(parse_frame_spec("1-9"), 2)
    with pytest.raises(FieldError, match="^tiles: 3 tiles is more than the 2 allowed"):
        plan_frames(parse_frame_spec("1"), 1, tiles=3)
    with pytest.raises(FrameSpecError, match="11 frames is more than the 10 allowed"):
        parse_frame_spec("1-11", field="custom_frames")


def test_huge_image_ranges_are_refused_without_memory() -> None:
    """A scene's ``last_frame: 2000000000`` was a MemoryError traceback."""
    tracemalloc.start()
    try:
        with pytest.raises(FieldError, match=r"^images\[1\]: last_frame 2000000000 is beyond"):
            image_range(1, 2_000_000_000, field="images[1]")
        with pytest.raises(FieldError, match=r"^images: frames 1-20000000x1: 20000000 frames is"):
            image_range(1, 20_000_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, peak
    assert list(image_range(1, 20_000_000, 4_000_000)) == [1, 4000001, 8000001, 12000001, 16000001]


def test_custom_frames_never_build_the_images_own_ranges(tmp_path: Path) -> None:
    """With custom frames a huge image range is not built (it was a MemoryError even then)."""
    scene = make_scene(tmp_path)
    huge = scene.images[0].model_copy(update={"last_frame": 2_000_000_000})
    scene = scene.model_copy(update={"images": [huge, scene.images[1]]})
    plan = plan_for_job(make_job(), scene)
    assert plan.info == "2 Scout / 10 Frames -- 5 Chunks -- 1-10"
    assert list(plan.tasks[0].image_frames) == ["project://scene/beauty", "project://scene/shadow"]
    with pytest.raises(FieldError, match=r"^images\[0\]: last_frame 2000000000 is beyond"):
        plan_for_job(make_job(use_custom_frames=False), scene)
