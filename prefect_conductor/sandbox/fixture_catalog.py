"""The sandbox's fixture catalogue: the records its API serves, and the same as a domain Catalog.

It lives with the sandbox because it is the sandbox's data; the domain never reads it. Tests and
offline previews that want a realistic catalogue without a server import it from here.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from prefect_conductor.conductor_cloud.job.catalog import Catalog

ACCOUNT_ID = "sandbox-account"
"""The ``account`` claim of every sandbox token; the extra environment is keyed by it."""


def fixture_records() -> dict[str, Any]:
    """The sandbox's catalogue records exactly as its API serves them (a fresh copy each call)."""
    text = resources.files("prefect_conductor.sandbox").joinpath("fixtures/catalog.json")
    records: dict[str, Any] = json.loads(text.read_text(encoding="utf-8"))
    return records


def fixture_catalog() -> Catalog:
    """The sandbox's catalogue as a Catalog, for offline previews and tests."""
    records = fixture_records()
    return Catalog.from_api(
        records["projects"],
        records["instance_types"],
        records["packages"],
        records["extra_environment"],
        source_url="sandbox",
        account_id=ACCOUNT_ID,
    )
