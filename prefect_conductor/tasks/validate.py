"""validate: every rule over job + scene + catalogue; errors stop the run and are never retried."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact

from prefect_conductor.conductor_cloud.catalog import Catalog
from prefect_conductor.conductor_cloud.errors import ValidationFailed
from prefect_conductor.conductor_cloud.job import ConductorJob
from prefect_conductor.conductor_cloud.scene import SceneExport
from prefect_conductor.conductor_cloud.submission import Prepared, prepare
from prefect_conductor.conductor_cloud.validation import ValidationReport


def report_artifact(report: ValidationReport) -> None:
    rows = report.as_rows() or [{"severity": "ok", "field": "", "message": "no problems found"}]
    create_table_artifact(rows, key="validation-report", description="Validation findings")
    logger = get_run_logger()
    for finding in report.findings:
        (logger.info if finding.severity == "notice" else logger.warning)(str(finding))


@task(name="validate", retries=0)
def validate(job: ConductorJob, scene: SceneExport, catalog: Catalog) -> Prepared:
    """Check everything and derive plan, packages and files; the report becomes an artifact."""
    try:
        prepared = prepare(job, scene, catalog)
    except ValidationFailed as failure:
        if isinstance(failure.report, ValidationReport):
            report_artifact(failure.report)
        raise
    report_artifact(prepared.report)
    return prepared
