"""Tests for project validation: every problem located, all of them in one pass."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import pytest

from joule.errors import ProjectError
from joule.plan import Plan, load_plan

SETTINGS = """\
title = "Grid report"
prompt_sheet = "prompts.csv"

[context]
region = "Zuidoost-Brabant"

[data.stations]
path = "data/stations.csv"
"""
STATIONS = "station,netbeheerder,capaciteit_mva\nAarle,Enexis,1.5\nBeek,Liander,12\n"
COLUMNS = (
    "objective_id",
    "objective",
    "task_id",
    "task",
    "step",
    "prompt",
    "data",
    "depends_on",
    "show",
    "temperature",
    "max_tokens",
)
# Spelled out rather than imported, so a change of wording fails a test.
GRAMMAR = (
    "filters compare columns with values (==, !=, <, <=, >, >=, in [...], "
    "not in [...]) joined by and, or, not"
)
AFTER_COLUMN = "expected a comparison (==, !=, <, <=, >, >=, in, not in) after column"


def step(**cells: str) -> dict[str, str]:
    """One sheet row: step 1 of task 1.1 of objective 1, unless `cells` say other."""
    row = {
        "objective_id": "1",
        "objective": "Grid",
        "task_id": "1.1",
        "task": "Substations",
        "prompt": "Describe the grid of {{ context.region }}.",
    }
    return row | cells


def make_project(
    root: Path, rows: list[dict[str, str]], settings: str = SETTINGS
) -> Path:
    """A project folder with report.toml, prompts.csv and one data table."""
    (root / "data").mkdir(parents=True)
    (root / "report.toml").write_text(settings, encoding="utf-8")
    (root / "data" / "stations.csv").write_text(STATIONS, encoding="utf-8")
    with (root / "prompts.csv").open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return root


def problems_of(project: Path) -> list[str]:
    with pytest.raises(ProjectError) as caught:
        load_plan(project)
    return [str(problem) for problem in caught.value.problems]


def outline(plan: Plan) -> list[tuple[str, list[tuple[str, list[int]]]]]:
    """Objective ids, each with its task ids and their step numbers, in order."""
    return [
        (o.objective_id, [(t.task_id, [s.step for s in t.steps]) for t in o.tasks])
        for o in plan.objectives
    ]


# --- report.toml and the files of the project ---------------------------------


def _rewrite_settings(text: str) -> Callable[[Path], None]:
    return lambda project: (project / "report.toml").write_text(text, "utf-8")


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        pytest.param(
            _rewrite_settings(SETTINGS + "\n[llm\nmodel = 'gpt-4o'\n"),
            "report.toml: not valid TOML: Expected ']' at the end of a table "
            "declaration (at line 10, column 5)",
            id="toml-syntax",
        ),
        pytest.param(
            _rewrite_settings(SETTINGS + "\n[llm]\ntemprature = 0.3\n"),
            "report.toml: unknown key 'llm.temprature': check its spelling",
            id="toml-key-typo",
        ),
        pytest.param(
            _rewrite_settings(SETTINGS + "\n[llm]\ntemperature = 5\n"),
            "report.toml: 'llm.temperature': Input should be less than or equal "
            "to 2 (got 5)",
            id="toml-value-out-of-bounds",
        ),
        pytest.param(
            lambda project: (project / "report.toml").unlink(),
            "report.toml: not found in {project}: create it "
            "(see examples/regional-energy/report.toml)",
            id="no-report-toml",
        ),
        pytest.param(
            lambda project: (project / "prompts.csv").unlink(),
            "prompts.csv: not found in {project}: check prompt_sheet in report.toml",
            id="no-prompt-sheet",
        ),
        pytest.param(
            lambda project: (project / "data" / "stations.csv").unlink(),
            "report.toml: cannot read data file '{project}/data/stations.csv': the "
            "file does not exist; check path in [data.stations] of report.toml",
            id="no-data-file",
        ),
        pytest.param(
            lambda project: (project / "prompts.csv").write_text(
                "objective_id,objective,task_id,task\n", "utf-8"
            ),
            "prompts.csv, row 1, column 'prompt': required column is missing: "
            "add it to the header row",
            id="no-prompt-column",
        ),
        pytest.param(
            lambda project: (project / "prompts.csv").write_text(
                ",".join(COLUMNS) + "\n", "utf-8"
            ),
            "prompts.csv: the sheet has no steps: add one row per LLM step",
            id="no-steps",
        ),
    ],
)
def test_a_broken_project_file_is_named_with_how_to_fix_it(
    tmp_path: Path, breakage: Callable[[Path], None], expected: str
) -> None:
    project = make_project(tmp_path / "project", [step()])
    breakage(project)

    assert problems_of(project) == [expected.format(project=project)]


def test_every_missing_required_column_is_reported_with_a_spelling_hint(
    tmp_path: Path,
) -> None:
    project = make_project(tmp_path / "project", [step()])
    (project / "prompts.csv").write_text(
        "objective_id,objectve,task_id,promt\n1,Grid,1.1,Describe.\n", "utf-8"
    )

    assert problems_of(project) == [
        "prompts.csv, row 1, column 'objective': required column is missing: "
        "add it to the header row",
        "prompts.csv, row 1, column 'task': required column is missing: "
        "add it to the header row",
        "prompts.csv, row 1, column 'prompt': required column is missing: "
        "add it to the header row",
        "prompts.csv, row 1, column 'objectve': unknown column: did you mean "
        "'objective'?",
        "prompts.csv, row 1, column 'promt': unknown column: did you mean 'prompt'?",
    ]


# --- the rows of the sheet ------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        pytest.param(
            [step(task="")],
            "prompts.csv, row 2, column 'task': is empty: every step needs a "
            "value here",
            id="empty-required-cell",
        ),
        pytest.param(
            [step(step="1"), step(step="2"), step(step="1")],
            "prompts.csv, row 4, column 'step': task 1.1 already has a step 1 "
            "(row 2): give each step of a task its own number",
            id="duplicate-step",
        ),
        pytest.param(
            [step(step="two")],
            "prompts.csv, row 2, column 'step': 'two' is not a whole number of 1 "
            "or more",
            id="step-word",
        ),
        pytest.param(
            [step(step="1.5")],
            "prompts.csv, row 2, column 'step': '1.5' is not a whole number of 1 "
            "or more",
            id="step-fraction",
        ),
        pytest.param(
            [step(step="0")],
            "prompts.csv, row 2, column 'step': '0' is not a whole number of 1 or more",
            id="step-zero",
        ),
        pytest.param(
            [step(step="inf")],
            "prompts.csv, row 2, column 'step': 'inf' is not a whole number of 1 "
            "or more",
            id="step-infinite",
        ),
        pytest.param(
            [step(temperature="warm")],
            "prompts.csv, row 2, column 'temperature': 'warm' is not a number "
            "between 0 and 2",
            id="temperature-word",
        ),
        pytest.param(
            [step(temperature="2,5")],
            "prompts.csv, row 2, column 'temperature': '2,5' is not a number "
            "between 0 and 2",
            id="temperature-too-high",
        ),
        pytest.param(
            [step(max_tokens="lots")],
            "prompts.csv, row 2, column 'max_tokens': 'lots' is not a whole number "
            "of 1 or more",
            id="max-tokens-word",
        ),
        pytest.param(
            [step(max_tokens="0")],
            "prompts.csv, row 2, column 'max_tokens': '0' is not a whole number "
            "of 1 or more",
            id="max-tokens-zero",
        ),
        pytest.param(
            [step(max_tokens="300.5")],
            "prompts.csv, row 2, column 'max_tokens': '300.5' is not a whole "
            "number of 1 or more",
            id="max-tokens-fraction",
        ),
        pytest.param(
            [step(show="maybe")],
            "prompts.csv, row 2, column 'show': 'maybe' is not true/false (or yes/no)",
            id="show-word",
        ),
        pytest.param(
            [step(data="stations; grid")],
            "prompts.csv, row 2, column 'data': unknown data source 'grid': add "
            "[data.grid] to report.toml or use one of: stations",
            id="unknown-data-source",
        ),
        pytest.param(
            [step(data='stations[netbeheer == "Enexis"]')],
            "prompts.csv, row 2, column 'data': 'stations[netbeheer == "
            "\"Enexis\"]': table 'stations' has no column 'netbeheer'; did you "
            "mean 'netbeheerder'?",
            id="unknown-filter-column",
        ),
        pytest.param(
            [step(data="stations[__import__('os')]")],
            "prompts.csv, row 2, column 'data': in the filter of data reference "
            "'stations[__import__('os')]': unexpected '(' at position 11: "
            f"{AFTER_COLUMN} '__import__'; {GRAMMAR}",
            id="filter-call",
        ),
        pytest.param(
            [step(data="stations[a.b == 1]")],
            "prompts.csv, row 2, column 'data': in the filter of data reference "
            f"'stations[a.b == 1]': unexpected '.' at position 2: {AFTER_COLUMN} "
            f"'a'; {GRAMMAR}",
            id="filter-attribute",
        ),
        pytest.param(
            [step(prompt="Intro\n{{ context.region }")],
            "prompts.csv, row 2, column 'prompt': template syntax error (line 2 of "
            "the prompt): unexpected '}'",
            id="template-syntax",
        ),
        pytest.param(
            [step(prompt="{{ ''.__class__ }}")],
            "prompts.csv, row 2, column 'prompt': the template tried something the "
            "sandbox forbids: access to attribute '__class__' of 'str' object is "
            "unsafe.",
            id="sandbox-escape",
        ),
        pytest.param(
            [step(prompt="Describe {{ regio }}.")],
            "prompts.csv, row 2, column 'prompt': the template failed to render: "
            "'regio' is undefined; a template sees title, context, objective, "
            "task, step, previous, chapters and data, and [context] keys as "
            "context.NAME",
            id="undefined-variable",
        ),
        pytest.param(
            [step(prompt="Describe {{ context.regio }}.")],
            "prompts.csv, row 2, column 'prompt': the template failed to render: "
            "'dict object' has no attribute 'regio'; `context` holds the keys of "
            "[context] in report.toml, `chapters` only the objectives named in "
            "depends_on",
            id="undefined-context-key",
        ),
        pytest.param(
            [step(prompt="{{ data.grid }}", data="stations")],
            "prompts.csv, row 2, column 'prompt': the template failed to render: "
            "'data' has no attribute 'grid'; `data` holds only the tables named "
            "in the data column",
            id="table-not-in-data-column",
        ),
        pytest.param(
            [step(prompt="Shorten: {{ previous[-1] }}")],
            "prompts.csv, row 2, column 'prompt': the template failed to render: "
            "list object has no element -1; `previous` holds only the answers of "
            "earlier steps of this task",
            id="previous-on-step-1",
        ),
        pytest.param(
            [step(depends_on="7")],
            "prompts.csv, row 2, column 'depends_on': unknown objective '7': "
            "depends_on lists objective ids of this sheet (1)",
            id="depends-on-unknown-id",
        ),
        pytest.param(
            [step(depends_on="1")],
            "prompts.csv, row 2, column 'depends_on': objective 1 depends on itself",
            id="depends-on-itself",
        ),
        pytest.param(
            [
                step(depends_on="3"),
                step(objective_id="2", task_id="2.1", depends_on="1"),
                step(objective_id="3", task_id="3.1", depends_on="2"),
            ],
            "prompts.csv, row 2, column 'depends_on': depends_on forms a cycle: "
            "1 -> 3 -> 2 -> 1; a chapter cannot wait for itself",
            id="depends-on-cycle",
        ),
        pytest.param(
            [step(), step(objective_id="2", step="2")],
            "prompts.csv, row 3, column 'task_id': task 1.1 also appears under "
            "objective 1: a task belongs to one objective",
            id="task-under-two-objectives",
        ),
    ],
)
def test_a_sheet_problem_is_reported_at_its_row_and_column(
    tmp_path: Path, rows: list[dict[str, str]], expected: str
) -> None:
    project = make_project(tmp_path / "project", rows)

    assert problems_of(project) == [expected]


def test_every_problem_of_a_project_is_reported_in_one_pass(tmp_path: Path) -> None:
    settings = SETTINGS + '\n[data.emissions]\npath = "data/emissions.csv"\n'
    rows = [
        step(temperature="hot"),
        step(task_id="1.2", data="grid"),
        step(task_id="1.3", prompt="{{ regio }}"),
        step(task_id="1.4", data="emissions"),
        step(objective_id="2", task_id="2.1", depends_on="3"),
        step(objective_id="3", task_id="3.1", depends_on="2"),
    ]
    project = make_project(tmp_path / "project", rows, settings)

    assert problems_of(project) == [
        f"report.toml: cannot read data file '{project}/data/emissions.csv': the "
        "file does not exist; check path in [data.emissions] of report.toml",
        "prompts.csv, row 2, column 'temperature': 'hot' is not a number "
        "between 0 and 2",
        "prompts.csv, row 6, column 'depends_on': depends_on forms a cycle: "
        "2 -> 3 -> 2; a chapter cannot wait for itself",
        "prompts.csv, row 3, column 'data': unknown data source 'grid': add "
        "[data.grid] to report.toml or use one of: stations, emissions",
        "prompts.csv, row 4, column 'prompt': the template failed to render: "
        "'regio' is undefined; a template sees title, context, objective, task, "
        "step, previous, chapters and data, and [context] keys as context.NAME",
    ]


def test_the_project_error_lists_every_problem_under_a_count(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project", [step(show="maybe", step="0")])

    with pytest.raises(ProjectError) as caught:
        load_plan(project)

    assert str(caught.value) == (
        "The project has 2 problems:\n"
        "  - prompts.csv, row 2, column 'step': '0' is not a whole number of 1 or "
        "more\n"
        "  - prompts.csv, row 2, column 'show': 'maybe' is not true/false "
        "(or yes/no)"
    )


# --- what a valid sheet becomes -------------------------------------------------


def test_only_the_last_step_of_a_task_is_shown_unless_the_sheet_says_so(
    tmp_path: Path,
) -> None:
    rows = [
        step(step="1"),
        step(step="2"),
        step(step="3"),
        step(task_id="1.2", step="1", show="yes"),
        step(task_id="1.2", step="2", show="nee"),
    ]
    plan = load_plan(make_project(tmp_path / "project", rows))

    assert [(s.key, s.show) for s in plan.steps()] == [
        ("1.1#1", False),
        ("1.1#2", False),
        ("1.1#3", True),
        ("1.2#1", True),
        ("1.2#2", False),
    ]


def test_steps_run_in_step_order_whatever_the_order_of_the_rows(
    tmp_path: Path,
) -> None:
    rows = [
        step(step="3", prompt="Shorten: {{ previous[1] }}"),
        step(step="1"),
        step(step="2", prompt="Check: {{ previous[0] }}"),
    ]
    plan = load_plan(make_project(tmp_path / "project", rows))

    assert [(s.step, s.row) for s in plan.steps()] == [(1, 3), (2, 4), (3, 2)]


def test_objectives_and_tasks_keep_the_order_of_the_sheet(tmp_path: Path) -> None:
    rows = [
        step(objective_id="10", task_id="10.2"),
        step(objective_id="10", task_id="10.10"),
        step(objective_id="2", task_id="2.1", step="2"),
        step(objective_id="10", task_id="10.1"),
        step(objective_id="2", task_id="2.1", step="1"),
    ]
    plan = load_plan(make_project(tmp_path / "project", rows))

    assert outline(plan) == [
        ("10", [("10.2", [1]), ("10.10", [1]), ("10.1", [1])]),
        ("2", [("2.1", [1, 2])]),
    ]


def test_chapters_wait_in_waves_for_the_chapters_they_depend_on(
    tmp_path: Path,
) -> None:
    rows = [
        step(objective_id="1", task_id="1.1", depends_on="2; 3"),
        step(objective_id="2", task_id="2.1", depends_on="4"),
        step(objective_id="3", task_id="3.1"),
        step(objective_id="4", task_id="4.1"),
        step(objective_id="5", task_id="5.1", prompt="Sum up {{ chapters['1'] }}"),
        step(objective_id="5", task_id="5.1", step="2", depends_on="1"),
    ]
    plan = load_plan(make_project(tmp_path / "project", rows))

    assert [o.depends_on for o in plan.objectives] == [
        ("2", "3"),
        ("4",),
        (),
        (),
        ("1",),
    ]
    assert plan.chapter_order() == [["3", "4"], ["2"], ["1"], ["5"]]


@pytest.mark.parametrize(
    ("only", "expected"),
    [
        pytest.param(
            ["6"],
            [
                ("1", ["1.1", "1.2", "1.3"]),
                ("2", ["2.1", "2.2", "2.3"]),
                ("3", ["3.1", "3.2", "3.3", "3.4"]),
                ("4", ["4.1", "4.2", "4.3"]),
                ("5", ["5.1", "5.2", "5.3"]),
                ("6", ["6.1", "6.2", "6.3"]),
            ],
            id="chapter-with-its-dependencies",
        ),
        pytest.param(["2.1"], [("2", ["2.1"])], id="one-task"),
    ],
)
def test_only_keeps_the_chapters_and_tasks_named_and_what_they_need(
    example_project: Path, only: list[str], expected: list[tuple[str, list[str]]]
) -> None:
    plan = load_plan(example_project, only=only)

    assert [
        (o.objective_id, [t.task_id for t in o.tasks]) for o in plan.objectives
    ] == expected


def test_only_runs_a_needed_chapter_whole_even_if_one_of_its_tasks_is_named(
    tmp_path: Path,
) -> None:
    rows = [
        step(task_id="1.1"),
        step(task_id="1.2"),
        step(objective_id="2", task_id="2.1"),
        step(objective_id="3", task_id="3.1", depends_on="1"),
    ]
    project = make_project(tmp_path / "project", rows)

    assert outline(load_plan(project, only=["1.2"])) == [("1", [("1.2", [1])])]
    assert outline(load_plan(project, only=["1.2", "3"])) == [
        ("1", [("1.1", [1]), ("1.2", [1])]),
        ("3", [("3.1", [1])]),
    ]


def test_only_with_an_unknown_id_names_it(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project", [step()])

    with pytest.raises(ProjectError) as caught:
        load_plan(project, only=["1.1", "7"])

    assert [str(p) for p in caught.value.problems] == [
        "prompts.csv: --only 7: no such objective or task id"
    ]


def test_one_chapter_or_section_typed_with_two_titles_is_reported(tmp_path):
    project = make_project(
        tmp_path,
        [
            step(),
            step(step="2", objective="The grid"),
            step(task_id="1.2", task="Cables"),
            step(task_id="1.2", step="2", task="Cable"),
        ],
    )

    assert problems_of(project) == [
        "prompts.csv, row 3, column 'objective': objective 1 is titled 'Grid' on "
        "an earlier row: give every row of a chapter the same title",
        "prompts.csv, row 5, column 'task': task 1.2 is titled 'Cables' on an "
        "earlier row: give every row of a section the same title",
    ]
