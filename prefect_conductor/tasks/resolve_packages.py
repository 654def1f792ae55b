"""resolve_packages: the host and plugin packages and the merged render-node environment."""

from __future__ import annotations

from prefect import get_run_logger, task

from prefect_conductor.conductor_cloud.job.catalog import Catalog
from prefect_conductor.conductor_cloud.submission.prepare import Checked, Packages
from prefect_conductor.conductor_cloud.submission.prepare import resolve_packages as resolve


@task(name="resolve-packages", retries=0)
def resolve_packages(checked: Checked, catalog: Catalog) -> Packages:
    """Resolve the job's packages in the catalogue fetched by this run, then log what nodes run.

    The work happens here (not in validate), so retrying this step after the catalogue changed
    resolves again.
    """
    packages = resolve(checked, catalog)
    logger = get_run_logger()
    logger.info("Packages: %s", ", ".join(p.name for p in packages.resolved.all))
    logger.info("Environment variables: %s", ", ".join(sorted(packages.environment)))
    return packages
