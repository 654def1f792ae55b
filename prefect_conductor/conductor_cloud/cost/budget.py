"""The budget gate: whether the full job waits for a person's approval, and why.

A job's ``budget`` (else its project's default from the settings) is in the prices' currency.
The full job goes on by itself only when the estimate's cost is known and within the budget, and
approval is ``auto``. An estimate without a cost (no timing, no price) cannot show a job is within
its budget, so a person decides: the gate fails safe.
"""

from __future__ import annotations

from collections.abc import Mapping

from prefect_conductor.conductor_cloud.cost.estimate import Estimate


def budget_for(budget: float, project: str, defaults: Mapping[str, float]) -> float | None:
    """The job's own budget (0: none of its own), else its project's default, else none."""
    return budget if budget > 0 else defaults.get(project)


def approval_reason(approval: str, budget: float | None, estimate: Estimate | None) -> str | None:
    """Why the full job waits for a person, in one phrase; None when it goes on by itself."""
    if budget is not None:
        if estimate is None or estimate.cost is None:
            why = estimate.note if estimate is not None and estimate.note else "no estimate"
            return f"budget {budget:.2f} set but the estimate has no cost ({why})"
        if estimate.cost > budget:
            return (
                f"estimated cost {estimate.cost:.2f} is over the budget {budget:.2f}"
                " (in the prices' currency)"
            )
    if approval == "manual":
        return "manual approval"
    return None
