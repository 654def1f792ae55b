"""Frame specs, chunks, scout tasks and the Frames Info line, with Conductor's semantics.

Conductor treats frames as a sorted set of unique integers (cioseq). fileseq keeps the user's
order, accepts subframes and ``y``/``:`` modifiers and echoes the user's text from ``str()``, and
both cioseq and fileseq chunk in quadratic time (research section 5.6). So parsing, formatting and
chunking are ours:

* ``parse_frame_spec`` accepts ``1-10``, ``1-100x3``, ``3,8``, negative frames, duplicates and
  whitespace or commas as separators, and refuses everything else with a message naming the field
  and the bad token. The frame count is computed arithmetically first, so ``1-99999999999`` fails
  at once without memory.
* A descending stepped range is anchored at the first number written, as fileseq reads it:
  ``10-1x2`` is 10,8,6,4,2. cioseq re-anchors at the low end (1,3,5,7,9), which silently renders
  frames the artist never typed: whoever writes 10 first expects frame 10. Unstepped descending
  ranges are the same set either way.
* ``FrameList.spec`` is canonical text (``1-9x2,22-25``), never the user's. Runs of three or more
  equally spaced frames compress to ``A-BxS``, a pair stays ``3,8``: exactly fileseq's
  ``framesToFrameRange`` (checked by a property test). cioseq writes ``3-8x5`` for a pair; both
  parse back to the same frames, and ours is the one a person reads without arithmetic.
* Chunking slices the sorted frames once: linear in the number of frames (cioseq is quadratic).
"""

from __future__ import annotations

import bisect
import gc
import operator
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from functools import cached_property
from itertools import pairwise, repeat
from typing import Literal

from prefect_conductor.conductor_cloud.errors import FieldError, FrameSpecError

MAX_FRAMES = 10_000_000
"""Most frames one spec may hold; more is certainly a typo (and would exhaust memory)."""
MAX_FRAME_NUMBER = 10**9
"""Largest frame number magnitude; renderers and file names break long before."""

TOKEN = re.compile(r"(-?[0-9]+)(?:-(-?[0-9]+)(?:x([0-9]+))?)?")
SEPARATORS = re.compile(r"[,\s]+")
SCOUT_KEYWORD = re.compile(r"(auto|fml)\s*:(.*)", re.IGNORECASE | re.DOTALL)

_new = object.__new__
_set = object.__setattr__


@dataclass(frozen=True)
class FrameList:
    """A sorted set of unique integer frames; immutable, hashable, equal when the frames are.

    Constructing one from an unsorted tuple sorts it, so the invariant cannot be broken from
    outside; slices of an existing list skip that check (``_wrap``), which keeps chunking linear.
    """

    frames: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        values = self.frames
        if not isinstance(values, tuple) or not all(map(operator.lt, values, values[1:])):
            _set(self, "frames", tuple(sorted(set(values))))

    @classmethod
    def from_iterable(cls, frames: Iterable[int]) -> FrameList:
        """Sort and de-duplicate any iterable of ints."""
        return _wrap(tuple(sorted(set(frames))))

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
        """The lowest frame; ValueError when empty (there is no sensible default frame)."""
        if not self.frames:
            raise ValueError("an empty frame list has no first frame")
        return self.frames[0]

    @property
    def last(self) -> int:
        """The highest frame; ValueError when empty."""
        if not self.frames:
            raise ValueError("an empty frame list has no last frame")
        return self.frames[-1]

    def progressions(self) -> list[tuple[int, int, int]]:
        """Greedy ``(start, end, step)`` runs in one pass.

        A run extends while the gap stays equal. Two frames with a gap are not a run (they print
        as ``3,8``), but two adjacent frames are (``1-2``), as fileseq compresses them.
        """
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
        """The runs written with the given separators.

        Numbers are formatted, never edited as text, so negative frames survive any dialect
        (cioseq's ``to()`` replaces characters and turns ``-10--2x2`` into ``:10::2%2``).
        """
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
        """Canonical Conductor text: ``1-9x2,22-25``; negatives as ``-5--1x2``; empty as ``""``."""
        return self.format("-", "x", ",")

    def host_spec(self) -> str:
        """The host renderer's per-image dialect: ``1:9%2;22:25``, ``-10:-2%2;5``."""
        return self.format(":", "%", ";")


