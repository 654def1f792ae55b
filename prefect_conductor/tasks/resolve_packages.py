"""resolve_packages: the host and plugin packages and the merged render-node environment."""

from __future__ import annotations

from prefect import get_run_logger, task

from prefect_conductor.conductor_cloud.submission import Prepared


@task(name="resolve-packages", retries=0)
def resolve_packages(prepared: Prepared) -> dict[str, object]:
    """Log and return what the render nodes will run: package names, ids, environment names."""
    logger = get_run_logger()
    names = [package.name for package in prepared.packages.all]
    logger.info("Packages: %s", ", ".join(names))
    logger.info("Environment variables: %s", ", ".join(sorted(prepared.environment)))
    return {"packages": names, "ids": prepared.packages.ids}
