"""Row filters for data references: a small expression language that runs no code."""

from __future__ import annotations

import difflib
import operator
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import pandas as pd
from pandas.api import types

from joule.errors import JouleError

GRAMMAR = (
    "filters compare columns with values (==, !=, <, <=, >, >=, in [...], "
    "not in [...]) joined by and, or, not"
)
VALUE_KINDS = "a number, quoted text, true, false or null"
COMPARISONS = "==, !=, <, <=, >, >="
EXAMPLE = 'netbeheerder == "Enexis"'

# Each '(' and 'not' recurses once; a cap turns a pathological cell into a clear
# message instead of a RecursionError.
MAX_DEPTH = 50

Value = str | int | float | bool | None


class FilterError(JouleError, ValueError):
    """A filter that cannot be parsed or applied; the message says where and why."""

    def __init__(self, message: str, position: int | None = None):
        super().__init__(message)
        self.position = position


# --- tokens -----------------------------------------------------------------

# Token kinds; a punctuation token's kind is the character itself.
_END = "end"
_COLUMN = "column"
_LITERAL = "literal"
_KEYWORD = "keyword"
_OP = "op"
_UNKNOWN = "unknown"

_PUNCTUATION = "()[],"
_KEYWORDS = {"and", "or", "not", "in"}
_CONSTANTS: dict[str, Value] = {"true": True, "false": False, "null": None}

_SPACE = re.compile(r"\s+")
_NUMBER = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER = re.compile(r"-?\d+")
_WORD = re.compile(r"[^\W\d]\w*")
_OPERATOR = re.compile(r"==|!=|<=|>=|<|>|=")


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    value: Value
    position: int

    def describe(self) -> str:
        """How an error message names this token."""
        if self.kind == _END:
            return "end of filter"
        if self.kind == _LITERAL and self.text[0] in "'\"":
            return self.text
        return f"'{self.text}'"


def _tokenize(text: str) -> Iterator[_Token]:
    """Yield the tokens of `text` lazily, so errors surface in reading order."""
    index = 0
    while index < len(text):
        if space := _SPACE.match(text, index):
            index = space.end()
            continue
        position = index + 1
        char = text[index]

        if char in "'\"":
            value, index = _read_string(text, index)
            yield _Token(_LITERAL, text[position - 1 : index], value, position)
        elif char == "`":
            name, index = _read_backquoted(text, index)
            yield _Token(_COLUMN, text[position - 1 : index], name, position)
        elif number := _NUMBER.match(text, index):
            index = number.end()
            yield _Token(_LITERAL, number.group(), _to_number(number.group()), position)
        elif word := _WORD.match(text, index):
            index = word.end()
            yield _word_token(word.group(), position)
        elif op := _OPERATOR.match(text, index):
            index = op.end()
            normalised = "==" if op.group() == "=" else op.group()
            yield _Token(_OP, op.group(), normalised, position)
        elif char in _PUNCTUATION:
            index += 1
            yield _Token(char, char, char, position)
        else:
            index += 1
            yield _Token(_UNKNOWN, char, char, position)
    yield _Token(_END, "", None, len(text) + 1)


def _read_string(text: str, start: int) -> tuple[str, int]:
    """Read a quoted text from `start`; a backslash escapes the next character."""
    quote = text[start]
    chars = []
    index = start + 1
    while index < len(text):
        char = text[index]
        if char == quote:
            return "".join(chars), index + 1
        if char == "\\" and index + 1 < len(text):
            index += 1
            char = text[index]
        chars.append(char)
        index += 1
    raise FilterError(
        f"unterminated text starting at position {start + 1}: close it with {quote}",
        start + 1,
    )


def _read_backquoted(text: str, start: int) -> tuple[str, int]:
    """Read a `column name` that may hold spaces or punctuation."""
    end = text.find("`", start + 1)
    if end == -1:
        raise FilterError(
            f"unterminated column name starting at position {start + 1}: "
            "close it with `",
            start + 1,
        )
    name = text[start + 1 : end]
    if not name.strip():
        raise FilterError(f"empty column name `` at position {start + 1}", start + 1)
    return name, end + 1


