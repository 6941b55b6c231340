"""The one retry layer: which failed model calls to retry, how long to wait."""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

import httpx2
import openai

from joule.errors import JouleError
from joule.limiter import parse_number

log = logging.getLogger(__name__)

T = TypeVar("T")

# Keys leak through servers that echo them in error text ("Incorrect API key
# provided: sk-proj-abc...") and through bearer tokens in proxied messages.
_SECRET = re.compile(r"\b(sk-[A-Za-z0-9_\-*]{4,}|Bearer\s+\S+)", re.IGNORECASE)
_MAX_DETAIL_CHARS = 200
_MAX_EXPONENT = 62


@dataclass(frozen=True)
class Verdict:
    """Whether a failed call is worth retrying, and what to tell the user if not."""

    transient: bool
    reason: str
    message: str
    status_code: int | None = None


class StepFailed(JouleError):
    """A model call was given up on; the message says why and what to do."""

    def __init__(self, message: str, *, attempts: int, verdict: Verdict):
        super().__init__(message)
        self.attempts = attempts
        self.verdict = verdict
        self.reason = message


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long one step may retry its model call."""

    max_attempts: int = 6
    deadline_s: float = 300.0
    base_s: float = 0.5
    cap_s: float = 20.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(
                f"max_attempts must be at least 1, got {self.max_attempts}: "
                "fix [limits].max_attempts"
            )
        if not self.deadline_s > 0:
            raise ValueError(
                f"deadline_s must be positive, got {self.deadline_s}: "
                "fix [limits].step_deadline_s"
            )
        if self.base_s < 0 or self.cap_s < 0:
            raise ValueError(
                f"backoff base and cap must not be negative, got {self.base_s} "
                f"and {self.cap_s}"
            )


def classify(exc: BaseException, *, model: str | None = None) -> Verdict:
    """Sort a failed model call into transient (retry) or permanent (report)."""
    if isinstance(exc, openai.APIStatusError):
        return _classify_status(exc, model or _model_of(exc))
    if isinstance(exc, openai.APITimeoutError | TimeoutError | httpx2.TimeoutException):
        return _transient("the request timed out")
    if isinstance(exc, openai.APIConnectionError | ConnectionError):
        return _transient("could not reach the server")
    if isinstance(exc, httpx2.TransportError):
        return _transient("the connection broke off")
    # A body cut short in transit fails to parse; the next attempt is whole.
    if isinstance(
        exc,
        openai.APIResponseValidationError | json.JSONDecodeError | httpx2.DecodingError,
    ):
        return _transient("the response was truncated or not valid JSON")
    if isinstance(exc, openai.ContentFilterFinishReasonError):
        return _permanent(
            "refused by the content filter",
            "the model's content filter refused this step: rephrase the prompt",
        )
    detail = _redact(f"{type(exc).__name__}: {exc}")
    return _permanent(
        "unexpected error",
        f"the model call failed with an unexpected error ({detail}): "
        "please report it with the step's row of the prompt sheet",
    )


def retry_after_seconds(
    exc: BaseException, *, now: datetime | None = None
) -> float | None:
    """The wait the server asked for in retry-after-ms or retry-after, if any."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None

    milliseconds = parse_number(headers.get("retry-after-ms"))
    if milliseconds is not None:
        return max(0.0, milliseconds / 1000)
    text = headers.get("retry-after")
    if text is None:
        return None
    seconds = parse_number(text)
    if seconds is not None:
        return max(0.0, seconds)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def backoff_delay(
    attempt: int,
    *,
    base: float = 0.5,
    cap: float = 20.0,
    rng: Callable[[], float] = random.random,
) -> float:
    """Full-jitter delay before retry number `attempt` (0 for the first retry)."""
    if attempt < 0:
        raise ValueError(f"attempt must not be negative, got {attempt}")
    ceiling = min(cap, base * 2 ** min(attempt, _MAX_EXPONENT))
    return rng() * ceiling


def call_with_retries(
    fn: Callable[[], T],
    *,
    policy: RetryPolicy,
    on_retry: Callable[[int, Verdict, float], object] | None = None,
    sleep: Callable[[float], object] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: Callable[[], float] = random.random,
) -> tuple[T, int]:
    """Call `fn` until it succeeds; return its result and the attempts it took.

    Raises StepFailed on a permanent error, when the attempts run out, or when
    the next wait would pass the policy's deadline.
    """
    deadline = clock() + policy.deadline_s
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn(), attempt
        except Exception as exc:
            verdict = classify(exc)
            if not verdict.transient:
                raise StepFailed(
                    verdict.message, attempts=attempt, verdict=verdict
                ) from exc
            if attempt >= policy.max_attempts:
                raise StepFailed(
                    _exhausted_message(attempt, verdict),
                    attempts=attempt,
                    verdict=verdict,
                ) from exc

            delay = backoff_delay(
                attempt - 1, base=policy.base_s, cap=policy.cap_s, rng=rng
            )
            # The server knows when it will take calls again; waiting less
            # only earns another 429.
            retry_after = retry_after_seconds(exc)
            if retry_after is not None:
                delay = max(delay, retry_after)
            if clock() + delay > deadline:
                raise StepFailed(
                    _deadline_message(policy.deadline_s, attempt, verdict),
                    attempts=attempt,
                    verdict=verdict,
                ) from exc

            log.info(
                "Attempt %d/%d failed (%s); retrying in %.1f s",
                attempt,
                policy.max_attempts,
                verdict.reason,
                delay,
            )
            if on_retry is not None:
                on_retry(attempt, verdict, delay)
            sleep(delay)


