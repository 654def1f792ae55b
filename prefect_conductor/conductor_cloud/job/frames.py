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
* A plan holds no chunk and no task: chunk k is the index range ``[k * size, (k + 1) * size)`` of
  the sorted frames, and ``FramePlan.chunks`` / ``FramePlan.tasks`` are sequences that make each
  one when it is read. Planning is therefore constant in the number of tasks (a million frames at
  chunk size 1 plan as fast as ten), and reading every task is linear (cioseq is quadratic).
  Nothing here touches process-wide state: this runs inside a multi-threaded Prefect worker.
* Sizes are bounded before anything is built (``PlanLimits``, from the settings): the number of
  frames, of tiles and of tasks per job, each refused with one line naming the field.
"""

from __future__ import annotations

import bisect
import operator
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import repeat
from typing import Literal, TypeVar, overload

from prefect_conductor.conductor_cloud.errors import FieldError, FrameSpecError
from prefect_conductor.conductor_cloud.settings import get_settings

MAX_FRAME_NUMBER = 10**9
"""Largest frame number magnitude; renderers and file names break long before."""

TOKEN = re.compile(r"(-?[0-9]+)(?:-(-?[0-9]+)(?:x([0-9]+))?)?")
SEPARATORS = re.compile(r"[,\s]+")
SCOUT_KEYWORD = re.compile(r"(auto|fml)\s*:(.*)", re.IGNORECASE | re.DOTALL)

MAX_FRAMES_VARIABLE = "PREFECT_CONDUCTOR_MAX_FRAMES"
MAX_TASKS_VARIABLE = "PREFECT_CONDUCTOR_MAX_TASKS_PER_JOB"
MAX_TILES_VARIABLE = "PREFECT_CONDUCTOR_MAX_TILES"


@dataclass(frozen=True)
class PlanLimits:
    """The most frames, tiles and tasks one job may have; beyond them memory runs out first.

    Defaults come from the settings (``max_frames``, ``max_tiles``, ``max_tasks_per_job``) so a
    studio can raise them; a benchmark passes its own.
    """

    max_frames: int
    max_tiles: int
    max_tasks: int

    @classmethod
    def from_settings(cls) -> PlanLimits:
        """The limits as the environment sets them now."""
        settings = get_settings()
        return cls(settings.max_frames, settings.max_tiles, settings.max_tasks_per_job)


class FrameList:
    """A sorted set of unique integer frames; immutable, hashable, equal when the frames are.

    The constructor sorts and de-duplicates whatever it is given, so the invariant cannot be
    broken from outside; ``_sorted_list`` wraps frames already sorted and unique without it.
    """

    __slots__ = ("_frames", "_spec")

    def __init__(self, frames: Iterable[int] = ()) -> None:
        values = tuple(frames)
        if not all(map(operator.lt, values, values[1:])):
            values = tuple(sorted(set(values)))
        self._frames = values
        self._spec: str | None = None

    @classmethod
    def from_iterable(cls, frames: Iterable[int]) -> FrameList:
        """Sort and de-duplicate any iterable of ints."""
        return _sorted_list(tuple(sorted(set(frames))))

    @classmethod
    def from_range(cls, frames: range) -> FrameList:
        """The frames of a range, either direction (sorted without a sort)."""
        return _sorted_list(tuple(frames if frames.step > 0 else reversed(frames)))

    @property
    def frames(self) -> tuple[int, ...]:
        """The frames, ascending (read-only)."""
        return self._frames

    def __reduce__(self) -> tuple[type[FrameList], tuple[tuple[int, ...]]]:
        """Pickle as the frames alone (Prefect may hash or persist a plan)."""
        return (FrameList, (self._frames,))

    def __repr__(self) -> str:
        return f"FrameList({self.spec!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FrameList):
            return NotImplemented
        return self._frames == other._frames

    def __hash__(self) -> int:
        return hash(self._frames)

    def __len__(self) -> int:
        return len(self._frames)

    def __iter__(self) -> Iterator[int]:
        return iter(self._frames)

    def __contains__(self, frame: object) -> bool:
        if not isinstance(frame, int) or not self._frames:
            return False
        index = bisect.bisect_left(self._frames, frame)
        return index < len(self._frames) and self._frames[index] == frame

    def __bool__(self) -> bool:
        return bool(self._frames)

    def __str__(self) -> str:
        return self.spec

    @property
    def first(self) -> int:
        """The lowest frame; ValueError when empty (there is no sensible default frame)."""
        if not self._frames:
            raise ValueError("an empty frame list has no first frame")
        return self._frames[0]

    @property
    def last(self) -> int:
        """The highest frame; ValueError when empty."""
        if not self._frames:
            raise ValueError("an empty frame list has no last frame")
        return self._frames[-1]

    def progressions(self) -> list[tuple[int, int, int]]:
        """Greedy ``(start, end, step)`` runs in one pass.

        A run extends while the gap stays equal. Two frames with a gap are not a run (they print
        as ``3,8``), but two adjacent frames are (``1-2``), as fileseq compresses them.
        """
        frames = self._frames
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

    @property
    def spec(self) -> str:
        """Canonical Conductor text: ``1-9x2,22-25``; negatives as ``-5--1x2``; empty as ``""``."""
        if self._spec is None:
            self._spec = self.format("-", "x", ",")
        return self._spec

    def host_spec(self) -> str:
        """The host renderer's per-image dialect: ``1:9%2;22:25``, ``-10:-2%2;5``."""
        return self.format(":", "%", ";")


