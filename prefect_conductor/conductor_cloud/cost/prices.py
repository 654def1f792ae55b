"""The studio's price table: per-hour prices of each instance type, preemptible and on demand.

A studio admin keeps it in the Prefect Variable ``conductor-prices`` as JSON::

    {"n1-standard-8": {"preemptible": 0.12, "on_demand": 0.38}, ...}

The currency is whatever the studio means; every figure built on it is "in the prices' currency".
A malformed table is one line naming the variable and the key at fault.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from prefect_conductor.conductor_cloud.errors import UserError

PRICES_VARIABLE = "conductor-prices"
"""The Prefect Variable holding the price table."""
KINDS = ("preemptible", "on_demand")


@dataclass(frozen=True)
class Price:
    """Per-hour prices of one instance type."""

    preemptible: float
    on_demand: float

    def hourly(self, preemptible: bool) -> float:
        """The price per hour for the machines the job asks for."""
        return self.preemptible if preemptible else self.on_demand


def parse_prices(value: object) -> dict[str, Price]:
    """The price table from the Variable's value (a JSON object, or text holding one)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise UserError(
                f"{PRICES_VARIABLE}: not JSON (expected an object of instance types)"
            ) from None
    if not isinstance(value, Mapping):
        raise UserError(
            f"{PRICES_VARIABLE}: expected an object of instance types, got {type(value).__name__}"
        )
    table: dict[str, Price] = {}
    for name, entry in value.items():
        if not isinstance(entry, Mapping):
            raise UserError(
                f"{PRICES_VARIABLE}: {str(name)[:80]!r}: expected"
                ' {"preemptible": <per hour>, "on_demand": <per hour>}'
            )
        figures = {kind: _figure(str(name), kind, entry.get(kind)) for kind in KINDS}
        extra = sorted(str(key) for key in entry if key not in KINDS)
        if extra:
            raise UserError(
                f"{PRICES_VARIABLE}: {str(name)[:80]!r}.{extra[0][:40]}: unknown key (use"
                " preemptible and on_demand)"
            )
        table[str(name)] = Price(**figures)
    return table


def _figure(name: str, kind: str, value: object) -> float:
    where = f"{PRICES_VARIABLE}: {name[:80]!r}.{kind}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UserError(f"{where}: must be a number (a price per hour)")
    if not math.isfinite(value) or value < 0:
        raise UserError(f"{where}: must be a finite number >= 0")
    return float(value)


def unpriced(instance_types: Iterable[str], prices: Mapping[str, Price]) -> list[str]:
    """The instance types the table has no price for, in order."""
    return [name for name in instance_types if name not in prices]
