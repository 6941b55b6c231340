"""Shared fixtures: a clean environment, one Prefect harness, a simulator."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from joule.sim import SimConfig, Simulator

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "regional-energy"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach a real API or depend on the developer's settings."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect server and database for the whole session (~9 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def simulator():
    """A fast simulator shared by the session; tests reset its log before use."""
    with Simulator(SimConfig(latency_min_s=0.01, latency_max_s=0.05)) as sim:
        yield sim


@pytest.fixture
def sim(simulator: Simulator) -> Simulator:
    simulator.reset_log()
    return simulator


@pytest.fixture
def example_project(tmp_path: Path) -> Path:
    """A private copy of the example project, free to edit."""
    target = tmp_path / "project"
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns("output"))
    return target
