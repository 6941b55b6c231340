"""Small projects built in a test's folder, and ways to read a run's results."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

SMALL_TABLE = "region;demand_tj;solar_tj\nNoord;120,5;30\nZuid;98,25;41\nOost;77;12,5\n"


def write_project(
    folder: Path, rows: list[dict[str, object]], toml_extra: str = ""
) -> Path:
    """A small project: report.toml, prompts.csv and one ;-separated table."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data").mkdir(exist_ok=True)
    (folder / "data" / "regions.csv").write_text(SMALL_TABLE, encoding="utf-8")
    columns = sorted({key for row in rows for key in row})
    with open(folder / "prompts.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    (folder / "report.toml").write_text(
        'title = "Small report"\n'
        'prompt_sheet = "prompts.csv"\n\n'
        "[data.regions]\n"
        'path = "data/regions.csv"\n'
        'sep = ";"\n'
        'decimal = ","\n\n' + toml_extra,
        encoding="utf-8",
    )
    return folder


def step_row(task_id: str, step: int, prompt: str, **extra: object) -> dict:
    """A sheet row; the objective is the part of the task id before the dot."""
    objective_id = task_id.split(".")[0]
    return {
        "objective_id": objective_id,
        "objective": f"Chapter {objective_id}",
        "task_id": task_id,
        "task": f"Section {task_id}",
        "step": step,
        "prompt": prompt,
        **extra,
    }


def by_step(steps: pd.DataFrame, column: str) -> dict[str, object]:
    """A report.csv column keyed by 'task_id#step'."""
    keys = steps.task_id.astype(str) + "#" + steps.step.astype(str)
    return dict(zip(keys, steps[column], strict=True))
