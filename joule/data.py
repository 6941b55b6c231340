"""Data tables: reading them from files, slicing them by reference, rendering them."""

from __future__ import annotations

import io
import logging
import math
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from joule.errors import JouleError
from joule.filters import Filter, FilterError, parse_filter

logger = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
CSV_SUFFIXES = {".csv", ".txt"}
EXCEL_SUFFIXES = {".xlsx", ".xlsm", ".xls"}
PARQUET_SUFFIXES = {".parquet"}
# Dutch Excel exports are cp1252, which differs from latin-1 on characters like
# the euro sign; latin-1 decodes any byte, so the last guess always succeeds.
GUESSED_ENCODINGS = ("utf-8-sig", "cp1252", "latin-1")
SEPARATORS = (",", ";", "\t", "|")


class DataRefError(JouleError, ValueError):
    """A `data` cell of the prompt sheet that does not parse."""


class DataLoadError(JouleError, ValueError):
    """A data file that cannot be read; the message names the file and a fix."""


# --- references in the sheet's data column ----------------------------------


@dataclass(frozen=True)
class DataRef:
    """One reference in a `data` cell: a table name and an optional row filter."""

    name: str
    filter: Filter | None
    text: str


def parse_data_refs(cell: str | None) -> list[DataRef]:
    """The references in a `data` cell such as `grid[netbeheerder == "Enexis"]; ets`."""
    if cell is None:
        return []
    return [_parse_ref(piece) for piece in _split_refs(cell) if piece]


def _split_refs(cell: str) -> list[str]:
    """Split at `;`, except inside quotes or brackets, and strip each piece."""
    pieces = []
    start = 0
    depth = 0
    for index, char in _outside_quotes(cell):
        if char == "[":
            depth += 1
        elif char == "]":
            depth = max(depth - 1, 0)
        elif char == ";" and depth == 0:
            pieces.append(cell[start:index].strip())
            start = index + 1
    pieces.append(cell[start:].strip())
    return pieces


def _outside_quotes(text: str) -> Iterator[tuple[int, str]]:
    """Each character of `text` that is not inside quotes, with its index.

    Quotes follow the filter language: '...' and "..." with backslash escapes,
    and `...` column names without them.
    """
    quote = ""
    escaped = False
    for index, char in enumerate(text):
        if not quote:
            if char in "'\"`":
                quote = char
            else:
                yield index, char
        elif escaped:
            escaped = False
        elif char == "\\" and quote != "`":
            escaped = True
        elif char == quote:
            quote = ""


def _parse_ref(text: str) -> DataRef:
    """One `NAME` or `NAME[filter]` reference."""
    name_match = NAME_PATTERN.match(text)
    name = name_match.group() if name_match else ""
    rest = text[len(name) :].lstrip()
    if not name or (rest and not rest.startswith("[")):
        raise DataRefError(
            f"data reference '{text}' is not NAME or NAME[filter]: NAME must be a "
            "[data.NAME] table of report.toml, made of letters, digits and "
            "underscores, not starting with a digit"
        )
    if not rest:
        return DataRef(name=name, filter=None, text=text)

    closing = _closing_bracket(rest)
    if closing is None:
        raise DataRefError(
            f"data reference '{text}' has no closing ']'; write {name}[filter]"
        )
    if rest[closing + 1 :].strip():
        raise DataRefError(
            f"data reference '{text}' has text after its closing ']': "
            f"'{rest[closing + 1 :].strip()}'; separate references with ';'"
        )
    condition = rest[1:closing]
    if not condition.strip():
        raise DataRefError(
            f"data reference '{text}' has an empty filter; write {name} for the "
            f"whole table or put a condition in the brackets, e.g. "
            f'{name}[netbeheerder == "Enexis"]'
        )
    try:
        row_filter = parse_filter(condition)
    except FilterError as error:
        raise DataRefError(
            f"in the filter of data reference '{text}': {error}"
        ) from error
    return DataRef(name=name, filter=row_filter, text=text)


def _closing_bracket(text: str) -> int | None:
    """The index of the `]` that closes the `[` at the start of `text`."""
    depth = 0
    for index, char in _outside_quotes(text):
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth == 0:
                return index
    return None


def select(df: pd.DataFrame, ref: DataRef) -> pd.DataFrame:
    """The rows of `df` that `ref` asks for: all of them when it has no filter."""
    if ref.filter is None:
        return df
    try:
        return ref.filter.apply(df)
    except FilterError as error:
        raise DataRefError(f"data reference '{ref.text}': {error}") from error


