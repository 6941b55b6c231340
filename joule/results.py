"""What a run produced: one result per step, and the report that holds them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field


class StepStatus(StrEnum):
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"


class StepResult(BaseModel):
    """The outcome of one LLM step: its answer or why there is none, and its cost."""

    objective_id: str
    objective: str
    task_id: str
    task: str
    step: int
    show: bool
    row: int = Field(description="Row of the prompt sheet this step came from.")
    system: str | None = None
    prompt: str = Field(description="The rendered user prompt sent to the model.")
    answer: str | None = None
    status: StepStatus
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    attempts: int = 0
    cached: bool = False
    error: str | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def key(self) -> str:
        """The same key as the plan's step: 'task_id#step'."""
        return f"{self.task_id}#{self.step}"

    @property
    def label(self) -> str:
        return f"{self.task_id} step {self.step}: {self.task}"


class Report(BaseModel):
    """A finished run: the steps in sheet order and what the run was."""

    title: str
    run_id: str
    started_at: datetime
    finished_at: datetime
    settings_digest: str
    model: str
    base_url: str | None = None
    simulated: bool = False
    steps: list[StepResult]

    @property
    def failed(self) -> list[StepResult]:
        return [s for s in self.steps if s.status is not StepStatus.OK]

    def objectives(self) -> list[tuple[str, str, list[StepResult]]]:
        """Group steps by chapter, keeping the order in which chapters first appear."""
        chapters: dict[str, tuple[str, list[StepResult]]] = {}
        for step in self.steps:
            chapters.setdefault(step.objective_id, (step.objective, []))[1].append(step)
        return [(oid, title, steps) for oid, (title, steps) in chapters.items()]
