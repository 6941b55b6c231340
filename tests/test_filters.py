"""Tests for the row-filter language: what it accepts, refuses, and keeps."""

from __future__ import annotations

import pandas as pd
import pytest

from joule.filters import FilterError, parse_filter, unknown_columns

# Spelled out rather than imported, so a change of wording fails a test.
GRAMMAR = (
    "filters compare columns with values (==, !=, <, <=, >, >=, in [...], "
    "not in [...]) joined by and, or, not"
)
AFTER_COLUMN = "a comparison (==, !=, <, <=, >, >=, in, not in) after column"
A_VALUE = "a value (a number, quoted text, true, false or null)"


@pytest.fixture
def stations() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "station": ["Aarle", "Almelo", "Beek", "Delft", "Zwolle"],
            "netbeheerder": ["Enexis", "Enexis", "Liander", "Stedin", None],
            "capaciteit": [0.0, 1.5, 12.0, None, 7.0],
            "jaar": ["2026", ">2035", "2028", None, "2024"],
            "piek last": [10, 20, 30, 40, 50],
        }
    )


def kept(text: str, df: pd.DataFrame) -> list[str]:
    return parse_filter(text).apply(df)["station"].tolist()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param('netbeheerder == "Enexis"', ["Aarle", "Almelo"], id="equal"),
        pytest.param("netbeheerder = 'Liander'", ["Beek"], id="single-equals"),
        pytest.param("capaciteit < 5", ["Aarle", "Almelo"], id="less"),
        pytest.param("capaciteit <= 7", ["Aarle", "Almelo", "Zwolle"], id="at-most"),
        pytest.param("capaciteit > 7", ["Beek"], id="greater"),
        pytest.param("capaciteit >= 7", ["Beek", "Zwolle"], id="at-least"),
        pytest.param("capaciteit == 1.5", ["Almelo"], id="float-literal"),
        pytest.param(
            "capaciteit > -1", ["Aarle", "Almelo", "Beek", "Zwolle"], id="neg"
        ),
        pytest.param("5 > capaciteit", ["Aarle", "Almelo"], id="value-first"),
        pytest.param("capaciteit == null", ["Delft"], id="is-null"),
        pytest.param(
            "netbeheerder != NULL", ["Aarle", "Almelo", "Beek", "Delft"], id="not-null"
        ),
        pytest.param(
            'netbeheerder != "Enexis"', ["Beek", "Delft", "Zwolle"], id="not-equal"
        ),
        pytest.param(
            'netbeheerder in ["Liander", "Stedin"]', ["Beek", "Delft"], id="in"
        ),
        pytest.param(
            "netbeheerder not in ['Enexis']", ["Beek", "Delft", "Zwolle"], id="not-in"
        ),
        pytest.param(
            'netbeheerder in ["Stedin", null,]', ["Delft", "Zwolle"], id="in-null"
        ),
        pytest.param("netbeheerder in []", [], id="in-empty-list"),
        pytest.param("`piek last` >= 40", ["Delft", "Zwolle"], id="backquoted"),
        pytest.param("jaar < 2027", ["Aarle", "Zwolle"], id="text-as-numbers"),
        pytest.param('netbeheerder == "enexis"', [], id="text-is-exact"),
        pytest.param('station < "B"', ["Aarle", "Almelo"], id="text-ordering"),
        pytest.param(
            'NOT netbeheerder == "Enexis" AND capaciteit > 5',
            ["Beek", "Zwolle"],
            id="keywords-any-case",
        ),
    ],
)
def test_a_valid_filter_keeps_the_matching_rows_in_order(
    stations: pd.DataFrame, text: str, expected: list[str]
) -> None:
    assert kept(text, stations) == expected


def test_and_binds_tighter_than_or(stations: pd.DataFrame) -> None:
    text = 'netbeheerder == "Enexis" or capaciteit > 5 and station == "Zwolle"'

    assert kept(text, stations) == ["Aarle", "Almelo", "Zwolle"]


def test_parentheses_group_before_and(stations: pd.DataFrame) -> None:
    text = '(netbeheerder == "Enexis" or capaciteit > 5) and station == "Zwolle"'

    assert kept(text, stations) == ["Zwolle"]


def test_not_applies_to_the_next_comparison_only(stations: pd.DataFrame) -> None:
    assert kept('not netbeheerder == "Enexis" and capaciteit > 5', stations) == [
        "Beek",
        "Zwolle",
    ]
    assert kept('not (netbeheerder == "Enexis" and capaciteit > 1)', stations) == [
        "Aarle",
        "Beek",
        "Delft",
        "Zwolle",
    ]


def test_applying_keeps_the_original_index(stations: pd.DataFrame) -> None:
    result = parse_filter("capaciteit >= 7").apply(stations)

    assert result.index.tolist() == [2, 4]
    assert result.columns.tolist() == stations.columns.tolist()


def test_a_date_column_compares_with_a_quoted_date() -> None:
    df = pd.DataFrame({"peildatum": pd.to_datetime(["2023-01-01", "2023-03-01"])})

    assert parse_filter('peildatum >= "2023-02-01"').apply(df).index.tolist() == [1]


def test_a_filter_knows_its_text_and_columns() -> None:
    row_filter = parse_filter('  b == 1 and `a b` in [1, 2] or not b != "x"  ')

    assert row_filter.text == 'b == 1 and `a b` in [1, 2] or not b != "x"'
    assert row_filter.columns == frozenset({"b", "a b"})


