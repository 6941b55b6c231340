"""Write a finished report as Markdown, Word, CSV and a JSON manifest, atomically."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import docx
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.oxml import OxmlElement
from docx.shared import Pt

from joule.files import atomic_write_bytes, atomic_write_text
from joule.results import Report, StepResult, StepStatus

STEP_COLUMNS = (
    "objective_id",
    "objective",
    "task_id",
    "task",
    "step",
    "show",
    "status",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost_usd",
    "latency_s",
    "attempts",
    "cached",
    "error",
    "system",
    "prompt",
    "answer",
)
FORMATS = ("md", "docx", "csv")
SIMULATOR_NOTE = (
    "Answers were produced by Joule's built-in simulator, not a real model."
)
MISSING_NOTE = "This part of the report is missing; run again once the cause is fixed."

_SLUG_LENGTH = 40
_SECRET_QUERY_NAMES = ("key", "token", "secret", "password", "sig")


# --- Grouping steps into chapters and sections ----------------------------------


@dataclass
class _Section:
    """One task of a chapter and its steps, as the report lays it out."""

    task_id: str
    task: str
    steps: list[StepResult] = field(default_factory=list)

    @property
    def shown(self) -> list[StepResult]:
        """The steps whose answers belong in the report, in step order."""
        return sorted((s for s in self.steps if s.show), key=lambda s: s.step)


def _sections(steps: Iterable[StepResult]) -> list[_Section]:
    """Group a chapter's steps by task, in the order tasks first appear."""
    sections: dict[str, _Section] = {}
    for step in steps:
        section = sections.setdefault(step.task_id, _Section(step.task_id, step.task))
        section.steps.append(step)
    return list(sections.values())


def _visible_chapters(report: Report) -> list[tuple[str, str, list[_Section]]]:
    """Chapters and sections with at least one shown step; the sheet hid the rest."""
    chapters = []
    for objective_id, objective, steps in report.objectives():
        sections = [s for s in _sections(steps) if s.shown]
        if sections:
            chapters.append((objective_id, objective, sections))
    return chapters


def _one_line(text: str | None, default: str) -> str:
    """Collapse a message onto one line so it cannot break the block around it."""
    return " ".join((text or "").split()) or default


def _placeholder(step: StepResult) -> str:
    """The bracketed label that stands in for a step's missing answer."""
    if step.status is StepStatus.SKIPPED:
        return f"[Step {step.step} not run: {_one_line(step.error, 'no reason given')}]"
    return f"[Step {step.step} failed: {_one_line(step.error, 'no error recorded')}]"


def _byline(report: Report) -> str:
    """The model, for the top of the report.

    Run id and times live in manifest.json: keeping them out of the report
    makes an unchanged rerun write the very same report.
    """
    return f"Model: {report.model}"


# --- Markdown ------------------------------------------------------------------


def render_markdown(report: Report) -> str:
    """The report as Markdown: chapters, sections and the shown answers verbatim."""
    blocks = [f"# {report.title}", _byline(report)]
    if report.simulated:
        blocks.append(f"> **Note:** {SIMULATOR_NOTE}")

    for objective_id, objective, sections in _visible_chapters(report):
        blocks.append(f"## {objective_id} {objective}")
        for section in sections:
            blocks.append(f"### {section.task_id} {section.task}")
            for step in section.shown:
                if step.status is StepStatus.OK:
                    blocks.append((step.answer or "").lstrip("\n").rstrip())
                else:
                    blocks.append(f"> **{_placeholder(step)}** {MISSING_NOTE}")

    return "\n\n".join(block for block in blocks if block) + "\n"


