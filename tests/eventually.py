"""``eventually()``: wait for a condition, never for a guessed number of seconds.

A test that waits for something another thread or process does asks for it again and again until
it holds; the timeout is only how long to wait before calling it a failure, and it is generous,
since a loaded machine is slow but not wrong.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

DEFAULT_TIMEOUT = 30.0


def eventually(
    check: Callable[[], T],
    *,
    what: str,
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = 0.05,
    ignoring: tuple[type[BaseException], ...] = (),
) -> T:
    """The first truthy answer of ``check()``, asked every ``interval`` seconds for up to
    ``timeout`` seconds; an AssertionError naming ``what`` (and the last answer) after that.
    Exceptions of the ``ignoring`` types count as "not yet"."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            answer = check()
        except ignoring as error:
            last = error
        else:
            if answer:
                return answer
            last = answer
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not so after {timeout:g} s (last: {last!r})")
        time.sleep(interval)
