"""Run the sandbox: in a background thread (tests, the demo) or in the foreground (the CLI).

It binds to loopback only: it is a test peer holding whatever a client uploads, and must never be
reachable from another machine.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from pathlib import Path

import uvicorn

from prefect_conductor.conductor_cloud.sandbox.app import Sandbox, create_app
from prefect_conductor.conductor_cloud.sandbox.faults import parse_fault_spec

LOOPBACK_NAMES = {"localhost"}


def require_loopback(host: str) -> str:
    """Refuse any address that is not loopback (127.0.0.0/8, ::1 or localhost)."""
    if host in LOOPBACK_NAMES:
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"--host: {host!r} is not a loopback address") from None
    if not address.is_loopback:
        raise ValueError(f"--host: the sandbox binds to loopback only, not {host}")
    return host


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class SandboxServer:
    """A sandbox on 127.0.0.1, served by uvicorn in a daemon thread."""

    def __init__(
        self,
        data_dir: Path,
        port: int = 0,
        faults: str = "",
        task_seconds: float | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.host = require_loopback(host)
        self.port = port or free_port(self.host)
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.app, self.sandbox = create_app(self.data_dir, parse_fault_spec(faults))
        if task_seconds is not None:
            self.sandbox.store.set_settings({"task_seconds": task_seconds})
        config = uvicorn.Config(
            self.app,
            host=self.host,
            port=self.port,
            log_level="critical",
            access_log=False,
            lifespan="off",
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_key(self) -> str:
        """The API key (JSON text) this sandbox accepts; a test credential, not a secret."""
        import json

        return json.dumps(self.sandbox.api_key)

    @property
    def state(self) -> Sandbox:
        return self.sandbox

    def start(self, timeout: float = 20.0) -> SandboxServer:
        self._thread = threading.Thread(target=self._server.run, name="sandbox", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the sandbox did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.sandbox.store.close()

    def serve_forever(self) -> None:
        """Run in the foreground until interrupted (the CLI)."""
        self._server.run()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