_new = object.__new__


def _sorted_list(frames: tuple[int, ...]) -> FrameList:
    """A FrameList around frames the caller guarantees sorted and unique (slices of another).

    Skips the constructor's copy and sortedness check, a large share of the cost of reading a
    million one-frame chunks; it sets the same two slots, on a new object nobody else holds.
    """
    frame_list: FrameList = _new(FrameList)
    frame_list._frames = frames
    frame_list._spec = None
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


def _too_many(count: int, limit: int) -> str:
    """The reason a frame count is refused, naming the setting that raises the limit."""
    return f"{count} frames is more than the {limit} allowed ({MAX_FRAMES_VARIABLE})"


def parse_frame_spec(text: str, field: str = "frames", max_frames: int | None = None) -> FrameList:
    """Parse a Conductor frame spec into sorted unique frames, or raise FrameSpecError.

    ``field`` names the setting in the error (``custom_frames: a range has no end in '1-'``).
    ``max_frames`` (default: the ``max_frames`` setting) is checked on the arithmetic count,
    before a single frame is made.
    """
    tokens = [token for token in SEPARATORS.split(text.strip()) if token]
    if not tokens:
        raise FrameSpecError(field, text, "no frames given")
    ranges = [_parse_token(token, field, text) for token in tokens]
    total = sum(len(frames) for frames in ranges)
    limit = get_settings().max_frames if max_frames is None else max_frames
    if total > limit:
        raise FrameSpecError(field, text, _too_many(total, limit))
    if len(ranges) == 1:
        return FrameList.from_range(ranges[0])
    merged: set[int] = set()
    for frames in ranges:
        merged.update(frames)
    return _sorted_list(tuple(sorted(merged)))


def checked_range(
    first: int,
    last: int,
    step: int = 1,
    *,
    field: str = "images",
    max_frames: int | None = None,
) -> range:
    """The range ``first..last`` every ``step`` (empty when it ends first), not yet built.

    A range beyond ±MAX_FRAME_NUMBER or holding more than ``max_frames`` (default: the setting)
    raises FieldError naming ``field``: a scene's ``last_frame: 2000000000`` must be one line,
    not a MemoryError.
    """
    if step < 1 or last < first:
        return range(0)
    for name, number in (("first_frame", first), ("last_frame", last)):
        if abs(number) > MAX_FRAME_NUMBER:
            raise FieldError(field, f"{name} {number} is beyond ±{MAX_FRAME_NUMBER}")
    frames = range(first, last + 1, step)
    limit = get_settings().max_frames if max_frames is None else max_frames
    if len(frames) > limit:
        raise FieldError(field, f"frames {first}-{last}x{step}: {_too_many(len(frames), limit)}")
    return frames


