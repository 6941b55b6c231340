"""A validated plan: the project folder checked in one pass, ready to render."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Template

from joule.calls import CallRequest
from joule.data import (
    DataLoadError,
    DataRef,
    DataRefError,
    load_table,
    parse_data_refs,
    render_table,
    select,
)
from joule.errors import Problem, ProjectError
from joule.filters import unknown_columns
from joule.prompts import PromptError, compile_template, render_prompt
from joule.settings import ReportSettings, load_settings
from joule.sheet import (
    KNOWN_COLUMNS,
    REQUIRED_COLUMNS,
    SheetError,
    SheetRow,
    read_sheet,
)

_TRUE = {"true", "yes", "y", "1", "x", "ja", "waar", "wahr", "vrai"}
_FALSE = {"false", "no", "n", "0", "nee", "onwaar", "falsch", "faux"}


@dataclass(frozen=True)
class StepSpec:
    """One LLM step as the sheet describes it, with its defaults resolved."""

    row: int
    objective_id: str
    objective: str
    task_id: str
    task: str
    step: int
    prompt: str
    data: tuple[DataRef, ...]
    show: bool
    system: str | None
    model: str
    temperature: float
    max_tokens: int

    @property
    def key(self) -> str:
        return f"{self.task_id}#{self.step}"

    @property
    def label(self) -> str:
        return f"{self.task_id} step {self.step}: {self.task}"


@dataclass
class TaskSpec:
    task_id: str
    task: str
    steps: list[StepSpec] = field(default_factory=list)


@dataclass
class ObjectiveSpec:
    objective_id: str
    objective: str
    depends_on: tuple[str, ...] = ()
    tasks: list[TaskSpec] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.objective_id} {self.objective}"

    def steps(self) -> list[StepSpec]:
        return [step for task in self.tasks for step in task.steps]


@dataclass
class Plan:
    """Everything a run needs, validated: settings, chapters in sheet order, data."""

    project_dir: Path
    settings: ReportSettings
    objectives: list[ObjectiveSpec]
    tables: dict[str, pd.DataFrame]
    templates: dict[str, Template]
    _rendered_tables: dict[str, str] = field(default_factory=dict)
    _steps_by_key: dict[str, StepSpec] = field(default_factory=dict)

    def steps(self) -> list[StepSpec]:
        return [step for objective in self.objectives for step in objective.steps()]

    def step(self, key: str) -> StepSpec:
        """The step with this key ('task_id#step')."""
        if not self._steps_by_key:
            self._steps_by_key = {s.key: s for s in self.steps()}
        return self._steps_by_key[key]

    def objective(self, objective_id: str) -> ObjectiveSpec:
        return next(o for o in self.objectives if o.objective_id == objective_id)

    def earlier_steps(self, step: StepSpec) -> list[StepSpec]:
        """The steps of the same task that come before this one."""
        task = next(
            t
            for t in self.objective(step.objective_id).tasks
            if t.task_id == step.task_id
        )
        return [s for s in task.steps if s.step < step.step]

    def table_text(self, ref: DataRef) -> str:
        """The Markdown of a data reference, rendered once per run."""
        if ref.text not in self._rendered_tables:
            source = self.settings.data[ref.name]
            frame = select(self.tables[ref.name], ref)
            self._rendered_tables[ref.text] = render_table(
                frame, max_rows=source.max_rows, name=ref.name
            )
        return self._rendered_tables[ref.text]

    def render(
        self, step: StepSpec, previous: list[str], chapters: dict[str, str]
    ) -> CallRequest:
        """The request for one step, given the answers it builds on."""
        variables: dict[str, Any] = {
            "title": self.settings.title,
            "context": self.settings.context,
            "objective": step.objective,
            "task": step.task,
            "step": step.step,
            "previous": list(previous),
            "chapters": dict(chapters),
        }
        tables = {ref.name: self.table_text(ref) for ref in step.data}
        prompt = render_prompt(
            self.templates[step.key], tables=tables, variables=variables
        )
        messages = ((("system", step.system),) if step.system else ()) + (
            ("user", prompt),
        )
        return CallRequest(
            model=step.model,
            messages=messages,
            temperature=step.temperature,
            max_tokens=step.max_tokens,
        )

    def render_preview(self, step: StepSpec) -> CallRequest:
        """Render with placeholders for answers that do not exist yet."""
        previous = [
            f"[answer of step {s.step} of {s.task_id}]"
            for s in self.earlier_steps(step)
        ]
        objective = self.objective(step.objective_id)
        chapters = {oid: f"[text of chapter {oid}]" for oid in objective.depends_on}
        return self.render(step, previous, chapters)

    def chapter_order(self) -> list[list[str]]:
        """Objective ids in waves: each wave depends only on earlier waves."""
        done: set[str] = set()
        waves: list[list[str]] = []
        pending = [o for o in self.objectives]
        while pending:
            wave = [o for o in pending if set(o.depends_on) <= done]
            waves.append([o.objective_id for o in wave])
            done.update(waves[-1])
            pending = [o for o in pending if o.objective_id not in done]
        return waves


def refresh_selector(ids: list[str] | None) -> Callable[[StepSpec], bool]:
    """Which steps --refresh forces to call again: none, all, or by task/chapter id."""
    if not ids:
        return lambda step: False
    if "all" in ids:
        return lambda step: True
    wanted = set(ids)
    return lambda step: step.task_id in wanted or step.objective_id in wanted


def chapter_text(objective: ObjectiveSpec, answers: dict[str, str]) -> str:
    """The finished text of a chapter: its sections' shown answers, in order."""
    parts = []
    for task in objective.tasks:
        # Skipping empty answers here keeps the text the same whether it is
        # built by the prefetcher or by the flow, so their calls coincide.
        shown = [answers[s.key] for s in task.steps if s.show and answers.get(s.key)]
        if shown:
            parts.append(f"## {task.task_id} {task.task}\n\n" + "\n\n".join(shown))
    return "\n\n".join(parts)


