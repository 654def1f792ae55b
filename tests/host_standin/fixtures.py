"""The ``host`` fixture: a fresh stand-in host with the ConductorJob plugin registered.

The stand-in is imported as the top-level module ``ix`` (its folder goes on ``sys.path``) when
pytest loads this plugin, before any test module imports the plugin's facade, which imports
``ix`` the way it imports the real one. It stays the same module object for the whole session so
the plugin's reference to it stays valid; every test gets a fresh application through
``ix.reset()``. After the test, no exception may have escaped a plugin callback: in the real host
that would have been a crash.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

STANDIN_DIR = Path(__file__).resolve().parent
REPO = STANDIN_DIR.parent.parent


def standin_environment(**extra: str) -> dict[str, str]:
    """The environment of a child process whose ``import ix`` finds the stand-in."""
    env = dict(os.environ)
    parts = [str(STANDIN_DIR), str(REPO), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in parts if p)
    env.update(extra)
    return env


def standin_module() -> Any:
    """The stand-in, importable as ``ix``."""
    if str(STANDIN_DIR) not in sys.path:
        sys.path.insert(0, str(STANDIN_DIR))
    import ix

    return ix


standin_module()  # before test modules import the plugin, whose facade imports ix


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A fresh host application with ConductorJob registered; asserts it never crashed."""
    monkeypatch.setenv("PREFECT_CONDUCTOR_HOME", str(tmp_path / "conductor-home"))
    ix = standin_module()
    application = ix.reset()
    application.set_ctemp(str(tmp_path / "ctemp"))
    from prefect_conductor.host_export import conductor_job

    assert conductor_job.register()
    yield application
    crashes = [f"{c.where}: {c.error}\n{c.traceback}" for c in application.crashes]
    assert not crashes, "the host would have crashed:\n" + "\n".join(crashes)