def image_range(
    first: int,
    last: int,
    step: int = 1,
    *,
    field: str = "images",
    max_frames: int | None = None,
) -> FrameList:
    """An image's own frame range, bounded as ``checked_range`` says, then built."""
    return FrameList.from_range(
        checked_range(first, last, step, field=field, max_frames=max_frames)
    )


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
    return _sorted_list(tuple(values[index] for index in indexes))


class Task:
    """One Conductor task: a chunk of frames (and one tile of them when tiling).

    ``image_frames`` maps each image path to the frames of this chunk that image renders; images
    with no frame in the chunk are absent, and an image that renders the whole chunk maps to the
    task's own ``frames`` object. A plain slotted record, read-only by contract: nothing assigns
    to a task after ``Tasks`` makes it. Not a frozen dataclass, whose ``__init__`` sets every
    field through ``object.__setattr__`` and made reading a million tasks a quarter slower.
    """

    __slots__ = ("chunk_index", "frames", "image_frames", "index", "scout", "tile_number", "tiles")

    def __init__(
        self,
        index: int,
        chunk_index: int,
        frames: FrameList,
        tile_number: int,
        tiles: int,
        scout: bool,
        image_frames: Mapping[str, FrameList],
    ) -> None:
        self.index = index
        self.chunk_index = chunk_index
        self.frames = frames
        self.tile_number = tile_number
        self.tiles = tiles
        self.scout = scout
        self.image_frames = image_frames

    def _key(self) -> tuple[object, ...]:
        return (
            self.index,
            self.chunk_index,
            self.frames,
            self.tile_number,
            self.tiles,
            self.scout,
            dict(self.image_frames),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Task):
            return NotImplemented
        return self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Task(index={self.index}, chunk_index={self.chunk_index}, frames={self.frames!r},"
            f" tile={self.tile_number}/{self.tiles}, scout={self.scout})"
        )


ImagePart = tuple[str, tuple[int, ...] | None]
"""An image path and its frames within the sequence, or None when it renders every frame."""


@dataclass(frozen=True)
class FramePlan:
    """Frames, their chunks, which chunks scout, and the tasks in submission order.

    A plan stores what defines it (frames, chunk size, scout chunks, tiles, each image's frames);
    ``chunks`` and ``tasks`` are read-only sequences that make a chunk or a task when it is read,
    so a plan costs the same for ten tasks as for a million. ``scouting`` says whether scout
    frames were asked for at all, so Frames Info can show ``0 Scout`` when none of them falls
    inside the frames instead of hiding the mistake.
    """

    frames: FrameList
    chunk_size: int
    scout_frames: FrameList
    scout_chunk_indexes: frozenset[int]
    tiles: int = 1
    scouting: bool = False
    image_parts: tuple[ImagePart, ...] = ()

    @property
    def chunks(self) -> Chunks:
        """Chunk k: the frames at sorted positions ``[k * chunk_size, (k + 1) * chunk_size)``."""
        return Chunks(self.frames.frames, self.chunk_size)

    @property
    def tasks(self) -> Tasks:
        """Every chunk's ``tiles`` tasks (tile 1..tiles), in submission order."""
        return Tasks(self)

    @property
    def info(self) -> str:
        """The Frames Info line (see ``frames_info``)."""
        return frames_info(self)

    @cached_property
    def scout_tasks(self) -> tuple[Task, ...]:
        """Tasks whose chunk holds a scout frame, in submission order (made without a scan)."""
        tasks = self.tasks
        return tuple(
            tasks[chunk_index * self.tiles + tile]
            for chunk_index in sorted(self.scout_chunk_indexes)
            for tile in range(self.tiles)
        )

    @cached_property
    def other_tasks(self) -> tuple[Task, ...]:
        """Every task that is not a scout task, in submission order."""
        return tuple(task for task in self.tasks if not task.scout)


Item = TypeVar("Item")


