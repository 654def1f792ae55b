"""The submitter's errors: one base, and two siblings that say whose problem it is.

:class:`SubmitterError` carries what every error owes a person: ``str()`` is one line, and
``exit_code`` is what the CLI exits with. Below it, two families that must never be confused:

- :class:`UserError`: an input problem a person can fix (a field, a file). Never retried.
- :class:`ServiceError`: a service (Conductor, its storage, Prefect) failed or refused. Whether a
  later attempt can help is the class's own ``transient`` flag, not the order of ``except``
  clauses: see :func:`is_transient`.

The CLI prints ``str(error)`` and exits with ``exit_code`` without a traceback; flows fail the
run with the same line. Transport errors from the Conductor client live in ``client.py``.
"""

from __future__ import annotations


class SubmitterError(Exception):
    """Any failure the submitter explains itself: ``str()`` is one line, ``exit_code`` the CLI's.

    ``transient`` says whether running the same step again may succeed (see :func:`is_transient`).
    """

    exit_code: int = 1
    transient: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()) if "\n" in message else message)


def is_transient(error: BaseException) -> bool:
    """Whether a later attempt of the same step may succeed.

    Our own errors say so themselves (``transient``); an input problem never is. Anything else is
    an unexpected crash (a bug, a dropped worker), which is worth one more attempt.
    """
    if isinstance(error, SubmitterError):
        return error.transient
    return True


class UserError(SubmitterError):
    """An input problem a person can fix. ``str()`` is one line naming the field or file."""

    exit_code = 2
    transient = False


class FieldError(UserError):
    """A value of a named field is wrong: ``field: reason``."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class FrameSpecError(FieldError):
    """A frame spec could not be parsed or is out of bounds."""

    def __init__(self, field: str, text: str, reason: str) -> None:
        self.text = text
        super().__init__(field, f"{reason} in {text!r}")


class TemplateError(FieldError):
    """A task command template is malformed or names an unknown token."""


class PackageError(FieldError):
    """A software package cannot be found or its environment cannot be merged."""


class InputFileError(UserError):
    """A job file, scene export or catalogue file cannot be read or is malformed.

    ``problems`` holds one line per problem (``file: field: reason``) so the CLI can print them all.
    """

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("; ".join(problems) if problems else path)


class ValidationFailed(UserError):
    """Validation found errors; ``report`` holds every finding."""

    def __init__(self, message: str, report: object | None = None) -> None:
        self.report = report
        super().__init__(message)


class ServiceError(SubmitterError):
    """A call to a service (Conductor, its sign-in) failed: one line, plus where and how.

    Carries ``method``, ``url``, ``status`` and the first 300 characters of ``body``; callers
    pass a URL without secrets and a body already scrubbed of them.
    """

    exit_code = 3

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        url: str = "",
        status: int | None = None,
        body: str = "",
    ) -> None:
        self.method = method
        self.url = url
        self.status = status
        self.body = body[:300]
        super().__init__(message)
        self.message = str(self)