# ---------------------------------------------------------------------------
# Building and validating a plan


class _Collector:
    """Gathers problems so that one pass reports all of them."""

    def __init__(self, sheet_name: str):
        self.sheet_name = sheet_name
        self.problems: list[Problem] = []

    def at(self, row: int | None, column: str | None, message: str) -> None:
        self.problems.append(Problem(self.sheet_name, message, row, column))

    def file(self, name: str, message: str) -> None:
        self.problems.append(Problem(name, message))


def load_plan(project_dir: Path, only: list[str] | None = None) -> Plan:
    """Read and check a whole project; raise ProjectError listing every problem."""
    project_dir = Path(project_dir)
    settings = load_settings(project_dir)
    collector = _Collector(settings.prompt_sheet)

    tables = _load_tables(project_dir, settings, collector)
    sheet_path = project_dir / settings.prompt_sheet
    if not sheet_path.is_file():
        collector.file(
            settings.prompt_sheet,
            f"not found in {project_dir}: check prompt_sheet in report.toml",
        )
        raise ProjectError(collector.problems)
    try:
        rows, header = read_sheet(sheet_path, settings.prompt_sheet_tab)
    except SheetError as exc:
        collector.file(settings.prompt_sheet, str(exc).split(": ", 1)[-1])
        raise ProjectError(collector.problems) from exc

    if not _check_header(header, collector):
        raise ProjectError(collector.problems)
    if not rows:
        collector.at(None, None, "the sheet has no steps: add one row per LLM step")

    steps = [s for s in (_parse_row(r, settings, collector) for r in rows) if s]
    objectives = _group(steps, rows, collector)
    _check_dependencies(objectives, collector)
    _check_data(steps, settings, tables, collector)
    templates = _compile(steps, collector)

    # Trial-render even when other rows have problems, so that one pass reports
    # the template errors too.
    plan = Plan(project_dir, settings, objectives, tables, templates)
    _trial_render(plan, collector)
    if collector.problems:
        raise ProjectError(collector.problems)
    if only:
        plan.objectives = _select(plan.objectives, only, settings.prompt_sheet)
    return plan


def _load_tables(
    project_dir: Path, settings: ReportSettings, collector: _Collector
) -> dict[str, pd.DataFrame]:
    tables = {}
    for name, source in settings.data.items():
        try:
            tables[name] = load_table(
                project_dir / source.path,
                sep=source.sep,
                decimal=source.decimal,
                sheet=source.sheet,
                encoding=source.encoding,
                name=name,
            )
        except DataLoadError as exc:
            collector.file("report.toml", str(exc))
    return tables


def _check_header(header: list[str], collector: _Collector) -> bool:
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    for column in missing:
        collector.at(1, column, "required column is missing: add it to the header row")
    for column in header:
        if column in KNOWN_COLUMNS or not column or column.startswith("unnamed"):
            continue
        close = difflib.get_close_matches(column, KNOWN_COLUMNS, n=1, cutoff=0.8)
        if close:
            collector.at(1, column, f"unknown column: did you mean '{close[0]}'?")
    return not missing


def _parse_bool(text: str) -> bool | None:
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    return None


