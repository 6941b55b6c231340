"""Caching, resume, partial failure and budgets, on real flow runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from helpers import by_step, step_row, write_project

from flows.report import main, report_flow
from joule.cache import FolderCache
from joule.plan import load_plan
from joule.quote import estimate

REPO = Path(__file__).resolve().parents[1]


def chained_rows(first_prompt: str = "Describe demand in {{ data.regions }}"):
    """Five calls: a three-step section, a one-step one, and a dependent chapter."""
    return [
        step_row("1.1", 1, first_prompt, data="regions"),
        step_row("1.1", 2, "Shorten: {{ previous[-1] }}"),
        step_row("1.1", 3, "Title for: {{ previous[-1] }}"),
        step_row(
            "1.2", 1, "Solar in {{ data.regions }}", data="regions[solar_tj > 20]"
        ),
        step_row("2.1", 1, "Conclude from {{ chapters['1'] }}", depends_on="1"),
    ]


def completions(sim) -> list:
    return [r for r in sim.requests if r.path.endswith("/chat/completions")]


def run(project: Path, sim, *args: str) -> int:
    out = project / "output"
    return main([str(project), "--out", str(out), "--base-url", sim.base_url, *args])


def test_unchanged_rerun_sends_nothing_and_writes_the_same_report(
    prefect_harness, sim, tmp_path
):
    project = write_project(tmp_path / "p", chained_rows())
    assert run(project, sim) == 0
    first = (project / "output" / "report.md").read_bytes()
    assert len(completions(sim)) == 5

    sim.reset_log()
    assert run(project, sim) == 0

    assert completions(sim) == []
    assert (project / "output" / "report.md").read_bytes() == first
    manifest = json.loads((project / "output" / "manifest.json").read_text())
    assert manifest["cache"]["hits"] == 5
    assert manifest["spent_usd"] == 0
    assert manifest["cache"]["saved_usd"] > 0


def test_editing_one_prompt_reruns_its_task_and_the_chapters_that_depend_on_it(
    prefect_harness, sim, tmp_path
):
    project = write_project(tmp_path / "p", chained_rows())
    assert run(project, sim) == 0

    write_project(
        project, chained_rows("List the demand figures of {{ data.regions }}")
    )
    sim.reset_log()
    assert run(project, sim) == 0

    # 1.1's three steps, and chapter 2 whose input text changed; not 1.2.
    assert len(completions(sim)) == 4
    steps = pd.read_csv(project / "output" / "report.csv", dtype={"task_id": str})
    cached = by_step(steps, "cached")
    assert cached == {
        "1.1#1": False,
        "1.1#2": False,
        "1.1#3": False,
        "1.2#1": True,
        "2.1#1": False,
    }


def test_refresh_forces_new_calls_for_the_named_task_only(
    prefect_harness, sim, tmp_path
):
    project = write_project(tmp_path / "p", chained_rows())
    assert run(project, sim) == 0
    sim.reset_log()

    assert run(project, sim, "--refresh", "1.2") == 0

    assert len(completions(sim)) == 1


def test_a_step_that_fails_for_good_is_marked_and_everything_else_still_runs(
    prefect_harness, sim, tmp_path, capsys
):
    rows = chained_rows()
    rows[1]["model"] = "no-such-model"
    project = write_project(tmp_path / "p", rows)

    assert run(project, sim) == 1

    requests = completions(sim)
    assert [r.status for r in requests if r.model == "no-such-model"] == [404]
    assert len(requests) == 3  # 1.1 step 1, the failing step, 1.2
    steps = pd.read_csv(project / "output" / "report.csv", dtype={"task_id": str})
    status = by_step(steps, "status")
    assert status == {
        "1.1#1": "ok",
        "1.1#2": "failed",
        "1.1#3": "skipped",
        "1.2#1": "ok",
        "2.1#1": "skipped",
    }
    errors = by_step(steps, "error")
    assert "model 'no-such-model' does not exist" in errors["1.1#2"]
    assert errors["1.1#3"] == "step 2 of 1.1 failed"
    assert errors["2.1#1"] == "chapter 1 did not complete"
    markdown = (project / "output" / "report.md").read_text()
    assert "not run: chapter 1 did not complete" in markdown
    manifest = json.loads((project / "output" / "manifest.json").read_text())
    assert [f["status"] for f in manifest["failures"]] == [
        "failed",
        "skipped",
        "skipped",
    ]
    assert "Not done: 3 steps" in capsys.readouterr().out

    # Fixed, the rerun pays only for what failed or was skipped.
    rows[1]["model"] = ""
    write_project(project, rows)
    sim.reset_log()
    assert run(project, sim) == 0
    assert len(completions(sim)) == 3


def test_budget_stops_admitting_calls_whose_worst_case_would_pass_it(
    prefect_harness, sim, tmp_path, capsys
):
    rows = [
        step_row(f"1.{i}", 1, f"Question {i} on {{{{ data.regions }}}}", data="regions")
        for i in range(1, 9)
    ]
    # Each call's worst case is a little over $0.0002 at gpt-4o-mini list prices.
    toml = "[llm]\nmax_tokens = 300\n\n[limits]\nmax_cost_usd = 0.0007\n"
    project = write_project(tmp_path / "p", rows, toml)

    assert run(project, sim) == 1

    manifest = json.loads((project / "output" / "manifest.json").read_text())
    assert 0 < manifest["spent_usd"] <= 0.0007
    admitted = len(completions(sim))
    assert 1 <= admitted < 8
    assert manifest["budget"]["calls_refused"] == 8 - admitted
    steps = pd.read_csv(project / "output" / "report.csv")
    refused = steps[steps.status == "skipped"]
    assert len(refused) == 8 - admitted
    assert refused.error.str.startswith("not run: it could cost up to $").all()
    assert f"Not done: {8 - admitted} steps" in capsys.readouterr().out


def test_dry_run_quotes_at_least_what_the_run_then_spends(
    prefect_harness, sim, tmp_path, capsys
):
    project = write_project(tmp_path / "p", chained_rows())
    quote = estimate(load_plan(project))
    assert run(project, sim, "--dry-run") == 0
    assert completions(sim) == []

    assert run(project, sim) == 0
    steps = pd.read_csv(project / "output" / "report.csv")
    quoted = [s for chapter in quote for s in chapter.steps]
    assert len(quoted) == len(steps) == len(completions(sim))
    assert sum(q.input_tokens for q in quoted) >= steps.prompt_tokens.sum()
    assert sum(q.output_tokens for q in quoted) >= steps.completion_tokens.sum()
    assert sum(q.cost_usd for q in quoted) >= steps.cost_usd.sum()

    capsys.readouterr()
    assert run(project, sim, "--dry-run") == 0
    assert "total                                    5      5          0" in (
        capsys.readouterr().out
    )


def test_a_run_killed_half_way_resumes_paying_only_for_unfinished_calls(
    prefect_harness, tmp_path
):
    from prefect.settings import PREFECT_API_URL

    from joule.sim import SimConfig, Simulator

    rows = [
        step_row(
            f"{c}.{t}", 1, f"Part {c}.{t} of {{{{ data.regions }}}}", data="regions"
        )
        for c in range(1, 4)
        for t in range(1, 9)
    ]
    toml = "[limits]\nmax_in_flight = 3\n"
    project = write_project(tmp_path / "p", rows, toml)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env["PREFECT_API_URL"] = PREFECT_API_URL.value()

    with Simulator(SimConfig(latency_min_s=0.2, latency_max_s=0.3)) as sim:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flows.report",
                str(project),
                "--base-url",
                sim.base_url,
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 90
        while sim.count(status=200) < 8 and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        answered_before = sim.count(status=200)
        stored = len(FolderCache(project / ".joule-cache"))
        assert 8 <= answered_before < 24, "the run was not killed half-way"
        # Every answer received was stored, but for calls in flight at the kill.
        assert stored >= answered_before - 3

        sim.reset_log()
        summary = report_flow(project_dir=str(project), base_url=sim.base_url)

        assert summary["ok"] == 24
        paid_again = len(completions(sim))
        assert paid_again == 24 - stored
        assert summary["cache"]["hits"] == stored


def test_a_cache_in_a_prefect_block_is_shared_by_runs_on_other_machines(
    prefect_harness, sim, tmp_path
):
    from prefect.filesystems import LocalFileSystem

    LocalFileSystem(basepath=str(tmp_path / "shared-store")).save(
        "joule-shared-cache", overwrite=True
    )
    toml = '[cache]\nblock = "local-file-system/joule-shared-cache"\n'
    # Two copies of one project, as two workers would each have.
    first = write_project(tmp_path / "worker-1", chained_rows(), toml)
    second = write_project(tmp_path / "worker-2", chained_rows(), toml)

    assert run(first, sim) == 0
    assert len(completions(sim)) == 5
    sim.reset_log()
    assert run(second, sim) == 0

    assert completions(sim) == []
    assert len(list((tmp_path / "shared-store").glob("*/*.json"))) == 5
    assert not (second / ".joule-cache").exists()