def _classify_status(exc: openai.APIStatusError, model: str | None) -> Verdict:
    named = f"model '{model}'" if model else "the model"
    status = exc.status_code
    code = _error_code(exc)
    detail = _server_detail(exc)
    lowered = detail.lower()

    if status == 429:
        if code == "insufficient_quota":
            return _permanent(
                "no quota left (429)",
                "your account has no quota left: check billing and usage limits "
                "with your provider",
                status,
            )
        # A single request above the per-minute token limit is refused every time.
        if "request too large" in lowered:
            return _permanent(
                "request above the token limit (429)",
                f"one request needs more tokens than the per-minute limit of {named} "
                "allows: shorten the prompt, narrow the data filter, "
                "lower max_rows or max_tokens",
                status,
            )
        return _transient("rate limited (429)", status)
    if status in (408, 409) or status >= 500:
        return _transient(f"server answered {status}", status)
    if status == 400 and (
        code == "context_length_exceeded" or "maximum context length" in lowered
    ):
        return _permanent(
            "prompt too long (400)",
            f"the prompt is too long for {named}: shorten the prompt, "
            "narrow the data filter or lower max_rows",
            status,
        )
    if status == 401:
        return _permanent(
            "API key rejected (401)",
            "the server rejected the API key: check OPENAI_API_KEY "
            "(and OPENAI_BASE_URL if you use another provider)",
            status,
        )
    if status == 403:
        return _permanent(
            "access denied (403)",
            f"the API key may not use {named} ({detail}): check the key's "
            "project permissions or choose another model",
            status,
        )
    if status == 404:
        if code == "model_not_found" or ("model" in lowered and "not exist" in lowered):
            return _permanent(
                "model not found (404)",
                f"{named} does not exist on this server: fix the model column "
                "or [llm].model",
                status,
            )
        return _permanent(
            "endpoint not found (404)",
            f"the server has no endpoint at {_endpoint(exc)}: check [llm].base_url or "
            "OPENAI_BASE_URL",
            status,
        )
    return _permanent(
        f"request rejected ({status})",
        f"the server rejected the request for {named} ({detail}): fix "
        "the step's model, temperature or max_tokens",
        status,
    )


def _transient(reason: str, status: int | None = None) -> Verdict:
    return Verdict(transient=True, reason=reason, message=reason, status_code=status)


def _permanent(reason: str, message: str, status: int | None = None) -> Verdict:
    return Verdict(False, reason, _redact(message), status)


def _error_code(exc: openai.APIStatusError) -> str | None:
    if exc.code:
        return exc.code
    # Some compatible servers put the code under `type` only.
    return exc.type if isinstance(exc.body, dict) else None


def _server_detail(exc: openai.APIStatusError) -> str:
    """The server's own explanation, shortened and with any key masked."""
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        text = body["message"]
    elif isinstance(body, str) and body:
        text = body
    else:
        text = exc.message
    text = " ".join(text.split())
    if len(text) > _MAX_DETAIL_CHARS:
        text = text[: _MAX_DETAIL_CHARS - 3] + "..."
    return _redact(text)


def _model_of(exc: openai.APIStatusError) -> str | None:
    """The model named in the failed request, read back from its JSON body."""
    try:
        sent = json.loads(exc.request.content)
    except (ValueError, TypeError, httpx2.RequestNotRead):
        return None
    model = sent.get("model") if isinstance(sent, dict) else None
    return model if isinstance(model, str) else None


def _endpoint(exc: openai.APIStatusError) -> str:
    url = exc.request.url
    # The query may carry a key on some gateways; the path is enough to fix it.
    return f"{url.scheme}://{url.host}{url.path}"


def _redact(text: str) -> str:
    return _SECRET.sub("[redacted]", text)


def _exhausted_message(attempts: int, verdict: Verdict) -> str:
    return (
        f"the model call failed {attempts} times in a row (last: {verdict.reason}): "
        "the server may be overloaded; run again later or raise [limits].max_attempts"
    )


def _deadline_message(deadline_s: float, attempts: int, verdict: Verdict) -> str:
    return (
        f"the model call did not succeed within the step deadline of "
        f"{deadline_s:.0f} s ({attempts} attempts, last: {verdict.reason}): run "
        "again later or raise [limits].step_deadline_s"
    )
