"""SandboxHandle: drive a running sandbox's admin API (tests, benches, the demo)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx


class SandboxHandle:
    """Faults, configuration, state and release for a sandbox at ``url``."""

    def __init__(self, url: str, api_key: str, data_dir: Path) -> None:
        self.url = url
        self.api_key = api_key
        self.data_dir = data_dir
        self._http = httpx.Client(base_url=url, timeout=30.0)

    def close(self) -> None:
        self._http.close()

    def _post(self, path: str, json: Any = None) -> Any:
        response = self._http.post(path, json=json)
        response.raise_for_status()
        return response.json()

    def faults(self, *rules: dict[str, Any]) -> None:
        """Add fault rules (see sandbox/faults.py for their fields)."""
        self._post("/_sandbox/faults", list(rules))

    def clear_faults(self) -> None:
        self._http.delete("/_sandbox/faults").raise_for_status()

    def config(self, **settings: Any) -> None:
        """task_seconds, multipart_threshold, part_size, fail_frames."""
        self._post("/_sandbox/config", settings)

    def reset(self) -> None:
        self._post("/_sandbox/reset")

    def state(self) -> dict[str, Any]:
        response = self._http.get("/_sandbox/state")
        response.raise_for_status()
        state: dict[str, Any] = response.json()
        return state

    def jobs(self) -> list[dict[str, Any]]:
        return list(self.state()["jobs"])

    def uploads(self) -> dict[str, int]:
        return dict(self.state()["uploads"])

    def release(self, jid: str) -> None:
        self._post(f"/_sandbox/release/{jid}")
