"""Find the job a POST of unknown outcome made, with listings Conductor's own clients use; no HTTP.

Asked only after a POST whose outcome is unknown (the duplicate guard's record has the title but
no job id). No client shows a metadata filter, and job listings show no metadata, so the match
is on fields the listings do show: the job title, which carries the submission's tag
(``post_record.submission_tag``) and so names one submission, and the project. We list the
account's jobs created since the day before the submission's first attempt (``account_id_eq_``,
``created_gt_``, with the desktop client's ``fields=``). Paging of ``api/v1/jobs`` is not
evidenced, so a non-empty page may be a truncated one: the walk asks again above the highest jid
seen (``jid_gt_``) and below the lowest (``jid_lt_``) until each side comes back empty. A page
that ignores the bound or a walk over ``max_pages`` answers ``CANNOT_TELL``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from enum import Enum
from typing import Any

Fetch = Callable[[str], Sequence[Mapping[str, Any]]]
"""``filter`` text in, the listing's records out."""

MAX_PAGES = 20
"""Listings one lookup may make before it answers CANNOT_TELL."""


class Outcome(Enum):
    FOUND = "found"
    ABSENT = "absent"
    CANNOT_TELL = "cannot tell"


@dataclass(frozen=True)
class Lookup:
    """The answer: FOUND with the job, ABSENT, or CANNOT_TELL with the reason."""

    outcome: Outcome
    job: Mapping[str, Any] | None = None
    reason: str = ""


def jid_number(record: Mapping[str, Any]) -> int | None:
    """A record's jid as a number (``"00042"`` -> 42), or None when it has none we can read."""
    text = str(record.get("jid", "")).strip()
    return int(text) if text.isdigit() else None


def jid_text(number: int) -> str:
    """The 5-digit zero-padded form Conductor uses in filters and records."""
    return f"{number:05d}"


def is_posted(record: Mapping[str, Any], title: str, project: str) -> bool:
    """Whether a listed job is the one posted with ``title`` (tagged) in ``project``."""
    if str(record.get("title", "")) != title:
        return False
    listed = record.get("project")
    return listed is None or str(listed) == project


def base_filter(account: str | None, created_after: date) -> list[str]:
    """``account_id_eq_<acct>,created_gt_<YYYY-MM-DD>`` (the account part only when known)."""
    parts = [f"account_id_eq_{account}"] if account else []
    return [*parts, f"created_gt_{created_after.isoformat()}"]


def find_posted(
    fetch: Fetch,
    title: str,
    *,
    project: str,
    account: str | None,
    created_after: date,
    max_pages: int = MAX_PAGES,
) -> Lookup:
    """Walk the listings (module doc) and report whether a job titled ``title`` is there."""
    base = base_filter(account, created_after)
    seen: dict[int, Mapping[str, Any]] = {}
    pages = 0

    def take(records: Sequence[Mapping[str, Any]], keep: Callable[[int], bool]) -> int | None:
        """How many new records lie within the bound; None when a non-empty page had none
        there (the server ignored the bound, or sent records without a jid)."""
        inside = [(n, r) for r in records if (n := jid_number(r)) is not None and keep(n)]
        if records and not inside:
            return None
        added = 0
        for number, record in inside:
            if number not in seen:
                seen[number] = record
                added += 1
        return added

    def matched() -> Lookup | None:
        jobs = [seen[n] for n in sorted(seen) if is_posted(seen[n], title, project)]
        return Lookup(Outcome.FOUND, jobs[0]) if jobs else None

    pages += 1
    first = take(fetch(",".join(base)), lambda _n: True)
    if first is None:
        return Lookup(Outcome.CANNOT_TELL, reason="the job listing sent records without a jid")
    if first == 0:
        return Lookup(Outcome.ABSENT)
    if (found := matched()) is not None:
        return found
    for direction in ("gt", "lt"):
        while True:
            bound = max(seen) if direction == "gt" else min(seen)
            if direction == "lt" and bound <= 0:
                break
            if pages >= max_pages:
                return Lookup(Outcome.CANNOT_TELL, reason=f"more than {max_pages} listing pages")
            pages += 1
            records = fetch(",".join([*base, f"jid_{direction}_{jid_text(bound)}"]))

            def within(n: int, b: int = bound, d: str = direction) -> bool:
                return n > b if d == "gt" else n < b

            added = take(records, within)
            if added is None:
                return Lookup(
                    Outcome.CANNOT_TELL,
                    reason=f"the job listing ignored jid_{direction}_{jid_text(bound)}",
                )
            if (found := matched()) is not None:
                return found
            if added == 0:
                break
    return Lookup(Outcome.ABSENT)
