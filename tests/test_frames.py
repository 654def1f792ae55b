"""Frame specs with Conductor's semantics, chunking, scouts and the Frames Info line."""

from __future__ import annotations

import time
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prefect_conductor.conductor_cloud.errors import FieldError, FrameSpecError
from prefect_conductor.conductor_cloud.frames import (
    FrameList,
    image_range,
    parse_frame_spec,
    parse_scout_spec,
    plan_frames,
    resolve_scout,
)


def frames(text: str) -> list[int]:
    return list(parse_frame_spec(text))


# research/conductor-client-facts.md section 5.5 (cioseq), where we agree with it.
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
        (" 1-10 ", "1-10", list(range(1, 11))),
        ("1 , 5 ,9", "1-9x4", [1, 5, 9]),
        ("1 -10", "-10,1", [-10, 1]),
    ],
)
def test_accepted_specs(text: str, spec: str, expected: list[int]) -> None:
    parsed = parse_frame_spec(text)
    assert list(parsed) == expected
    assert parsed.spec == spec


def test_descending_stepped_range_is_anchored_at_the_first_number() -> None:
    assert frames("10-1x2") == [2, 4, 6, 8, 10]
    assert frames("-2--7x2") == [-6, -4, -2]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "no frames"),
        (",,,", "no frames"),
        ("1-", "has no end"),
        ("a-b", "not a frame"),
        ("1-10x0", "at least 1"),
        ("1-10x-2", "positive whole number"),
        ("1-10y2", "only the x step"),
        ("1-10:2", "only the x step"),
        ("1.5", "subframes"),
        ("1-2x0.5", "subframes"),
        ("+5", "not a frame"),
        ("1-99999999999", "beyond"),
        ("1-20000000", "more than the 10000000 allowed"),
        ("1-10x", "no step"),
    ],
)
def test_rejected_specs_name_field_and_text(text: str, reason: str) -> None:
    with pytest.raises(FrameSpecError) as caught:
        parse_frame_spec(text, field="custom_frames")
    message = str(caught.value)
    assert message.startswith("custom_frames: ")
    assert reason in message
    assert repr(text) in message


def test_huge_ranges_are_refused_without_memory() -> None:
    tracemalloc.start()
    started = time.perf_counter()
    for text in ("1-99999999", "-999999999-999999999", "1-10,1-900000000x2"):
        with pytest.raises(FrameSpecError):
            parse_frame_spec(text)
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1_000_000, peak  # nothing was materialised
    assert elapsed < 5  # generous: a materialising parser would take minutes here


def test_frame_list_equality_and_membership() -> None:
    assert parse_frame_spec("1-3") == parse_frame_spec("3,2,1")
    assert hash(parse_frame_spec("1-3")) == hash(FrameList.from_iterable([2, 3, 1]))
    assert 5 in parse_frame_spec("1-9x2") and 4 not in parse_frame_spec("1-9x2")
    assert not FrameList()


def test_host_dialect_handles_negatives() -> None:
    assert parse_frame_spec("-10--2x2,5").host_spec() == "-10:-2%2;5"
    assert parse_frame_spec("1-10,12").host_spec() == "1:10;12"


def test_frames_info_matches_the_seed() -> None:
    plan = plan_frames(parse_frame_spec("1-10"), 2, scout=parse_frame_spec("3,8"))
    assert plan.info == "2 Scout / 10 Frames -- 5 Chunks -- 1-10"
    assert [c.spec for c in plan.chunks] == ["1-2", "3-4", "5-6", "7-8", "9-10"]
    assert sorted(plan.scout_chunk_indexes) == [1, 3]
    assert plan_frames(parse_frame_spec("1-10"), 2).info == "10 Frames -- 5 Chunks -- 1-10"