# --- reading files -----------------------------------------------------------


def load_table(
    path: Path,
    *,
    sep: str | None = None,
    decimal: str = ".",
    sheet: str | int | None = None,
    encoding: str | None = None,
    name: str | None = None,
) -> pd.DataFrame:
    """Read a CSV, Excel or Parquet file into a table with trimmed column names.

    `name` is the table's [data.NAME] in report.toml, used to point error
    messages at the setting to change.
    """
    path = Path(path)
    section = f"[data.{name}]" if name else "[data.NAME]"
    if not path.exists():
        raise _load_error(
            path, "the file does not exist", f"check path in {section} of report.toml"
        )
    if path.is_dir():
        raise _load_error(
            path, "it is a folder", f"point path in {section} at a file inside it"
        )

    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        df = _read_csv(
            path, sep=sep, decimal=decimal, encoding=encoding, section=section
        )
    elif suffix in EXCEL_SUFFIXES:
        df = _read_excel(path, sheet=sheet, section=section)
    elif suffix in PARQUET_SUFFIXES:
        df = _read_parquet(path)
    else:
        known = ", ".join(sorted(CSV_SUFFIXES | EXCEL_SUFFIXES | PARQUET_SUFFIXES))
        raise _load_error(
            path,
            f"'{path.suffix}' is not a supported file type",
            f"save it as one of: {known}",
        )
    return _trim_column_names(df, path)


def _load_error(path: Path, reason: str, fix: str) -> DataLoadError:
    return DataLoadError(f"cannot read data file '{path}': {reason}; {fix}")


def _read_csv(
    path: Path, *, sep: str | None, decimal: str, encoding: str | None, section: str
) -> pd.DataFrame:
    """Decode the file, guess the separator if needed, and parse it."""
    text, used_encoding = _decode(path, encoding, section)
    if not text.strip():
        raise _load_error(path, "the file is empty", "export the table again")
    separator = sep if sep is not None else _guess_separator(text)
    logger.debug(
        "reading %s as %s, sep %r, decimal %r", path, used_encoding, separator, decimal
    )
    try:
        return pd.read_csv(io.StringIO(text), sep=separator, decimal=decimal)
    except (ValueError, pd.errors.ParserError) as error:
        reason = str(error).strip().splitlines()[0]
        raise _load_error(
            path,
            f"it does not parse as CSV with sep {separator!r} and decimal "
            f"{decimal!r} ({reason})",
            f"set sep and decimal in {section} to match the file",
        ) from error


def _decode(path: Path, encoding: str | None, section: str) -> tuple[str, str]:
    """The file's text and the encoding that read it."""
    data = path.read_bytes()
    if encoding is None:
        for candidate in GUESSED_ENCODINGS[:-1]:
            try:
                return data.decode(candidate), candidate
            except UnicodeDecodeError:
                continue
        return data.decode(GUESSED_ENCODINGS[-1]), GUESSED_ENCODINGS[-1]

    try:
        return data.decode(encoding), encoding
    except LookupError:
        raise _load_error(
            path,
            f"'{encoding}' is not an encoding Python knows",
            f'set encoding in {section} to e.g. "utf-8", "cp1252" or "latin-1"',
        ) from None
    except UnicodeDecodeError as error:
        byte = error.object[error.start]
        raise _load_error(
            path,
            f"it does not decode as {encoding} (byte 0x{byte:02x} at offset "
            f"{error.start})",
            f"set encoding in {section} to the file's encoding, "
            'e.g. encoding = "cp1252", or remove it to let Joule guess',
        ) from error


def _guess_separator(text: str) -> str:
    """The separator that occurs most often in the header line, outside quotes.

    Only the header is counted: data rows with decimal commas ("1,5;2,3") would
    make a frequency-based sniffer pick ',' over ';'. Ties and a header with no
    separator at all fall back to ','.
    """
    header = next((line for line in io.StringIO(text) if line.strip()), "")
    counts = dict.fromkeys(SEPARATORS, 0)
    quoted = False
    for char in header:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    best = max(SEPARATORS, key=counts.__getitem__)
    return best if counts[best] else ","


