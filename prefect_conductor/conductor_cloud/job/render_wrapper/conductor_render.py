#!/usr/bin/env python3
"""Run one render task on a Conductor render node: prepare, then hand over to the host renderer.

Uploaded with every job, like the reference submitter's ``ciocnode`` and ``cioprep.py``, and
called by the default task template::

    python3 conductor_render.py --mkdir DIR... --config-file FILE -- cnode PACKAGE -image ...

Before the render it

* creates every folder given with ``--mkdir`` (the images' output folders): the host's renderer
  fails when an output folder is missing, and nothing else creates them on a fresh node;
* drops ``-tile_rendering N K`` when N is 1, because the host writes tile numbers into the
  output file names whenever the flag is present;
* adds ``-config_file FILE`` when the artist's config file was uploaded, so the render uses the
  same preferences as the artist's session;
* adds ``-license_server`` with the value of the variable named by ``--license-env``
  (``JOBS_LICENSE``, set by the host package's environment on Conductor) unless the command
  already names a license server.

It then replaces itself with the host command (``os.execvp``), so the exit status, signals and
log lines are the renderer's own. Standard library only: it runs with the host's Python.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

TILE_FLAG = "-tile_rendering"
CONFIG_FLAG = "-config_file"
LICENSE_FLAG = "-license_server"
DEFAULT_LICENSE_ENV = "JOBS_LICENSE"


def parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """The wrapper's own options, and the host command after ``--``."""
    args = list(argv)
    if "--" not in args:
        raise SystemExit("conductor_render: no host command; put it after --")
    split = args.index("--")
    parser = argparse.ArgumentParser(prog="conductor_render")
    parser.add_argument("--mkdir", nargs="*", default=[], metavar="DIR")
    parser.add_argument("--config-file", default="")
    parser.add_argument("--license-env", default=DEFAULT_LICENSE_ENV)
    options = parser.parse_args(args[:split])
    command = args[split + 1 :]
    if not command:
        raise SystemExit("conductor_render: no host command; put it after --")
    return options, command


def without_single_tile(command: list[str]) -> list[str]:
    """``command`` without ``-tile_rendering 1 K``; other tile counts are kept."""
    if TILE_FLAG not in command:
        return command
    at = command.index(TILE_FLAG)
    values = command[at + 1 : at + 3]
    if len(values) == 2 and values[0].strip() == "1":
        return command[:at] + command[at + 3 :]
    return command


def host_command(options: argparse.Namespace, command: list[str]) -> list[str]:
    """The command the host runs, with the tile, config and license flags settled."""
    result = without_single_tile(list(command))
    if options.config_file and CONFIG_FLAG not in result:
        if not os.path.isfile(options.config_file):
            raise SystemExit(f"conductor_render: config file {options.config_file} is missing")
        result += [CONFIG_FLAG, options.config_file]
    license_server = os.environ.get(options.license_env, "") if options.license_env else ""
    if license_server and LICENSE_FLAG not in result:
        result += [LICENSE_FLAG, license_server]
    return result


def make_folders(folders: Sequence[str]) -> None:
    """Create each output folder (and its parents); an existing folder is fine."""
    for folder in folders:
        if folder:
            try:
                os.makedirs(folder, exist_ok=True)
            except OSError as error:
                raise SystemExit(
                    f"conductor_render: cannot create output folder {folder}: {error.strerror}"
                ) from None


def main(argv: Sequence[str] | None = None) -> None:
    options, command = parse(sys.argv[1:] if argv is None else argv)
    make_folders(options.mkdir)
    final = host_command(options, command)
    print("conductor_render: running " + " ".join(final), flush=True)
    try:
        os.execvp(final[0], final)
    except OSError as error:
        raise SystemExit(f"conductor_render: cannot run {final[0]}: {error.strerror}") from None


if __name__ == "__main__":
    main()
