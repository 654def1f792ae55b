"""validate: every rule over job + scene + catalogue; errors stop the run and are never retried."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact

from prefect_conductor.conductor_cloud.errors import ValidationFailed
from prefect_conductor.conductor_cloud.job.catalog import Catalog
from prefect_conductor.conductor_cloud.job.model import ConductorJob
from prefect_conductor.conductor_cloud.job.scene import SceneExport
from prefect_conductor.conductor_cloud.job.validation import ValidationReport
from prefect_conductor.conductor_cloud.submission.prepare import Checked, check


def report_artifact(report: ValidationReport) -> None:
    """The findings as a table (one 'no problems found' row when there are none) and as logs."""
    rows = report.as_rows() or [{"severity": "ok", "field": "", "message": "no problems found"}]
    create_table_artifact(rows, key="validation-report", description="Validation findings")
    logger = get_run_logger()
    if not report.findings:
        logger.info("Validation: no problems found")
    for finding in report.findings:
        (logger.info if finding.severity == "notice" else logger.warning)(str(finding))


@task(name="validate", retries=0)
def validate(job: ConductorJob, scene: SceneExport, catalog: Catalog) -> Checked:
    """Check every rule and list the files to upload; packages and plan are the next steps'."""
    try:
        checked = check(job, scene, catalog)
    except ValidationFailed as failure:
        if isinstance(failure.report, ValidationReport):
            report_artifact(failure.report)
        raise
    report_artifact(checked.report)
    return checked
