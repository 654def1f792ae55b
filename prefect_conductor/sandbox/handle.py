"""SandboxHandle: drive a running sandbox through its admin API (tests, benches, the demo).

Plain httpx to ``/_sandbox/`` (see ``admin.py`` for the endpoints); it holds no server state, so
a bench script can point one at a sandbox started by the ``sandbox`` command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx


class SandboxHandle:
    """Faults, configuration, state, reset and release for the sandbox at ``url``.

    ``api_key`` is the JSON text the sandbox accepts (for ``CONDUCTOR_API_KEY``); ``data_dir``
    is its data folder (blobs are at ``data_dir / "files" / <md5 hex>``).
    """

    def __init__(self, url: str, api_key: str, data_dir: Path) -> None:
        self.url = url
        self.api_key = api_key
        self.data_dir = data_dir
        self._http = httpx.Client(base_url=url, timeout=30.0)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SandboxHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, method: str, path: str, json: Any = None) -> Any:
        response = self._http.request(method, path, json=json)
        response.raise_for_status()
        return response.json()

    def faults(self, *rules: dict[str, Any]) -> None:
        """Append fault rules: ``{"method", "path" (glob), "action": "status" | "delay" |
        "drop_before" | "drop_after" | "drop_mid" | "corrupt", "status", "retry_after", "seconds",
        "times" (0: forever)}``.
        """
        self._send("POST", "/_sandbox/faults", list(rules))

    def clear_faults(self) -> None:
        self._send("DELETE", "/_sandbox/faults")

    def config(self, **settings: Any) -> None:
        """Any of ``task_seconds``, ``multipart_threshold``, ``part_size``, ``fail_frames``,
        ``fail_attempts``, ``preempt_frames``, ``preempt_attempts``, ``output_bytes``,
        ``instances`` and ``frame_seconds`` (see ``admin.py``)."""
        self._send("POST", "/_sandbox/config", settings)

    def reset(self) -> None:
        """Forget jobs, uploads, requests, faults and settings; keep the key and tokens."""
        self._send("POST", "/_sandbox/reset")

    def state(self) -> dict[str, Any]:
        """``{"jobs": [...], "tasks": [...], "attempts": [...], "uploads": {md5: size},
        "requests": [...], "bearer_on_storage"}`` (see ``admin.py``)."""
        state: dict[str, Any] = self._send("GET", "/_sandbox/state")
        return state

    def jobs(self) -> list[dict[str, Any]]:
        """Every stored job: its payload plus ``jid``, ``status``, ``submitted_at``."""
        return list(self.state()["jobs"])

    def uploads(self) -> dict[str, int]:
        """Stored files: base64 md5 -> size."""
        return dict(self.state()["uploads"])

    def release(self, jid: str) -> None:
        """Release the tasks a native-scout job holds (raises for an unknown job)."""
        self._send("POST", f"/_sandbox/release/{jid}")
