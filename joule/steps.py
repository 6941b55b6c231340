"""Answering steps: the logic each LLM step task runs, free of Prefect.

The flow's tasks call these functions one step at a time; `run_directly`
calls them for a whole plan, which is how a run still finishes its report
when the orchestrator's own bookkeeping fails.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from joule.calls import CallOutcome, CallRequest
from joule.engine import CallEngine
from joule.plan import ObjectiveSpec, Plan, StepSpec, chapter_text
from joule.pricing import cost_usd
from joule.prompts import PromptError
from joule.results import StepResult, StepStatus


def step_result(
    step: StepSpec,
    status: StepStatus,
    *,
    request: CallRequest | None = None,
    outcome: CallOutcome | None = None,
    error: str | None = None,
    prices: dict | None = None,
) -> StepResult:
    """A step's result, from its call's outcome or from why it was not run."""
    result = StepResult(
        objective_id=step.objective_id,
        objective=step.objective,
        task_id=step.task_id,
        task=step.task,
        step=step.step,
        show=step.show,
        row=step.row,
        system=step.system,
        prompt=request.messages[-1][1] if request else "",
        status=status,
        model=step.model,
        error=error,
    )
    if outcome is not None:
        result.answer = outcome.answer if outcome.ok else None
        result.prompt_tokens = outcome.prompt_tokens
        result.completion_tokens = outcome.completion_tokens
        result.latency_s = round(outcome.latency_s, 3)
        result.attempts = outcome.attempts
        result.cached = outcome.cached
        result.error = outcome.error
        if not outcome.cached:
            result.cost_usd = cost_usd(
                step.model, outcome.prompt_tokens, outcome.completion_tokens, prices
            )
    return result


def chapter_inputs(
    plan: Plan, objective: ObjectiveSpec, finished: Iterable[StepResult]
) -> tuple[dict[str, str], str | None]:
    """The `chapters` a chapter's prompts see, or why the chapter cannot run."""
    finished = list(finished)
    incomplete = sorted(
        {r.objective_id for r in finished if r.status is not StepStatus.OK}
    )
    blocked_by = (
        f"chapter {', '.join(incomplete)} did not complete" if incomplete else None
    )
    answers = {r.key: r.answer for r in finished if r.answer}
    chapters = {
        dep: chapter_text(plan.objective(dep), answers) for dep in objective.depends_on
    }
    return chapters, blocked_by


def answer_step(
    plan: Plan,
    engine: CallEngine,
    step: StepSpec,
    previous: list[StepResult],
    chapters: dict[str, str],
    *,
    blocked_by: str | None = None,
    refresh: bool = False,
) -> StepResult:
    """Answer one step, or say why it was not run (an earlier step or chapter)."""
    failed_before = next((p for p in previous if p.status is not StepStatus.OK), None)
    if failed_before is not None:
        reason = f"step {failed_before.step} of {step.task_id} {failed_before.status}"
        return step_result(step, StepStatus.SKIPPED, error=reason)
    if blocked_by is not None:
        return step_result(step, StepStatus.SKIPPED, error=blocked_by)

    try:
        request = plan.render(step, [p.answer or "" for p in previous], chapters)
    except PromptError as exc:
        return step_result(step, StepStatus.FAILED, error=str(exc))
    outcome = engine.submit(request, step.label, refresh=refresh).result()
    if outcome.ok:
        status = StepStatus.OK
    else:
        status = StepStatus.SKIPPED if outcome.skipped else StepStatus.FAILED
    return step_result(
        step, status, request=request, outcome=outcome, prices=plan.settings.llm.prices
    )


def run_directly(
    plan: Plan,
    engine: CallEngine,
    refresh: Callable[[StepSpec], bool] = lambda step: False,
) -> list[StepResult]:
    """Every step's result, chapter after chapter, without an orchestrator.

    Calls go through the same engine, so a call already made in this run is
    not made again.
    """
    results: dict[str, list[StepResult]] = {}
    for wave in plan.chapter_order():
        for objective_id in wave:
            objective = plan.objective(objective_id)
            finished = [r for dep in objective.depends_on for r in results[dep]]
            chapters, blocked_by = chapter_inputs(plan, objective, finished)
            chapter: list[StepResult] = []
            for task in objective.tasks:
                chain: list[StepResult] = []
                for step in task.steps:
                    chain.append(
                        answer_step(
                            plan,
                            engine,
                            step,
                            chain,
                            chapters,
                            blocked_by=blocked_by,
                            refresh=refresh(step),
                        )
                    )
                chapter.extend(chain)
            results[objective_id] = chapter
    return [r for objective in plan.objectives for r in results[objective.objective_id]]
