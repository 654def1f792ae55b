"""Run the sandbox: in a background thread (tests, benches, the demo) or in the foreground (CLI).

It binds to loopback only: it is a test peer that accepts whatever a client uploads and hands
out tokens for a key kept in plain text, and must never be reachable from another machine. The
listening socket is bound here, before uvicorn starts, so ``port=0`` picks a free port with no
race and ``url`` is known at once. What a user can get wrong (``--host``, ``--port``, ``--faults``
raise ValueError; ``--data`` a file, a corrupt ``sandbox.sqlite``, an unreadable ``api_key.json``
raise UserError) is one line naming the option, which the ``sandbox`` command prints with exit 2.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from prefect_conductor.conductor_cloud.errors import UserError
from prefect_conductor.sandbox.app import create_app
from prefect_conductor.sandbox.faults import parse_fault_spec


def require_loopback(host: str) -> str:
    """The address to bind for ``host``; ValueError unless it is loopback (or ``localhost``)."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"--host: {host!r} is not a loopback address") from None
    if not address.is_loopback:
        raise ValueError(f"--host: the sandbox binds to loopback only, not {host}")
    return host


def _listen(host: str, port: int) -> socket.socket:
    if not 0 <= port <= 65535:
        raise ValueError(f"--port: {port} is not a port number (0-65535)")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named explicitly: asyncio sets TCP_NODELAY only on accepted sockets whose proto
    # says TCP, and without it every answer on a reused connection waited ~40 ms (delayed ACK).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as problem:
        sock.close()
        raise ValueError(f"--port: cannot listen on {host}:{port} ({problem.strerror})") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class SandboxServer:
    """A sandbox on loopback, served by uvicorn; ``start()`` runs it in a daemon thread.

    ``faults`` uses the CLI grammar (``faults.py``); ``task_seconds`` sets the task clock and
    ``instances`` the number of stand-in render nodes (None keeps what the data folder already
    has: 2 s and 2 nodes on a new one). All are also what ``POST /_sandbox/reset`` returns to.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int = 0,
        faults: str = "",
        task_seconds: float | None = None,
        host: str = "127.0.0.1",
        instances: int | None = None,
    ) -> None:
        self.host = require_loopback(host)
        self.data_dir = Path(data_dir)
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise UserError(f"--data: {self.data_dir} is a file, not a folder") from None
        except OSError as problem:
            raise UserError(f"--data: cannot make {self.data_dir} ({problem.strerror})") from None
        settings: dict[str, Any] = {} if task_seconds is None else {"task_seconds": task_seconds}
        if instances is not None:
            settings["instances"] = instances
        rules = parse_fault_spec(faults)
        self._socket = _listen(self.host, port)
        self.port = int(self._socket.getsockname()[1])
        try:
            self.app, self.context = create_app(self.data_dir, rules, settings)
        except BaseException:
            self._socket.close()
            raise
        config = uvicorn.Config(
            self.app,
            host=self.host,
            port=self.port,
            http="h11",  # faults.py closes connections through h11's request cycle
            log_level="critical",
            access_log=False,
            lifespan="on",
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def api_key(self) -> str:
        """The API key (JSON text) this sandbox accepts; a test credential, not a secret."""
        return json.dumps(self.context.api_key)

    @property
    def api_key_path(self) -> Path:
        """The file holding ``api_key`` (for ``CONDUCTOR_API_KEY_PATH``)."""
        return self.data_dir / "api_key.json"

    def start(self, timeout: float = 20.0) -> SandboxServer:
        """Serve in a daemon thread; return once the server accepts connections."""
        self._thread = threading.Thread(target=self._run, name="conductor-sandbox", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the sandbox did not start on {self.url}")
            time.sleep(0.01)
        return self

    def _run(self) -> None:
        self._server.run(sockets=[self._socket])

    def stop(self) -> None:
        """Stop serving (open requests get a moment to finish) and close the store."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._socket.close()
        self.context.store.close()

    def serve_forever(self) -> None:
        """Serve in the foreground until interrupted (the CLI)."""
        try:
            self._run()
        finally:
            self._socket.close()
            self.context.store.close()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
