"""The dry run: every prompt rendered, and what the run would cost and take."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from joule.files import atomic_write_text
from joule.limiter import default_limits, predict_wall_time
from joule.plan import Plan, StepSpec
from joule.pricing import cost_usd
from joule.tokens import estimate_prompt_tokens

# Until answers exist, a step that quotes earlier answers is estimated as if
# each used its full max_tokens: the quote errs high, never low.
# Latency assumed per call when predicting the wall time.
TYPICAL_LATENCY_S = 5.0


@dataclass
class StepQuote:
    step: StepSpec
    input_tokens: int
    output_tokens: int
    cost_usd: float
    prompt_file: Path


@dataclass
class ChapterQuote:
    objective_id: str
    objective: str
    steps: list[StepQuote]

    @property
    def input_tokens(self) -> int:
        return sum(s.input_tokens for s in self.steps)

    @property
    def output_tokens(self) -> int:
        return sum(s.output_tokens for s in self.steps)

    @property
    def cost_usd(self) -> float:
        return sum(s.cost_usd for s in self.steps)


def _quoted_answers(plan: Plan, step: StepSpec) -> int:
    """Tokens of earlier answers the template pulls in, at their worst case."""
    extra = 0
    if "previous" in step.prompt:
        task = next(
            t for o in plan.objectives for t in o.tasks if t.task_id == step.task_id
        )
        extra += sum(s.max_tokens for s in task.steps if s.step < step.step)
    if "chapters" in step.prompt:
        objective = plan.objective(step.objective_id)
        for dep in objective.depends_on:
            extra += sum(s.max_tokens for s in plan.objective(dep).steps() if s.show)
    return extra


def quote(plan: Plan, out_dir: Path) -> list[ChapterQuote]:
    """Render every prompt into out_dir/prompts and estimate each call."""
    prices = plan.settings.llm.prices
    (out_dir / "prompts").mkdir(parents=True, exist_ok=True)
    chapters = []
    for objective in plan.objectives:
        quotes = []
        for step in objective.steps():
            request = plan.render_preview(step)
            text = "\n\n".join(
                f"## {role}\n\n{body}" for role, body in request.messages
            )
            path = out_dir / "prompts" / f"{step.task_id}-step{step.step}.md"
            atomic_write_text(path, f"# {step.label}\n\n{text}\n")
            tokens_in = estimate_prompt_tokens(request.message_dicts())
            tokens_in += _quoted_answers(plan, step)
            tokens_out = step.max_tokens
            quotes.append(
                StepQuote(
                    step,
                    tokens_in,
                    tokens_out,
                    cost_usd(step.model, tokens_in, tokens_out, prices),
                    path,
                )
            )
        chapters.append(
            ChapterQuote(objective.objective_id, objective.objective, quotes)
        )
    return chapters


def predicted_seconds(plan: Plan, chapters: list[ChapterQuote]) -> float:
    """A lower bound on the run's wall time under the project's limits."""
    limits = plan.settings.limits
    rpm, tpm, in_flight = default_limits(plan.settings.llm.model)
    tokens = [s.input_tokens + s.output_tokens for c in chapters for s in c.steps]
    return predict_wall_time(
        len(tokens),
        tokens,
        limits.requests_per_minute or rpm,
        limits.tokens_per_minute or tpm,
        limits.max_in_flight or in_flight,
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


def format_quote(plan: Plan, chapters: list[ChapterQuote], out_dir: Path) -> str:
    """The plan as the dry run prints it."""
    lines = [
        f"Dry run of '{plan.settings.title}': nothing was sent to the model.",
        "",
        f"{'chapter':<40} {'calls':>5} {'in tokens':>10} {'out tokens':>10} "
        f"{'cost USD':>9}",
    ]
    for chapter in chapters:
        name = f"{chapter.objective_id} {chapter.objective}"[:40]
        lines.append(
            f"{name:<40} {len(chapter.steps):>5} {chapter.input_tokens:>10,} "
            f"{chapter.output_tokens:>10,} {chapter.cost_usd:>9.4f}"
        )
    calls = sum(len(c.steps) for c in chapters)
    lines.append(
        f"{'total':<40} {calls:>5} {sum(c.input_tokens for c in chapters):>10,} "
        f"{sum(c.output_tokens for c in chapters):>10,} "
        f"{sum(c.cost_usd for c in chapters):>9.4f}"
    )
    seconds = predicted_seconds(plan, chapters)
    lines += [
        "",
        "Estimates are worst cases: every answer as long as its max_tokens, at list "
        "prices.",
        f"Predicted wall time under the limits: at least {seconds:.0f} s "
        f"(assuming {TYPICAL_LATENCY_S:.0f} s per call).",
        f"Rendered prompts: {out_dir / 'prompts'}",
    ]
    return "\n".join(lines)