def _wrap(frames: tuple[int, ...]) -> FrameList:
    """A FrameList around frames already sorted and unique (slices of a FrameList).

    Skips ``__init__`` and its sortedness check: chunking makes one of these per chunk, and a
    million chunks must cost a million cheap objects, not a million checks.
    """
    frame_list: FrameList = _new(FrameList)
    _set(frame_list, "frames", frames)
    return frame_list


def _token_reason(token: str) -> str:
    """Why a token is not a frame, a range or a stepped range, in words a person can act on."""
    if "." in token:
        return "subframes are not supported"
    if ":" in token or re.search(r"[0-9]y", token):
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
    """One token as a Python range (descending when written high to low); never materialised."""
    match = TOKEN.fullmatch(token)
    if match is None:
        raise FrameSpecError(field_name, text, _in_token(_token_reason(token), token, text))
    start = int(match.group(1))
    end = int(match.group(2)) if match.group(2) is not None else start
    step = int(match.group(3)) if match.group(3) is not None else 1
    for number in (start, end):
        if abs(number) > MAX_FRAME_NUMBER:
            raise FrameSpecError(field_name, text, f"frame {number} is beyond ±{MAX_FRAME_NUMBER}")
    if step < 1:
        raise FrameSpecError(
            field_name, text, _in_token("the step must be at least 1", token, text)
        )
    return range(start, end + 1, step) if start <= end else range(start, end - 1, -step)


def parse_frame_spec(text: str, field: str = "frames") -> FrameList:
    """Parse a Conductor frame spec into sorted unique frames, or raise FrameSpecError.

    ``field`` names the setting in the error (``custom_frames: a range has no end in '1-'``).
    """
    tokens = [token for token in SEPARATORS.split(text.strip()) if token]
    if not tokens:
        raise FrameSpecError(field, text, "no frames given")
    ranges = [_parse_token(token, field, text) for token in tokens]
    total = sum(len(frames) for frames in ranges)
    if total > MAX_FRAMES:
        raise FrameSpecError(field, text, f"{total} frames is more than the {MAX_FRAMES} allowed")
    if len(ranges) == 1:
        only = ranges[0]
        return _wrap(tuple(only) if only.step > 0 else tuple(reversed(only)))
    merged: set[int] = set()
    for frames in ranges:
        merged.update(frames)
    return _wrap(tuple(sorted(merged)))


def image_range(first: int, last: int, step: int = 1) -> FrameList:
    """An image's own frame range ``first..last`` every ``step``; empty when it ends first."""
    if step < 1 or last < first:
        return FrameList()
    return _wrap(tuple(range(first, last + 1, step)))


@dataclass(frozen=True)
class ScoutSpec:
    """Scout frames as the artist wrote them: literal frames, ``auto:N`` or ``fml:N``."""

    kind: Literal["frames", "auto", "fml"]
    frames: FrameList | None = None
    count: int | None = None


def parse_scout_spec(text: str, field: str = "scout_frames") -> ScoutSpec:
    """Parse scout frames: a frame spec, ``auto:N`` (N evenly spaced) or ``fml:N``."""
    keyword = SCOUT_KEYWORD.fullmatch(text.strip())
    if keyword is None:
        return ScoutSpec(kind="frames", frames=parse_frame_spec(text, field=field))
    kind = keyword.group(1).lower()
    count_text = keyword.group(2).strip()
    if not count_text.isascii() or not count_text.isdigit() or int(count_text) < 1:
        raise FrameSpecError(field, text, f"{kind}: needs a whole number of frames of at least 1")
    return ScoutSpec(kind="auto" if kind == "auto" else "fml", count=int(count_text))


