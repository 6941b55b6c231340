"""Model calls in a 429 storm with faults, through the real openai client."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from joule.calls import CallOutcome, CallRequest
from joule.llm import Endpoint, ModelCaller, make_client
from joule.settings import ReportSettings
from joule.sim import RequestRecord, SimConfig, Simulator

COMPLETIONS = "/v1/chat/completions"
MODEL = "gpt-4o-mini"
CALLS = 40

# The server's real limit: 10 requests a second, five of them at once.
SERVER_RPM = 600
SERVER_BURST_REQUESTS = 5
# What the project claims: four times the server's limit, so the server
# answers 429 until the limiter has learnt better.
CLAIMED_RPM = 2400


@pytest.fixture
def storm() -> Iterator[Simulator]:
    config = SimConfig(
        models=(MODEL,),
        latency_min_s=0.01,
        latency_max_s=0.05,
        requests_per_minute=SERVER_RPM,
        burst=SERVER_BURST_REQUESTS / SERVER_RPM,
        fail_500=0.05,
        fail_503=0.05,
        truncate=0.05,
        seed=3,
    )
    with Simulator(config) as sim:
        yield sim


@pytest.fixture(scope="module")
def refusing() -> Iterator[Simulator]:
    """A server on which one model's account has no quota left."""
    config = SimConfig(
        latency_min_s=0.01,
        latency_max_s=0.02,
        model_faults={"gpt-4.1-nano": "insufficient_quota"},
    )
    with Simulator(config) as sim:
        yield sim


def make_caller(sim: Simulator) -> ModelCaller:
    settings = ReportSettings.model_validate(
        {
            "title": "Rate-limit storm",
            "limits": {
                "requests_per_minute": CLAIMED_RPM,
                "tokens_per_minute": 10_000_000,
                "max_in_flight": 16,
                "max_attempts": 10,
                "step_deadline_s": 30,
            },
        }
    )
    client = make_client(Endpoint(sim.base_url, "sim"), timeout_s=5)
    return ModelCaller(client, settings)


def request(number: int, model: str = MODEL) -> CallRequest:
    prompt = f"Section {number}: demand is {40 + number / 10:.1f} TWh in 2030."
    return CallRequest(
        model=model, messages=(("user", prompt),), temperature=0.2, max_tokens=60
    )


def most_in_window(times: Sequence[float], window_s: float) -> int:
    """The most of `times` that fall within any window of `window_s` seconds."""
    ordered = sorted(times)
    most, start = 0, 0
    for end, time in enumerate(ordered):
        while time - ordered[start] > window_s:
            start += 1
        most = max(most, end - start + 1)
    return most


def completions(sim: Simulator) -> list[RequestRecord]:
    return [r for r in sim.requests if r.path == COMPLETIONS]


def test_every_call_succeeds_in_a_429_storm_without_exceeding_the_limit(storm):
    caller = make_caller(storm)

    with ThreadPoolExecutor(16) as pool:
        outcomes: list[CallOutcome] = list(
            pool.map(lambda n: caller.call(request(n), f"call {n}"), range(CALLS))
        )

    assert [o.error for o in outcomes if not o.ok] == []
    assert all(o.answer and o.answer.startswith("[simulated answer]") for o in outcomes)
    reasons = {reason for o in outcomes for reason in o.retries}
    assert "rate limited (429)" in reasons
    assert reasons & {"server answered 500", "server answered 503"}

    records = completions(storm)
    admitted = [r.arrived_at for r in records if r.status != 429]
    rejected = len(records) - len(admitted)
    assert rejected > 0, "the claimed limit should have provoked 429s"
    assert len(records) == sum(o.attempts for o in outcomes)
    # A token bucket lets through its burst plus its rate over any window.
    per_second = SERVER_RPM // 60
    assert most_in_window(admitted, 1.0) <= SERVER_BURST_REQUESTS + per_second
    # The limiter learns the server's limit and stops provoking it.
    assert rejected < CALLS / 2


def test_limiter_adopts_the_limit_the_server_reports(storm):
    caller = make_caller(storm)

    outcome = caller.call(request(1))

    assert outcome.ok
    assert caller.limiter.effective_requests_per_minute == pytest.approx(SERVER_RPM)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        pytest.param(
            "gpt-imaginary",
            "model 'gpt-imaginary' does not exist on this server: fix the model "
            "column or [llm].model",
            id="unknown-model-404",
        ),
        pytest.param(
            "gpt-4.1-nano",
            "your account has no quota left: check billing and usage limits with "
            "your provider",
            id="insufficient-quota-429",
        ),
    ],
)
def test_permanent_error_fails_at_once_with_one_request(refusing, model, message):
    refusing.reset_log()
    caller = make_caller(refusing)

    outcome = caller.call(request(1, model=model))

    assert not outcome.ok
    assert outcome.error == message
    assert outcome.attempts == 1 and outcome.retries == []
    assert len(completions(refusing)) == 1
    # Only a rate limit slows the other calls down; a refusal does not.
    assert caller.limiter.rate_limited == 0
