"""Tests for prompt templates: placing data tables, the sandbox, undefined names."""

from __future__ import annotations

import pytest

from joule.prompts import PromptError, compile_template, render_prompt

TABLES = {"stations": "| station |\n| --- |\n| Aarle |", "targets": "| doel |"}
VARIABLES = {"title": "Grid report", "context": {"region": "Zuid"}, "previous": []}


def render(template: str, tables: dict[str, str] = TABLES) -> str:
    return render_prompt(compile_template(template), tables=tables, variables=VARIABLES)


def render_error(template: str) -> str:
    with pytest.raises(PromptError) as caught:
        render(template)
    return str(caught.value)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        pytest.param(
            "Describe {{ context.region }}.",
            "Describe Zuid.\n\n"
            "Data: stations\n\n| station |\n| --- |\n| Aarle |\n\n"
            "Data: targets\n\n| doel |",
            id="none-placed",
        ),
        pytest.param(
            "Stations:\n{{ data.stations }}\n",
            "Stations:\n| station |\n| --- |\n| Aarle |\n\nData: targets\n\n| doel |",
            id="one-placed-by-attribute",
        ),
        pytest.param(
            "Targets: {{ data['targets'] }}",
            "Targets: | doel |\n\nData: stations\n\n| station |\n| --- |\n| Aarle |",
            id="one-placed-by-key",
        ),
        pytest.param(
            "{% for name, table in data.items() %}[{{ name }}]{% endfor %}",
            "[stations][targets]",
            id="loop-over-items-places-all",
        ),
        pytest.param(
            "{{ data.values() | list | length }} tables",
            "2 tables",
            id="loop-over-values-places-all",
        ),
    ],
)
def test_tables_the_template_does_not_place_are_appended_below_it(
    template: str, expected: str
) -> None:
    assert render(template) == expected


def test_a_prompt_without_tables_is_left_as_rendered() -> None:
    assert render("Write about {{ title }}.\n\n", tables={}) == (
        "Write about Grid report."
    )


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        pytest.param(
            "{{ ''.__class__ }}",
            "access to attribute '__class__' of 'str' object is unsafe.",
            id="class-of-string",
        ),
        pytest.param(
            "{{ context.__class__.__mro__ }}",
            "access to attribute '__class__' of 'dict' object is unsafe.",
            id="class-of-dict",
        ),
        pytest.param(
            "{{ data.__init__.__globals__ }}",
            "access to attribute '__init__' of '_TableShelf' object is unsafe.",
            id="globals-through-data",
        ),
        pytest.param(
            "{{ context.update({'region': 'Noord'}) }}",
            "access to attribute 'update' of 'dict' object is unsafe.",
            id="changing-the-shared-context",
        ),
        pytest.param(
            "{{ data.clear() }}",
            "access to attribute 'clear' of '_TableShelf' object is unsafe.",
            id="changing-the-tables",
        ),
    ],
)
def test_the_sandbox_refuses_to_reach_python_objects(
    template: str, expected: str
) -> None:
    assert render_error(template) == (
        f"the template tried something the sandbox forbids: {expected}"
    )
    assert VARIABLES["context"] == {"region": "Zuid"}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        pytest.param(
            "{{ regio }}",
            "'regio' is undefined; a template sees title, context, objective, "
            "task, step, previous, chapters and data, and [context] keys as "
            "context.NAME",
            id="variable",
        ),
        pytest.param(
            "{{ context.regio }}",
            "'dict object' has no attribute 'regio'; `context` holds the keys of "
            "[context] in report.toml, `chapters` only the objectives named in "
            "depends_on",
            id="context-key",
        ),
        pytest.param(
            "{{ data.grid }}",
            "'data' has no attribute 'grid'; `data` holds only the tables named in "
            "the data column",
            id="table",
        ),
        pytest.param(
            "{{ previous[0] }}",
            "list object has no element 0; `previous` holds only the answers of "
            "earlier steps of this task",
            id="previous-answer",
        ),
        pytest.param(
            "{{ title + 1 }}",
            'can only concatenate str (not "int") to str',
            id="type-error",
        ),
    ],
)
def test_an_undefined_name_fails_the_render_and_says_what_exists(
    template: str, expected: str
) -> None:
    assert render_error(template) == f"the template failed to render: {expected}"


def test_a_syntax_error_names_the_line_of_the_prompt() -> None:
    with pytest.raises(PromptError) as caught:
        compile_template("Intro\n\n{% for row in data %}{{ row }}")

    assert str(caught.value) == (
        "template syntax error (line 3 of the prompt): Unexpected end of template. "
        "Jinja was looking for the following tags: 'endfor' or 'else'. The "
        "innermost block that needs to be closed is 'for'."
    )
