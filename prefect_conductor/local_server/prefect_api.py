"""Which Prefect API the CLI's flows run against, and how quietly.

- ``PREFECT_API_URL`` set (environment or Prefect profile): that server; nothing is started.
- ``PREFECT_SERVER_EPHEMERAL_ENABLED`` set in the environment: Prefect's own temporary server,
  as the person asked (the test suite does this).
- Otherwise the per-user local server of :mod:`prefect_conductor.local_server.server`, started by the
  first command that needs it and reused by the next ones, so a submit pays Prefect's start-up
  once and the links it prints keep working after it returns.

Every command that touches Prefect runs with server analytics off unless the person set
``PREFECT_SERVER_ANALYTICS_ENABLED``: offline, the temporary server's telemetry only ever printed
``Failed to send telemetry``. Prefect's console logs keep their lines but lose their tracebacks
(the failure itself ends the command as one line); ``--debug`` keeps them. Library callers keep
Prefect's logging as it is.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from prefect_conductor.local_server.server import LocalServer

TRUE_WORDS = {"1", "true", "yes", "on"}


def analytics_off_unless_set() -> None:
    """Default server analytics to off, before Prefect reads its settings."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


class _WithoutTraceback(logging.Formatter):
    """Formats a record as ``inner`` does, without its traceback or stack."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def quiet_console_tracebacks() -> None:
    """Keep Prefect's console log lines, drop their tracebacks (the run's logs keep theirs)."""
    from prefect.logging.configuration import ensure_logging_setup
    from prefect.logging.handlers import PrefectConsoleHandler

    ensure_logging_setup()  # as ``import prefect`` would, so the handlers below exist
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, PrefectConsoleHandler) and not isinstance(
                handler.formatter, _WithoutTraceback
            ):
                handler.setFormatter(_WithoutTraceback(handler.formatter or logging.Formatter()))


def ephemeral_requested() -> bool:
    return os.environ.get("PREFECT_SERVER_EPHEMERAL_ENABLED", "").strip().lower() in TRUE_WORDS


@dataclass(frozen=True)
class PrefectApi:
    """Where flow runs go: the UI's base URL (None: a temporary server has none), and whether it
    is the CLI's local server (which outlives the command)."""

    ui_url: str | None
    local_server: bool = False

    def flow_run_url(self, flow_run_id: object) -> str | None:
        """The flow run's page in the Prefect UI."""
        if not self.ui_url:
            return None
        return f"{self.ui_url.rstrip('/')}/runs/flow-run/{flow_run_id}"


@contextmanager
def prefect_api(
    echo: Callable[[str], None], *, quiet_tracebacks: bool = False
) -> Iterator[PrefectApi]:
    """Run the body against the right Prefect API (``echo`` hears of a server start).

    The local server is set for the rest of the process (see :func:`use_for_this_process`).

    ``quiet_tracebacks`` is for the CLI, whose failures end in one line (a library caller, such
    as a test session, keeps Prefect's console logging as it was).
    """
    analytics_off_unless_set()
    from prefect.settings import get_current_settings

    if quiet_tracebacks:
        quiet_console_tracebacks()
    settings = get_current_settings()
    if settings.api.url:
        yield PrefectApi(settings.ui_url)
        return
    if ephemeral_requested():
        yield PrefectApi(None)
        return
    state = LocalServer.for_user().ensure(echo)
    use_for_this_process(state.api_url)
    yield PrefectApi(state.ui_url, local_server=True)


def use_for_this_process(api_url: str) -> None:
    """Point this process's Prefect client at ``api_url`` for good, as PREFECT_API_URL would.

    Not a ``temporary_settings`` block: Prefect's background threads (events, logs, heartbeats)
    that fall back to the process-wide settings would then still see no API URL and could start
    a temporary server while flushing at exit.
    """
    from prefect.context import refresh_global_settings_context

    os.environ["PREFECT_API_URL"] = api_url
    refresh_global_settings_context()
