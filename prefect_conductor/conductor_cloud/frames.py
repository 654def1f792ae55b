"""Frame specs, chunks, scout tasks and the Frames Info line, with Conductor's semantics.

Conductor treats frames as a sorted set of unique integers (cioseq). fileseq keeps the user's
order, accepts subframes and ``y``/``:`` modifiers and echoes the user's text from ``str()``, and
both cioseq and fileseq chunk in quadratic time. So parsing and formatting are ours:

* ``parse_frame_spec`` accepts ``1-10``, ``1-100x3``, ``3,8``, negative frames and whitespace as a
  separator, and refuses everything else with a message naming the field and the bad token. The
  frame count is computed arithmetically first, so ``1-99999999999`` fails at once without memory.
* A descending stepped range is anchored at the first number written, as fileseq reads it:
  ``10-1x2`` is 10,8,6,4,2 (cioseq re-anchors at the low end and renders 1,3,5,7,9, which is not
  what anyone who typed a 10 first meant). Unstepped descending ranges are the same set either way.
* ``FrameList.spec`` is canonical text (``1-9x2,22-25``), never the user's; runs of three or more
  equally spaced frames compress to ``A-BxS`` exactly as fileseq's ``framesToFrameRange`` does.
* Chunking slices the sorted frames once: linear in the number of frames.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

from prefect_conductor.conductor_cloud.errors import FieldError, FrameSpecError

MAX_FRAMES = 10_000_000
"""Most frames one spec may hold; more is certainly a typo (and would exhaust memory)."""
MAX_FRAME_NUMBER = 10**9
"""Largest frame number magnitude; renderers and file names break long before."""

TOKEN = re.compile(r"^(-?\d+)(?:-(-?\d+)(?:x(\d+))?)?$")
SCOUT_KEYWORD = re.compile(r"^(auto|fml)\s*:\s*(\S+)$", re.IGNORECASE)


@dataclass(frozen=True)
class FrameList:
    """A sorted set of unique integer frames; equal when the frames are equal."""

    frames: tuple[int, ...] = ()

    @classmethod
    def from_iterable(cls, frames: Iterable[int]) -> FrameList:
        """Sort and de-duplicate any iterable of ints."""
        return cls(tuple(sorted(set(frames))))

    def __len__(self) -> int:
        return len(self.frames)

    def __iter__(self) -> Iterator[int]:
        return iter(self.frames)

    def __contains__(self, frame: object) -> bool:
        if not isinstance(frame, int) or not self.frames:
            return False
        index = bisect.bisect_left(self.frames, frame)
        return index < len(self.frames) and self.frames[index] == frame

    def __bool__(self) -> bool:
        return bool(self.frames)

    def __str__(self) -> str:
        return self.spec

    @property
    def first(self) -> int:
        if not self.frames:
            raise ValueError("an empty frame list has no first frame")
        return self.frames[0]

    @property
    def last(self) -> int:
        if not self.frames:
            raise ValueError("an empty frame list has no last frame")
        return self.frames[-1]

    def progressions(self) -> list[tuple[int, int, int]]:
        """Greedy ``(start, end, step)`` runs; a pair with a gap splits into two singles."""
        frames = self.frames
        runs: list[tuple[int, int, int]] = []
        count = len(frames)
        i = 0
        while i < count:
            start = frames[i]
            if i + 1 == count:
                runs.append((start, start, 1))
                break
            step = frames[i + 1] - start
            j = i + 1
            while j + 1 < count and frames[j + 1] - frames[j] == step:
                j += 1
            if j == i + 1 and step != 1:
                runs.append((start, start, 1))
                i += 1
                continue
            runs.append((start, frames[j], step))
            i = j + 1
        return runs

    def format(self, to: str, step: str, between: str) -> str:
        """The runs written with the given separators; numbers are formatted, never edited as
        text, so negative frames survive any dialect (cioseq's ``to()`` corrupts them)."""
        parts = []
        for start, end, every in self.progressions():
            if start == end:
                parts.append(str(start))
            elif every == 1:
                parts.append(f"{start}{to}{end}")
            else:
                parts.append(f"{start}{to}{end}{step}{every}")
        return between.join(parts)

    @cached_property
    def spec(self) -> str:
        """Canonical Conductor text: ``1-9x2,22-25``; negatives as ``-5--1x2``."""
        return self.format("-", "x", ",")

    def host_spec(self) -> str:
        """The host renderer's per-image dialect: ``1:9%2;22:25``."""
        return self.format(":", "%", ";")


def _sorted_list(frames: tuple[int, ...]) -> FrameList:
    """Wrap frames already sorted and unique (slices of a FrameList) without re-sorting."""
    return FrameList(frames)


def _bad(field_name: str, text: str, reason: str) -> FrameSpecError:
    return FrameSpecError(field_name, text, reason)


def _token_reason(token: str) -> str:
    """Why a token is not a frame, a range or a stepped range, in words a person can act on."""
    if "." in token:
        return "subframes are not supported"
    if ":" in token or re.search(r"\dy", token):
        return "only the x step modifier is supported"
    if re.search(r"x-", token):
        return "the step must be a positive whole number"
    if token.endswith("-"):
        return "a range has no end"
    if token.endswith("x"):
        return "a range has no step after x"
    return "not a frame, a range A-B or a stepped range A-BxS"


def _in_token(reason: str, token: str, text: str) -> str:
    """Name the bad token too when the spec has more than that one token."""
    return reason if token == text.strip() else f"{reason} ({token!r})"


def _parse_token(token: str, field_name: str, text: str) -> range:
    match = TOKEN.match(token)
    if match is None:
        raise _bad(field_name, text, _in_token(_token_reason(token), token, text))
    start = int(match.group(1))
    end = int(match.group(2)) if match.group(2) is not None else start
    step = int(match.group(3)) if match.group(3) is not None else 1
    for number in (start, end):
        if abs(number) > MAX_FRAME_NUMBER:
            raise _bad(field_name, text, f"frame {number} is beyond ±{MAX_FRAME_NUMBER}")
    if step < 1:
        raise _bad(field_name, text, _in_token("the step must be at least 1", token, text))
    return range(start, end + 1, step) if start <= end else range(start, end - 1, -step)


def parse_frame_spec(text: str, field: str = "frames") -> FrameList:
    """Parse a Conductor frame spec into sorted unique frames, or raise FrameSpecError."""
    tokens = [t for t in re.split(r"[,\s]+", text.strip()) if t]
    if not tokens:
        raise _bad(field, text, "no frames given")
    ranges = [_parse_token(token, field, text) for token in tokens]
    total = sum(len(r) for r in ranges)
    if total > MAX_FRAMES:
        raise _bad(field, text, f"{total} frames is more than the {MAX_FRAMES} allowed")
    if len(ranges) == 1 and ranges[0].step > 0:
        return _sorted_list(tuple(ranges[0]))
    merged: set[int] = set()
    for frames in ranges:
        merged.update(frames)
    return _sorted_list(tuple(sorted(merged)))


def image_range(first: int, last: int, step: int = 1) -> FrameList:
    """An image's own frame range; empty when it ends before it starts."""
    if step < 1 or last < first:
        return FrameList()
    return _sorted_list(tuple(range(first, last + 1, step)))


@dataclass(frozen=True)
class ScoutSpec:
    """Scout frames as the artist wrote them: literal frames, ``auto:N`` or ``fml:N``."""

    kind: Literal["frames", "auto", "fml"]
    frames: FrameList | None = None
    count: int | None = None


def parse_scout_spec(text: str, field: str = "scout_frames") -> ScoutSpec:
    """Parse scout frames: a frame spec, ``auto:N`` (N evenly spaced) or ``fml:N``."""
    keyword = SCOUT_KEYWORD.match(text.strip())
    if keyword is None:
        return ScoutSpec(kind="frames", frames=parse_frame_spec(text, field=field))
    kind = keyword.group(1).lower()
    count_text = keyword.group(2)
    if not count_text.isdigit() or int(count_text) < 1:
        raise _bad(field, text, f"{kind}: needs a whole number of frames of at least 1")
    return ScoutSpec(kind="auto" if kind == "auto" else "fml", count=int(count_text))


def resolve_scout(spec: ScoutSpec, frames: FrameList) -> FrameList:
    """Concrete scout frames. Literal ones are returned as given (validation reports strays).

    ``auto:N`` takes the frame at the centre of each of N equal buckets (cioseq's subsample);
    ``fml:N`` takes first, evenly spaced middles and last (cioseq's calc_fml).
    """
    if spec.kind == "frames":
        return spec.frames or FrameList()
    count = spec.count or 1
    total = len(frames)
    if total == 0:
        return FrameList()
    if count >= total:
        return frames
    values = frames.frames
    if spec.kind == "auto":
        picks = {values[int((i + 0.5) * total / count)] for i in range(count)}
    elif count == 1:
        picks = {values[0]}
    else:
        picks = {values[int(i * (total - 1) / (count - 1) + 0.5)] for i in range(count)}
    return FrameList.from_iterable(picks)


@dataclass(frozen=True)
class Task:
    """One Conductor task: a chunk of frames (and one tile of them when tiling)."""

    index: int
    chunk_index: int
    frames: FrameList
    tile_number: int
    tiles: int
    scout: bool
    image_frames: Mapping[str, FrameList] = field(default_factory=dict)


@dataclass(frozen=True)
class FramePlan:
    """Frames, their chunks, which chunks scout, and the tasks in submission order."""

    frames: FrameList
    chunk_size: int
    chunks: tuple[FrameList, ...]
    scout_frames: FrameList
    scout_chunk_indexes: frozenset[int]
    tiles: int
    tasks: tuple[Task, ...]
    scouting: bool = False

    @property
    def info(self) -> str:
        return frames_info(self)

    @cached_property
    def scout_tasks(self) -> tuple[Task, ...]:
        return tuple(task for task in self.tasks if task.scout)

    @cached_property
    def other_tasks(self) -> tuple[Task, ...]:
        return tuple(task for task in self.tasks if not task.scout)


def _frames_of_image(
    chunk: FrameList, image: FrameList, main: FrameList, members: set[int] | None
) -> FrameList:
    if image is main or members is None:
        return chunk
    return _sorted_list(tuple(frame for frame in chunk.frames if frame in members))


def plan_frames(
    frames: FrameList,
    chunk_size: int,
    scout: FrameList | None = None,
    tiles: int = 1,
    image_frames: Mapping[str, FrameList] | None = None,
) -> FramePlan:
    """Chunk ``frames`` linearly by ``chunk_size`` and mark the chunks holding a scout frame.

    Every chunk yields ``tiles`` tasks (tile 1..tiles). ``image_frames`` gives each image's own
    frames; a task lists, per image, the chunk frames that image renders (images whose range
    covers the whole sequence share the chunk itself, so the common case costs nothing).
    """
    if chunk_size < 1:
        raise FieldError("chunk_size", f"must be at least 1 (got {chunk_size})")
    if tiles < 1:
        raise FieldError("tiles", f"must be at least 1 (got {tiles})")
    values = frames.frames
    chunks = tuple(
        _sorted_list(values[start : start + chunk_size])
        for start in range(0, len(values), chunk_size)
    )
    inside = FrameList()
    scout_indexes: set[int] = set()
    if scout is not None:
        inside = _sorted_list(tuple(f for f in scout.frames if f in frames))
        for frame in inside.frames:
            scout_indexes.add(bisect.bisect_left(values, frame) // chunk_size)
    images = dict(image_frames or {})
    member_sets: dict[str, set[int] | None] = {
        path: None if image == frames else set(image.frames) for path, image in images.items()
    }
    tasks: list[Task] = []
    for chunk_index, chunk in enumerate(chunks):
        per_image = {
            path: _frames_of_image(chunk, image, frames, member_sets[path])
            for path, image in images.items()
        }
        per_image = {path: part for path, part in per_image.items() if part}
        is_scout = chunk_index in scout_indexes
        for tile in range(1, tiles + 1):
            tasks.append(
                Task(
                    index=len(tasks),
                    chunk_index=chunk_index,
                    frames=chunk,
                    tile_number=tile,
                    tiles=tiles,
                    scout=is_scout,
                    image_frames=per_image,
                )
            )
    return FramePlan(
        frames=frames,
        chunk_size=chunk_size,
        chunks=chunks,
        scout_frames=inside,
        scout_chunk_indexes=frozenset(scout_indexes),
        tiles=tiles,
        tasks=tuple(tasks),
        scouting=scout is not None,
    )


def frames_info(plan: FramePlan) -> str:
    """The host's Frames Info line: ``2 Scout / 10 Frames -- 5 Chunks -- 1-10``.

    Without scouting the ``N Scout /`` part is left out; with tiles a ``-- T Tiles`` part is
    added, because every chunk then becomes T tasks.
    """
    text = f"{len(plan.frames)} Frames -- {len(plan.chunks)} Chunks -- {plan.frames.spec}"
    if plan.scouting:
        text = f"{len(plan.scout_frames)} Scout / {text}"
    if plan.tiles > 1:
        text += f" -- {plan.tiles} Tiles"
    return text
