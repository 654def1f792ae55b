"""prefect-conductor: the Conductor cloud-render submitter for the Jobs host, as Prefect flows.

The package is split by who may import what (docs/architecture.md; the import contracts in
pyproject.toml): ``host_export`` -> ``conductor_cloud`` <- ``tasks`` <- ``flows``.
Importing this top-level package must stay cheap and must never import Prefect, because the host's
embedded Python loads ``prefect_conductor.host_export`` through it. The Prefect block
``ConductorCredentials`` is therefore exposed lazily (PEP 562): ``prefect block register -m
prefect_conductor`` and the ``prefect.collections`` entry point find it by name, and only then is
``prefect_conductor.blocks`` (and Prefect) imported.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY_BLOCKS = ("ConductorCredentials",)


def __getattr__(name: str) -> Any:
    """Import the block module on first use of a block's name, never on package import."""
    if name in _LAZY_BLOCKS:
        from prefect_conductor import blocks

        return getattr(blocks, name)
    raise AttributeError(f"module 'prefect_conductor' has no attribute {name!r}")


def __dir__() -> list[str]:
    """List the lazy block names so ``inspect.getmembers`` (block registration) sees them."""
    return sorted([*globals(), *_LAZY_BLOCKS])
