"""Stopping a child process the tests started: :func:`prefect_conductor.processes.stop`.

Kept as a name for the fixtures that import it from here; the code lives in the package, shared
with the benchmarks.
"""

from prefect_conductor.processes import stop

__all__ = ["stop"]