def resolve_scout(spec: ScoutSpec, frames: FrameList) -> FrameList:
    """Concrete scout frames. Literal ones are returned as given (validation reports strays).

    ``auto:N`` takes the frame at the centre of each of N equal buckets, as cioseq's
    ``subsample`` means to (1-10, N=3 gives 2,6,9); integer arithmetic here, so no float drift
    picks a neighbour on long sequences. ``fml:N`` takes the first, the last and N-2 frames evenly
    spaced between them (1-10, N=3 gives 1,6,10); cioseq's ``calc_fml`` truncates its bucket and
    crowds the middles towards the start, which is not "middle". N at least the frame count gives
    every frame.
    """
    if spec.kind == "frames":
        return spec.frames if spec.frames is not None else FrameList()
    count = spec.count or 1
    total = len(frames)
    if count >= total:
        return frames
    values = frames.frames
    if spec.kind == "auto":
        indexes = [((2 * i + 1) * total) // (2 * count) for i in range(count)]
    elif count == 1:
        indexes = [0]
    else:
        span = total - 1
        gaps = count - 1
        indexes = [(2 * i * span + gaps) // (2 * gaps) for i in range(count)]
    return _wrap(tuple(values[index] for index in indexes))


@dataclass(frozen=True, slots=True)
class Task:
    """One Conductor task: a chunk of frames (and one tile of them when tiling).

    ``image_frames`` maps each image path to the frames of this chunk that image renders; images
    with no frame in the chunk are absent. Tasks of one chunk share the mapping: treat it as
    read-only.
    """

    index: int
    chunk_index: int
    frames: FrameList
    tile_number: int
    tiles: int
    scout: bool
    image_frames: Mapping[str, FrameList] = dataclass_field(default_factory=dict)


@dataclass(frozen=True)
class FramePlan:
    """Frames, their chunks, which chunks scout, and the tasks in submission order.

    ``scouting`` says whether scout frames were asked for at all, so Frames Info can show
    ``0 Scout`` when none of them falls inside the frames instead of hiding the mistake.
    """

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
        """The Frames Info line (see ``frames_info``)."""
        return frames_info(self)

    @cached_property
    def scout_tasks(self) -> tuple[Task, ...]:
        """Tasks whose chunk holds a scout frame, in submission order."""
        return tuple(task for task in self.tasks if task.scout)

    @cached_property
    def other_tasks(self) -> tuple[Task, ...]:
        """Every task that is not a scout task, in submission order."""
        return tuple(task for task in self.tasks if not task.scout)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building a plan.

    A plan of a million chunks allocates millions of small acyclic objects; each allocation burst
    triggers collections that rescan everything built so far, which costs more than the building.
    Nothing built here can form a cycle, so pausing loses nothing; the previous state is restored.
    The switch is process-wide: concurrent plans overlap harmlessly, because only the one that
    found the collector enabled turns it back on.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _scout_positions(values: tuple[int, ...], scout: FrameList) -> list[int]:
    """Indexes into ``values`` of the scout frames that are among them, ascending.

    A few scout frames are found by binary search; many (``auto:1000`` on a long sequence) by one
    pass with a set, so the cost stays linear either way.
    """
    count = len(values)
    if len(scout) * 32 < count:
        positions = []
        for frame in scout.frames:
            index = bisect.bisect_left(values, frame)
            if index < count and values[index] == frame:
                positions.append(index)
        return positions
    wanted = set(scout.frames)
    return [index for index, frame in enumerate(values) if frame in wanted]


def _image_parts(
    image: FrameList,
    values: tuple[int, ...],
    value_set: set[int],
    chunk_starts: tuple[int, ...],
) -> list[FrameList | None] | None:
    """One image's frames cut at the chunk boundaries: entry k is its part of chunk k (None when
    it has none there). Returns None when the image renders every frame of the sequence, so the
    caller reuses the chunks themselves (the common case costs no copies).
    """
    mine = image.frames
    if mine != values:
        mine = tuple(frame for frame in mine if frame in value_set)
    if len(mine) == len(values):
        return None
    # cut k starts at the first of the image's frames >= chunk k's first frame
    cuts = list(map(bisect.bisect_left, repeat(mine), chunk_starts))
    cuts.append(len(mine))
    return [_wrap(mine[low:high]) if high > low else None for low, high in pairwise(cuts)]


def plan_frames(
    frames: FrameList,
    chunk_size: int,
    scout: FrameList | None = None,
    tiles: int = 1,
    image_frames: Mapping[str, FrameList] | None = None,
) -> FramePlan:
    """Chunk ``frames`` linearly by ``chunk_size`` and mark the chunks holding a scout frame.

    Chunks are consecutive slices of the sorted frames: all hold ``chunk_size`` frames but the
    last. Every chunk yields ``tiles`` tasks (tile 1..tiles), all flagged scout when the chunk
    holds a scout frame. ``image_frames`` gives each image's own frames; a task lists, per image,
    the chunk frames that image renders, and images whose frames cover the whole sequence share
    the chunk object itself. Linear in frames plus tasks: a million frames plan in well under a
    second at chunk size 10 (bench/frames.py).
    """
    if chunk_size < 1:
        raise FieldError("chunk_size", f"must be at least 1 (got {chunk_size})")
    if tiles < 1:
        raise FieldError("tiles", f"must be at least 1 (got {tiles})")
    values = frames.frames
    with _collector_paused():
        chunks = _slice_chunks(values, chunk_size)
        positions = _scout_positions(values, scout) if scout is not None else []
        inside = _wrap(tuple(values[index] for index in positions))
        scout_indexes = frozenset(index // chunk_size for index in positions)
        per_chunk_images = _per_chunk_images(frames, chunks, chunk_size, image_frames or {})
        tasks = _build_tasks(chunks, per_chunk_images, scout_indexes, tiles)
    return FramePlan(
        frames=frames,
        chunk_size=chunk_size,
        chunks=chunks,
        scout_frames=inside,
        scout_chunk_indexes=scout_indexes,
        tiles=tiles,
        tasks=tasks,
        scouting=scout is not None,
    )


def _slice_chunks(values: tuple[int, ...], chunk_size: int) -> tuple[FrameList, ...]:
    """Consecutive ``chunk_size`` slices of the sorted frames, each wrapped without a check."""
    chunks: list[FrameList] = []
    append = chunks.append
    for start in range(0, len(values), chunk_size):
        chunk: FrameList = _new(FrameList)
        _set(chunk, "frames", values[start : start + chunk_size])
        append(chunk)
    return tuple(chunks)


_TASK_SETTERS = tuple(getattr(Task, name).__set__ for name in Task.__slots__)


def _build_tasks(
    chunks: tuple[FrameList, ...],
    per_chunk_images: list[dict[str, FrameList]],
    scout_indexes: frozenset[int],
    tiles: int,
) -> tuple[Task, ...]:
    """Every chunk's ``tiles`` tasks, in submission order.

    Fills the slots directly instead of calling the frozen ``__init__`` (which goes through
    ``object.__setattr__`` once per field): the same objects at half the cost, which matters when
    a chunk size of 1 turns a million frames into a million tasks.
    """
    (set_index, set_chunk, set_frames, set_tile, set_tiles, set_scout, set_images) = _TASK_SETTERS
    tasks: list[Task] = []
    append = tasks.append
    number = 0
    for chunk_index, chunk in enumerate(chunks):
        images = per_chunk_images[chunk_index]
        is_scout = chunk_index in scout_indexes
        for tile in range(1, tiles + 1) if tiles > 1 else (1,):
            task: Task = _new(Task)
            set_index(task, number)
            set_chunk(task, chunk_index)
            set_frames(task, chunk)
            set_tile(task, tile)
            set_tiles(task, tiles)
            set_scout(task, is_scout)
            set_images(task, images)
            append(task)
            number += 1
    return tuple(tasks)


def _per_chunk_images(
    frames: FrameList,
    chunks: tuple[FrameList, ...],
    chunk_size: int,
    image_frames: Mapping[str, FrameList],
) -> list[dict[str, FrameList]]:
    """For each chunk, the mapping image path -> that image's frames in the chunk, image order
    kept. Linear: each image is cut once at the chunk boundaries (binary search per boundary)."""
    if not image_frames:
        empty: dict[str, FrameList] = {}
        return [empty] * len(chunks)
    values = frames.frames
    value_set: set[int] = set()
    if any(image.frames != values for image in image_frames.values()):
        value_set = set(values)
    chunk_starts = values[::chunk_size]
    parts = {
        path: _image_parts(image, values, value_set, chunk_starts)
        for path, image in image_frames.items()
    }
    if all(cut is None for cut in parts.values()):
        paths = list(parts)
        return [dict.fromkeys(paths, chunk) for chunk in chunks]
    mappings: list[dict[str, FrameList]] = []
    for index, chunk in enumerate(chunks):
        mapping: dict[str, FrameList] = {}
        for path, cut in parts.items():
            if cut is None:
                mapping[path] = chunk
            else:
                part = cut[index]
                if part is not None:
                    mapping[path] = part
        mappings.append(mapping)
    return mappings


def frames_info(plan: FramePlan) -> str:
    """The host's Frames Info line: ``2 Scout / 10 Frames -- 5 Chunks -- 1-10``.

    Without scouting the ``N Scout /`` part is left out (``10 Frames -- 5 Chunks -- 1-10``); the
    scout count is the number of scout frames inside the frames. With tiles a ``-- T Tiles`` part
    is appended (``... -- 1-10 -- 4 Tiles``), because every chunk then becomes T tasks. The spec
    shown is the canonical one, never the text the artist typed.
    """
    text = f"{len(plan.frames)} Frames -- {len(plan.chunks)} Chunks -- {plan.frames.spec}"
    if plan.scouting:
        text = f"{len(plan.scout_frames)} Scout / {text}"
    if plan.tiles > 1:
        text += f" -- {plan.tiles} Tiles"
    return text
