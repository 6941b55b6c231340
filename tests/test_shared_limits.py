"""Limits shared by several processes through Prefect global concurrency limits."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from joule.shared import SharedCredit
from joule.sim import SimConfig, Simulator

REPO = Path(__file__).resolve().parents[1]


def test_credit_is_drawn_in_batches_not_per_call():
    draws: list[tuple[int, int]] = []
    credit = SharedCredit(
        lambda requests, tokens: draws.append((requests, tokens)),
        requests_per_minute=1200,  # batches of 10 requests
        tokens_per_minute=120_000,  # batches of 1,000 tokens
    )

    for _ in range(25):
        credit.acquire(300)

    assert draws[0] == (10, 1000)
    assert sum(r for r, _ in draws) >= 25 and sum(t for _, t in draws) >= 25 * 300
    assert len(draws) < 25 / 2


def test_a_call_larger_than_a_batch_draws_what_it_needs():
    draws: list[tuple[int, int]] = []
    credit = SharedCredit(
        lambda requests, tokens: draws.append((requests, tokens)),
        requests_per_minute=600,
        tokens_per_minute=6_000,  # batches of 50 tokens
    )

    credit.acquire(400)

    assert draws == [(5, 400)]


def test_two_processes_sharing_a_limit_stay_within_it_together(prefect_harness):
    from prefect.settings import PREFECT_API_URL

    rate_per_s, calls = 5, 20
    # The server allows 5 requests/s; each process alone would take 5/s, so
    # without sharing the two together would draw a storm of 429s.
    config = SimConfig(
        requests_per_minute=rate_per_s * 60,
        burst=1 / 60,
        latency_min_s=0.01,
        latency_max_s=0.02,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env["PREFECT_API_URL"] = PREFECT_API_URL.value()
    with Simulator(config) as sim:
        workers = [
            subprocess.Popen(
                [
                    sys.executable,
                    "tests/shared_limit_worker.py",
                    sim.base_url,
                    str(calls),
                    str(rate_per_s * 60),
                ],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        outputs = [w.communicate(timeout=120)[0].split() for w in workers]
        log = [r for r in sim.requests if r.path.endswith("/chat/completions")]

    assert [int(ok) for ok, _ in outputs] == [calls, calls]
    rejected = sum(r.status == 429 for r in log)
    assert rejected <= 0.02 * len(log), f"{rejected} of {len(log)} requests got 429"
    # Every call of both processes in the log, none sent twice.
    assert sum(r.status == 200 for r in log) == 2 * calls
