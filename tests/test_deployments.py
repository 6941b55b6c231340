"""prefect.yaml names a flow that exists, with parameters that it accepts."""

from __future__ import annotations

import inspect
from pathlib import Path

import yaml
from prefect.flows import load_flow_from_entrypoint

REPO = Path(__file__).resolve().parents[1]


def test_every_deployment_entrypoint_loads_and_takes_its_parameters(monkeypatch):
    monkeypatch.chdir(REPO)
    config = yaml.safe_load((REPO / "prefect.yaml").read_text())

    assert config["deployments"], "prefect.yaml defines no deployment"
    for deployment in config["deployments"]:
        flow = load_flow_from_entrypoint(deployment["entrypoint"])
        accepted = inspect.signature(flow.fn).parameters
        assert set(deployment["parameters"]) <= set(accepted), deployment["name"]
        assert (REPO / deployment["parameters"]["project_dir"]).is_dir()
