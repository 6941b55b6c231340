"""Tests for the report writers: Markdown, Word, CSV, manifest and atomic files."""

from __future__ import annotations

import csv
import json
import os
import stat
from datetime import UTC, datetime

import docx
import pytest
from docx.enum.text import WD_ALIGN_PARAGRAPH

from joule.files import atomic_open, atomic_write_bytes, atomic_write_text
from joule.results import Report, StepResult, StepStatus
from joule.writers import (
    STEP_COLUMNS,
    build_manifest,
    chapter_file_name,
    redact_url,
    render_markdown,
    slugify,
    write_chapter_csvs,
    write_docx,
    write_manifest,
    write_outputs,
    write_steps_csv,
)

CAPACITY_ANSWER = """\
## Capacity by region

Installed capacity grew **fast** in *most* regions.

| Region | Capacity (MW) |
|:--|--:|
| North | 1,200 |
| South | 850 |

- Solar leads
- Wind follows
"""


def make_step(objective_id: str, task_id: str, step: int, **fields) -> StepResult:
    """A step with sensible defaults; chapter and section titles follow the ids."""
    titles = {"10": "Grid capacity", "1": "Introduction"}
    tasks = {
        "10.1": "Capacity",
        "10.10": "Outlook",
        "1.1": "Purpose",
        "1.2": "Method",
    }
    values = {
        "objective_id": objective_id,
        "objective": titles[objective_id],
        "task_id": task_id,
        "task": tasks[task_id],
        "step": step,
        "show": True,
        "row": 2,
        "prompt": f"Prompt of {task_id} step {step}",
        "status": StepStatus.OK,
        "model": "gpt-4o-mini",
    }
    return StepResult(**(values | fields))


def make_report(**fields) -> Report:
    """Two chapters, '10' listed before '1', with every kind of step outcome."""
    steps = [
        make_step(
            "10",
            "10.1",
            1,
            show=False,
            answer="Draft notes nobody should see.",
            prompt_tokens=100,
            completion_tokens=20,
            cost_usd=0.0001,
            latency_s=1.25,
            attempts=1,
        ),
        make_step(
            "10",
            "10.1",
            2,
            row=3,
            system="You are an energy analyst.",
            answer=CAPACITY_ANSWER,
            prompt_tokens=300,
            completion_tokens=80,
            cost_usd=0.0003,
            latency_s=2.5,
            attempts=2,
        ),
        make_step(
            "10",
            "10.10",
            1,
            row=4,
            status=StepStatus.FAILED,
            error="HTTP 400: the prompt is\ntoo long for the model",
            attempts=1,
        ),
        make_step(
            "1",
            "1.1",
            1,
            row=5,
            answer="Joule drafts this report.",
            prompt_tokens=50,
            completion_tokens=10,
            cached=True,
        ),
        make_step("1", "1.1", 2, row=6, answer="It covers two regions.\n\n"),
        make_step(
            "1",
            "1.2",
            1,
            row=7,
            show=False,
            status=StepStatus.FAILED,
            error="timed out after 3 attempts",
            attempts=3,
        ),
        make_step(
            "1",
            "1.2",
            2,
            row=8,
            status=StepStatus.SKIPPED,
            error="an earlier step of this task failed",
        ),
    ]
    values = {
        "title": "Energy outlook",
        "run_id": "run-42",
        "started_at": datetime(2025, 3, 1, 9, 30, tzinfo=UTC),
        "finished_at": datetime(2025, 3, 1, 9, 32, 5, 500000, tzinfo=UTC),
        "settings_digest": "abc123",
        "model": "gpt-4o-mini",
        "steps": steps,
    }
    return Report(**(values | fields))


EXPECTED_MARKDOWN = """\
# Energy outlook

Model: gpt-4o-mini

## 10 Grid capacity

### 10.1 Capacity

## Capacity by region

Installed capacity grew **fast** in *most* regions.

| Region | Capacity (MW) |
|:--|--:|
| North | 1,200 |
| South | 850 |

- Solar leads
- Wind follows

### 10.10 Outlook

> **[Step 1 failed: HTTP 400: the prompt is too long for the model]** \
This part of the report is missing; run again once the cause is fixed.

## 1 Introduction

### 1.1 Purpose

Joule drafts this report.

It covers two regions.

### 1.2 Method

> **[Step 2 not run: an earlier step of this task failed]** \
This part of the report is missing; run again once the cause is fixed.
"""


# --- Markdown ------------------------------------------------------------------