def _to_number(text: str) -> int | float:
    """The int or float a numeric literal stands for."""
    return int(text) if _INTEGER.fullmatch(text) else float(text)


def _word_token(word: str, position: int) -> _Token:
    """A keyword, a constant or a bare column name."""
    lowered = word.lower()
    if lowered in _KEYWORDS:
        return _Token(_KEYWORD, word, lowered, position)
    if lowered in _CONSTANTS:
        return _Token(_LITERAL, word, _CONSTANTS[lowered], position)
    return _Token(_COLUMN, word, word, position)


# --- the tree a filter parses into ------------------------------------------


class _Node(Protocol):
    def mask(self, df: pd.DataFrame) -> pd.Series: ...


_ORDERINGS: dict[str, Callable[[object, object], object]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_MIRRORED = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


@dataclass(frozen=True)
class _Comparison:
    column: str
    op: str
    value: Value

    def mask(self, df: pd.DataFrame) -> pd.Series:
        return _compare(df[self.column], self.column, self.op, self.value)


@dataclass(frozen=True)
class _Membership:
    column: str
    values: tuple[Value, ...]
    negated: bool

    def mask(self, df: pd.DataFrame) -> pd.Series:
        result = pd.Series(False, index=df.index)
        for value in self.values:
            result |= _compare(df[self.column], self.column, "==", value)
        return ~result if self.negated else result


@dataclass(frozen=True)
class _Not:
    operand: _Node

    def mask(self, df: pd.DataFrame) -> pd.Series:
        return ~self.operand.mask(df)


@dataclass(frozen=True)
class _AllOf:
    parts: tuple[_Node, ...]

    def mask(self, df: pd.DataFrame) -> pd.Series:
        result = self.parts[0].mask(df)
        for part in self.parts[1:]:
            result &= part.mask(df)
        return result


@dataclass(frozen=True)
class _AnyOf:
    parts: tuple[_Node, ...]

    def mask(self, df: pd.DataFrame) -> pd.Series:
        result = self.parts[0].mask(df)
        for part in self.parts[1:]:
            result |= part.mask(df)
        return result


# --- comparing a column with a value ----------------------------------------


def _compare(column: pd.Series, name: str, op: str, value: Value) -> pd.Series:
    """Rows where `column op value` holds; a missing cell only matches null.

    `!=` is exactly `not ==`, so `x != 5` keeps rows where x is missing, the same
    rows that `not x == 5` keeps.
    """
    if value is None:
        return column.isna() if op == "==" else column.notna()
    if op == "!=":
        return ~_compare(column, name, "==", value)
    if isinstance(value, bool):
        return _definite(column == value)
    if isinstance(value, int | float):
        return _definite(_apply_op(_as_numbers(column, name), op, value))
    if types.is_datetime64_any_dtype(column):
        return _definite(_apply_op(column, op, _as_date(value, name)))
    return _definite(_apply_op(_as_text(column, name, value), op, value))


def _apply_op(column: pd.Series, op: str, value: Value) -> pd.Series:
    """`column op value` for one of the six comparison operators."""
    if op == "==":
        return column == value
    return _ORDERINGS[op](column, value)


def _as_numbers(column: pd.Series, name: str) -> pd.Series:
    """The column as numbers; text that is not a number (">2035") counts as missing."""
    if types.is_datetime64_any_dtype(column):
        raise FilterError(
            f"column '{name}' holds dates; compare it with a quoted date, "
            f'e.g. {name} >= "2023-01-01"'
        )
    if types.is_numeric_dtype(column) and not types.is_bool_dtype(column):
        return column
    return pd.to_numeric(column, errors="coerce")


def _as_date(value: str, name: str) -> pd.Timestamp:
    """The quoted text `value` read as a date, for a column that holds dates."""
    try:
        return pd.Timestamp(value)
    except ValueError:
        raise FilterError(
            f"column '{name}' holds dates but {value!r} is not a date; "
            'write it like "2023-02-01"'
        ) from None


def _as_text(column: pd.Series, name: str, value: str) -> pd.Series:
    """The column in a form that compares with the quoted text `value`."""
    if column.isna().all():
        return column.astype("string")
    if types.is_bool_dtype(column):
        raise FilterError(
            f"column '{name}' holds true/false values but is compared with the "
            f"text {value!r}; write true or false without quotes"
        )
    if types.is_numeric_dtype(column):
        raise FilterError(
            f"column '{name}' holds numbers but is compared with the text "
            f"{value!r}; compare it with a number, written without quotes"
        )
    return column.astype("string")


def _definite(mask: pd.Series) -> pd.Series:
    """A plain boolean mask in which an undecidable comparison counts as False."""
    return mask.astype("boolean").fillna(False).astype(bool)


# --- parsing ------------------------------------------------------------------


class _Parser:
    """Recursive descent over the tokens; precedence: not, then and, then or."""

    def __init__(self, text: str):
        self._tokens = _tokenize(text)
        self._token = next(self._tokens)
        self._depth = 0
        self.columns: list[str] = []

    def parse(self) -> _Node:
        """The whole filter, which must end after one expression."""
        node = self._any_of()
        if self._token.kind != _END:
            raise self._unexpected("'and', 'or' or the end of the filter")
        return node

    def _any_of(self) -> _Node:
        parts = [self._all_of()]
        while self._at_keyword("or"):
            self._advance()
            parts.append(self._all_of())
        return parts[0] if len(parts) == 1 else _AnyOf(tuple(parts))

    def _all_of(self) -> _Node:
        parts = [self._negation()]
        while self._at_keyword("and"):
            self._advance()
            parts.append(self._negation())
        return parts[0] if len(parts) == 1 else _AllOf(tuple(parts))

    def _negation(self) -> _Node:
        if not self._at_keyword("not"):
            return self._primary()
        self._descend(self._advance())
        node = _Not(self._negation())
        self._depth -= 1
        return node

    def _primary(self) -> _Node:
        if self._token.kind != "(":
            return self._comparison()
        opening = self._advance()
        self._descend(opening)
        node = self._any_of()
        if self._token.kind != ")":
            raise self._unexpected(
                f"')' to close the '(' at position {opening.position}"
            )
        self._advance()
        self._depth -= 1
        return node

    def _comparison(self) -> _Node:
        first = self._token
        if first.kind == _COLUMN:
            self._advance()
            return self._column_test(first)
        if first.kind == _LITERAL:
            self._advance()
            return self._value_test(first)
        raise self._unexpected("a column name, a value or '('")

    def _column_test(self, column: _Token) -> _Node:
        """What follows a column: an operator and a value, or an in-list."""
        name = str(column.value)
        if self._at_keyword("in"):
            self._advance()
            return self._membership(name, negated=False)
        if self._at_keyword("not"):
            self._advance()
            if not self._at_keyword("in"):
                raise self._unexpected(f"'in' after '{name} not'")
            self._advance()
            return self._membership(name, negated=True)
        if self._token.kind != _OP:
            raise self._unexpected(
                f"a comparison ({COMPARISONS}, in, not in) after column '{name}'"
            )
        op = self._advance()
        if self._token.kind != _LITERAL:
            raise self._unexpected(
                f"a value ({VALUE_KINDS}) after '{op.text}'",
                hint=self._unquoted_text_hint(),
            )
        return self._make_comparison(name, op, self._advance())

    def _value_test(self, value: _Token) -> _Node:
        """A comparison written value-first, as in `5 < x`, turned around."""
        if self._token.kind != _OP:
            raise self._unexpected(f"a comparison ({COMPARISONS}) after {value.text}")
        op = self._advance()
        if self._token.kind != _COLUMN:
            raise self._unexpected(f"a column name after '{op.text}'")
        column = self._advance()
        mirrored = _Token(_OP, op.text, _MIRRORED[str(op.value)], op.position)
        return self._make_comparison(str(column.value), mirrored, value)

    def _make_comparison(self, name: str, op: _Token, value: _Token) -> _Node:
        if str(op.value) in _ORDERINGS and not _is_orderable(value.value):
            raise FilterError(
                f"'{op.text}' at position {op.position} cannot compare with "
                f"{value.text}: true, false and null only work with ==, != and in",
                op.position,
            )
        self._note_column(name)
        return _Comparison(name, str(op.value), value.value)

    def _membership(self, name: str, *, negated: bool) -> _Node:
        """The `[value, ...]` list after `in`; a trailing comma is fine."""
        if self._token.kind != "[":
            raise self._unexpected("'[' after 'in'")
        opening = self._advance()
        values: list[Value] = []
        while self._token.kind != "]":
            if self._token.kind != _LITERAL:
                raise self._unexpected(
                    f"a value ({VALUE_KINDS}) in the list",
                    hint=self._unquoted_text_hint(),
                )
            values.append(self._advance().value)
            if self._token.kind == ",":
                self._advance()
            elif self._token.kind != "]":
                raise self._unexpected(
                    f"',' or ']' in the list opened at position {opening.position}"
                )
        self._advance()
        self._note_column(name)
        return _Membership(name, tuple(values), negated)

    def _advance(self) -> _Token:
        """Consume the current token and return it."""
        token = self._token
        if token.kind != _END:
            self._token = next(self._tokens)
        return token

    def _at_keyword(self, word: str) -> bool:
        return self._token.kind == _KEYWORD and self._token.value == word

    def _descend(self, token: _Token) -> None:
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise FilterError(
                f"the filter nests more than {MAX_DEPTH} levels deep at position "
                f"{token.position}; simplify it",
                token.position,
            )

    def _note_column(self, name: str) -> None:
        if name not in self.columns:
            self.columns.append(name)

    def _unquoted_text_hint(self) -> str:
        """Advice for the common slip of leaving text unquoted, as in `x == Enexis`."""
        token = self._token
        if token.kind != _COLUMN:
            return GRAMMAR
        if token.text.startswith("`"):
            return "a column can only be compared with a value, not another column"
        return f'to match the text {token.text}, quote it: "{token.text}"'

    def _unexpected(self, expected: str, hint: str = GRAMMAR) -> FilterError:
        token = self._token
        return FilterError(
            f"unexpected {token.describe()} at position {token.position}: "
            f"expected {expected}; {hint}",
            token.position,
        )


def _is_orderable(value: Value) -> bool:
    """Whether <, <=, > and >= make sense for a literal (numbers and text)."""
    return value is not None and not isinstance(value, bool)


# --- the public face --------------------------------------------------------


@dataclass(frozen=True)
class Filter:
    """A parsed row filter: its text, the columns it reads, and how to apply it."""

    text: str
    columns: frozenset[str]
    _root: _Node = field(repr=False)
    _column_order: tuple[str, ...] = field(repr=False, compare=False)

    def apply(self, df: pd.DataFrame) -> pd.DataFrame:
        """The rows of `df` the filter keeps, in their original order."""
        missing = unknown_columns(self, df.columns)
        if missing:
            raise FilterError(describe_unknown_columns(missing, df.columns))
        return df.loc[self._root.mask(df)]


def parse_filter(text: str) -> Filter:
    """Parse a filter such as `netbeheerder == "Enexis" and capaciteit < 5`.

    Positions in error messages count characters of `text` from 1.
    """
    if not text.strip():
        raise FilterError(f"the filter is empty; write a condition, e.g. {EXAMPLE}")
    parser = _Parser(text)
    root = parser.parse()
    order = tuple(parser.columns)
    return Filter(text.strip(), frozenset(order), root, order)


def unknown_columns(filter: Filter, columns: Iterable[str]) -> list[str]:
    """The columns `filter` reads that are not among `columns`, in filter order."""
    available = set(columns)
    return [name for name in filter._column_order if name not in available]


def describe_unknown_columns(missing: list[str], columns: Iterable[str]) -> str:
    """A message naming unknown columns and the nearest real ones."""
    available = [str(column) for column in columns]
    parts = []
    for name in missing:
        close = difflib.get_close_matches(name, available, n=1)
        suggestion = f" (did you mean '{close[0]}'?)" if close else ""
        parts.append(f"'{name}'{suggestion}")
    noun = "column" if len(missing) == 1 else "columns"
    return f"unknown {noun} {', '.join(parts)}; the table has: {', '.join(available)}"
