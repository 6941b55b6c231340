"""The exceptions Joule raises, and the problems a project can have."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a project, located as precisely as we can."""

    file: str
    message: str
    row: int | None = None
    column: str | None = None

    def __str__(self) -> str:
        where = self.file
        if self.row is not None:
            where += f", row {self.row}"
        if self.column is not None:
            where += f", column '{self.column}'"
        return f"{where}: {self.message}"


class JouleError(Exception):
    """Root of Joule's own errors; the message is meant for the user."""


class ProjectError(JouleError):
    """The project folder is invalid; carries every problem found in one pass."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        lines = [f"The project has {count} {noun}:"]
        lines += [f"  - {problem}" for problem in self.problems]
        super().__init__("\n".join(lines))


class ConfigurationError(JouleError):
    """The environment is not set up to run (no API key, unreachable server)."""