def test_unknown_columns_lists_missing_columns_in_filter_order() -> None:
    row_filter = parse_filter("zeta == 1 and alpha == 2 and station == 3")

    assert unknown_columns(row_filter, ["station", "jaar"]) == ["zeta", "alpha"]
    assert unknown_columns(row_filter, ["station", "zeta", "alpha"]) == []


def test_applying_to_a_table_without_the_column_names_it_and_a_near_miss(
    stations: pd.DataFrame,
) -> None:
    with pytest.raises(FilterError) as raised:
        parse_filter('netbeheerdr == "Enexis"').apply(stations)

    assert str(raised.value) == (
        "unknown column 'netbeheerdr' (did you mean 'netbeheerder'?); the table "
        "has: station, netbeheerder, capaciteit, jaar, piek last"
    )


def test_comparing_a_number_column_with_text_says_to_drop_the_quotes(
    stations: pd.DataFrame,
) -> None:
    with pytest.raises(FilterError) as raised:
        parse_filter('capaciteit == "12"').apply(stations)

    assert str(raised.value) == (
        "column 'capaciteit' holds numbers but is compared with the text '12'; "
        "compare it with a number, written without quotes"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "__import__('os').system('x')",
            f"unexpected '(' at position 11: expected {AFTER_COLUMN} '__import__'; "
            + GRAMMAR,
            id="import-call",
        ),
        pytest.param(
            "a.__class__",
            f"unexpected '.' at position 2: expected {AFTER_COLUMN} 'a'; {GRAMMAR}",
            id="attribute",
        ),
        pytest.param(
            "x()",
            f"unexpected '(' at position 2: expected {AFTER_COLUMN} 'x'; {GRAMMAR}",
            id="call",
        ),
        pytest.param(
            "a + 1",
            f"unexpected '+' at position 3: expected {AFTER_COLUMN} 'a'; {GRAMMAR}",
            id="arithmetic",
        ),
        pytest.param(
            "[c for c in x]",
            "unexpected '[' at position 1: expected a column name, a value or '('; "
            + GRAMMAR,
            id="comprehension",
        ),
        pytest.param(
            "lambda: 1",
            f"unexpected ':' at position 7: expected {AFTER_COLUMN} 'lambda'; "
            + GRAMMAR,
            id="lambda",
        ),
        pytest.param(
            "a == b; import os",
            f"unexpected 'b' at position 6: expected {A_VALUE} after '=='; "
            'to match the text b, quote it: "b"',
            id="statement",
        ),
        pytest.param(
            "a == 1; import os",
            "unexpected ';' at position 7: expected 'and', 'or' or the end of the "
            f"filter; {GRAMMAR}",
            id="semicolon",
        ),
        pytest.param(
            "a[0] == 1",
            f"unexpected '[' at position 2: expected {AFTER_COLUMN} 'a'; {GRAMMAR}",
            id="subscript",
        ),
        pytest.param(
            "a == `b`",
            f"unexpected '`b`' at position 6: expected {A_VALUE} after '=='; "
            "a column can only be compared with a value, not another column",
            id="two-columns",
        ),
    ],
)
def test_anything_but_a_comparison_is_refused_with_its_position(
    text: str, message: str
) -> None:
    with pytest.raises(FilterError) as raised:
        parse_filter(text)

    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "",
            'the filter is empty; write a condition, e.g. netbeheerder == "Enexis"',
            id="empty",
        ),
        pytest.param(
            "a == 'Enexis",
            "unterminated text starting at position 6: close it with '",
            id="open-quote",
        ),
        pytest.param(
            "`a b == 1",
            "unterminated column name starting at position 1: close it with `",
            id="open-backquote",
        ),
        pytest.param(
            "a < null",
            "'<' at position 3 cannot compare with null: true, false and null only "
            "work with ==, != and in",
            id="ordering-null",
        ),
        pytest.param(
            "(a == 1 or b == 2",
            "unexpected end of filter at position 18: expected ')' to close the '(' "
            f"at position 1; {GRAMMAR}",
            id="open-parenthesis",
        ),
        pytest.param(
            "a in [1 2]",
            "unexpected '2' at position 9: expected ',' or ']' in the list opened at "
            f"position 6; {GRAMMAR}",
            id="list-without-comma",
        ),
        pytest.param(
            "a in 1",
            f"unexpected '1' at position 6: expected '[' after 'in'; {GRAMMAR}",
            id="in-without-list",
        ),
        pytest.param(
            "a not == 1",
            f"unexpected '==' at position 7: expected 'in' after 'a not'; {GRAMMAR}",
            id="not-without-in",
        ),
        pytest.param(
            "5 < 6",
            "unexpected '6' at position 5: expected a column name after '<'; "
            + GRAMMAR,
            id="two-values",
        ),
        pytest.param(
            "a == 1 or",
            "unexpected end of filter at position 10: expected a column name, a "
            f"value or '('; {GRAMMAR}",
            id="dangling-or",
        ),
        pytest.param(
            "(" * 60 + "a == 1" + ")" * 60,
            "the filter nests more than 50 levels deep at position 51; simplify it",
            id="too-deep",
        ),
    ],
)
def test_a_malformed_filter_is_explained(text: str, message: str) -> None:
    with pytest.raises(FilterError) as raised:
        parse_filter(text)

    assert str(raised.value) == message


def test_filter_error_is_a_value_error_carrying_the_position() -> None:
    with pytest.raises(ValueError) as raised:
        parse_filter("x()")

    assert isinstance(raised.value, FilterError)
    assert raised.value.position == 2


def test_a_filter_written_as_code_runs_nothing(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    with pytest.raises(FilterError):
        parse_filter("__import__('pathlib').Path('ran').touch() == 1")

    assert not (tmp_path / "ran").exists()
