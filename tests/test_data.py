"""Tests for data references, reading data files, and rendering tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from joule.data import (
    DataLoadError,
    DataRef,
    DataRefError,
    format_value,
    load_table,
    parse_data_refs,
    render_table,
    select,
)

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
CAPACITY_MAP = REAL_DATA / "nbnl_capaciteitskaart_dso_substations_2023.csv"


# --- references ---------------------------------------------------------------


@pytest.mark.parametrize("cell", ["", "   ", ";", None], ids=repr)
def test_an_empty_data_cell_references_nothing(cell: str | None) -> None:
    assert parse_data_refs(cell) == []


def test_references_split_at_semicolons_and_ignore_surrounding_space() -> None:
    refs = parse_data_refs("  grid ;ets;  emissions  ")

    assert refs == [
        DataRef(name="grid", filter=None, text="grid"),
        DataRef(name="ets", filter=None, text="ets"),
        DataRef(name="emissions", filter=None, text="emissions"),
    ]


def test_a_semicolon_inside_quotes_or_brackets_does_not_split() -> None:
    cell = "grid[station == \"a;b\" and `x;y` in [1, 2]]; ets[sector = 'it\\'s;']"

    refs = parse_data_refs(cell)

    assert [ref.name for ref in refs] == ["grid", "ets"]
    assert refs[0].text == 'grid[station == "a;b" and `x;y` in [1, 2]]'
    assert refs[0].filter is not None
    assert refs[0].filter.columns == frozenset({"station", "x;y"})
    assert refs[1].text == "ets[sector = 'it\\'s;']"


def test_a_reference_may_have_space_before_its_filter() -> None:
    (ref,) = parse_data_refs("grid [netbeheerder == 'Enexis']")

    assert ref.name == "grid"
    assert ref.filter is not None
    assert ref.filter.text == "netbeheerder == 'Enexis'"


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        pytest.param(
            "grid[netbeheerder == 'Enexis'",
            "data reference 'grid[netbeheerder == 'Enexis'' has no closing ']'; "
            "write grid[filter]",
            id="missing-bracket",
        ),
        pytest.param(
            "grid[ ]",
            "data reference 'grid[ ]' has an empty filter; write grid for the whole "
            "table or put a condition in the brackets, e.g. "
            'grid[netbeheerder == "Enexis"]',
            id="empty-filter",
        ),
        pytest.param(
            "3grid",
            "data reference '3grid' is not NAME or NAME[filter]: NAME must be a "
            "[data.NAME] table of report.toml, made of letters, digits and "
            "underscores, not starting with a digit",
            id="bad-name",
        ),
        pytest.param(
            "grid[a == 1] ets",
            "data reference 'grid[a == 1] ets' has text after its closing ']': "
            "'ets'; separate references with ';'",
            id="missing-semicolon",
        ),
        pytest.param(
            "ets; grid[a.b == 1]",
            "in the filter of data reference 'grid[a.b == 1]': unexpected '.' at "
            "position 2: expected a comparison (==, !=, <, <=, >, >=, in, not in) "
            "after column 'a'; filters compare columns with values (==, !=, <, <=, "
            ">, >=, in [...], not in [...]) joined by and, or, not",
            id="bad-filter",
        ),
    ],
)
def test_a_malformed_reference_is_explained(cell: str, message: str) -> None:
    with pytest.raises(DataRefError) as raised:
        parse_data_refs(cell)

    assert str(raised.value) == message


def test_select_without_a_filter_returns_the_whole_table() -> None:
    df = pd.DataFrame({"a": [1, 2]})

    assert select(df, parse_data_refs("t")[0]) is df


def test_select_applies_the_filter() -> None:
    df = pd.DataFrame({"a": [1, 2, 3]})

    assert select(df, parse_data_refs("t[a >= 2]")[0])["a"].tolist() == [2, 3]


def test_select_names_the_reference_when_a_column_is_missing() -> None:
    df = pd.DataFrame({"jaar": [2023], "sector": ["industrie"]})

    with pytest.raises(DataRefError) as raised:
        select(df, parse_data_refs("ets[jar == 2023]")[0])

    assert str(raised.value) == (
        "data reference 'ets[jar == 2023]': unknown column 'jar' (did you mean "
        "'jaar'?); the table has: jaar, sector"
    )


# --- reading files --------------------------------------------------------------


def test_a_semicolon_cp1252_csv_with_decimal_commas_reads_as_numbers(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gemeenten.csv"
    text = (
        " gemeente ;oppervlakte_km²;co2_kton\n"
        "Eindhoven;88,0;1045\n"
        "'s-Hertogenbosch;110,5;\n"
    )
    path.write_bytes(text.encode("cp1252"))

    df = load_table(path, decimal=",")

    assert df.columns.tolist() == ["gemeente", "oppervlakte_km²", "co2_kton"]
    assert df["gemeente"].tolist() == ["Eindhoven", "'s-Hertogenbosch"]
    assert df["oppervlakte_km²"].tolist() == [88.0, 110.5]
    assert df["co2_kton"].iloc[0] == 1045
    assert pd.isna(df["co2_kton"].iloc[1])


def test_a_utf8_csv_with_a_byte_order_mark_has_a_clean_first_column(
    tmp_path: Path,
) -> None:
    path = tmp_path / "sectors.csv"
    path.write_bytes("sector,aandeel\nGebouwde omgeving,0.25\n".encode("utf-8-sig"))

    df = load_table(path)

    assert df.columns.tolist() == ["sector", "aandeel"]
    assert df["aandeel"].tolist() == [0.25]


def test_a_given_separator_overrides_the_guess(tmp_path: Path) -> None:
    path = tmp_path / "odd.txt"
    path.write_text("a;b|c\n1;2|3\n", encoding="utf-8")

    assert load_table(path, sep="|").columns.tolist() == ["a;b", "c"]


def test_a_given_encoding_that_does_not_fit_says_how_to_fix_it(tmp_path: Path) -> None:
    path = tmp_path / "gemeenten.csv"
    path.write_bytes("naam;km²\nBeek;21\n".encode("cp1252"))

    with pytest.raises(DataLoadError) as raised:
        load_table(path, encoding="utf-8", name="gemeenten")

    assert str(raised.value) == (
        f"cannot read data file '{path}': it does not decode as utf-8 (byte 0xb2 "
        "at offset 7); set encoding in [data.gemeenten] to the file's encoding, "
        'e.g. encoding = "cp1252", or remove it to let Joule guess'
    )


@pytest.fixture
def workbook(tmp_path: Path) -> Path:
    path = tmp_path / "scenario.xlsx"
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        pd.DataFrame({"jaar": [2019, 2023], " twh ": [120.5, 118.0]}).to_excel(
            writer, sheet_name="vraag", index=False
        )
        pd.DataFrame({"bron": ["wind", "zon"]}).to_excel(
            writer, sheet_name="aanbod", index=False
        )
    return path


def test_a_workbook_reads_its_first_sheet_by_default(workbook: Path) -> None:
    df = load_table(workbook)

    assert df.columns.tolist() == ["jaar", "twh"]
    assert df["twh"].tolist() == [120.5, 118.0]


@pytest.mark.parametrize("sheet", ["aanbod", 1])
def test_a_workbook_sheet_is_chosen_by_name_or_number(
    workbook: Path, sheet: str | int
) -> None:
    assert load_table(workbook, sheet=sheet)["bron"].tolist() == ["wind", "zon"]


def test_a_missing_sheet_lists_the_sheets_there_are(workbook: Path) -> None:
    with pytest.raises(DataLoadError) as raised:
        load_table(workbook, sheet="Vraag", name="scenario")

    assert str(raised.value) == (
        f"cannot read data file '{workbook}': sheet 'Vraag' not found; the workbook "
        "has: vraag, aanbod; set sheet in [data.scenario] to one of those names"
    )


def test_a_missing_file_says_which_setting_to_check(tmp_path: Path) -> None:
    path = tmp_path / "data" / "grid.csv"

    with pytest.raises(DataLoadError) as raised:
        load_table(path, name="grid")

    assert str(raised.value) == (
        f"cannot read data file '{path}': the file does not exist; check path in "
        "[data.grid] of report.toml"
    )


def test_an_unsupported_file_type_lists_the_supported_ones(tmp_path: Path) -> None:
    path = tmp_path / "grid.json"
    path.write_text("[]", encoding="utf-8")

    with pytest.raises(DataLoadError) as raised:
        load_table(path)

    assert str(raised.value) == (
        f"cannot read data file '{path}': '.json' is not a supported file type; "
        "save it as one of: .csv, .parquet, .txt, .xls, .xlsm, .xlsx"
    )


def test_a_text_file_posing_as_a_workbook_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "grid.xlsx"
    path.write_text("station,netbeheerder\n", encoding="utf-8")

    with pytest.raises(DataLoadError) as raised:
        load_table(path)

    assert str(raised.value).startswith(
        f"cannot read data file '{path}': it is not a readable Excel workbook ("
    )
    assert str(raised.value).endswith("); open it in Excel and save it again as .xlsx")


def test_columns_that_collide_once_trimmed_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "twice.csv"
    path.write_text("jaar,jaar \n2023,2024\n", encoding="utf-8")

    with pytest.raises(DataLoadError) as raised:
        load_table(path)

    assert str(raised.value) == (
        f"cannot read data file '{path}': column 'jaar' appears twice once spaces "
        "are trimmed; rename one of them in the file"
    )


def test_an_empty_csv_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("\n", encoding="utf-8")

    with pytest.raises(DataLoadError) as raised:
        load_table(path)

    assert str(raised.value) == (
        f"cannot read data file '{path}': the file is empty; export the table again"
    )


@pytest.mark.skipif(not CAPACITY_MAP.exists(), reason="real data not present")
def test_the_real_capacity_map_holds_118_enexis_substations() -> None:
    grid = load_table(CAPACITY_MAP)
    (ref,) = parse_data_refs('grid[netbeheerder == "Enexis"]')

    enexis = select(grid, ref)

    assert len(grid) == 282
    assert len(enexis) == 118
    assert set(enexis["netbeheerder"]) == {"Enexis"}


# --- rendering --------------------------------------------------------------------


def test_a_table_renders_as_compact_markdown() -> None:
    df = pd.DataFrame(
        {
            "station": ["Beek | Zuid", "Delft\nNoord"],
            "mva": [55.0, 1 / 3],
            "jaar": [2023, 2030],
            "opmerking": [None, "uitbreiding"],
        }
    )

    assert render_table(df) == (
        "| station | mva | jaar | opmerking |\n"
        "| --- | --- | --- | --- |\n"
        "| Beek \\| Zuid | 55 | 2023 |  |\n"
        "| Delft<br>Noord | 0.333333 | 2030 | uitbreiding |"
    )


def test_a_long_table_is_cut_with_a_note_saying_how_to_see_more() -> None:
    df = pd.DataFrame({"n": range(282)})

    lines = render_table(df, max_rows=3, name="grid").splitlines()

    assert lines == [
        "| n |",
        "| --- |",
        "| 0 |",
        "| 1 |",
        "| 2 |",
        "",
        "_(showing 3 of 282 rows of grid; raise max_rows in [data] or narrow the "
        "filter)_",
    ]


def test_an_empty_selection_says_so() -> None:
    df = pd.DataFrame({"n": []})

    assert render_table(df, name="grid") == "| n |\n| --- |\n\n_(no rows in grid)_"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (120.0, "120"),
        (0.1 + 0.2, "0.3"),
        (12345.678, "12345.7"),
        (1234567.89, "1234568"),
        (-0.00001234, "-0.00001234"),
        (2 / 3, "0.666667"),
        (1.5e20, "1.5e+20"),
        (float("nan"), ""),
        (None, ""),
        (pd.NA, ""),
        (True, "True"),
        (pd.Timestamp("2023-02-01"), "2023-02-01"),
        (pd.Timestamp("2023-02-01 13:30"), "2023-02-01 13:30:00"),
    ],
    ids=repr,
)
def test_values_are_printed_compactly(value: object, text: str) -> None:
    assert format_value(value) == text


def test_max_rows_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="^max_rows must be at least 1, not 0$"):
        render_table(pd.DataFrame({"n": [1]}), max_rows=0)
