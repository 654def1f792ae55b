"""A contact sheet of downloaded frames: thumbnails in a grid, each labelled, as one small PNG.

Frames are read with OpenImageIO, which reads EXR as studios write it (half or float, any
channels): the first three channels (one is shown grey), scene-linear float data turned to sRGB
for display, fitted into a thumbnail cell. Each cell is labelled with the file's name (the image's
Save As with its frame number) when OpenImageIO can draw text. The PNG is kept under
:data:`MAX_PNG_BYTES` by halving the thumbnails until it fits, so it travels inside a Prefect
artifact. OpenImageIO is optional: :class:`SheetUnavailable` says, in one line, that it is missing.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IMAGE_SUFFIXES = frozenset({".exr", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dpx", ".tga"})
THUMB_WIDTH = 192
MIN_THUMB_WIDTH = 24
COLUMNS = 4
MAX_CELLS = 32
"""At most this many frames on one sheet (the first in name order); the rest are counted."""
MAX_PNG_BYTES = 200 * 1024
LABEL_HEIGHT = 18
GAP = 6
BACKGROUND = (0.12, 0.12, 0.12)
_FRAME = re.compile(r"(\d+)(?=\.[^.]+$)")


class SheetUnavailable(Exception):
    """No sheet can be made here (OpenImageIO missing, or no frame could be read): one line."""


@dataclass(frozen=True)
class SheetCell:
    """One frame on the sheet: its file's name (as listed for download) and frame number."""

    relative: str
    frame: int | None

    @property
    def label(self) -> str:
        return Path(self.relative).name


@dataclass(frozen=True)
class ContactSheet:
    """The PNG, what is on it (in grid order) and what was left off or unreadable."""

    png: bytes
    cells: list[SheetCell]
    left_off: int
    unreadable: list[str]
    columns: int


def sheet_cells(files: Sequence[tuple[str, Path]]) -> list[tuple[SheetCell, Path]]:
    """The image files among ``(name, path)`` pairs, in name order; a link or anything but a
    regular file is left out, so a planted link never shows a file from elsewhere."""
    cells = []
    for name, path in files:
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and not path.is_symlink():
            match = _FRAME.search(path.name)
            cells.append((SheetCell(name, int(match.group(1)) if match else None), path))
    return sorted(cells, key=lambda pair: pair[0].relative)


def require_openimageio() -> Any:
    try:
        import OpenImageIO
    except ImportError:
        raise SheetUnavailable(
            "OpenImageIO is not installed where this runs (pip install OpenImageIO): no contact"
            " sheet"
        ) from None
    return OpenImageIO


def _thumbnail(oiio: Any, path: Path, width: int) -> Any | None:
    """The frame as an RGB float thumbnail ``width`` wide (height kept in proportion), shown as
    sRGB, or None when it cannot be read. Resized first, so the colour work is on few pixels."""
    source = oiio.ImageBuf(str(path))
    if source.has_error:
        source.geterror()  # read, so OpenImageIO does not print it when the buffer goes
        return None
    spec = source.spec()
    if spec.width < 1 or spec.height < 1:
        return None
    channels = min(spec.nchannels, 3)
    rgb = oiio.ImageBufAlgo.channels(source, (0, 0, 0) if channels < 3 else (0, 1, 2))
    if rgb.has_error:
        rgb.geterror()
        return None
    thumb = _scaled(oiio, rgb, width)
    if thumb is not None and spec.format.basetype in (oiio.HALF, oiio.FLOAT, oiio.DOUBLE):
        shown = oiio.ImageBufAlgo.colorconvert(thumb, "scene_linear", "sRGB")
        thumb = thumb if shown.has_error else shown
    return thumb


def _scaled(oiio: Any, image: Any, width: int) -> Any | None:
    """``image`` resized to ``width`` wide, height in proportion; None if that fails. A large
    frame is first resampled (fast, unfiltered) to twice that, so the filtered resize that
    follows works on few pixels: a 1080p frame takes milliseconds instead of a second."""
    spec = image.spec()
    if spec.width > 4 * width:
        half = _size(spec, 2 * width)
        image = oiio.ImageBufAlgo.resample(image, roi=oiio.ROI(0, half[0], 0, half[1], 0, 1, 0, 3))
        if image.has_error:
            image.geterror()
            return None
    width, height = _size(image.spec(), width)
    scaled = oiio.ImageBufAlgo.resize(image, roi=oiio.ROI(0, width, 0, height, 0, 1, 0, 3))
    if scaled.has_error:
        scaled.geterror()
        return None
    return scaled