def _parse_row(
    row: SheetRow, settings: ReportSettings, collector: _Collector
) -> StepSpec | None:
    before = len(collector.problems)
    for column in REQUIRED_COLUMNS:
        if not row.get(column):
            collector.at(row.row, column, "is empty: every step needs a value here")

    step = 1
    if row.get("step"):
        try:
            step = int(float(row.get("step")))
            if step < 1 or step != float(row.get("step")):
                raise ValueError
        except (ValueError, OverflowError):  # "inf" overflows int()
            collector.at(
                row.row,
                "step",
                f"'{row.get('step')}' is not a whole number of 1 or more",
            )

    temperature = settings.llm.temperature
    if row.get("temperature"):
        try:
            temperature = float(row.get("temperature").replace(",", "."))
            if not 0 <= temperature <= 2:
                raise ValueError
        except ValueError:
            collector.at(
                row.row,
                "temperature",
                f"'{row.get('temperature')}' is not a number between 0 and 2",
            )

    max_tokens = settings.llm.max_tokens
    if row.get("max_tokens"):
        try:
            max_tokens = int(float(row.get("max_tokens")))
            if max_tokens < 1 or max_tokens != float(row.get("max_tokens")):
                raise ValueError
        except (ValueError, OverflowError):
            collector.at(
                row.row,
                "max_tokens",
                f"'{row.get('max_tokens')}' is not a whole number of 1 or more",
            )

    show: bool | None = None
    if row.get("show"):
        show = _parse_bool(row.get("show"))
        if show is None:
            collector.at(
                row.row, "show", f"'{row.get('show')}' is not true/false (or yes/no)"
            )

    refs: tuple[DataRef, ...] = ()
    try:
        refs = tuple(parse_data_refs(row.get("data")))
    except DataRefError as exc:
        collector.at(row.row, "data", str(exc))

    if len(collector.problems) > before:
        return None
    return StepSpec(
        row=row.row,
        objective_id=row.get("objective_id"),
        objective=row.get("objective"),
        task_id=row.get("task_id"),
        task=row.get("task"),
        step=step,
        prompt=row.cells.get("prompt", ""),
        data=refs,
        # An empty "show" is settled in _group, once the task's last step is known.
        show=bool(show),
        system=row.get("system") or settings.llm.system,
        model=row.get("model") or settings.llm.model,
        temperature=temperature,
        max_tokens=max_tokens,
    )


def _depends(row: SheetRow) -> list[str]:
    return [part.strip() for part in row.get("depends_on").split(";") if part.strip()]


def _group(
    steps: list[StepSpec], rows: list[SheetRow], collector: _Collector
) -> list[ObjectiveSpec]:
    """Chapters and sections in sheet order; steps sorted; empty `show` settled."""
    explicit_show = {row.row for row in rows if row.get("show")}
    objectives: dict[str, ObjectiveSpec] = {}
    tasks: dict[str, tuple[ObjectiveSpec, TaskSpec]] = {}
    seen: dict[str, int] = {}

    for step in steps:
        if step.key in seen:
            collector.at(
                step.row,
                "step",
                f"task {step.task_id} already has a step {step.step} "
                f"(row {seen[step.key]}): give each step of a task its own number",
            )
            continue
        seen[step.key] = step.row
        objective = objectives.setdefault(
            step.objective_id, ObjectiveSpec(step.objective_id, step.objective)
        )
        if step.task_id in tasks and tasks[step.task_id][0] is not objective:
            other = tasks[step.task_id][0].objective_id
            collector.at(
                step.row,
                "task_id",
                f"task {step.task_id} also appears under objective {other}: "
                "a task belongs to one objective",
            )
            continue
        if step.task_id not in tasks:
            task = TaskSpec(step.task_id, step.task)
            objective.tasks.append(task)
            tasks[step.task_id] = (objective, task)
        # A title typed two ways would silently lose one of them.
        if step.objective != objective.objective:
            collector.at(
                step.row,
                "objective",
                f"objective {step.objective_id} is titled '{objective.objective}' "
                f"on an earlier row: give every row of a chapter the same title",
            )
        if step.task != tasks[step.task_id][1].task:
            collector.at(
                step.row,
                "task",
                f"task {step.task_id} is titled '{tasks[step.task_id][1].task}' "
                f"on an earlier row: give every row of a section the same title",
            )
        tasks[step.task_id][1].steps.append(step)

    depends: dict[str, list[str]] = {}
    for row in rows:
        oid = row.get("objective_id")
        for dep in _depends(row):
            if dep not in depends.setdefault(oid, []):
                depends[oid].append(dep)
            if dep not in objectives and not any(
                p.row == row.row and p.column == "depends_on"
                for p in collector.problems
            ):
                collector.at(
                    row.row,
                    "depends_on",
                    f"unknown objective '{dep}': depends_on lists objective ids "
                    f"of this sheet ({', '.join(objectives)})",
                )

    resolved = []
    for objective in objectives.values():
        objective.depends_on = tuple(
            d for d in depends.get(objective.objective_id, []) if d in objectives
        )
        for task in objective.tasks:
            task.steps.sort(key=lambda s: s.step)
            last = task.steps[-1].step
            task.steps = [
                s if s.row in explicit_show else replace(s, show=s.step == last)
                for s in task.steps
            ]
        resolved.append(objective)
    return resolved


