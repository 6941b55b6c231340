"""The LLM step task: render one prompt, get its answer from the engine."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from joule.results import StepResult, StepStatus
from joule.steps import answer_step
from tasks import runtime


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

    result = answer_step(
        state.plan,
        state.engine,
        step,
        previous,
        chapters,
        blocked_by=blocked_by,
        refresh=state.refresh(step),
    )

    done = state.count_finished()
    if result.status is StepStatus.OK:
        if result.cached:
            how = "from the cache"
        elif result.attempts > 1:
            how = f"after {result.attempts} attempts"
        else:
            how = "first time"
        logger.info(
            "[%d/%d] %s: ok in %.1f s, %d tokens, %s",
            done,
            state.total_steps,
            label,
            result.latency_s,
            result.total_tokens,
            how,
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
