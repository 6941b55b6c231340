"""A project of another shape, on the real ETM and grid-capacity data in shared/."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from flows.report import report_flow
from joule.plan import load_plan

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"

pytestmark = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason="shared/data/real is not beside the repository"
)

ROWS = [
    # Chapter B comes first in the sheet and is not sorted behind A.
    (
        "B",
        "Grid",
        "B.1",
        "Stedin stations",
        1,
        "Which Stedin substations have less than 10 MVA offtake capacity left?",
        'grid[netbeheerder == "Stedin" and beschikbare_capaciteit_afname_huidig_mva'
        " < 10]",
        "",
        "",
    ),
    (
        "B",
        "Grid",
        "B.1",
        "Stedin stations",
        2,
        "Rewrite for a council: {{ previous[-1] }}",
        "",
        "",
        "",
    ),
    (
        "A",
        "Municipalities",
        "A.1",
        "Largest cities",
        1,
        "Compare electricity demand of households in {{ data.etm }}",
        'etm[etm_area_slug in ["utrecht", "amersfoort", "groningen"]]',
        "",
        "",
    ),
    (
        "A",
        "Municipalities",
        "A.2",
        "National balance",
        1,
        "What share of final consumption is natural gas?",
        'balance[PRODUCT == "Total final consumption"]',
        "",
        "",
    ),
    (
        "A",
        "Municipalities",
        "A.3",
        "Emissions",
        1,
        "How did industry emissions change since 1990?",
        'emissions[dataset == "nl2023" and etm_sector == "Industry" and year in '
        "[1990, 2023]]",
        "",
        "",
    ),
    (
        "Z",
        "Synthesis",
        "Z.1",
        "What follows",
        1,
        "Combine: {{ chapters['A'] }} {{ chapters['B'] }}",
        "",
        "A;B",
        "",
    ),
]
COLUMNS = [
    "objective_id",
    "objective",
    "task_id",
    "task",
    "step",
    "prompt",
    "data",
    "depends_on",
    "show",
]


@pytest.fixture
def real_data_project(tmp_path: Path) -> Path:
    project = tmp_path / "national"
    project.mkdir()
    pd.DataFrame(ROWS, columns=COLUMNS).to_excel(
        project / "sheet.xlsx", sheet_name="steps", index=False
    )
    (project / "report.toml").write_text(
        f"""
title = "Grid and energy, the Netherlands 2023"
prompt_sheet = "sheet.xlsx"
prompt_sheet_tab = "steps"

[data.etm]
path = "{SHARED_DATA / "etm_nl2023_municipalities_key_figures.csv"}"
max_rows = 5

[data.grid]
path = "{SHARED_DATA / "nbnl_capaciteitskaart_dso_substations_2023.csv"}"

[data.balance]
path = "{SHARED_DATA / "etm_nl2023_energy_balance_TJ.csv"}"

[data.emissions]
path = "{SHARED_DATA / "etm_nl_emissions_by_sector_1990_2019_2023.csv"}"

[llm]
model = "gpt-4.1-mini"
max_tokens = 300
""",
        encoding="utf-8",
    )
    return project


def test_real_data_project_gets_a_complete_report_with_one_request_per_step(
    prefect_harness, sim, real_data_project, tmp_path
):
    out = tmp_path / "out"
    summary = report_flow(
        project_dir=str(real_data_project), out_dir=str(out), base_url=sim.base_url
    )

    requests = [r for r in sim.requests if r.path.endswith("/chat/completions")]
    assert summary["ok"] == summary["steps"] == len(ROWS) == len(requests)
    steps = pd.read_csv(out / "report.csv", dtype={"objective_id": str})
    assert steps.objective_id.drop_duplicates().tolist() == ["B", "A", "Z"]

    prompts = steps.set_index("task_id").prompt
    # Real values reached the prompts: 48 Stedin rows filtered by capacity, the
    # three named municipalities, the 1990 and 2023 industry emissions.
    assert "Stedin" in prompts["B.1"].iloc[0] and "Enexis" not in prompts["B.1"].iloc[0]
    assert "utrecht" in prompts["A.1"] and "amersfoort" in prompts["A.1"]
    assert "1990" in prompts["A.3"] and "2019 |" not in prompts["A.3"]
    plan = load_plan(real_data_project)
    assert plan.chapter_order() == [["B", "A"], ["Z"]]
