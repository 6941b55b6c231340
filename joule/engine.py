"""The call pipeline: every model call of a run goes through one engine.

The engine deduplicates identical calls, admits them through the run's
limiter, retries what is transient, and runs them on its own thread pool.
The prefetcher feeds it every call whose inputs exist, as soon as they
exist, so that the limiter queue is full even while the orchestrator is
still starting chapters: Prefect's tasks then find their answer waiting (or
in flight) under the same call identity, and nothing is paid twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from joule.cache import CallCache, entry_from, outcome_from
from joule.calls import CallOutcome, CallRequest
from joule.plan import ObjectiveSpec, Plan, StepSpec, TaskSpec, chapter_text
from joule.prompts import PromptError

logger = logging.getLogger(__name__)

CallFunction = Callable[[CallRequest, str], CallOutcome]


class CallEngine:
    """Runs calls on a bounded pool; equal requests share one call."""

    def __init__(
        self,
        call: CallFunction,
        *,
        max_workers: int,
        cache: CallCache | None = None,
    ):
        self._call = call
        self._cache = cache
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix="joule-call")
        self._futures: dict[str, Future[CallOutcome]] = {}
        self._lock = threading.Lock()

    def submit(
        self, request: CallRequest, label: str = "", *, refresh: bool = False
    ) -> Future[CallOutcome]:
        """The future answer of a request, starting the call if nobody has.

        `refresh` skips the cache lookup (the new answer is still stored).
        """
        key = request.key
        with self._lock:
            future = self._futures.get(key)
            if future is None:
                future = self._pool.submit(self._answer, request, label, refresh)
                self._futures[key] = future
            return future

    def _answer(self, request: CallRequest, label: str, refresh: bool) -> CallOutcome:
        if self._cache is not None and not refresh:
            entry = self._cache.get(request.key)
            if entry is not None:
                return outcome_from(entry)
        try:
            outcome = self._call(request, label)
        except Exception as exc:  # a bug must fail one step, not hang the run
            logger.exception("Call to %s failed unexpectedly", request.model)
            return CallOutcome(ok=False, error=f"unexpected error: {exc}", attempts=1)
        if outcome.ok and self._cache is not None:
            try:
                self._cache.put(request.key, entry_from(request, outcome))
            except OSError as exc:
                # The answer is good; only a later run loses the saving.
                logger.warning("Could not store %s in the cache: %s", label, exc)
        return outcome

    def shutdown(self) -> None:
        """Stop taking calls; calls not yet started are cancelled."""
        self._pool.shutdown(wait=False, cancel_futures=True)


class Prefetcher:
    """Walks the plan ahead of the orchestrator, submitting calls as inputs appear."""

    def __init__(
        self,
        plan: Plan,
        engine: CallEngine,
        refresh: Callable[[StepSpec], bool] = lambda step: False,
    ):
        self._plan = plan
        self._engine = engine
        self._refresh = refresh
        self._lock = threading.Lock()
        self._answers: dict[str, str] = {}
        self._tasks_left = {o.objective_id: len(o.tasks) for o in plan.objectives}
        self._failed: set[str] = set()
        self._started: set[str] = set()

    def start(self) -> None:
        for objective in self._plan.objectives:
            self._maybe_start(objective)

    def _maybe_start(self, objective: ObjectiveSpec) -> None:
        with self._lock:
            ready = all(self._tasks_left.get(d, 0) == 0 for d in objective.depends_on)
            blocked = any(d in self._failed for d in objective.depends_on)
            if not ready or blocked or objective.objective_id in self._started:
                return
            self._started.add(objective.objective_id)
            chapters = {
                dep: chapter_text(self._plan.objective(dep), self._answers)
                for dep in objective.depends_on
            }
        if not objective.tasks:
            self._finish_chapter(objective)
        for task in objective.tasks:
            self._advance(objective, task, 0, [], chapters)

    def _advance(
        self,
        objective: ObjectiveSpec,
        task: TaskSpec,
        index: int,
        previous: list[str],
        chapters: dict[str, str],
    ) -> None:
        step = task.steps[index]
        try:
            request = self._plan.render(step, previous, chapters)
        except PromptError:
            self._finish_task(objective, failed=True)
            return

        def on_done(future: Future[CallOutcome]) -> None:
            if future.cancelled():
                return
            outcome = future.result()
            if not outcome.ok:
                self._finish_task(objective, failed=True)
                return
            with self._lock:
                self._answers[step.key] = outcome.answer or ""
            if index + 1 < len(task.steps):
                answers = previous + [outcome.answer or ""]
                self._advance(objective, task, index + 1, answers, chapters)
            else:
                self._finish_task(objective, failed=False)

        future = self._engine.submit(request, step.label, refresh=self._refresh(step))
        future.add_done_callback(on_done)

    def _finish_task(self, objective: ObjectiveSpec, *, failed: bool) -> None:
        with self._lock:
            self._tasks_left[objective.objective_id] -= 1
            if failed:
                self._failed.add(objective.objective_id)
            finished = self._tasks_left[objective.objective_id] == 0
        if finished:
            self._finish_chapter(objective)

    def _finish_chapter(self, objective: ObjectiveSpec) -> None:
        for other in self._plan.objectives:
            if objective.objective_id in other.depends_on:
                self._maybe_start(other)
