"""Time to plan (parse + chunk + scout) 10^4, 10^5 and 10^6 frames, beside cioseq's chunking.

Run: python bench/frames.py    (cioseq is optional: pip install cioseq)

cioseq's chunks() copies the frame list per chunk (quadratic), so it is only timed where it
finishes in reasonable time; larger sizes print its extrapolated time instead.
"""

from __future__ import annotations

import time
import tracemalloc

from prefect_conductor.conductor_cloud.frames import parse_frame_spec, plan_frames

SIZES = (10_000, 100_000, 1_000_000)
CHUNK_SIZE = 10
CIOSEQ_LIMIT = 40_000


def plan(size: int) -> int:
    frames = parse_frame_spec(f"1-{size}")
    result = plan_frames(frames, CHUNK_SIZE, scout=parse_frame_spec(f"1,{size // 2},{size}"))
    return len(result.chunks)


def ours(size: int) -> tuple[float, int]:
    """Best of three wall times, then the peak memory of one more run (traced, so slower)."""
    times = []
    for _ in range(3):
        started = time.perf_counter()
        assert plan(size) == -(-size // CHUNK_SIZE)
        times.append(time.perf_counter() - started)
    tracemalloc.start()
    plan(size)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return min(times), peak


def theirs(size: int) -> float | None:
    try:
        from cioseq.sequence import Sequence
    except ImportError:
        return None
    started = time.perf_counter()
    sequence = Sequence.create(f"1-{size}", chunk_size=CHUNK_SIZE)
    chunks = sequence.chunks()
    sequence.intersecting_chunks(Sequence.create(f"1,{size // 2},{size}"))
    assert len(chunks) == -(-size // CHUNK_SIZE)
    return time.perf_counter() - started


def main() -> None:
    print(f"plan frames 1-N with chunk size {CHUNK_SIZE} and 3 scout frames")
    print(f"{'frames':>10} {'ours (s)':>10} {'peak MiB':>9} {'cioseq (s)':>12} {'ratio':>8}")
    last_cioseq: tuple[int, float] | None = None
    for size in SIZES:
        elapsed, peak = ours(size)
        if size <= CIOSEQ_LIMIT:
            reference = theirs(size)
            if reference is not None:
                last_cioseq = (size, reference)
            shown = "not installed" if reference is None else f"{reference:.3f}"
            ratio = "" if reference is None else f"{reference / elapsed:.0f}x"
        elif last_cioseq is not None:
            base_size, base_time = last_cioseq
            estimate = base_time * (size / base_size) ** 2
            shown, ratio = f"~{estimate:.0f} est.", f"~{estimate / elapsed:.0f}x"
        else:
            shown, ratio = "skipped", ""
        print(f"{size:>10} {elapsed:>10.3f} {peak / 2**20:>9.1f} {shown:>12} {ratio:>8}")


if __name__ == "__main__":
    main()