def test_markdown_keeps_sheet_order_shows_answers_and_marks_missing_steps():
    assert render_markdown(make_report()) == EXPECTED_MARKDOWN


def test_markdown_says_when_answers_came_from_the_simulator():
    lines = render_markdown(make_report(simulated=True)).splitlines()

    assert lines[:5] == [
        "# Energy outlook",
        "",
        "Model: gpt-4o-mini",
        "",
        "> **Note:** Answers were produced by Joule's built-in simulator, "
        "not a real model.",
    ]


def test_markdown_leaves_out_sections_and_chapters_whose_steps_are_all_hidden():
    report = make_report()
    for step in report.steps:
        if step.objective_id == "1" or step.task_id == "10.10":
            step.show = False

    markdown = render_markdown(report)

    assert "10.10 Outlook" not in markdown
    assert "Introduction" not in markdown
    assert markdown.endswith("- Solar leads\n- Wind follows\n")


# --- Word ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def document(tmp_path_factory):
    """The sample report written to .docx and opened again with python-docx."""
    path = tmp_path_factory.mktemp("docx") / "report.docx"
    write_docx(make_report(simulated=True), path)
    return docx.Document(str(path))


def styled(document, prefix: str) -> list[tuple[str, str]]:
    """(style, text) of the paragraphs whose style name starts with `prefix`."""
    return [
        (p.style.name, p.text)
        for p in document.paragraphs
        if p.style.name.startswith(prefix)
    ]


def test_word_document_has_title_chapter_section_and_answer_headings(document):
    assert styled(document, "Title") == [("Title", "Energy outlook")]
    assert styled(document, "Heading") == [
        ("Heading 1", "10 Grid capacity"),
        ("Heading 2", "10.1 Capacity"),
        ("Heading 3", "Capacity by region"),
        ("Heading 2", "10.10 Outlook"),
        ("Heading 1", "1 Introduction"),
        ("Heading 2", "1.1 Purpose"),
        ("Heading 2", "1.2 Method"),
    ]


def test_word_document_turns_a_markdown_table_into_a_real_table(document):
    [table] = document.tables
    cells = [[cell.text for cell in row.cells] for row in table.rows]

    assert table.style.name == "Table Grid"
    assert cells == [
        ["Region", "Capacity (MW)"],
        ["North", "1,200"],
        ["South", "850"],
    ]
    header_runs = [
        run for cell in table.rows[0].cells for run in cell.paragraphs[0].runs
    ]
    assert [(run.text, run.bold) for run in header_runs] == [
        ("Region", True),
        ("Capacity (MW)", True),
    ]
    assert table.rows[1].cells[1].paragraphs[0].alignment == WD_ALIGN_PARAGRAPH.RIGHT


def test_word_document_turns_dashes_into_bullets_and_stars_into_bold(document):
    [paragraph] = [p for p in document.paragraphs if p.text.startswith("Installed")]
    formatting = [(r.text, r.bold, r.italic) for r in paragraph.runs]

    assert styled(document, "List") == [
        ("List Bullet", "Solar leads"),
        ("List Bullet", "Wind follows"),
    ]
    assert formatting == [
        ("Installed capacity grew ", None, None),
        ("fast", True, None),
        (" in ", None, None),
        ("most", None, True),
        (" regions.", None, None),
    ]


def test_word_document_marks_missing_steps_in_italics_and_notes_the_simulator(
    document,
):
    texts = [p.text for p in document.paragraphs]
    [failed] = [p for p in document.paragraphs if p.text.startswith("[Step 1 failed")]

    assert (
        "Note: Answers were produced by Joule's built-in simulator, not a real model."
        in texts
    )
    assert failed.text == (
        "[Step 1 failed: HTTP 400: the prompt is too long for the model] "
        "This part of the report is missing; run again once the cause is fixed."
    )
    assert all(run.italic for run in failed.runs)
    assert "Draft notes nobody should see." not in texts


def test_word_numbered_lists_each_start_again_at_one(tmp_path):
    answer = "1. First\n2. Second\n\nBetween the lists.\n\n1. Again\n"
    report = make_report(steps=[make_step("1", "1.1", 1, answer=answer)])
    write_docx(report, tmp_path / "report.docx")

    document = docx.Document(str(tmp_path / "report.docx"))
    items = styled(document, "List Number")
    num_ids = [
        p._p.pPr.numPr.numId.val
        for p in document.paragraphs
        if p.style.name == "List Number"
    ]

    assert items == [
        ("List Number", "First"),
        ("List Number", "Second"),
        ("List Number", "Again"),
    ]
    assert num_ids[0] == num_ids[1] != num_ids[2]


