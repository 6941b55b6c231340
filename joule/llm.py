"""The model endpoint: which server, which key, and one chat completion call."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass

import openai

from joule.budget import Budget
from joule.calls import CallOutcome, CallRequest
from joule.errors import ConfigurationError
from joule.limiter import AdmissionController, effective_limits
from joule.retry import (
    RetryPolicy,
    StepFailed,
    Verdict,
    call_with_retries,
    classify,
    retry_after_seconds,
)
from joule.settings import ReportSettings
from joule.shared import SharedCredit
from joule.tokens import estimate_prompt_tokens

log = logging.getLogger(__name__)

OPENAI_DEFAULT_URL = "https://api.openai.com/v1"

# Local OpenAI-compatible servers ignore the key, but the SDK insists on one.
PLACEHOLDER_KEY = "not-needed"


@dataclass(frozen=True)
class Endpoint:
    """Where calls go; `repr` never shows the key."""

    base_url: str
    api_key: str
    simulated: bool = False

    def __repr__(self) -> str:
        return f"Endpoint(base_url={self.base_url!r}, simulated={self.simulated})"

    @property
    def description(self) -> str:
        if self.simulated:
            return (
                f"Joule's built-in simulator at {self.base_url} (answers are simulated)"
            )
        return self.base_url


def resolve_endpoint(
    toml_base_url: str | None,
    *,
    base_url: str | None = None,
    environ: dict[str, str] | None = None,
) -> Endpoint:
    """Pick the server and key: --base-url, then report.toml, then the environment."""
    env = os.environ if environ is None else environ
    url = base_url or toml_base_url or env.get("OPENAI_BASE_URL") or None
    key = env.get("OPENAI_API_KEY") or None
    if key is None and url is None:
        raise ConfigurationError(
            "No model endpoint is configured: OPENAI_API_KEY is not set.\n"
            "  - to use OpenAI:   export OPENAI_API_KEY=sk-...\n"
            "  - to use another OpenAI-compatible server: set OPENAI_BASE_URL or "
            "base_url under [llm] in report.toml\n"
            "  - to try Joule offline: add --simulate (runs the built-in simulator)"
        )
    return Endpoint(base_url=url or OPENAI_DEFAULT_URL, api_key=key or PLACEHOLDER_KEY)


def make_client(endpoint: Endpoint, timeout_s: float) -> openai.OpenAI:
    """An openai client with the SDK's own retries off: Joule retries once, itself."""
    return openai.OpenAI(
        base_url=endpoint.base_url,
        api_key=endpoint.api_key,
        max_retries=0,
        timeout=timeout_s,
    )


def send(
    client: openai.OpenAI, request: CallRequest
) -> tuple[CallOutcome, Mapping[str, str]]:
    """One attempt at a chat completion, with the response headers.

    Exceptions are left to the retry layer to classify.
    """
    started = time.perf_counter()
    raw = client.chat.completions.with_raw_response.create(
        model=request.model,
        messages=request.message_dicts(),
        temperature=request.temperature,
        max_tokens=request.max_tokens,
    )
    response = raw.parse()
    latency = time.perf_counter() - started
    usage = response.usage
    answer = response.choices[0].message.content or ""
    return CallOutcome(
        ok=True,
        answer=answer,
        prompt_tokens=usage.prompt_tokens if usage else 0,
        completion_tokens=usage.completion_tokens if usage else 0,
        latency_s=latency,
        attempts=1,
    ), raw.headers


class ModelCaller:
    """Makes one step's call within the run's limits, retrying what is transient."""

    def __init__(
        self,
        client: openai.OpenAI,
        settings: ReportSettings,
        *,
        logger: logging.Logger | logging.LoggerAdapter = log,
        budget: Budget | None = None,
    ):
        limits = settings.limits
        (
            self.requests_per_minute,
            self.tokens_per_minute,
            self.max_in_flight,
        ) = effective_limits(
            settings.llm.model,
            limits.requests_per_minute,
            limits.tokens_per_minute,
            limits.max_in_flight,
        )
        unset = {
            "requests": limits.requests_per_minute,
            "tokens": limits.tokens_per_minute,
        }
        self.limiter = AdmissionController(
            self.requests_per_minute,
            self.tokens_per_minute,
            self.max_in_flight,
            adopt_server_limits=[
                kind for kind, value in unset.items() if value is None
            ],
        )
        self.policy = RetryPolicy(
            max_attempts=limits.max_attempts, deadline_s=limits.step_deadline_s
        )
        self._client = client
        self._logger = logger
        # Set when other processes call the same provider (see joule.shared).
        self.shared: SharedCredit | None = None
        self.budget = budget or Budget(
            limits.max_cost_usd, limits.max_tokens_total, settings.llm.prices
        )

    def call(self, request: CallRequest, label: str = "") -> CallOutcome:
        """Admit, send and retry one request; a failure becomes a failed outcome."""
        prompt_estimate = estimate_prompt_tokens(request.message_dicts())
        estimate = prompt_estimate + request.max_tokens
        retries: list[str] = []

        reservation = self.budget.reserve(
            request.model, prompt_estimate, request.max_tokens
        )
        if isinstance(reservation, str):
            self._logger.warning("%s: %s", label or request.model, reservation)
            return CallOutcome(ok=False, skipped=True, error=reservation)

        def attempt() -> CallOutcome:
            if self.shared is not None:
                self.shared.acquire(estimate)
            permit = self.limiter.acquire(estimate)
            try:
                outcome, headers = send(self._client, request)
            except openai.APIStatusError as exc:
                if exc.status_code == 429 and classify(exc).transient:
                    self.limiter.on_rate_limited(
                        retry_after_seconds(exc), permit=permit
                    )
                self.limiter.observe_headers(exc.response.headers)
                permit.release(None)
                raise
            except BaseException:
                permit.release(None)
                raise
            permit.release(outcome.prompt_tokens + outcome.completion_tokens)
            self.limiter.observe_headers(headers)
            return outcome

        def on_retry(number: int, verdict: Verdict, delay: float) -> None:
            retries.append(verdict.reason)
            self._logger.info(
                "%s: attempt %d/%d failed (%s); retrying in %.1f s",
                label or request.model,
                number,
                self.policy.max_attempts,
                verdict.reason,
                delay,
            )

        try:
            outcome, attempts = call_with_retries(
                attempt, policy=self.policy, on_retry=on_retry
            )
        except StepFailed as exc:
            reservation.cancel()
            return CallOutcome(
                ok=False, error=exc.reason, attempts=exc.attempts, retries=retries
            )
        except BaseException:
            reservation.cancel()
            raise
        reservation.settle(outcome.prompt_tokens, outcome.completion_tokens)
        outcome.attempts = attempts
        outcome.retries = retries
        return outcome
