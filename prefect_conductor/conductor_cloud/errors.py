"""Errors a user can cause, each rendered as one line that names the field or file.

Everything that a person can fix by changing their input derives from :class:`UserError`. The CLI
prints ``str(error)`` and exits non-zero without a traceback; flows fail the run with the same
line and do not retry it. Transport errors from the Conductor client live in ``client.py``.
"""

from __future__ import annotations


class UserError(Exception):
    """An input problem a person can fix. ``str()`` is one line naming the field or file."""

    exit_code: int = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()) if "\n" in message else message)


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


class ServiceError(UserError):
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