# --- CSV -----------------------------------------------------------------------


def read_csv(path) -> list[dict[str, str]]:
    """Rows of a CSV file as text, exactly as written."""
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_steps_csv_has_one_row_per_step_with_ids_kept_as_text(tmp_path):
    path = write_steps_csv(make_report(), tmp_path / "report.csv")
    rows = read_csv(path)

    assert path.read_text(encoding="utf-8").splitlines()[0] == ",".join(STEP_COLUMNS)
    assert [(r["objective_id"], r["task_id"], r["step"]) for r in rows] == [
        ("10", "10.1", "1"),
        ("10", "10.1", "2"),
        ("10", "10.10", "1"),
        ("1", "1.1", "1"),
        ("1", "1.1", "2"),
        ("1", "1.2", "1"),
        ("1", "1.2", "2"),
    ]
    assert rows[1] == {
        "objective_id": "10",
        "objective": "Grid capacity",
        "task_id": "10.1",
        "task": "Capacity",
        "step": "2",
        "show": "true",
        "status": "ok",
        "model": "gpt-4o-mini",
        "prompt_tokens": "300",
        "completion_tokens": "80",
        "total_tokens": "380",
        "cost_usd": "0.0003",
        "latency_s": "2.5",
        "attempts": "2",
        "cached": "false",
        "error": "",
        "system": "You are an energy analyst.",
        "prompt": "Prompt of 10.1 step 2",
        "answer": CAPACITY_ANSWER,
    }
    assert rows[2]["error"] == "HTTP 400: the prompt is\ntoo long for the model"


def test_chapter_csvs_are_named_by_id_and_title_and_hold_their_own_steps(tmp_path):
    paths = write_chapter_csvs(make_report(), tmp_path)

    assert [p.relative_to(tmp_path).as_posix() for p in paths] == [
        "chapters/10-grid-capacity.csv",
        "chapters/1-introduction.csv",
    ]
    assert [r["task_id"] for r in read_csv(paths[1])] == ["1.1", "1.1", "1.2", "1.2"]


@pytest.mark.parametrize(
    ("title", "slug"),
    [
        ("Wärme & Kälte: 2030", "warme-kalte-2030"),
        ("  --Grid--  ", "grid"),
        ("電力", ""),
        (
            "A very long chapter title about the energy transition in the north",
            "a-very-long-chapter-title-about-the-ener",
        ),
        (
            "Supply and demand balance of the region, rest",
            "supply-and-demand-balance-of-the-region",
        ),
    ],
    ids=["accents", "edges", "no-ascii", "long", "cut-at-dash"],
)
def test_slugs_are_short_lowercase_ascii_with_dashes(title, slug):
    assert slugify(title) == slug


def test_chapter_file_names_make_odd_ids_safe_and_skip_an_empty_slug():
    assert chapter_file_name("3/a", "Heat") == "3-a-heat.csv"
    assert chapter_file_name("7", "電力") == "7.csv"


# --- Manifest ------------------------------------------------------------------


def test_manifest_totals_count_every_step_and_sum_its_cost():
    manifest = build_manifest(make_report())

    assert manifest["totals"] == {
        "steps": 7,
        "ok": 4,
        "failed": 2,
        "skipped": 1,
        "prompt_tokens": 450,
        "completion_tokens": 110,
        "total_tokens": 560,
        "cost_usd": 0.0004,
        "attempts": 7,
        "cached": 1,
    }
    assert manifest["duration_s"] == 125.5
    assert manifest["started_at"] == "2025-03-01T09:30:00+00:00"


def test_manifest_lists_failures_and_steps_without_prompts_or_answers():
    manifest = build_manifest(make_report())

    assert manifest["failures"] == [
        {
            "task_id": "10.10",
            "step": 1,
            "status": "failed",
            "error": "HTTP 400: the prompt is\ntoo long for the model",
        },
        {
            "task_id": "1.2",
            "step": 1,
            "status": "failed",
            "error": "timed out after 3 attempts",
        },
        {
            "task_id": "1.2",
            "step": 2,
            "status": "skipped",
            "error": "an earlier step of this task failed",
        },
    ]
    assert manifest["steps"][1] == {
        "objective_id": "10",
        "objective": "Grid capacity",
        "task_id": "10.1",
        "task": "Capacity",
        "step": 2,
        "row": 3,
        "show": True,
        "status": "ok",
        "model": "gpt-4o-mini",
        "prompt_tokens": 300,
        "completion_tokens": 80,
        "total_tokens": 380,
        "cost_usd": 0.0003,
        "latency_s": 2.5,
        "attempts": 2,
        "cached": False,
        "error": None,
    }


