"""Run a plugin callback so that nothing it raises ever reaches the host.

An exception escaping a scripted class's callback crashes the host (Conductor's own plugin cites
the host's bug tracker for it), so every callback body runs through :func:`run`. A problem the
artist can fix (:class:`UserError`) is logged as one line naming the item, the action and the
field; anything else as one line with the error's type. The traceback follows only when the
item's ``show_tracebacks`` is on.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import TypeVar

from prefect_conductor.conductor_cloud.errors import SubmitterError
from prefect_conductor.host_export import host_api

T = TypeVar("T")


def one_line(text: str) -> str:
    return " ".join(text.split())


def _show_tracebacks(obj: host_api.Item | None) -> bool:
    if obj is None:
        return False
    try:
        return host_api.get_bool(obj, "show_tracebacks")
    except Exception:  # the item may be half-declared; never fail while reporting a failure
        return False


def _who(obj: host_api.Item | None) -> str:
    if obj is None:
        return "ConductorJob"
    try:
        return f"ConductorJob {host_api.full_name(obj)}"
    except Exception:
        return "ConductorJob"


def run(obj: host_api.Item | None, label: str, action: Callable[[], T]) -> T | None:
    """``action()``; on any error, one line in the host's log (and None) instead of a crash."""
    try:
        return action()
    except Exception as error:
        if isinstance(error, SubmitterError):
            line = f"{_who(obj)}: {label}: {error}"
        else:
            line = f"{_who(obj)}: {label} failed unexpectedly: {type(error).__name__}: {error}"
        host_api.log_error(one_line(line))
        if _show_tracebacks(obj):
            host_api.log_error(traceback.format_exc())
        return None
