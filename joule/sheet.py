"""Reading the prompt sheet (Excel or CSV) into raw rows, whatever tool wrote it."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

REQUIRED_COLUMNS = ("objective_id", "objective", "task_id", "task", "prompt")
OPTIONAL_COLUMNS = (
    "step",
    "data",
    "depends_on",
    "show",
    "system",
    "model",
    "temperature",
    "max_tokens",
)
KNOWN_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS

# The first row of a sheet is its header, so the first step sits on row 2:
# the number the analyst sees in Excel.
FIRST_DATA_ROW = 2


class SheetError(ValueError):
    """The prompt sheet file cannot be read at all."""


@dataclass(frozen=True)
class SheetRow:
    """One row of the sheet: its number as Excel shows it and its cells as text."""

    row: int
    cells: dict[str, str]

    def get(self, column: str) -> str:
        return self.cells.get(column, "").strip()


def _decode(raw: bytes, path: Path) -> str:
    # Excel's "CSV UTF-8" writes a BOM, its plain "CSV" writes the Windows code
    # page, and "Unicode text" writes UTF-16 with tabs.
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16")
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise SheetError(f"{path.name}: cannot decode the file; save it as CSV UTF-8")


def _sniff_separator(text: str) -> str:
    header = text.splitlines()[0] if text else ""
    try:
        return csv.Sniffer().sniff(header, delimiters=",;\t|").delimiter
    except csv.Error:
        # One column only, or a header the sniffer cannot read: count instead.
        return max(",;\t|", key=header.count)


def _read_csv(path: Path) -> pd.DataFrame:
    text = _decode(path.read_bytes(), path)
    return pd.read_csv(
        io.StringIO(text),
        sep=_sniff_separator(text),
        dtype=str,
        keep_default_na=False,
        # Keep blank lines so that row numbers match what Excel shows.
        skip_blank_lines=False,
    )


def _read_excel(path: Path, sheet: str | int | None) -> pd.DataFrame:
    with pd.ExcelFile(path) as workbook:
        names = [str(name) for name in workbook.sheet_names]
        if sheet is None:
            sheet = 0
        elif isinstance(sheet, int) and not 0 <= sheet < len(names):
            raise SheetError(
                f"{path.name}: there is no sheet number {sheet} (counting from 0); "
                f"the workbook has: {', '.join(names)}; set prompt_sheet_tab in "
                "report.toml to one of those names"
            )
        elif isinstance(sheet, str) and sheet not in names:
            raise SheetError(
                f"{path.name}: sheet '{sheet}' not found; the workbook has: "
                f"{', '.join(names)}; set prompt_sheet_tab in report.toml to one of "
                "those names"
            )
        return workbook.parse(sheet, dtype=str, keep_default_na=False)


def read_sheet(
    path: Path, sheet: str | int | None = None
) -> tuple[list[SheetRow], list[str]]:
    """Read the non-empty rows of a prompt sheet (cells as text) and its header."""
    if not path.is_file():
        raise SheetError(f"{path.name}: file not found at {path}")
    suffix = path.suffix.lower()
    try:
        if suffix in (".xlsx", ".xlsm", ".xls"):
            frame = _read_excel(path, sheet)
        elif suffix in (".csv", ".tsv", ".txt"):
            frame = _read_csv(path)
        else:
            raise SheetError(
                f"{path.name}: unsupported sheet type '{suffix}'; use .xlsx or .csv"
            )
    except SheetError:
        raise
    except Exception as exc:  # pandas raises many types for a corrupt file
        raise SheetError(f"{path.name}: cannot read the sheet: {exc}") from exc

    frame.columns = [str(c).strip().lower() for c in frame.columns]
    rows = []
    for index, record in enumerate(frame.to_dict(orient="records")):
        cells = {k: _clean_cell(v) for k, v in record.items()}
        if any(cells.values()):
            rows.append(SheetRow(row=index + FIRST_DATA_ROW, cells=cells))
    return rows, list(frame.columns)


def _clean_cell(value: object) -> str:
    if value is None:
        return ""
    text = str(value)
    # Excel stores whole numbers typed into a text-less cell as floats.
    if text.endswith(".0") and text[:-2].isdigit():
        text = text[:-2]
    return text.strip()
