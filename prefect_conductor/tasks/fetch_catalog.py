"""fetch_catalog: the account's projects, instance types and packages (cached for offline use)."""

from __future__ import annotations

from prefect import task

from prefect_conductor.conductor_cloud.api.refresh import refresh_catalog
from prefect_conductor.conductor_cloud.job.catalog import Catalog
from prefect_conductor.conductor_cloud.job.run_parameters import RunOptions
from prefect_conductor.tasks.common import client_for, never_retry_user_errors


@task(
    name="fetch-catalog",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=never_retry_user_errors,
)
def fetch_catalog(options: RunOptions) -> Catalog:
    """Fresh from Conductor, and written to the cache the host's Refresh and preview read."""
    with client_for(options) as client:
        catalog, _ = refresh_catalog(client)
    return catalog