class _MadeWhenRead(Sequence[Item]):
    """A read-only sequence whose item ``i`` is made by ``_make(i)`` each time it is read."""

    __slots__ = ()

    def _make(self, index: int) -> Item:
        raise NotImplementedError

    @overload
    def __getitem__(self, index: int) -> Item: ...
    @overload
    def __getitem__(self, index: slice) -> list[Item]: ...
    def __getitem__(self, index: int | slice) -> Item | list[Item]:
        if isinstance(index, slice):
            return [self._make(number) for number in range(*index.indices(len(self)))]
        count = len(self)
        if index < 0:
            index += count
        if not 0 <= index < count:
            raise IndexError(f"{type(self).__name__.lower()} index out of range")
        return self._make(index)


class Chunks(_MadeWhenRead[FrameList]):
    """A plan's chunks as index ranges into the sorted frames; each FrameList made when read."""

    __slots__ = ("_size", "_values")

    def __init__(self, values: tuple[int, ...], size: int) -> None:
        self._values = values
        self._size = size

    def __len__(self) -> int:
        return -(-len(self._values) // self._size)

    def starts(self) -> tuple[int, ...]:
        """Every chunk's first frame, in order."""
        return self._values[:: self._size]

    def _make(self, index: int) -> FrameList:
        start = index * self._size
        return _sorted_list(self._values[start : start + self._size])

    def __iter__(self) -> Iterator[FrameList]:
        values, size = self._values, self._size
        trusted = _sorted_list
        for start in range(0, len(values), size):
            yield trusted(values[start : start + size])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Chunks):
            return self._size == other._size and self._values == other._values
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


class _ImageCutter:
    """Cuts each image's frames at a chunk's bounds: two binary searches per image and chunk.

    Every image's frames are within the sequence (``plan_frames`` filters them), and a chunk is a
    contiguous run of the sorted sequence, so the image's frames between the chunk's first and
    last frame are exactly its frames in the chunk.
    """

    __slots__ = ("_parts",)

    def __init__(self, parts: tuple[ImagePart, ...]) -> None:
        self._parts = parts

    def cut(self, chunk: FrameList) -> dict[str, FrameList]:
        """Image path -> its frames in ``chunk``, image order kept; absent when it has none."""
        mapping: dict[str, FrameList] = {}
        if not self._parts:
            return mapping
        first, last = chunk.first, chunk.last
        for path, mine in self._parts:
            if mine is None:
                mapping[path] = chunk
                continue
            low = bisect.bisect_left(mine, first)
            high = bisect.bisect_right(mine, last, low)
            if high > low:
                mapping[path] = _sorted_list(mine[low:high])
        return mapping

    def cut_in_order(self, chunks: Chunks) -> Iterator[tuple[FrameList, dict[str, FrameList]]]:
        """Every chunk with its mapping, in order, as ``cut`` gives them but in bulk.

        Each image is cut at every chunk's first frame in one ``map(bisect_left, ...)`` (C
        speed), and chunk k's part is what lies between cut k and cut k + 1; one binary-search
        pair per image and chunk in Python costs twice as much on a million chunks.
        """
        starts = chunks.starts()
        cuts = [
            (
                path,
                mine,
                None
                if mine is None
                else [*map(bisect.bisect_left, repeat(mine), starts), len(mine)],
            )
            for path, mine in self._parts
        ]
        for index, chunk in enumerate(chunks):
            mapping: dict[str, FrameList] = {}
            for path, mine, cut in cuts:
                if mine is None or cut is None:
                    mapping[path] = chunk
                    continue
                low, high = cut[index], cut[index + 1]
                if high > low:
                    mapping[path] = _sorted_list(mine[low:high])
            yield chunk, mapping


class Tasks(_MadeWhenRead[Task]):
    """A plan's tasks in submission order; each Task (and its chunk) made when read.

    Task ``i`` is tile ``i % tiles + 1`` of chunk ``i // tiles``; the tiles of one chunk share
    the chunk and its per-image mapping when read in order.
    """

    __slots__ = ("_plan",)

    def __init__(self, plan: FramePlan) -> None:
        self._plan = plan

    def __len__(self) -> int:
        return len(self._plan.chunks) * self._plan.tiles

    def _make(self, index: int) -> Task:
        plan = self._plan
        chunk_index, tile = divmod(index, plan.tiles)
        chunk = plan.chunks[chunk_index]
        return Task(
            index,
            chunk_index,
            chunk,
            tile + 1,
            plan.tiles,
            chunk_index in plan.scout_chunk_indexes,
            _ImageCutter(plan.image_parts).cut(chunk),
        )

    def __iter__(self) -> Iterator[Task]:
        plan = self._plan
        tiles, scouts = plan.tiles, plan.scout_chunk_indexes
        cutter = _ImageCutter(plan.image_parts)
        number = 0
        for chunk_index, (chunk, images) in enumerate(cutter.cut_in_order(plan.chunks)):
            scout = chunk_index in scouts
            for tile in range(1, tiles + 1):
                yield Task(number, chunk_index, chunk, tile, tiles, scout, images)
                number += 1

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Tasks):
            return self._plan == other._plan
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


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


