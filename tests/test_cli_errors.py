"""Tests for the command line's refusals: exit status 2, a clear message, no trace."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SETTINGS = """\
title = "Grid report"
prompt_sheet = "prompts.csv"

[data.stations]
path = "data/stations.csv"
"""
HEADER = "objective_id,objective,task_id,task,prompt,data,depends_on\n"
STATIONS = "station,netbeheerder\nAarle,Enexis\nBeek,Liander\n"
# Spelled out rather than imported, so a change of wording fails a test.
GRAMMAR = (
    "filters compare columns with values (==, !=, <, <=, >, >=, in [...], "
    "not in [...]) joined by and, or, not"
)


def make_project(root: Path, prompts: str, settings: str = SETTINGS) -> Path:
    (root / "data").mkdir(parents=True)
    (root / "report.toml").write_text(settings, encoding="utf-8")
    (root / "prompts.csv").write_text(prompts, encoding="utf-8")
    (root / "data" / "stations.csv").write_text(STATIONS, encoding="utf-8")
    return root


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m flows.report ARGS` with no model endpoint configured."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")
    }
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    env["DO_NOT_TRACK"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "flows.report", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("prompts", "settings", "expected"),
    [
        pytest.param(
            "objective_id,objective,task_id,task\n1,Grid,1.1,Substations\n",
            SETTINGS,
            "error: The project has 1 problem:\n"
            "  - prompts.csv, row 1, column 'prompt': required column is missing: "
            "add it to the header row\n",
            id="missing-column",
        ),
        pytest.param(
            HEADER + "1,Grid,1.1,Substations,Describe.,stations[__import__('os')],\n",
            SETTINGS,
            "error: The project has 1 problem:\n"
            "  - prompts.csv, row 2, column 'data': in the filter of data reference "
            "'stations[__import__('os')]': unexpected '(' at position 11: expected "
            "a comparison (==, !=, <, <=, >, >=, in, not in) after column "
            f"'__import__'; {GRAMMAR}\n",
            id="unsafe-filter",
        ),
        pytest.param(
            HEADER
            + "1,Grid,1.1,Substations,Describe.,stations,2\n"
            + "2,Heat,2.1,Heat pumps,Describe.,emissions,1\n",
            SETTINGS + '\n[data.emissions]\npath = "data/emissions.csv"\n',
            "error: The project has 2 problems:\n"
            "  - report.toml: cannot read data file '{project}/data/emissions.csv': "
            "the file does not exist; check path in [data.emissions] of "
            "report.toml\n"
            "  - prompts.csv, row 2, column 'depends_on': depends_on forms a cycle: "
            "1 -> 2 -> 1; a chapter cannot wait for itself\n",
            id="cycle-and-missing-data-file",
        ),
    ],
)
def test_an_invalid_project_exits_2_listing_its_problems(
    tmp_path: Path, prompts: str, settings: str, expected: str
) -> None:
    project = make_project(tmp_path / "project", prompts, settings)

    result = run_cli(tmp_path, str(project), "--dry-run")

    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == expected.format(project=project)
    assert "Traceback" not in result.stderr


def test_a_project_path_that_is_not_a_folder_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "report.toml"
    path.write_text(SETTINGS, encoding="utf-8")

    result = run_cli(tmp_path, str(path))

    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"error: {path} is not a folder; PROJECT_DIR is the folder that holds "
        "report.toml\n"
    )


def test_a_valid_project_without_a_model_endpoint_exits_2_suggesting_simulate(
    tmp_path: Path,
) -> None:
    project = make_project(
        tmp_path / "project", HEADER + "1,Grid,1.1,Substations,Describe.,stations,\n"
    )

    result = run_cli(tmp_path, str(project))

    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "error: No model endpoint is configured: OPENAI_API_KEY is not set.\n"
        "  - to use OpenAI:   export OPENAI_API_KEY=sk-...\n"
        "  - to use another OpenAI-compatible server: set OPENAI_BASE_URL or "
        "base_url under [llm] in report.toml\n"
        "  - to try Joule offline: add --simulate (runs the built-in simulator)\n"
    )
    assert not (project / "output").exists()


def test_help_exits_0_and_shows_an_example(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "--help")

    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith("usage: python -m flows.report [-h]")
    assert (
        "  python -m flows.report examples/regional-energy --simulate\n"
        "      run the example offline against Joule's built-in simulator\n"
    ) in result.stdout
