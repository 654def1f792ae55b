"""A stand-in for the host's ``cnode``: reads the render package and writes each frame asked.

Run as ``cnode PACKAGE -image ITEM... -image_frames_list FRAMES... [-tile_rendering N K]
[-config_file FILE] [-license_server HOST:PORT] [-log_width N]`` on the sandbox's render node,
where the task command finds it on ``PATH``. Like the host's renderer it

* opens the package by the name given, from the folder it runs in, and fails on a name holding a
  space (the host's renderer cannot open such a project);
* finds each image item in the package (the host's project file: JSON with ``items``, each with
  ``context``, ``name``, ``class`` and ``attributes``; ``save_as`` a value or an active
  expression) and fails naming an image the package does not hold or one without a Save As;
* fails when ``-config_file`` names a missing file;
* writes one small real image per frame at the image's Save As (frame tokens ``####``, ``$F4``
  and the like filled in): EXR through OpenImageIO when it is installed, else PNG. The host's
  exporter writes every Save As absolute, and an output folder that does not exist fails the
  render, as on the host. A relative Save As (a hand-made sample's package) is written beside
  the package, its folder made: on a farm such frames stay on the node, outside the job's
  output folder, so they never come down.

Absolute paths are taken below ``SANDBOX_NODE_ROOT``, the node's file system root. Frames listed
in ``SANDBOX_FAIL_FRAMES`` fail the render when reached. At a frame listed in
``SANDBOX_PREEMPT_FRAMES`` it makes the file ``SANDBOX_PREEMPT_MARK`` and waits for the sandbox to
take its node away (the sandbox kills the task's process group). Each frame takes
``SANDBOX_FRAME_SECONDS``, divided by the tile count when rendering one tile
(``-tile_rendering N K``, N tiles), so a task takes frames x frame_seconds / tiles; the log says
how long it sleeps per frame (when it sleeps). ``SANDBOX_OUTPUT_BYTES`` > 0 writes files of that
many bytes instead of images (for benchmarks).
"""

from __future__ import annotations

import json
import os
import re
import struct
import sys
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prefect_conductor.conductor_cloud.transfers.frame_check import frame_file
from prefect_conductor.sandbox.node.package import IMAGE_CLASSES, PROJECT_FORMAT

_HOST_FRAME = re.compile(r"\$(\d*)F(?![A-Za-z_])")

PREEMPT_WAIT_SECONDS = 600.0
"""How long the renderer waits at a preempted frame for its node to go (the sandbox takes it
within a poll; past this the render fails, saying the node was never taken)."""


class RenderFailed(Exception):
    """What ends the render, in one line."""


def say(text: str) -> None:
    print(f"cnode: {text}", flush=True)


def options(argv: Sequence[str]) -> tuple[str, dict[str, list[str]]]:
    """The package name and each ``-flag``'s values."""
    if not argv or argv[0].startswith("-"):
        raise RenderFailed("no project given")
    flags: dict[str, list[str]] = {}
    current: list[str] | None = None
    for word in argv[1:]:
        if word.startswith("-") and not word[1:].replace(":", "").isdigit():
            current = flags.setdefault(word, [])
        elif current is None:
            raise RenderFailed(f"unexpected argument {word!r}")
        else:
            current.append(word)
    return argv[0], flags


def host_frames(text: str) -> list[int]:
    """The host's frame list ``start:end%step;...`` (or a plain number) as frames."""
    frames: list[int] = []
    for part in text.split(";"):
        if not part:
            continue
        span, _, step = part.partition("%")
        start, _, end = span.partition(":")
        first, last = int(start), int(end or start)
        frames += list(range(first, last + 1, int(step or 1)))
    return frames


def frame_list(variable: str) -> set[int]:
    """The frame numbers in an environment variable holding ``1,5,9``."""
    return {int(f) for f in os.environ.get(variable, "").split(",") if f.strip()}


def tile_count(flags: dict[str, list[str]]) -> int:
    """How many tiles each frame is cut into (``-tile_rendering N K``); 1 without the flag."""
    values = flags.get("-tile_rendering", [])
    if not values:
        return 1
    if len(values) != 2 or not all(v.isdigit() and int(v) >= 1 for v in values):
        raise RenderFailed("-tile_rendering needs a tile count and a tile number, both >= 1")
    return int(values[0])


def wait_for_preemption(frame: int) -> None:
    """Tell the sandbox this frame's node is to go, then wait for it to be taken away."""
    say(f"frame {frame}: the instance is being preempted")
    mark = os.environ.get("SANDBOX_PREEMPT_MARK", "")
    if mark:
        Path(mark).touch()
    time.sleep(PREEMPT_WAIT_SECONDS)
    raise RenderFailed(f"frame {frame}: the node was never taken away")