def _image_parts(frames: FrameList, image_frames: Mapping[str, FrameList]) -> tuple[ImagePart, ...]:
    """Each image's frames within the sequence (None when it renders all of them), in order.

    Linear in the frames: an image equal to the sequence costs nothing, any other is filtered
    once against a set of the sequence.
    """
    values = frames.frames
    value_set: set[int] | None = None
    parts: list[ImagePart] = []
    for path, image in image_frames.items():
        mine = image.frames
        if mine != values:
            if value_set is None:
                value_set = set(values)
            mine = tuple(frame for frame in mine if frame in value_set)
        parts.append((path, None if len(mine) == len(values) else mine))
    return tuple(parts)


def check_plan_size(frame_count: int, chunk_size: int, tiles: int, limits: PlanLimits) -> None:
    """Refuse a plan whose tiles or task count is beyond the limits, naming the field to change.

    Arithmetic only: ``1-1000000`` at chunk size 1 or ``tiles: 100000000`` fail at once.
    """
    if tiles > limits.max_tiles:
        raise FieldError(
            "tiles",
            f"{tiles} tiles is more than the {limits.max_tiles} allowed ({MAX_TILES_VARIABLE})",
        )
    chunk_count = -(-frame_count // chunk_size)
    task_count = chunk_count * tiles
    if task_count > limits.max_tasks:
        tiled = f" and {tiles} tiles" if tiles > 1 else ""
        field = "tiles" if tiles > 1 and chunk_count <= limits.max_tasks else "chunk_size"
        remedy = "fewer tiles" if field == "tiles" else "a larger chunk size"
        raise FieldError(
            field,
            f"{frame_count} frames at chunk size {chunk_size}{tiled} make {task_count} tasks,"
            f" more than the {limits.max_tasks} a job may have ({MAX_TASKS_VARIABLE}); use"
            f" {remedy}",
        )


def plan_frames(
    frames: FrameList,
    chunk_size: int,
    scout: FrameList | None = None,
    tiles: int = 1,
    image_frames: Mapping[str, FrameList] | None = None,
    limits: PlanLimits | None = None,
) -> FramePlan:
    """Chunk ``frames`` by ``chunk_size`` and mark the chunks holding a scout frame.

    Chunks are consecutive slices of the sorted frames: all hold ``chunk_size`` frames but the
    last. Every chunk yields ``tiles`` tasks (tile 1..tiles), all flagged scout when the chunk
    holds a scout frame. ``image_frames`` gives each image's own frames; a task lists, per image,
    the chunk frames that image renders, and images whose frames cover the whole sequence share
    the chunk object itself. ``limits`` (default: the settings) bound tiles and tasks, checked
    before anything is built. No chunk or task is built here (see ``FramePlan``).
    """
    if chunk_size < 1:
        raise FieldError("chunk_size", f"must be at least 1 (got {chunk_size})")
    if tiles < 1:
        raise FieldError("tiles", f"must be at least 1 (got {tiles})")
    check_plan_size(len(frames), chunk_size, tiles, limits or PlanLimits.from_settings())
    values = frames.frames
    positions = _scout_positions(values, scout) if scout is not None else []
    return FramePlan(
        frames=frames,
        chunk_size=chunk_size,
        scout_frames=_sorted_list(tuple(values[index] for index in positions)),
        scout_chunk_indexes=frozenset(index // chunk_size for index in positions),
        tiles=tiles,
        scouting=scout is not None,
        image_parts=_image_parts(frames, image_frames or {}),
    )


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