def _check_dependencies(objectives: list[ObjectiveSpec], collector: _Collector):
    by_id = {o.objective_id: o for o in objectives}
    first_row = {o.objective_id: o.steps()[0].row for o in objectives if o.steps()}

    def cycle_from(start: str) -> list[str] | None:
        path: list[str] = []

        def visit(oid: str) -> list[str] | None:
            if oid in path:
                return path[path.index(oid) :] + [oid]
            path.append(oid)
            for dep in by_id[oid].depends_on:
                found = visit(dep)
                if found:
                    return found
            path.pop()
            return None

        return visit(start)

    reported: set[frozenset[str]] = set()
    for objective in objectives:
        if objective.objective_id in objective.depends_on:
            collector.at(
                first_row.get(objective.objective_id),
                "depends_on",
                f"objective {objective.objective_id} depends on itself",
            )
            reported.add(frozenset([objective.objective_id]))
            continue
        cycle = cycle_from(objective.objective_id)
        if cycle and frozenset(cycle) not in reported:
            reported.add(frozenset(cycle))
            collector.at(
                first_row.get(cycle[0]),
                "depends_on",
                "depends_on forms a cycle: "
                + " -> ".join(cycle)
                + "; a chapter cannot wait for itself",
            )


def _check_data(
    steps: list[StepSpec],
    settings: ReportSettings,
    tables: dict[str, pd.DataFrame],
    collector: _Collector,
) -> None:
    for step in steps:
        for ref in step.data:
            if ref.name not in settings.data:
                known = ", ".join(settings.data) or "none defined"
                collector.at(
                    step.row,
                    "data",
                    f"unknown data source '{ref.name}': add [data.{ref.name}] to "
                    f"report.toml or use one of: {known}",
                )
                continue
            if ref.filter is None or ref.name not in tables:
                continue
            columns = list(tables[ref.name].columns)
            for column in unknown_columns(ref.filter, columns):
                close = difflib.get_close_matches(column, columns, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                collector.at(
                    step.row,
                    "data",
                    f"'{ref.text}': table '{ref.name}' has no column '{column}'{hint}",
                )


def _compile(steps: list[StepSpec], collector: _Collector) -> dict[str, Template]:
    templates = {}
    for step in steps:
        try:
            templates[step.key] = compile_template(step.prompt)
        except PromptError as exc:
            collector.at(step.row, "prompt", str(exc))
    return templates


def _trial_render(plan: Plan, collector: _Collector) -> None:
    """Render every prompt once with placeholders, to catch errors before a call."""
    flagged = {problem.row for problem in collector.problems}
    for step in plan.steps():
        # A row with a problem already, or whose table did not load, cannot be
        # rendered meaningfully; its other problems show once that one is fixed.
        if (
            step.row in flagged
            or step.key not in plan.templates
            or any(ref.name not in plan.tables for ref in step.data)
        ):
            continue
        try:
            plan.render_preview(step)
        except PromptError as exc:
            collector.at(step.row, "prompt", str(exc))
        except Exception as exc:  # a filter that pandas cannot evaluate
            collector.at(step.row, "data", f"cannot select the data: {exc}")


def _select(
    objectives: list[ObjectiveSpec], only: list[str], sheet_name: str
) -> list[ObjectiveSpec]:
    """Keep the chapters or tasks named by --only, plus the chapters they need."""
    task_ids = {t.task_id for o in objectives for t in o.tasks}
    objective_ids = {o.objective_id for o in objectives}
    unknown = [i for i in only if i not in task_ids and i not in objective_ids]
    if unknown:
        raise ProjectError(
            [
                Problem(
                    sheet_name,
                    f"--only {' '.join(unknown)}: no such objective or task id",
                )
            ]
        )
    whole = {i for i in only if i in objective_ids}
    tasks_wanted = {i for i in only if i in task_ids}
    partial = {
        o.objective_id
        for o in objectives
        if any(t.task_id in tasks_wanted for t in o.tasks)
    }

    # A chapter that another one waits for runs whole, even if --only also names
    # one of its tasks: the waiting chapter reads its finished text.
    by_id = {o.objective_id: o for o in objectives}
    frontier = list(whole | partial)
    while frontier:
        for dep in by_id[frontier.pop()].depends_on:
            if dep not in whole:
                whole.add(dep)
                frontier.append(dep)

    selected = []
    for o in objectives:
        if o.objective_id in whole:
            selected.append(o)
        elif o.objective_id in partial:
            kept = [t for t in o.tasks if t.task_id in tasks_wanted]
            selected.append(
                ObjectiveSpec(o.objective_id, o.objective, o.depends_on, kept)
            )
    return selected
