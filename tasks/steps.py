"""The LLM step task: render one prompt, get its answer from the engine."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from joule.calls import CallOutcome, CallRequest
from joule.plan import StepSpec
from joule.pricing import cost_usd
from joule.prompts import PromptError
from joule.results import StepResult, StepStatus
from tasks import runtime


def _result(
    step: StepSpec,
    status: StepStatus,
    *,
    request: CallRequest | None = None,
    outcome: CallOutcome | None = None,
    error: str | None = None,
    prices: dict | None = None,
) -> StepResult:
    prompt = request.messages[-1][1] if request else ""
    result = StepResult(
        objective_id=step.objective_id,
        objective=step.objective,
        task_id=step.task_id,
        task=step.task,
        step=step.step,
        show=step.show,
        row=step.row,
        system=step.system,
        prompt=prompt,
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


# NO_CACHE: the engine already deduplicates calls by their identity, and the
# inputs (results of earlier steps) are not what identifies a call.
@task(name="llm-step", task_run_name="{label}", cache_policy=NO_CACHE)
def call_step(
    run_id: str,
    step_key: str,
    label: str,
    previous: list[StepResult],
    chapters: dict[str, str],
    blocked_by: str | None = None,
) -> StepResult:
    """Answer one step of the sheet, or say why it was not run."""
    state = runtime.get(run_id)
    step = state.plan.step(step_key)
    logger = get_run_logger()

    failed_before = next((p for p in previous if p.status is not StepStatus.OK), None)
    if failed_before is not None:
        reason = f"step {failed_before.step} of {step.task_id} {failed_before.status}"
        result = _result(step, StepStatus.SKIPPED, error=reason)
    elif blocked_by is not None:
        result = _result(step, StepStatus.SKIPPED, error=blocked_by)
    else:
        result = _answer(state, step, previous, chapters)

    done = state.record(result)
    if result.status is StepStatus.OK:
        logger.info(
            "[%d/%d] %s: ok in %.1f s, %d tokens%s",
            done,
            state.total_steps,
            label,
            result.latency_s,
            result.total_tokens,
            " (cached)" if result.cached else "",
        )
    else:
        logger.warning(
            "[%d/%d] %s: %s: %s",
            done,
            state.total_steps,
            label,
            result.status,
            result.error,
        )
    return result


def _answer(
    state: runtime.RunState,
    step: StepSpec,
    previous: list[StepResult],
    chapters: dict[str, str],
) -> StepResult:
    try:
        request = state.plan.render(step, [p.answer or "" for p in previous], chapters)
    except PromptError as exc:
        return _result(step, StepStatus.FAILED, error=str(exc))
    future = state.engine.submit(request, step.label, refresh=state.refresh(step))
    outcome = future.result()
    if outcome.ok:
        status = StepStatus.OK
    else:
        status = StepStatus.SKIPPED if outcome.skipped else StepStatus.FAILED
    return _result(
        step,
        status,
        request=request,
        outcome=outcome,
        prices=state.plan.settings.llm.prices,
    )
