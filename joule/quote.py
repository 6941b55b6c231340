"""The dry run: every prompt rendered, and what the run would cost and take."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from joule.cache import CallCache
from joule.calls import CallOutcome, CallRequest
from joule.engine import CallEngine
from joule.files import atomic_write_text
from joule.limiter import effective_limits, predict_wall_time
from joule.plan import Plan, StepSpec
from joule.pricing import cost_usd
from joule.steps import run_directly
from joule.tokens import estimate_prompt_tokens

# Latency assumed per call when predicting the wall time.
TYPICAL_LATENCY_S = 5.0


@dataclass
class StepQuote:
    step: StepSpec
    input_tokens: int
    output_tokens: int
    cost_usd: float
    cached: bool = False


@dataclass
class ChapterQuote:
    objective_id: str
    objective: str
    steps: list[StepQuote]

    def _to_pay(self) -> list[StepQuote]:
        return [s for s in self.steps if not s.cached]

    @property
    def calls(self) -> int:
        return len(self.steps)

    @property
    def cached(self) -> int:
        return sum(s.cached for s in self.steps)

    @property
    def input_tokens(self) -> int:
        return sum(s.input_tokens for s in self._to_pay())

    @property
    def output_tokens(self) -> int:
        return sum(s.output_tokens for s in self._to_pay())

    @property
    def cost_usd(self) -> float:
        return sum(s.cost_usd for s in self._to_pay())


def _quoted_answers(plan: Plan, step: StepSpec) -> int:
    """Tokens of earlier answers the template pulls in, at their worst case.

    Until answers exist, each is estimated at its full max_tokens: the quote
    errs high, never low.
    """
    extra = 0
    if "previous" in step.prompt:
        extra += sum(s.max_tokens for s in plan.earlier_steps(step))
    if "chapters" in step.prompt:
        objective = plan.objective(step.objective_id)
        for dep in objective.depends_on:
            extra += sum(s.max_tokens for s in plan.objective(dep).steps() if s.show)
    return extra


def cached_steps(
    plan: Plan,
    cache: CallCache,
    refresh: Callable[[StepSpec], bool] = lambda step: False,
) -> set[str]:
    """Keys of the steps the cache answers, following chains as a run would.

    A run that may only read the cache: a step it does not find there ends
    its chain, as a failed call would, so later steps and dependent chapters
    count as not cached.
    """

    def cache_only(request: CallRequest, label: str) -> CallOutcome:
        return CallOutcome(ok=False, error="not in the cache")

    engine = CallEngine(cache_only, max_workers=1, cache=cache)
    try:
        results = run_directly(plan, engine, refresh)
    finally:
        engine.shutdown()
    return {result.key for result in results if result.cached}


def estimate(plan: Plan, cached: set[str] = frozenset()) -> list[ChapterQuote]:
    """Worst-case tokens and cost of every step, chapter by chapter."""
    prices = plan.settings.llm.prices
    chapters = []
    for objective in plan.objectives:
        quotes = []
        for step in objective.steps():
            request = plan.render_preview(step)
            tokens_in = estimate_prompt_tokens(request.message_dicts())
            tokens_in += _quoted_answers(plan, step)
            tokens_out = step.max_tokens
            quotes.append(
                StepQuote(
                    step,
                    tokens_in,
                    tokens_out,
                    cost_usd(step.model, tokens_in, tokens_out, prices),
                    cached=step.key in cached,
                )
            )
        chapters.append(
            ChapterQuote(objective.objective_id, objective.objective, quotes)
        )
    return chapters


def write_prompts(plan: Plan, out_dir: Path) -> Path:
    """Render every prompt (placeholders for answers) into out_dir/prompts."""
    folder = out_dir / "prompts"
    folder.mkdir(parents=True, exist_ok=True)
    for step in plan.steps():
        request = plan.render_preview(step)
        text = "\n\n".join(f"## {role}\n\n{body}" for role, body in request.messages)
        path = folder / f"{step.task_id}-step{step.step}.md"
        atomic_write_text(path, f"# {step.label}\n\n{text}\n")
    return folder


def predicted_seconds(plan: Plan, chapters: list[ChapterQuote]) -> float:
    """A lower bound on the run's wall time under the project's limits."""
    limits = plan.settings.limits
    rpm, tpm, in_flight = effective_limits(
        plan.settings.llm.model,
        limits.requests_per_minute,
        limits.tokens_per_minute,
        limits.max_in_flight,
    )
    tokens = [
        s.input_tokens + s.output_tokens
        for c in chapters
        for s in c.steps
        if not s.cached
    ]
    return predict_wall_time(
        len(tokens),
        tokens,
        rpm,
        tpm,
        in_flight,
        TYPICAL_LATENCY_S,
        longest_chain=_longest_chain(plan),
    )


def _longest_chain(plan: Plan) -> int:
    """Calls that must run one after another: steps of a task, across depends_on."""
    depth: dict[str, int] = {}
    for wave in plan.chapter_order():
        for objective_id in wave:
            objective = plan.objective(objective_id)
            before = max((depth[d] for d in objective.depends_on), default=0)
            longest = max((len(t.steps) for t in objective.tasks), default=0)
            depth[objective_id] = before + longest
    return max(depth.values(), default=0)


def format_quote(plan: Plan, chapters: list[ChapterQuote], prompts_folder: Path) -> str:
    """The plan as the dry run prints it."""
    header = (
        f"{'chapter':<36} {'calls':>5} {'cached':>6} {'in tokens':>10} "
        f"{'out tokens':>10} {'cost USD':>9}"
    )
    lines = [
        f"Dry run of '{plan.settings.title}': nothing was sent to the model.",
        "",
        header,
    ]
    for chapter in chapters:
        name = f"{chapter.objective_id} {chapter.objective}"[:36]
        lines.append(
            f"{name:<36} {chapter.calls:>5} {chapter.cached:>6} "
            f"{chapter.input_tokens:>10,} {chapter.output_tokens:>10,} "
            f"{chapter.cost_usd:>9.4f}"
        )
    lines.append(
        f"{'total':<36} {sum(c.calls for c in chapters):>5} "
        f"{sum(c.cached for c in chapters):>6} "
        f"{sum(c.input_tokens for c in chapters):>10,} "
        f"{sum(c.output_tokens for c in chapters):>10,} "
        f"{sum(c.cost_usd for c in chapters):>9.4f}"
    )
    seconds = predicted_seconds(plan, chapters)
    lines += [
        "",
        "Tokens and cost are for the calls the cache does not answer, at worst "
        "case: every answer as long as its max_tokens, at list prices.",
        f"Predicted wall time under the limits: at least {seconds:.0f} s "
        f"(assuming {TYPICAL_LATENCY_S:.0f} s per call).",
        f"Rendered prompts: {prompts_folder}",
    ]
    return "\n".join(lines)
