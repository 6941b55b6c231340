"""What the tasks of one flow run share in-process: the plan and the call engine.

Prefect parameters must be serialisable, and a plan holds data frames and a
thread pool; so a run registers its state here under its flow run id, and
tasks receive only that id and the step they are about.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from joule.engine import CallEngine
from joule.plan import Plan, StepSpec


@dataclass
class RunState:
    run_id: str
    plan: Plan
    engine: CallEngine
    total_steps: int
    refresh: Callable[[StepSpec], bool] = lambda step: False
    finished: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count_finished(self) -> int:
        """Note that one more step finished; returns how many have."""
        with self.lock:
            self.finished += 1
            return self.finished


_RUNS: dict[str, RunState] = {}


def register(state: RunState) -> None:
    _RUNS[state.run_id] = state


def get(run_id: str) -> RunState:
    return _RUNS[run_id]


def forget(run_id: str) -> None:
    _RUNS.pop(run_id, None)