def test_manifest_never_records_credentials_in_the_base_url():
    report = make_report(
        base_url="https://user:sk-secret@llm.example:8443/v1?api-key=sk-2&v=3"
    )

    assert build_manifest(report)["base_url"] == (
        "https://llm.example:8443/v1?api-key=REDACTED&v=3"
    )
    assert redact_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"


def test_manifest_extra_adds_keys_but_may_not_overwrite_recorded_ones():
    manifest = build_manifest(make_report(), {"cache": {"saved_usd": 0.5}})

    assert manifest["cache"] == {"saved_usd": 0.5}
    with pytest.raises(ValueError) as raised:
        build_manifest(make_report(), {"totals": {}})
    assert str(raised.value) == (
        "Extra manifest keys ['totals'] would overwrite what Joule records; "
        "give them other names."
    )


# --- Everything at once --------------------------------------------------------


def test_write_outputs_writes_every_format_and_a_manifest_that_lists_them(tmp_path):
    out = tmp_path / "output"
    paths = write_outputs(make_report(), out, manifest_extra={"cache": {"hits": 1}})
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))

    assert [p.relative_to(out).as_posix() for p in paths] == [
        "report.md",
        "report.docx",
        "report.csv",
        "chapters/10-grid-capacity.csv",
        "chapters/1-introduction.csv",
        "manifest.json",
    ]
    assert (out / "report.md").read_text(encoding="utf-8") == EXPECTED_MARKDOWN
    assert manifest["files"] == [p.relative_to(out).as_posix() for p in paths[:-1]]
    assert manifest["cache"] == {"hits": 1}
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["chapters", "manifest.json", "report.csv", "report.docx", "report.md"]
    )


def test_write_outputs_writes_only_the_chosen_formats_and_always_the_manifest(
    tmp_path,
):
    paths = write_outputs(make_report(), tmp_path, formats=["md"])

    assert [p.name for p in paths] == ["report.md", "manifest.json"]


def test_write_outputs_rejects_an_unknown_format_before_writing_anything(tmp_path):
    with pytest.raises(ValueError) as raised:
        write_outputs(make_report(), tmp_path / "out", formats=["md", "pdf"])

    assert str(raised.value) == (
        "Unknown output format(s) ['pdf'] in [output] formats; "
        "choose from ['md', 'docx', 'csv']."
    )
    assert not (tmp_path / "out").exists()


# --- Atomic files --------------------------------------------------------------


def test_atomic_write_replaces_the_file_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "report.md"
    path.write_text("old", encoding="utf-8")

    atomic_write_text(path, "new ✓\n")

    assert path.read_bytes() == "new ✓\n".encode()
    assert os.listdir(tmp_path) == ["report.md"]


def test_a_write_that_fails_midway_leaves_the_existing_file_untouched(tmp_path):
    path = tmp_path / "report.md"
    path.write_text("old", encoding="utf-8")

    with pytest.raises(RuntimeError), atomic_open(path) as handle:
        handle.write(b"half of the new rep")
        raise RuntimeError("crash while writing")

    assert path.read_text(encoding="utf-8") == "old"
    assert os.listdir(tmp_path) == ["report.md"]


def test_a_manifest_that_cannot_be_serialised_leaves_the_old_one_in_place(tmp_path):
    path = write_manifest(make_report(), tmp_path / "manifest.json")
    before = path.read_bytes()

    with pytest.raises(TypeError):
        write_manifest(make_report(), path, extra={"cache": object()})

    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["manifest.json"]


def test_a_failed_rename_removes_the_temporary_file(tmp_path):
    (tmp_path / "report.md").mkdir()

    with pytest.raises(OSError):
        atomic_write_bytes(tmp_path / "report.md", b"new")

    assert os.listdir(tmp_path) == ["report.md"]


def test_atomic_files_get_the_permissions_a_plain_write_would_give(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x", encoding="utf-8")

    atomic_write_text(tmp_path / "atomic.txt", "x")

    assert stat.S_IMODE((tmp_path / "atomic.txt").stat().st_mode) == stat.S_IMODE(
        plain.stat().st_mode
    )
