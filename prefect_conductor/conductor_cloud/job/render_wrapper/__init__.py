"""The render wrapper shipped with every job (``conductor_render.sh``), and where it lives.

The script runs on the render node with ``sh`` (POSIX, no Python needed) and imports nothing
from this package; this module only tells the submitter which file to upload.
"""

from __future__ import annotations

from pathlib import Path

WRAPPER_PATH = Path(__file__).resolve().parent / "conductor_render.sh"
"""The wrapper script, uploaded with each job and named by the ``<wrapper>`` token."""