def save_as_of(item: dict[str, Any]) -> str:
    attribute = item.get("attributes", {}).get("save_as") or {}
    if attribute.get("expression_enabled") and attribute.get("expression_activated"):
        return str(attribute.get("expression") or "")
    values = attribute.get("values") or [""]
    return str(values[0])


def images_in(package: Path) -> dict[str, str]:
    """Full item name -> Save As of every image and layer in the render package."""
    try:
        document = json.loads(package.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise RenderFailed(f"cannot open project {package.name}: {error}") from None
    if not isinstance(document, dict) or document.get("format") != PROJECT_FORMAT:
        raise RenderFailed(f"cannot open project {package.name}: not a project file")
    return {
        f"{item['context']}/{item['name']}": save_as_of(item)
        for item in document.get("items", [])
        if str(item.get("class", "")).startswith(IMAGE_CLASSES)
    }


def frame_path(save_as: str, frame: int) -> str:
    """``save_as`` for ``frame``: the file tokens, then the host's ``$F``/``$4F``."""
    path = frame_file(save_as, frame)
    return _HOST_FRAME.sub(lambda m: str(frame).zfill(int(m.group(1) or 1)), path)


def on_node(path: str) -> Path:
    """An absolute path below the node's root; a relative one from the working folder."""
    root = os.environ.get("SANDBOX_NODE_ROOT", "")
    if path.startswith("/") and root:
        return Path(root + path)
    return Path(path)


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A tiny valid PNG of one colour."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


def write_image(path: Path, frame: int) -> str:
    """One small image for ``frame`` at ``path``; the format written."""
    if not path.is_absolute():  # a hand-made sample's Save As: beside the package, made here
        path.parent.mkdir(parents=True, exist_ok=True)
    if not path.parent.is_dir():  # the host writes into existing folders only
        raise RenderFailed(f"cannot write {path}: its folder does not exist")
    size = int(os.environ.get("SANDBOX_OUTPUT_BYTES", "0") or 0)
    shade = ((frame * 37) % 256, (frame * 91) % 256, 128)
    if size > 0:
        block = bytes(shade) * 4096
        with path.open("wb") as stream:
            left = size
            while left:
                stream.write(block[: min(left, len(block))])
                left -= min(left, len(block))
        return "bytes"
    if path.suffix.lower() == ".exr":
        try:
            import numpy
            import OpenImageIO as oiio
        except ImportError:
            pass
        else:
            pixels = numpy.empty((8, 8, 3), dtype="float16")
            pixels[:] = [c / 255 for c in shade]
            out = oiio.ImageOutput.create(str(path))
            if out is None or not out.open(str(path), oiio.ImageSpec(8, 8, 3, "half")):
                raise RenderFailed(f"cannot write {path}: {oiio.geterror()}")
            out.write_image(pixels)
            out.close()
            return "exr"
    path.write_bytes(png(8, 8, shade))
    return "png"


def render(argv: Sequence[str]) -> None:
    name, flags = options(argv)
    if " " in name:
        raise RenderFailed(f"cannot open project {name}: the path holds a space")
    package = Path(name)
    if not package.is_file():
        raise RenderFailed(f"cannot open project {name}: no such file in {os.getcwd()}")
    for config in flags.get("-config_file", []):
        if not Path(config).is_file():
            raise RenderFailed(f"cannot read config file {config}")
    images = flags.get("-image", [])
    frame_lists = flags.get("-image_frames_list", [])
    if not images or len(images) != len(frame_lists):
        raise RenderFailed("-image and -image_frames_list must name the same number of items")
    known = images_in(package)
    failing = frame_list("SANDBOX_FAIL_FRAMES")
    preempting = frame_list("SANDBOX_PREEMPT_FRAMES")
    tiles = tile_count(flags)
    frame_seconds = float(os.environ.get("SANDBOX_FRAME_SECONDS", "0") or 0) / tiles
    for image in images:
        if image not in known:
            raise RenderFailed(f"no image {image} in project {name}")
        if not known[image]:
            raise RenderFailed(f"image {image} has no Save As")
    if frame_seconds:
        say(f"sleeping {frame_seconds:g} s per frame ({tiles} tile(s) per frame)")
    for image, frames in zip(images, frame_lists, strict=True):
        for frame in host_frames(frames):
            if frame in failing:
                raise RenderFailed(f"{image} frame {frame}: the render failed")
            if frame in preempting:
                wait_for_preemption(frame)
            time.sleep(frame_seconds)
            target = on_node(frame_path(known[image], frame))
            kind = write_image(target, frame)
            say(f"{image} frame {frame} written to {frame_path(known[image], frame)} ({kind})")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        render(sys.argv[1:] if argv is None else argv)
    except RenderFailed as problem:
        say(str(problem))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
