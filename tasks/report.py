"""Tasks at the ends of a run: load the project, merge the answers, write files."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from joule.plan import Plan, load_plan
from joule.results import Report, StepResult
from joule.writers import write_outputs


@task(name="validate-project", cache_policy=NO_CACHE)
def validate_project(project_dir: str, only: list[str] | None = None) -> Plan:
    """Load the project and check it whole; raises ProjectError with every problem."""
    plan = load_plan(Path(project_dir), only=only)
    get_run_logger().info(
        "Project '%s': %d chapters, %d steps",
        plan.settings.title,
        len(plan.objectives),
        len(plan.steps()),
    )
    return plan


@task(name="aggregate", cache_policy=NO_CACHE)
def aggregate(
    plan: Plan,
    results: list[StepResult],
    *,
    run_id: str,
    started_at: datetime,
    base_url: str | None,
    simulated: bool,
) -> Report:
    """Merge every step's result into one report, in sheet order."""
    order = {step.key: index for index, step in enumerate(plan.steps())}
    ordered = sorted(results, key=lambda r: order[r.key])
    return Report(
        title=plan.settings.title,
        run_id=run_id,
        started_at=started_at,
        finished_at=datetime.now(UTC),
        settings_digest=plan.settings.digest(),
        model=plan.settings.llm.model,
        base_url=base_url,
        simulated=simulated,
        steps=ordered,
    )


@task(name="write-report", cache_policy=NO_CACHE)
def write_report(
    report: Report, out_dir: str, formats: list[str], manifest_extra: dict
) -> list[str]:
    """Write the report files atomically; returns their paths."""
    paths = write_outputs(
        report, Path(out_dir), formats=tuple(formats), manifest_extra=manifest_extra
    )
    get_run_logger().info("Report written to %s", out_dir)
    return [str(p) for p in paths]
