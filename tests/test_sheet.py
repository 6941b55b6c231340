"""Tests for reading the prompt sheet as Excel and its CSV dialects write it."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import openpyxl
import pytest

from joule.sheet import SheetError, SheetRow, read_sheet

HEADER = ["objective_id", "objective", "task_id", "task", "step", "prompt", "data"]
TITLE = "Warmtenet Zuid-Oost é"
ROWS = [
    ["1", TITLE, "1.1", "Capaciteit, nu", "1", 'Quote "the grid";\nthen stop.', "a; b"],
    ["1", TITLE, "1.1", "Capaciteit, nu", "2", "Shorten it.", ""],
]
EXPECTED = [
    SheetRow(row=number, cells=dict(zip(HEADER, cells, strict=True)))
    for number, cells in enumerate(ROWS, start=2)
]


def write_csv(path: Path, encoding: str, separator: str) -> Path:
    """The sheet as Excel saves it: CRLF line ends, quotes where a cell needs them."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=separator, lineterminator="\r\n")
    writer.writerow(HEADER)
    writer.writerows(ROWS)
    path.write_bytes(buffer.getvalue().encode(encoding))
    return path


def write_xlsx(path: Path, tab: str = "prompts") -> Path:
    """The sheet as a workbook, with the ids and step numbers typed as numbers."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = tab
    sheet.append(HEADER)
    for objective_id, objective, task_id, task, step, prompt, data in ROWS:
        typed = [int(objective_id), objective, float(task_id), task, int(step)]
        sheet.append([*typed, prompt, data or None])
    workbook.save(path)
    return path


@pytest.mark.parametrize(
    ("name", "encoding", "separator"),
    [
        pytest.param("prompts.csv", "utf-8-sig", ",", id="csv-utf8-bom-comma"),
        pytest.param("prompts.csv", "utf-8", ",", id="csv-utf8-comma"),
        pytest.param("prompts.csv", "cp1252", ";", id="csv-windows-semicolon"),
        pytest.param("prompts.txt", "utf-16", "\t", id="unicode-text-tabs"),
        pytest.param("prompts.csv", "utf-16", "\t", id="unicode-text-as-csv"),
    ],
)
def test_a_csv_sheet_reads_the_same_whatever_excel_saved_it_as(
    tmp_path: Path, name: str, encoding: str, separator: str
) -> None:
    path = write_csv(tmp_path / name, encoding, separator)

    assert read_sheet(path) == (EXPECTED, HEADER)


def test_a_workbook_reads_numbers_as_the_text_typed(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "prompts.xlsx")

    assert read_sheet(path) == (EXPECTED, HEADER)


def test_a_workbook_tab_is_chosen_by_name(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "prompts.xlsx", tab="Stappen")

    assert read_sheet(path, "Stappen") == (EXPECTED, HEADER)


@pytest.mark.parametrize(
    ("tab", "expected"),
    [
        pytest.param(
            "Stapen",
            "prompts.xlsx: sheet 'Stapen' not found; the workbook has: Stappen; "
            "set prompt_sheet_tab in report.toml to one of those names",
            id="name",
        ),
        pytest.param(
            1,
            "prompts.xlsx: there is no sheet number 1 (counting from 0); the "
            "workbook has: Stappen; set prompt_sheet_tab in report.toml to one of "
            "those names",
            id="number",
        ),
    ],
)
def test_a_wrong_tab_names_the_tabs_of_the_workbook(
    tmp_path: Path, tab: str | int, expected: str
) -> None:
    path = write_xlsx(tmp_path / "prompts.xlsx", tab="Stappen")

    with pytest.raises(SheetError) as caught:
        read_sheet(path, tab)

    assert str(caught.value) == expected


def test_blank_lines_are_skipped_but_keep_the_row_numbers_excel_shows(
    tmp_path: Path,
) -> None:
    path = tmp_path / "prompts.csv"
    path.write_text(
        " Objective_ID ,prompt\n1,First.\n\n,\n2,Second.\n\n", encoding="utf-8"
    )

    rows, header = read_sheet(path)

    assert header == ["objective_id", "prompt"]
    assert rows == [
        SheetRow(row=2, cells={"objective_id": "1", "prompt": "First."}),
        SheetRow(row=5, cells={"objective_id": "2", "prompt": "Second."}),
    ]


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        pytest.param(
            "prompts.ods",
            b"",
            "prompts.ods: unsupported sheet type '.ods'; use .xlsx or .csv",
            id="unsupported-type",
        ),
        pytest.param(
            "prompts.csv",
            b"objective_id,prompt\n1,\x81\x8d\n",
            "prompts.csv: cannot decode the file; save it as CSV UTF-8",
            id="undecodable",
        ),
    ],
)
def test_an_unreadable_sheet_says_what_to_do(
    tmp_path: Path, name: str, content: bytes, expected: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)

    with pytest.raises(SheetError) as caught:
        read_sheet(path)

    assert str(caught.value) == expected
