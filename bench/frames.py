"""Time to plan (parse + chunk + scout) 10^4, 10^5 and 10^6 frames, beside cioseq's chunking.

Run: python bench/frames.py    (cioseq is optional, for the comparison: pip install cioseq)

cioseq's ``chunks()`` copies the whole frame list per chunk (quadratic, research section 5.6), so
it is only timed up to CIOSEQ_LIMIT frames; beyond that the script prints the time its measured
quadratic growth predicts instead of waiting minutes. Our figures are best-of-3 wall times of
planning and then reading every task (a plan makes its chunks and tasks when they are read, so
planning alone costs almost nothing; reading them all is what a payload does). The extra lines
show the worst cases the planner promises to keep linear (chunk size 1, several images with
different ranges). The bench lifts the task limit (``PREFECT_CONDUCTOR_MAX_TASKS_PER_JOB``, 100000
by default) to time a million tasks.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from functools import partial

from prefect_conductor.conductor_cloud.job.frames import (
    FramePlan,
    PlanLimits,
    image_range,
    parse_frame_spec,
    plan_frames,
)

SIZES = (10_000, 100_000, 1_000_000)
CHUNK_SIZE = 10
CIOSEQ_LIMIT = 40_000
LIMITS = PlanLimits(max_frames=10_000_000, max_tiles=1024, max_tasks=10_000_000)


def best_of(runs: int, work: Callable[[], object]) -> float:
    """The fastest of ``runs`` wall times (the least disturbed by other processes)."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - started)
        del result  # freed outside the timed part: freeing is not planning
    return min(times)


def ours(size: int, chunk_size: int = CHUNK_SIZE, images: bool = False) -> FramePlan:
    """Parse ``1-size``, plan it with three scout frames (and four images when asked), and read
    every task (each with its chunk and per-image frames), as building the payload does."""
    frames = parse_frame_spec(f"1-{size}")
    image_frames = None
    if images:
        image_frames = {
            "whole": frames,
            "longer": image_range(1, 2 * size),
            "odd": image_range(1, size, 2),
            "middle": image_range(size // 3, 2 * size // 3),
        }
    plan = plan_frames(
        frames,
        chunk_size,
        scout=parse_frame_spec(f"1,{size // 2},{size}"),
        image_frames=image_frames,
        limits=LIMITS,
    )
    deque(plan.tasks, maxlen=0)
    assert len(plan.chunks) == -(-size // chunk_size)
    return plan


def plan_only(size: int, chunk_size: int) -> FramePlan:
    """Parse and plan ``1-size`` without reading a task: what the Frames Info line costs."""
    frames = parse_frame_spec(f"1-{size}")
    return plan_frames(frames, chunk_size, scout=parse_frame_spec("1"), limits=LIMITS)


def cioseq_chunks(size: int) -> float | None:
    """cioseq's linear chunking plus its scout lookup, or None when cioseq is not installed."""
    try:
        from cioseq.sequence import Sequence
    except ImportError:
        return None
    started = time.perf_counter()
    sequence = Sequence.create(f"1-{size}", chunk_size=CHUNK_SIZE)
    chunks = sequence.chunks()
    sequence.intersecting_chunks(Sequence.create(f"1,{size // 2},{size}"))
    elapsed = time.perf_counter() - started
    assert len(chunks) == -(-size // CHUNK_SIZE)
    return elapsed


def main() -> None:
    try:
        import cioseq  # noqa: F401

        have_cioseq = True
    except ImportError:
        have_cioseq = False
        print("cioseq is not installed (pip install cioseq): showing our figures only")
    print(
        f"plan frames 1-N, chunk size {CHUNK_SIZE}, 3 scout frames, then read every task"
        " (best of 3 wall times)"
    )
    print(f"{'frames':>10} {'ours (s)':>10} {'cioseq (s)':>36} {'ratio':>8}")
    measured: tuple[int, float] | None = None
    for size in SIZES:
        elapsed = best_of(3, partial(ours, size))
        shown, ratio = "-", ""
        if have_cioseq and size <= CIOSEQ_LIMIT:
            reference = cioseq_chunks(size)
            assert reference is not None
            measured = (size, reference)
            shown, ratio = f"{reference:.3f}", f"{reference / elapsed:.0f}x"
        elif have_cioseq and measured is not None:
            base_size, base_time = measured
            estimate = base_time * (size / base_size) ** 2
            shown = f"skipped (quadratic, >{estimate:.0f}s est.)"
            ratio = f"~{estimate / elapsed:.0f}x"
        print(f"{size:>10} {elapsed:>10.3f} {shown:>36} {ratio:>8}")
    million = SIZES[-1]
    for chunk_size in (1, 2, 5):
        elapsed = best_of(3, partial(ours, million, chunk_size))
        print(f"ours, {million} frames, chunk size {chunk_size}: {elapsed:.3f} s")
    elapsed = best_of(3, partial(plan_only, million, 1))
    print(f"ours, {million} frames, chunk size 1, planned without reading a task: {elapsed:.3f} s")
    for chunk_size in (1, 10):
        elapsed = best_of(3, partial(ours, million, chunk_size, images=True))
        print(
            f"ours, {million} frames, chunk size {chunk_size}, 4 images with different ranges:"
            f" {elapsed:.3f} s"
        )


if __name__ == "__main__":
    main()