def _read_excel(path: Path, *, sheet: str | int | None, section: str) -> pd.DataFrame:
    """Read one sheet: `sheet` by name or 0-based index, else the first."""
    with _open_workbook(path) as workbook:
        names = [str(sheet_name) for sheet_name in workbook.sheet_names]
        return workbook.parse(_choose_sheet(path, sheet, names, section))


def _open_workbook(path: Path) -> pd.ExcelFile:
    """Open a workbook, turning the reader's many failure modes into one message."""
    try:
        return pd.ExcelFile(path)
    except ImportError as error:
        raise _load_error(
            path,
            f"reading {path.suffix} files needs a package that is not installed "
            f"({error})",
            "install it, or save the workbook as .xlsx",
        ) from error
    except (zipfile.BadZipFile, OSError, KeyError, ValueError) as error:
        raise _load_error(
            path,
            f"it is not a readable Excel workbook ({error})",
            "open it in Excel and save it again as .xlsx",
        ) from error


def _choose_sheet(
    path: Path, sheet: str | int | None, names: list[str], section: str
) -> str:
    """The name of the sheet to read, checked against the workbook's sheets."""
    available = ", ".join(names)
    if sheet is None:
        return names[0]
    if isinstance(sheet, int):
        if 0 <= sheet < len(names):
            return names[sheet]
        raise _load_error(
            path,
            f"there is no sheet number {sheet} (counting from 0); the workbook has "
            f"{len(names)}: {available}",
            f"set sheet in {section} to one of those names",
        )
    if sheet not in names:
        raise _load_error(
            path,
            f"sheet '{sheet}' not found; the workbook has: {available}",
            f"set sheet in {section} to one of those names",
        )
    return sheet


def _read_parquet(path: Path) -> pd.DataFrame:
    """Read a Parquet file, which needs pyarrow or fastparquet installed."""
    try:
        return pd.read_parquet(path)
    except ImportError as error:
        raise _load_error(
            path,
            "reading Parquet needs pyarrow, which is not installed",
            "run `pip install pyarrow`, or export the table as CSV",
        ) from error
    except (OSError, ValueError) as error:
        raise _load_error(
            path, f"it is not a readable Parquet file ({error})", "export it again"
        ) from error


def _trim_column_names(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Strip spaces (and a stray byte-order mark) around column names."""
    names = [str(column).replace("\ufeff", "").strip() for column in df.columns]
    seen: set[str] = set()
    for column in names:
        if column in seen:
            raise _load_error(
                path,
                f"column '{column}' appears twice once spaces are trimmed",
                "rename one of them in the file",
            )
        seen.add(column)
    df.columns = names
    return df


# --- rendering for prompts ---------------------------------------------------


def render_table(
    df: pd.DataFrame, *, max_rows: int = 50, name: str | None = None
) -> str:
    """A compact GitHub Markdown table of the first `max_rows` rows of `df`."""
    if max_rows < 1:
        raise ValueError(f"max_rows must be at least 1, not {max_rows}")
    header = [_escape(str(column)) for column in df.columns]
    lines = [_markdown_row(header), _markdown_row(["---"] * len(header))]
    for values in df.head(max_rows).itertuples(index=False, name=None):
        lines.append(_markdown_row([format_value(value) for value in values]))

    of_table = f" of {name}" if name else ""
    if df.empty:
        lines += ["", f"_(no rows in {name})_" if name else "_(no rows)_"]
    elif len(df) > max_rows:
        lines += [
            "",
            f"_(showing {max_rows} of {len(df)} rows{of_table}; raise max_rows in "
            "[data] or narrow the filter)_",
        ]
    return "\n".join(lines)


def _markdown_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _escape(text: str) -> str:
    """Keep a cell on one line and inside its column."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.replace("|", "\\|").replace("\n", "<br>")


def format_value(value: object) -> str:
    """A cell as short text: integral floats without '.0', missing as empty."""
    if value is None or value is pd.NA or value is pd.NaT:
        return ""
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return _format_float(float(value))
    if isinstance(value, pd.Timestamp):
        if value == value.normalize():
            return value.date().isoformat()
        return value.isoformat(sep=" ")
    return _escape(str(value))


def _format_float(value: float) -> str:
    """At most six significant digits, in plain notation for everyday magnitudes."""
    if math.isnan(value):
        return ""
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    magnitude = math.floor(math.log10(abs(value)))
    if not -7 <= magnitude < 15:
        return f"{value:.6g}"
    decimals = max(0, 5 - magnitude)
    text = f"{value:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text
