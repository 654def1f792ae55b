"""Register the ConductorJob item class with the Jobs host.

Set this file as a startup script in the host's preferences (it then runs at every start), or,
to avoid a restart, type in the script editor::

    from prefect_conductor.host_export import startup

The host runs a startup script by its path, before ``prefect_conductor`` may be importable, so
this file imports nothing of the package at the top: it first puts the package's location on
``sys.path``, taken from PREFECT_CONDUCTOR_LOCATION or, when unset, from where this file sits
(``<location>/prefect_conductor/host_export/startup.py``). When the package or one of its
dependencies cannot be imported, the host's log gets one line saying what is missing and what to
set; the host itself carries on.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

LOCATION_VARIABLE = "PREFECT_CONDUCTOR_LOCATION"


def package_location() -> str | None:
    """The folder that holds ``prefect_conductor``: configured, or found from this file."""
    configured = os.environ.get(LOCATION_VARIABLE, "").strip()
    if configured:
        return configured
    here = Path(__file__).resolve().parents[2]
    return str(here) if (here / "prefect_conductor" / "__init__.py").is_file() else None


def register() -> bool:
    """Make ConductorJob available in the host; False (and a log line) when it cannot be."""
    import ix

    location = package_location()
    if location and location not in sys.path:
        sys.path.insert(0, location)
    try:
        from prefect_conductor.host_export import conductor_job
    except ImportError as error:
        missing = error.name or str(error)
        ix.log_error(
            f"prefect-conductor: ConductorJob is not available: cannot import {missing!r}."
            f" Set {LOCATION_VARIABLE} to the folder that holds the prefect_conductor package"
            f" (now: {location or 'not set'}) and install its dependencies into the host's"
            " Python."
        )
        return False
    return conductor_job.register()


register()
