"""How to point Conductor's own client (ciocore) at this sandbox, for compatibility tests and
benchmarks that run it in a subprocess.

ciocore keeps process-wide state (its config and token cache), so it runs in a child process with
this environment: the sandbox's URL and key, a private ``HOME`` so its token cache never touches
the user's, and its version check off (it would try the network).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def ciocore_environment(
    url: str, api_key: str, home: Path, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """``base`` (default: this process's environment) with ciocore aimed at the sandbox."""
    return {
        **(os.environ if base is None else base),
        "CONDUCTOR_URL": url,
        "CONDUCTOR_API_KEY": api_key,
        "HOME": str(home),
        "CIO_DISABLE_VERSION_CHECK": "1",
    }
