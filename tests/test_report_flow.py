"""The example project end to end: Prefect flow, real openai client, simulator."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import docx
import pandas as pd
import pytest

from flows.report import main, report_flow
from joule.plan import load_plan
from joule.sim import SimConfig, Simulator

ID_COLUMNS = {"objective_id": str, "task_id": str}


@pytest.fixture(scope="module")
def example_run(prefect_harness, tmp_path_factory):
    """Run the example once against a simulator with uneven latencies."""
    example = Path(__file__).resolve().parents[1] / "examples" / "regional-energy"
    # A copy: the run fills the project's call cache.
    project = tmp_path_factory.mktemp("example") / "project"
    shutil.copytree(example, project, ignore=shutil.ignore_patterns("output", ".*"))
    out = tmp_path_factory.mktemp("example-run")
    # Latencies vary ten-fold, so answers arrive out of sheet order.
    with Simulator(SimConfig(latency_min_s=0.01, latency_max_s=0.3, seed=7)) as sim:
        summary = report_flow(
            project_dir=str(project), out_dir=str(out), base_url=sim.base_url
        )
        requests = [r for r in sim.requests if r.path.endswith("/chat/completions")]
    return load_plan(project), summary, requests, out


def test_every_step_is_answered_with_one_request_each(example_run):
    plan, summary, requests, _ = example_run

    assert summary["steps"] == len(plan.steps()) == 33
    assert summary["ok"] == 33 and summary["failed"] == 0
    assert len(requests) == 33
    assert all(r.status == 200 for r in requests)


def test_report_csv_usage_is_what_the_server_served(example_run):
    _, summary, requests, out = example_run
    steps = pd.read_csv(out / "report.csv", dtype=ID_COLUMNS)

    recorded = sorted(zip(steps.prompt_tokens, steps.completion_tokens, strict=True))
    served = sorted((r.prompt_tokens, r.completion_tokens) for r in requests)
    assert recorded == served
    assert summary["prompt_tokens"] == sum(r.prompt_tokens for r in requests)
    assert (steps.status == "ok").all()
    assert (steps.attempts == 1).all()


def test_report_keeps_sheet_order_whatever_order_answers_arrived(example_run):
    plan, _, _, out = example_run
    markdown = (out / "report.md").read_text(encoding="utf-8")

    chapters = re.findall(r"^## (\S+) ", markdown, flags=re.MULTILINE)
    sections = re.findall(r"^### (\S+) ", markdown, flags=re.MULTILINE)
    assert chapters == [o.objective_id for o in plan.objectives]
    assert sections == [t.task_id for o in plan.objectives for t in o.tasks]
    steps = pd.read_csv(out / "report.csv", dtype=ID_COLUMNS)
    assert list(zip(steps.task_id, steps.step, strict=True)) == [
        (s.task_id, s.step) for s in plan.steps()
    ]


def test_report_quotes_figures_from_the_data_tables(example_run):
    _, _, _, out = example_run
    steps = pd.read_csv(out / "report.csv", dtype=ID_COLUMNS)
    first = steps.iloc[0]

    # The filtered table reached the prompt, and the answer quotes the prompt.
    assert "| gemeente |" in first.prompt
    assert first.answer.startswith("[simulated answer]")


def test_later_steps_and_dependent_chapters_see_earlier_answers(example_run):
    plan, _, _, out = example_run
    steps = pd.read_csv(out / "report.csv", dtype=ID_COLUMNS).set_index(
        ["task_id", "step"]
    )
    answer = steps.loc[("2.1", 1), "answer"]
    assert answer in steps.loc[("2.1", 2), "prompt"]

    # Conclusions depend on chapters 1-5: their shown answers are in its prompts.
    conclusions = [s for s in plan.steps() if s.objective_id == "6" and s.step == 1]
    section_text = steps.loc[("5.1", 2), "answer"]
    assert any(section_text in steps.loc[(s.task_id, 1), "prompt"] for s in conclusions)


def test_word_report_has_real_headings_and_the_manifest_counts_every_step(
    example_run,
):
    plan, summary, _, out = example_run
    document = docx.Document(str(out / "report.docx"))
    headings = [p.text for p in document.paragraphs if p.style.name == "Heading 1"]
    assert headings == [f"{o.objective_id} {o.objective}" for o in plan.objectives]

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["totals"]["steps"] == 33
    assert manifest["totals"]["prompt_tokens"] == summary["prompt_tokens"]
    assert len(list((out / "chapters").glob("*.csv"))) == len(plan.objectives)


def test_dry_run_renders_every_prompt_and_sends_nothing(
    sim, example_project, tmp_path, capsys
):
    out = tmp_path / "dry"
    code = main(
        [
            str(example_project),
            "--dry-run",
            "--out",
            str(out),
            "--base-url",
            sim.base_url,
        ]
    )

    assert code == 0
    assert sim.requests == []
    assert len(list((out / "prompts").glob("*.md"))) == 33
    printed = capsys.readouterr().out
    assert "nothing was sent to the model" in printed
    assert re.search(r"^total\s+33\s", printed, flags=re.MULTILINE)


def test_sequential_switches_make_one_call_at_a_time(prefect_harness, sim, tmp_path):
    from helpers import step_row, write_project

    rows = [step_row(f"{c}.{t}", 1, f"Part {c}.{t}") for c in (1, 2) for t in (1, 2)]
    toml = "[run]\nconcurrent_objectives = false\nconcurrent_tasks = false\n"
    project = write_project(tmp_path / "p", rows, toml)

    summary = report_flow(project_dir=str(project), base_url=sim.base_url)

    assert summary["ok"] == 4
    calls = sorted(
        (r.arrived_at, r.finished_at)
        for r in sim.requests
        if r.path.endswith("/chat/completions")
    )
    assert len(calls) == 4
    assert all(
        later[0] >= earlier[1] for earlier, later in zip(calls, calls[1:], strict=False)
    )


def test_a_chapter_prefect_fails_to_record_is_finished_without_paying_again(
    prefect_harness, sim, tmp_path, monkeypatch
):
    """Prefect's server is the boundary: its failure is injected, nothing else."""
    from helpers import step_row, write_project

    import flows.objective

    rows = [
        step_row("1.1", 1, "First {{ data.regions }}", data="regions"),
        step_row("1.1", 2, "Then: {{ previous[-1] }}"),
        step_row("2.1", 1, "Second {{ data.regions }}", data="regions"),
        step_row("3.1", 1, "Sum up {{ chapters['2'] }}", depends_on="2"),
    ]
    project = write_project(tmp_path / "p", rows)
    real_subflow = flows.objective.objective_flow

    class LockedDatabase:
        """What Prefect's client raises when its SQLite server stays locked."""

        def with_options(self, **options):
            subflow = real_subflow.with_options(**options)

            def run(run_id, objective_id, *args, **kwargs):
                if objective_id == "2":
                    raise RuntimeError("503 Service Unavailable: database is locked")
                return subflow(run_id, objective_id, *args, **kwargs)

            return run

    monkeypatch.setattr(flows.objective, "objective_flow", LockedDatabase())

    summary = report_flow(
        project_dir=str(project), out_dir=str(tmp_path / "out"), base_url=sim.base_url
    )

    assert summary["ok"] == 4
    assert len([r for r in sim.requests if r.path.endswith("/chat/completions")]) == 4
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "### 2.1 Section 2.1" in markdown and "### 3.1 Section 3.1" in markdown


def test_the_api_key_reaches_no_output_and_no_log(
    prefect_harness, sim, tmp_path, monkeypatch, caplog
):
    from helpers import step_row, write_project

    secret = "sk-proj-" + "S3cr3tK3y" * 4
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    rows = [
        step_row("1.1", 1, "Hello {{ data.regions }}", data="regions"),
        step_row("1.2", 1, "Broken", model="no-such-model"),
    ]
    project = write_project(tmp_path / "p", rows)
    out = tmp_path / "out"

    with caplog.at_level("DEBUG"):
        summary = report_flow(
            project_dir=str(project), out_dir=str(out), base_url=sim.base_url
        )

    assert summary["failed"] == 1  # an error message passed through the logs too
    written = [p for p in out.rglob("*") if p.is_file()]
    assert written
    for path in written:
        assert secret.encode() not in path.read_bytes(), path
    assert "1.1 step 1: Section 1.1: ok" in caplog.text  # the run's logs were seen
    assert secret not in caplog.text
    assert secret not in json.dumps(summary)
