"""Debian packages a few tests need, which ``pip install`` cannot bring: chromium, postgresql,
redis-server.

A test that needs one the machine lacks is skipped with one line naming the package and the
command that installs it. Under CI (``CI`` set: ``.ci/run`` installs them) a missing package fails
the test instead, so coverage cannot silently shrink.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
POSTGRES_ROOT = Path("/usr/lib/postgresql")


def missing(package: str) -> None:
    """Skip (or, under CI, fail) the test: ``package`` is not installed."""
    line = f"needs Debian's {package}, not installed: apt-get install -y {package}"
    if os.environ.get("CI"):
        pytest.fail(f"{line} (CI is set, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(line)


def chromium() -> Path:
    """Debian's chromium, for the tests that drive the Prefect UI."""
    if not CHROMIUM.is_file():
        missing("chromium")
    return CHROMIUM


def postgresql() -> Path:
    """The newest PostgreSQL server's bin folder from Debian's package."""
    found = sorted(POSTGRES_ROOT.glob("*/bin/initdb"), key=lambda p: _version(p.parent.parent))
    if not found:
        missing("postgresql")
    return found[-1].parent


def redis_server() -> Path:
    """Debian's redis-server, for the studio stack's Redis."""
    found = shutil.which("redis-server")
    if found is None:
        missing("redis-server")
    return Path(str(found))


def _version(folder: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in folder.name.split(".") if part.isdigit())