def _size(spec: Any, width: int) -> tuple[int, int]:
    """``width`` and the height that keeps the proportions of ``spec``."""
    return width, max(1, round(spec.height * width / spec.width))


def _compose(oiio: Any, thumbs: Sequence[tuple[SheetCell, Any]], width: int, columns: int) -> bytes:
    """The thumbnails on a grid with their labels, as PNG bytes."""
    cell_height = max(t.spec().height for _, t in thumbs) + LABEL_HEIGHT
    rows = (len(thumbs) + columns - 1) // columns
    sheet_width = GAP + columns * (width + GAP)
    sheet_height = GAP + rows * (cell_height + GAP)
    sheet = oiio.ImageBuf(oiio.ImageSpec(sheet_width, sheet_height, 3, oiio.FLOAT))
    oiio.ImageBufAlgo.fill(sheet, BACKGROUND)
    for index, (cell, thumb) in enumerate(thumbs):
        x = GAP + (index % columns) * (width + GAP)
        y = GAP + (index // columns) * (cell_height + GAP)
        oiio.ImageBufAlgo.paste(sheet, x, y, 0, 0, thumb)
        # A label is a nicety: a build without fonts draws none, and the artifact lists them.
        oiio.ImageBufAlgo.render_text(
            sheet, x + 2, y + thumb.spec().height + LABEL_HEIGHT - 5, cell.label[:32], 12
        )
        oiio.geterror()  # clear a failed label's message so it cannot leak into the next call
    with tempfile.TemporaryDirectory(prefix="contact-sheet-") as scratch:
        target = Path(scratch) / "sheet.png"
        out = sheet.copy(oiio.UINT8)
        if not out.write(str(target)):
            raise SheetUnavailable(f"cannot write the contact sheet: {out.geterror()[:200]}")
        return target.read_bytes()


def make_contact_sheet(
    files: Sequence[tuple[str, Path]],
    *,
    thumb_width: int = THUMB_WIDTH,
    columns: int = COLUMNS,
    max_bytes: int = MAX_PNG_BYTES,
) -> ContactSheet:
    """A contact sheet of the image files among ``(name, path)`` pairs (the name labels the
    cell); SheetUnavailable (one line) if none can be made. Thumbnails shrink by half until the
    PNG is at most ``max_bytes``."""
    oiio = require_openimageio()
    found = sheet_cells(files)
    if not found:
        raise SheetUnavailable(f"none of the {len(files)} files downloaded is an image")
    shown = found[:MAX_CELLS]
    thumbs: list[tuple[SheetCell, Any]] = []
    unreadable: list[str] = []
    for cell, path in shown:  # each frame is read once; a smaller sheet scales the thumbnails
        thumb = _thumbnail(oiio, path, thumb_width)
        if thumb is None:
            unreadable.append(cell.relative)
        else:
            thumbs.append((cell, thumb))
    if not thumbs:
        raise SheetUnavailable(f"none of the {len(shown)} image files could be read")
    across = max(1, min(columns, len(thumbs)))
    width = thumb_width
    while True:
        png = _compose(oiio, thumbs, width, across)
        if len(png) <= max_bytes or width <= MIN_THUMB_WIDTH:
            return ContactSheet(
                png=png,
                cells=[cell for cell, _ in thumbs],
                left_off=len(found) - len(shown),
                unreadable=unreadable,
                columns=across,
            )
        width = max(MIN_THUMB_WIDTH, width // 2)
        smaller = [(cell, _scaled(oiio, thumb, width)) for cell, thumb in thumbs]
        thumbs = [(cell, thumb) for cell, thumb in smaller if thumb is not None]
        if not thumbs:
            raise SheetUnavailable("the thumbnails could not be made smaller")
