"""refresh_catalog: fetch projects, instance types and packages into the per-user cache file.

The host's Refresh button and ``preview`` read that file (with its time stamp), so they work
offline and do not ask Conductor on every click. Schedule it, or run it from the CLI
(``prefect-conductor refresh``).
"""

from prefect import flow, get_run_logger

from prefect_conductor.conductor_cloud.job.run_parameters import RunOptions
from prefect_conductor.tasks.fetch_catalog import fetch_catalog


@flow(name="refresh-catalog", log_prints=False, persist_result=False)
def refresh_catalog(options: RunOptions = RunOptions()) -> dict[str, int]:  # noqa: B008
    """Fetch the account's catalogue and store it for the host and for preview."""
    catalog = fetch_catalog(options)
    counts = {
        "projects": len(catalog.projects),
        "instance_types": len(catalog.instance_types),
        "packages": len(catalog.packages),
    }
    get_run_logger().info("Catalogue from %s: %s", catalog.source_url, counts)
    return counts
