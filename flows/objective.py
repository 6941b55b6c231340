"""The chapter subflow: every section of one objective, each a chain of steps."""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture, wait
from prefect.task_runners import ThreadPoolTaskRunner

from joule.results import StepResult
from joule.steps import chapter_inputs
from tasks import runtime
from tasks.steps import call_step


@flow(name="objective", flow_run_name="{label}")
def objective_flow(
    run_id: str,
    objective_id: str,
    label: str,
    chapters: dict[str, str],
    blocked_by: str | None = None,
) -> list[StepResult]:
    """Run the sections of one chapter concurrently, the steps of each in order."""
    state = runtime.get(run_id)
    objective = state.plan.objective(objective_id)
    sequential = not state.plan.settings.run.concurrent_tasks

    futures: list[PrefectFuture[StepResult]] = []
    for section in objective.tasks:
        chain: list[PrefectFuture[StepResult]] = []
        for step in section.steps:
            chain.append(
                call_step.submit(
                    run_id,
                    step.key,
                    step.label,
                    previous=list(chain),
                    chapters=chapters,
                    blocked_by=blocked_by,
                )
            )
        if sequential:
            wait(chain)
        futures.extend(chain)
    return [future.result() for future in futures]


@task(name="chapter", task_run_name="chapter {objective_id}", cache_policy=NO_CACHE)
def run_chapter(
    run_id: str, objective_id: str, dependencies: list[list[StepResult]]
) -> list[StepResult]:
    """Start the chapter subflow once the chapters it depends on have finished.

    A task, because subflows called from a flow run inline: submitting them as
    tasks is what lets independent chapters run at the same time.
    """
    state = runtime.get(run_id)
    objective = state.plan.objective(objective_id)
    finished = [result for chapter in dependencies for result in chapter]
    chapters, blocked_by = chapter_inputs(state.plan, objective, finished)
    subflow = objective_flow.with_options(
        task_runner=ThreadPoolTaskRunner(
            max_workers=state.plan.settings.run.max_workers
        )
    )
    return subflow(
        run_id, objective_id, objective.label, chapters, blocked_by=blocked_by
    )
