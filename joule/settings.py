"""The settings of a report project, read from its `report.toml`."""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from joule.errors import Problem, ProjectError

SETTINGS_FILE = "report.toml"


class _Section(BaseModel):
    # A misspelt key in the toml must be an error, not silently ignored.
    model_config = ConfigDict(extra="forbid")


class DataSource(_Section):
    """One data table: where it lives and how pandas should read it."""

    path: str = Field(description="File path, relative to the project folder.")
    sep: str | None = Field(None, description="CSV separator; sniffed when unset.")
    decimal: str = Field(".", description="Decimal mark, ',' for many EU exports.")
    sheet: str | int | None = Field(None, description="Excel sheet name or index.")
    encoding: str | None = Field(None, description="Text encoding; guessed if unset.")
    max_rows: int = Field(50, ge=1, description="Row cap when rendered in a prompt.")


class LLMSettings(_Section):
    """The model and its default parameters; every step may override them."""

    model: str = "gpt-4o-mini"
    temperature: float = Field(0.2, ge=0, le=2)
    max_tokens: int = Field(800, ge=1)
    system: str | None = Field(None, description="Default system prompt.")
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint.")
    timeout_s: float = Field(120.0, gt=0, description="Timeout of one request.")
    prices: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description="USD per million input and output tokens, per model.",
    )


class Limits(_Section):
    """What the provider allows; None means Joule's default for the model."""

    requests_per_minute: float | None = Field(None, gt=0)
    tokens_per_minute: float | None = Field(None, gt=0)
    max_in_flight: int | None = Field(None, ge=1)
    max_cost_usd: float | None = Field(None, ge=0)
    max_tokens_total: int | None = Field(None, ge=0)
    shared: bool | None = Field(
        None,
        description="Share these limits with other runs through Prefect global "
        "concurrency limits; unset: only when the run comes from a deployment.",
    )
    max_attempts: int = Field(6, ge=1, description="Attempts per step, first included.")
    step_deadline_s: float = Field(600.0, gt=0, description="Give up a step after.")


class OutputSettings(_Section):
    formats: list[Literal["md", "docx", "csv"]] = ["md", "docx", "csv"]


class CacheSettings(_Section):
    """Where answers are kept, so that no call is paid for twice."""

    enabled: bool = True
    path: str = Field(
        ".joule-cache", description="Local cache folder, relative to the project."
    )
    block: str | None = Field(
        None,
        description="A Prefect file-system block ('local-file-system/name', "
        "'remote-file-system/name', ...) to share the cache between machines.",
    )


class RunSettings(_Section):
    """Concurrency switches; false runs that level one at a time (for debugging)."""

    concurrent_objectives: bool = True
    concurrent_tasks: bool = True
    # Small on purpose: these threads only record answers the prefetcher has
    # already asked for, and fewer concurrent writers keep Prefect's SQLite
    # server from answering "database is locked".
    max_workers: int = Field(6, ge=1, description="Step tasks at once per chapter.")


class ReportSettings(_Section):
    """Everything `report.toml` holds."""

    title: str = Field(min_length=1)
    prompt_sheet: str = "prompts.xlsx"
    prompt_sheet_tab: str | int | None = None
    context: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, DataSource] = Field(default_factory=dict)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    limits: Limits = Field(default_factory=Limits)
    output: OutputSettings = Field(default_factory=OutputSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    run: RunSettings = Field(default_factory=RunSettings)

    def digest(self) -> str:
        """A short fingerprint of the settings, for the manifest."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


def load_settings(project_dir: Path) -> ReportSettings:
    """Read and validate `report.toml`, reporting every problem at once."""
    path = project_dir / SETTINGS_FILE
    if not path.is_file():
        raise ProjectError(
            [
                Problem(
                    SETTINGS_FILE,
                    f"not found in {project_dir}: create it "
                    "(see examples/regional-energy/report.toml)",
                )
            ]
        )
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ProjectError([Problem(SETTINGS_FILE, f"not valid TOML: {exc}")]) from exc
    except UnicodeDecodeError as exc:
        raise ProjectError(
            [Problem(SETTINGS_FILE, "not UTF-8 text: save it as UTF-8")]
        ) from exc

    try:
        return ReportSettings.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = _location(error["loc"])
            if error["type"] == "extra_forbidden":
                message = f"unknown key '{key}': check its spelling"
            elif error["type"] == "missing":
                message = f"missing required key '{key}'"
            else:
                message = f"'{key}': {error['msg']} (got {error.get('input')!r})"
            problems.append(Problem(SETTINGS_FILE, message))
        raise ProjectError(problems) from exc