def test_tiles_multiply_tasks_and_keep_scout_flags() -> None:
    plan = plan_frames(parse_frame_spec("1-4"), 2, scout=parse_frame_spec("1"), tiles=3)
    assert len(plan.tasks) == 6
    assert [(t.chunk_index, t.tile_number, t.scout) for t in plan.tasks[:3]] == [
        (0, 1, True),
        (0, 2, True),
        (0, 3, True),
    ]
    assert plan.info.endswith("-- 3 Tiles")
    assert [t.index for t in plan.tasks] == list(range(6))


def test_per_image_frames_when_ranges_differ() -> None:
    main = FrameList.from_iterable(range(1, 21))
    images = {"a": image_range(1, 20), "b": image_range(5, 8), "c": image_range(1, 20, 5)}
    plan = plan_frames(main, 5, image_frames=images)
    first, second = plan.tasks[0], plan.tasks[1]
    assert first.image_frames["a"] is first.frames
    assert list(first.image_frames["b"]) == [5]
    assert list(second.image_frames["b"]) == [6, 7, 8]
    assert list(first.image_frames["c"]) == [1]
    assert "b" not in plan.tasks[2].image_frames  # frames 11-15: b has none


def test_scout_keywords() -> None:
    ten = parse_frame_spec("1-10")
    assert list(resolve_scout(parse_scout_spec("auto:3"), ten)) == [2, 6, 9]
    assert list(resolve_scout(parse_scout_spec("fml:3"), ten)) == [1, 6, 10]
    assert list(resolve_scout(parse_scout_spec("fml:1"), ten)) == [1]
    assert resolve_scout(parse_scout_spec("auto:50"), ten) == ten
    with pytest.raises(FrameSpecError, match="scout_frames"):
        parse_scout_spec("auto:0")


def test_chunking_a_million_frames_is_linear() -> None:
    big = parse_frame_spec("1-1000000")
    plan = plan_frames(big, 10, scout=parse_frame_spec("5,999995"))
    assert len(plan.chunks) == 100_000
    assert sorted(plan.scout_chunk_indexes) == [0, 99_999]


def test_bad_chunk_size_is_named() -> None:
    with pytest.raises(FieldError, match=r"chunk_size: must be at least 1 \(got 0\)"):
        plan_frames(parse_frame_spec("1-10"), 0)


frame_sets = st.sets(st.integers(min_value=-10_000, max_value=10_000), min_size=1, max_size=300)


@settings(max_examples=150, deadline=None)
@given(frame_sets, st.integers(min_value=1, max_value=50), st.data())
def test_chunks_partition_the_frames(
    values: set[int], chunk_size: int, data: st.DataObject
) -> None:
    all_frames = FrameList.from_iterable(values)
    scout = data.draw(st.sets(st.sampled_from(sorted(values)), max_size=5))
    plan = plan_frames(all_frames, chunk_size, scout=FrameList.from_iterable(scout))
    joined = [f for chunk in plan.chunks for f in chunk]
    assert joined == sorted(values)
    assert all(len(c) == chunk_size for c in plan.chunks[:-1])
    assert 1 <= len(plan.chunks[-1]) <= chunk_size
    scout_chunks = {i for i, chunk in enumerate(plan.chunks) if any(f in scout for f in chunk)}
    assert plan.scout_chunk_indexes == scout_chunks
    covered = {f for i in plan.scout_chunk_indexes for f in plan.chunks[i]}
    assert set(scout) <= covered


@settings(max_examples=200, deadline=None)
@given(frame_sets)
def test_canonical_spec_round_trips(values: set[int]) -> None:
    original = FrameList.from_iterable(values)
    assert parse_frame_spec(original.spec) == original
    assert parse_frame_spec(original.spec).spec == original.spec


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(-500, 500), st.integers(-500, 500), st.integers(1, 7)),
        min_size=1,
        max_size=6,
    )
)
def test_specs_mean_their_ranges(parts: list[tuple[int, int, int]]) -> None:
    text = ", ".join(f"{a}-{b}x{s}" for a, b, s in parts)
    expected: set[int] = set()
    for a, b, s in parts:
        expected.update(range(a, b + 1, s) if a <= b else range(a, b - 1, -s))
    assert list(parse_frame_spec(text)) == sorted(expected)