# --- Markdown answers parsed into blocks for Word -------------------------------

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
_BULLET = re.compile(r"^(\s*)[-*+]\s+(.*)$")
_NUMBERED = re.compile(r"^(\s*)\d{1,9}[.)]\s+(.*)$")
_QUOTE = re.compile(r"^\s*>\s?(.*)$")
_RULE = re.compile(r"^\s*([-*_])(\s*\1){2,}\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_TABLE_SEPARATOR = re.compile(r"^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")
_INLINE = re.compile(
    r"(`+)(.+?)\1"
    r"|\*\*\*(?=\S)(.+?)(?<=\S)\*\*\*"
    r"|\*\*(?=\S)(.+?)(?<=\S)\*\*"
    r"|\*(?=\S)(.+?)(?<=\S)\*"
)


@dataclass(frozen=True)
class _Block:
    """One paragraph-level piece of an answer: heading, list item, table, ..."""

    kind: str
    text: str = ""
    level: int = 0
    rows: tuple[tuple[str, ...], ...] = ()
    aligns: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Span:
    """A run of text with one formatting."""

    text: str
    bold: bool = False
    italic: bool = False
    code: bool = False


def _cells(line: str) -> list[str]:
    """Split a Markdown table row into trimmed cells; `\\|` stays a literal bar."""
    row = line.strip()
    row = row[1:] if row.startswith("|") else row
    row = row[:-1] if row.endswith("|") and not row.endswith("\\|") else row
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", row)]


def _alignment(separator_cell: str) -> str:
    """Column alignment from a separator cell such as `:--`, `:-:` or `--:`."""
    if separator_cell.startswith(":") and separator_cell.endswith(":"):
        return "center"
    return "right" if separator_cell.endswith(":") else "left"


def _is_table_start(lines: list[str], index: int) -> bool:
    """A table is a row with bars directly followed by a separator row."""
    if "|" not in lines[index] or index + 1 >= len(lines):
        return False
    separator = lines[index + 1]
    return bool(_TABLE_SEPARATOR.match(separator)) and len(_cells(separator)) == len(
        _cells(lines[index])
    )


def _table_block(lines: list[str], start: int) -> tuple[_Block, int]:
    """Read the table starting at `start`; return it and the index after it."""
    header = _cells(lines[start])
    aligns = [_alignment(cell) for cell in _cells(lines[start + 1])]
    width = len(header)
    rows = [tuple(header)]
    index = start + 2
    while index < len(lines) and lines[index].strip() and "|" in lines[index]:
        # GitHub's rule: short rows are padded, long rows lose their extra cells.
        cells = _cells(lines[index])[:width]
        rows.append(tuple(cells + [""] * (width - len(cells))))
        index += 1
    aligns = (aligns + ["left"] * width)[:width]
    return _Block("table", rows=tuple(rows), aligns=tuple(aligns)), index


def _markdown_blocks(markdown: str) -> list[_Block]:
    """Split Markdown into the blocks Word needs; unknown syntax stays as text."""
    lines = markdown.splitlines()
    blocks: list[_Block] = []
    paragraph: list[str] = []

    def end_paragraph() -> None:
        if paragraph:
            blocks.append(_Block("paragraph", " ".join(paragraph)))
            paragraph.clear()

    index = 0
    while index < len(lines):
        line = lines[index]
        if _FENCE.match(line):
            end_paragraph()
            fence = _FENCE.match(line).group(1)
            code = []
            index += 1
            while index < len(lines) and not lines[index].strip().startswith(fence):
                code.append(lines[index])
                index += 1
            blocks.append(_Block("code", "\n".join(code)))
        elif _is_table_start(lines, index):
            end_paragraph()
            table, index = _table_block(lines, index)
            blocks.append(table)
            continue
        elif not line.strip() or _RULE.match(line):
            end_paragraph()
        elif heading := _HEADING.match(line):
            end_paragraph()
            blocks.append(_Block("heading", heading[2], level=len(heading[1])))
        elif item := _BULLET.match(line) or _NUMBERED.match(line):
            end_paragraph()
            kind = "bullet" if _BULLET.match(line) else "number"
            depth = len(item[1].expandtabs(4)) // 2
            blocks.append(_Block(kind, item[2].strip(), level=depth))
        elif quote := _QUOTE.match(line):
            end_paragraph()
            blocks.append(_Block("quote", quote[1].strip()))
        else:
            paragraph.append(line.strip())
        index += 1

    end_paragraph()
    return blocks


def _spans(text: str, bold: bool = False, italic: bool = False) -> list[_Span]:
    """Split inline Markdown into runs: `code`, ***both***, **bold**, *italic*."""
    spans: list[_Span] = []
    position = 0
    for match in _INLINE.finditer(text):
        if match.start() > position:
            spans.append(_Span(text[position : match.start()], bold, italic))
        code, both, strong, emphasis = match.group(2, 3, 4, 5)
        if code is not None:
            spans.append(_Span(code.strip(), bold, italic, code=True))
        elif both is not None:
            spans += _spans(both, True, True)
        elif strong is not None:
            spans += _spans(strong, True, italic)
        else:
            spans += _spans(emphasis, bold, True)
        position = match.end()
    if position < len(text):
        spans.append(_Span(text[position:], bold, italic))
    return spans


# --- Word ----------------------------------------------------------------------

_FIRST_ANSWER_HEADING = 3  # chapters are Heading 1 and sections Heading 2
_LIST_DEPTHS = 3  # Word's default template styles lists three levels deep
_WORD_ALIGN = {
    "left": WD_ALIGN_PARAGRAPH.LEFT,
    "center": WD_ALIGN_PARAGRAPH.CENTER,
    "right": WD_ALIGN_PARAGRAPH.RIGHT,
}


def _add_runs(
    paragraph: Any, text: str, bold: bool = False, italic: bool = False
) -> None:
    """Append `text` to a Word paragraph, turning inline Markdown into formatting."""
    for span in _spans(text, bold, italic):
        run = paragraph.add_run(span.text)
        run.bold = span.bold or None
        run.italic = span.italic or None
        if span.code:
            run.font.name = "Courier New"


def _new_numbering(document: Any, style: str) -> int:
    """A new numbering for a list style, starting at 1."""
    # Without it, every list in the document would continue the count of the
    # list before it, since Word numbers all paragraphs of a style as one list.
    numbering = document.part.numbering_part.element
    style_num_id = document.styles[style].element.pPr.numPr.numId.val
    abstract_id = numbering.num_having_numId(style_num_id).abstractNumId.val
    num = numbering.add_num(abstract_id)
    num.add_lvlOverride(ilvl=0).add_startOverride(1)
    return num.numId


def _use_numbering(paragraph: Any, num_id: int) -> None:
    """Attach a paragraph to the numbered list `num_id`."""
    paragraph._p.get_or_add_pPr().get_or_add_numPr().get_or_add_numId().val = num_id


def _starts_new_list(block: _Block, previous: _Block | None) -> bool:
    """Whether a numbered item begins a list rather than continuing one."""
    if previous is None or previous.kind not in ("bullet", "number"):
        return True
    if previous.level > block.level:
        return False  # back from a nested list to its parent
    return previous.level < block.level or previous.kind != "number"


def _mark_header_row(row: Any) -> None:
    """Repeat a table's first row on every page it spans."""
    row._tr.get_or_add_trPr().append(OxmlElement("w:tblHeader"))


def _add_table(document: Any, block: _Block) -> None:
    """A Markdown table as a Word table, its first row bold and repeated."""
    table = document.add_table(rows=len(block.rows), cols=len(block.aligns))
    table.style = "Table Grid"
    for row_index, cells in enumerate(block.rows):
        for cell, text, align in zip(
            table.rows[row_index].cells, cells, block.aligns, strict=True
        ):
            paragraph = cell.paragraphs[0]
            paragraph.alignment = _WORD_ALIGN[align]
            _add_runs(paragraph, text, bold=row_index == 0)
    _mark_header_row(table.rows[0])


def _add_answer(document: Any, markdown: str) -> None:
    """Append one answer's Markdown to the document, headings below the section."""
    blocks = _markdown_blocks(markdown)
    # Answers often start at `##`: shift so their top level sits right under
    # the section heading instead of leaving a level out.
    top = min((b.level for b in blocks if b.kind == "heading"), default=1)
    previous: _Block | None = None
    numberings: dict[int, int] = {}  # list depth -> numbering of its current list
    for block in blocks:
        if block.kind == "heading":
            level = min(_FIRST_ANSWER_HEADING + block.level - top, 9)
            _add_runs(document.add_heading("", level), block.text)
        elif block.kind in ("bullet", "number"):
            base = "List Bullet" if block.kind == "bullet" else "List Number"
            depth = min(block.level, _LIST_DEPTHS - 1)
            style = base if depth == 0 else f"{base} {depth + 1}"
            paragraph = document.add_paragraph(style=style)
            if block.kind == "number":
                if depth not in numberings or _starts_new_list(block, previous):
                    numberings[depth] = _new_numbering(document, style)
                _use_numbering(paragraph, numberings[depth])
            _add_runs(paragraph, block.text)
        elif block.kind == "table":
            _add_table(document, block)
        elif block.kind == "code":
            run = document.add_paragraph().add_run(block.text)
            run.font.name = "Courier New"
            run.font.size = Pt(9)
        elif block.kind == "quote":
            _add_runs(document.add_paragraph(style="Quote"), block.text)
        else:
            _add_runs(document.add_paragraph(), block.text)
        previous = block


def _add_placeholder(document: Any, step: StepResult) -> None:
    """An italic note where a failed or skipped step's answer would be."""
    paragraph = document.add_paragraph()
    paragraph.add_run(_placeholder(step)).bold = True
    paragraph.add_run(f" {MISSING_NOTE}")
    for run in paragraph.runs:
        run.italic = True


def render_docx(report: Report) -> bytes:
    """The report as a Word document, Markdown in the answers turned into Word."""
    document = docx.Document()
    properties = document.core_properties
    properties.title = report.title
    properties.author = "Joule"
    properties.comments = _byline(report)
    properties.created = report.finished_at

    document.add_heading(report.title, level=0)
    document.add_paragraph(_byline(report))
    if report.simulated:
        note = document.add_paragraph()
        note.add_run("Note: ").bold = True
        note.add_run(SIMULATOR_NOTE)

    for objective_id, objective, sections in _visible_chapters(report):
        document.add_heading(f"{objective_id} {objective}", level=1)
        for section in sections:
            document.add_heading(f"{section.task_id} {section.task}", level=2)
            for step in section.shown:
                if step.status is StepStatus.OK:
                    _add_answer(document, step.answer or "")
                else:
                    _add_placeholder(document, step)

    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def write_docx(report: Report, path: str | os.PathLike[str]) -> Path:
    """Write the report as a Word document to `path`."""
    return atomic_write_bytes(path, render_docx(report))


# --- CSV -----------------------------------------------------------------------


def _decimal(value: float, places: int) -> str:
    """A number without exponent or trailing zeros, so Excel and eyes read it."""
    return f"{value:.{places}f}".rstrip("0").rstrip(".") or "0"


def _csv_row(step: StepResult) -> list[str]:
    """One step as CSV cells; ids stay text so `3.10` is not read as 3.1 here."""
    return [
        step.objective_id,
        step.objective,
        step.task_id,
        step.task,
        str(step.step),
        str(step.show).lower(),
        step.status.value,
        step.model,
        str(step.prompt_tokens),
        str(step.completion_tokens),
        str(step.total_tokens),
        _decimal(step.cost_usd, 8),
        _decimal(step.latency_s, 3),
        str(step.attempts),
        str(step.cached).lower(),
        step.error or "",
        step.system or "",
        step.prompt,
        step.answer or "",
    ]


def render_steps_csv(steps: Iterable[StepResult]) -> str:
    """Steps as UTF-8 CSV text with a header row of `STEP_COLUMNS`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(STEP_COLUMNS)
    writer.writerows(_csv_row(step) for step in steps)
    return buffer.getvalue()


def write_steps_csv(report: Report, path: str | os.PathLike[str]) -> Path:
    """Write one CSV row per step of the report, in sheet order."""
    return atomic_write_text(path, render_steps_csv(report.steps))


def slugify(text: str, max_length: int = _SLUG_LENGTH) -> str:
    """Lowercase ASCII with dashes, for file names: 'Wärme & Kälte' -> 'warme-kalte'."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.decode().lower()).strip("-")
    return slug[:max_length].rstrip("-")


def chapter_file_name(objective_id: str, objective: str) -> str:
    """`<objective_id>-<slug>.csv`, with characters unsafe in file names replaced."""
    safe_id = re.sub(r"[^A-Za-z0-9._-]+", "-", objective_id).strip("-.") or "chapter"
    slug = slugify(objective)
    return f"{safe_id}-{slug}.csv" if slug else f"{safe_id}.csv"


def write_chapter_csvs(report: Report, folder: str | os.PathLike[str]) -> list[Path]:
    """Write `chapters/<objective_id>-<slug>.csv` under `folder`, one per chapter.

    Files of chapters no longer in the report are left in place; a renamed
    chapter therefore leaves its old file behind until the folder is cleared.
    """
    chapters = Path(folder) / "chapters"
    chapters.mkdir(parents=True, exist_ok=True)
    written = []
    for objective_id, objective, steps in report.objectives():
        path = chapters / chapter_file_name(objective_id, objective)
        written.append(atomic_write_text(path, render_steps_csv(steps)))
    return written


# --- Manifest ------------------------------------------------------------------


def redact_url(url: str | None) -> str | None:
    """Drop user info and secret-looking query values, so no key reaches a file."""
    if not url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    query = [
        (name, "REDACTED" if _looks_secret(name) else value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit((parts.scheme, host, parts.path, urlencode(query), ""))


def _looks_secret(name: str) -> bool:
    """Whether a query parameter's name suggests it carries a credential."""
    return any(word in name.lower() for word in _SECRET_QUERY_NAMES)


def _step_record(step: StepResult) -> dict[str, Any]:
    """What the manifest keeps about one step: no prompt, no answer."""
    return {
        "objective_id": step.objective_id,
        "objective": step.objective,
        "task_id": step.task_id,
        "task": step.task,
        "step": step.step,
        "row": step.row,
        "show": step.show,
        "status": step.status.value,
        "model": step.model,
        "prompt_tokens": step.prompt_tokens,
        "completion_tokens": step.completion_tokens,
        "total_tokens": step.total_tokens,
        "cost_usd": round(step.cost_usd, 8),
        "latency_s": round(step.latency_s, 3),
        "attempts": step.attempts,
        "cached": step.cached,
        "error": step.error,
    }


def _totals(steps: list[StepResult]) -> dict[str, Any]:
    """Counts and sums over all steps of a run."""
    return {
        "steps": len(steps),
        "ok": sum(s.status is StepStatus.OK for s in steps),
        "failed": sum(s.status is StepStatus.FAILED for s in steps),
        "skipped": sum(s.status is StepStatus.SKIPPED for s in steps),
        "prompt_tokens": sum(s.prompt_tokens for s in steps),
        "completion_tokens": sum(s.completion_tokens for s in steps),
        "total_tokens": sum(s.total_tokens for s in steps),
        "cost_usd": round(sum(s.cost_usd for s in steps), 8),
        "attempts": sum(s.attempts for s in steps),
        "cached": sum(s.cached for s in steps),
    }


def build_manifest(report: Report, extra: dict[str, Any] | None = None) -> dict:
    """The run's record: times, settings digest, totals, failures and every step."""
    manifest: dict[str, Any] = {
        "run_id": report.run_id,
        "title": report.title,
        "started_at": report.started_at.isoformat(),
        "finished_at": report.finished_at.isoformat(),
        "duration_s": round(
            (report.finished_at - report.started_at).total_seconds(), 3
        ),
        "model": report.model,
        "base_url": redact_url(report.base_url),
        "simulated": report.simulated,
        "settings_digest": report.settings_digest,
        "totals": _totals(report.steps),
        "failures": [
            {
                "task_id": s.task_id,
                "step": s.step,
                "status": s.status.value,
                "error": s.error,
            }
            for s in report.failed
        ],
        "steps": [_step_record(step) for step in report.steps],
    }
    clashes = sorted(set(extra or {}) & set(manifest))
    if clashes:
        raise ValueError(
            f"Extra manifest keys {clashes} would overwrite what Joule records; "
            "give them other names."
        )
    return manifest | (extra or {})


def write_manifest(
    report: Report,
    path: str | os.PathLike[str],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the manifest as indented JSON to `path`."""
    text = json.dumps(build_manifest(report, extra), indent=2, ensure_ascii=False)
    return atomic_write_text(path, text + "\n")


# --- Everything at once --------------------------------------------------------


def write_outputs(
    report: Report,
    out_dir: str | os.PathLike[str],
    formats: Iterable[str] = FORMATS,
    manifest_extra: dict[str, Any] | None = None,
) -> list[Path]:
    """Write the chosen formats and manifest.json to `out_dir`; return the paths."""
    formats = list(formats)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(
            f"Unknown output format(s) {unknown} in [output] formats; "
            f"choose from {list(FORMATS)}."
        )
    extra = dict(manifest_extra or {})
    if "files" in extra:
        raise ValueError(
            "The manifest key 'files' lists what write_outputs wrote; "
            "give the extra entry another name."
        )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if "md" in formats:
        written.append(atomic_write_text(out / "report.md", render_markdown(report)))
    if "docx" in formats:
        written.append(write_docx(report, out / "report.docx"))
    if "csv" in formats:
        written.append(write_steps_csv(report, out / "report.csv"))
        written += write_chapter_csvs(report, out)

    extra["files"] = [path.relative_to(out).as_posix() for path in written]
    written.append(write_manifest(report, out / "manifest.json", extra))
    return written
