"""Tests of the retry layer, with real openai exceptions and injected time."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx2
import openai
import pytest

from joule.errors import JouleError
from joule.retry import (
    RetryPolicy,
    StepFailed,
    Verdict,
    backoff_delay,
    call_with_retries,
    classify,
    retry_after_seconds,
)

URL = "https://llm.example.test/v1/chat/completions"
STATUS_ERRORS: dict[int, type[openai.APIStatusError]] = {
    400: openai.BadRequestError,
    401: openai.AuthenticationError,
    403: openai.PermissionDeniedError,
    404: openai.NotFoundError,
    409: openai.ConflictError,
    422: openai.UnprocessableEntityError,
    429: openai.RateLimitError,
}


def request(model: str = "gpt-4o-mini") -> httpx2.Request:
    return httpx2.Request("POST", URL, json={"model": model, "messages": []})


def status_error(
    status: int,
    code: str | None = None,
    message: str = "something went wrong",
    headers: dict[str, str] | None = None,
    model: str = "gpt-4o-mini",
) -> openai.APIStatusError:
    """The exception the openai client raises for this HTTP answer."""
    error = {"message": message, "type": code, "param": None, "code": code}
    response = httpx2.Response(
        status, request=request(model), headers=headers, json={"error": error}
    )
    kind = STATUS_ERRORS.get(status)
    if kind is None:
        kind = openai.InternalServerError if status >= 500 else openai.APIStatusError
    # The client hands the inner `error` object to the exception as its body.
    return kind(f"Error code: {status} - {message}", response=response, body=error)


def truncated_json() -> json.JSONDecodeError:
    try:
        json.loads('{"choices": [{"mess')
    except json.JSONDecodeError as exc:
        return exc
    raise AssertionError("the truncated body parsed")


@pytest.mark.parametrize(
    "exc",
    [
        pytest.param(openai.APIConnectionError(request=request()), id="connection"),
        pytest.param(openai.APITimeoutError(request()), id="sdk-timeout"),
        pytest.param(TimeoutError("read timed out"), id="builtin-timeout"),
        pytest.param(ConnectionResetError("reset by peer"), id="builtin-connection"),
        pytest.param(httpx2.ReadError("eof", request=request()), id="read-error"),
        pytest.param(
            httpx2.RemoteProtocolError("incomplete chunked read", request=request()),
            id="cut-short",
        ),
        pytest.param(truncated_json(), id="truncated-json"),
        pytest.param(
            openai.APIResponseValidationError(
                httpx2.Response(200, request=request(), text="{"), body="{"
            ),
            id="invalid-body",
        ),
        pytest.param(status_error(408), id="408"),
        pytest.param(status_error(409), id="409"),
        pytest.param(status_error(429, "rate_limit_exceeded"), id="429-rate-limit"),
        pytest.param(status_error(429), id="429-without-code"),
        pytest.param(status_error(500), id="500"),
        pytest.param(status_error(502), id="502"),
        pytest.param(status_error(503), id="503"),
        pytest.param(status_error(504), id="504"),
    ],
)
def test_passing_troubles_are_retried(exc):
    assert classify(exc).transient is True


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        pytest.param(status_error(400), 400, id="400"),
        pytest.param(status_error(400, "context_length_exceeded"), 400, id="400-long"),
        pytest.param(status_error(401, "invalid_api_key"), 401, id="401"),
        pytest.param(status_error(403), 403, id="403"),
        pytest.param(status_error(404, "model_not_found"), 404, id="404-model"),
        pytest.param(status_error(404), 404, id="404-endpoint"),
        pytest.param(status_error(422), 422, id="422"),
        pytest.param(status_error(429, "insufficient_quota"), 429, id="429-quota"),
        pytest.param(
            status_error(429, "rate_limit_exceeded", "Request too large for gpt-4o"),
            429,
            id="429-request-above-limit",
        ),
        pytest.param(ValueError("bad things"), None, id="unexpected"),
    ],
)
def test_errors_that_would_recur_are_not_retried(exc, status):
    verdict = classify(exc)

    assert verdict.transient is False
    assert verdict.status_code == status


@pytest.mark.parametrize(
    ("exc", "message"),
    [
        pytest.param(
            status_error(400, "context_length_exceeded"),
            "the prompt is too long for model 'gpt-4o-mini': shorten the prompt, "
            "narrow the data filter or lower max_rows",
            id="context-length-by-code",
        ),
        pytest.param(
            status_error(400, None, "This model's maximum context length is 4096"),
            "the prompt is too long for model 'gpt-4o-mini': shorten the prompt, "
            "narrow the data filter or lower max_rows",
            id="context-length-by-message",
        ),
        pytest.param(
            status_error(401, "invalid_api_key"),
            "the server rejected the API key: check OPENAI_API_KEY "
            "(and OPENAI_BASE_URL if you use another provider)",
            id="401",
        ),
        pytest.param(
            status_error(404, "model_not_found", model="gpt-9"),
            "model 'gpt-9' does not exist on this server: fix the model column "
            "or [llm].model",
            id="404-model",
        ),
        pytest.param(
            status_error(404, None, "The model `gpt-9` does not exist.", model="gpt-9"),
            "model 'gpt-9' does not exist on this server: fix the model column "
            "or [llm].model",
            id="404-model-compatible-server",
        ),
        pytest.param(
            status_error(404, None, "Not Found"),
            "the server has no endpoint at "
            "https://llm.example.test/v1/chat/completions: check [llm].base_url "
            "or OPENAI_BASE_URL",
            id="404-endpoint",
        ),
        pytest.param(
            status_error(429, "insufficient_quota"),
            "your account has no quota left: check billing and usage limits with "
            "your provider",
            id="429-quota",
        ),
        pytest.param(
            status_error(400, "invalid_value", "Invalid value for temperature: 5"),
            "the server rejected the request for model 'gpt-4o-mini' (Invalid value "
            "for temperature: 5): fix the step's model, temperature or max_tokens",
            id="400-other",
        ),
    ],
)
def test_a_permanent_error_tells_the_user_what_to_fix(exc, message):
    assert classify(exc).message == message


def test_the_model_given_by_the_caller_names_the_model_in_the_message():
    verdict = classify(status_error(400, "context_length_exceeded"), model="llama3")

    assert verdict.message.startswith("the prompt is too long for model 'llama3':")


@pytest.mark.parametrize(
    "exc",
    [
        pytest.param(
            status_error(401, "invalid_api_key", "Incorrect API key: sk-proj-abcd1234"),
            id="401",
        ),
        pytest.param(
            status_error(400, None, "header Authorization: Bearer sk-proj-abcd1234"),
            id="400-echoing-the-header",
        ),
        pytest.param(
            status_error(403, None, "key sk-proj-abcd1234 may not use this model"),
            id="403",
        ),
        pytest.param(RuntimeError("client built with sk-proj-abcd1234"), id="other"),
    ],
)
def test_messages_never_contain_the_api_key(exc):
    verdict = classify(exc)

    assert "abcd1234" not in verdict.message
    assert "abcd1234" not in verdict.reason


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        pytest.param({"retry-after-ms": "1500"}, 1.5, id="milliseconds"),
        pytest.param({"retry-after": "7"}, 7.0, id="seconds"),
        pytest.param({"Retry-After": "0.25"}, 0.25, id="fractional-any-case"),
        pytest.param({"retry-after-ms": "200", "retry-after": "9"}, 0.2, id="ms-wins"),
        pytest.param(
            {"retry-after": "Wed, 21 Oct 2026 07:28:30 GMT"}, 30.0, id="http-date"
        ),
        pytest.param(
            {"retry-after": "Wed, 21 Oct 2026 07:27:00 GMT"}, 0.0, id="date-in-past"
        ),
        pytest.param({"retry-after": "-3"}, 0.0, id="negative"),
        pytest.param({"retry-after": "soon"}, None, id="garbled"),
        pytest.param({"retry-after-ms": "nan"}, None, id="not-a-number"),
        pytest.param({}, None, id="absent"),
    ],
)
def test_retry_after_is_read_from_the_response_headers(headers, seconds):
    exc = status_error(429, "rate_limit_exceeded", headers=headers)
    now = datetime(2026, 10, 21, 7, 28, 0, tzinfo=UTC)

    assert retry_after_seconds(exc, now=now) == seconds


def test_errors_without_a_response_have_no_retry_after():
    assert retry_after_seconds(openai.APITimeoutError(request())) is None


@pytest.mark.parametrize("attempt", [0, 1, 2, 5, 10, 100, 5000])
@pytest.mark.parametrize(
    "draw", [0.0, 0.5, 0.999999], ids=["lowest", "middle", "highest"]
)
def test_backoff_stays_between_zero_and_the_cap(attempt, draw):
    delay = backoff_delay(attempt, base=0.5, cap=20.0, rng=lambda: draw)

    assert 0.0 <= delay <= 20.0


def test_the_backoff_ceiling_doubles_with_each_attempt_up_to_the_cap():
    ceilings = [backoff_delay(n, base=0.5, cap=20.0, rng=lambda: 1.0) for n in range(8)]

    assert ceilings == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 20.0, 20.0]


def test_backoff_is_jittered_across_the_whole_range():
    draws = iter([0.0, 0.25, 0.75])
    delays = [backoff_delay(3, rng=lambda: next(draws)) for _ in range(3)]

    assert delays == [0.0, 1.0, 3.0]


def test_a_negative_attempt_is_refused():
    with pytest.raises(ValueError, match="attempt must not be negative, got -1"):
        backoff_delay(-1)


class FakeTime:
    """A clock and a sleep that share simulated time and record every sleep."""

    def __init__(self):
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def failing(*outcomes):
    """A call that raises or returns each outcome in turn, counting its calls."""
    remaining = list(outcomes)

    def call():
        call.count += 1
        outcome = remaining.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    call.count = 0
    return call


def run(fn, policy: RetryPolicy | None = None, fake=None, **options):
    """Call with retries in simulated time; the top of each backoff by default."""
    fake = fake or FakeTime()
    return call_with_retries(
        fn,
        policy=policy or RetryPolicy(),
        sleep=fake.sleep,
        clock=fake.clock,
        rng=options.pop("rng", lambda: 1.0),
        **options,
    )


@pytest.mark.parametrize("failures", [0, 1, 2, 5], ids=lambda n: f"{n}-failures")
def test_transient_failures_are_retried_until_the_call_succeeds(failures):
    fn = failing(*[status_error(503)] * failures, "the answer")

    result, attempts = run(fn)

    assert result == "the answer"
    assert attempts == failures + 1
    assert fn.count == failures + 1


def test_every_retry_is_announced_with_its_attempt_verdict_and_delay():
    fake = FakeTime()
    retries: list[tuple[int, Verdict, float]] = []
    fn = failing(status_error(502), openai.APITimeoutError(request()), "ok")

    run(fn, fake=fake, on_retry=lambda *args: retries.append(args))

    assert [(n, v.reason, d) for n, v, d in retries] == [
        (1, "server answered 502", 0.5),
        (2, "the request timed out", 1.0),
    ]
    assert fake.sleeps == [0.5, 1.0]


def test_a_permanent_error_stops_at_once_with_what_to_fix():
    fake = FakeTime()
    cause = status_error(401, "invalid_api_key")
    fn = failing(cause, "never reached")

    with pytest.raises(StepFailed) as failure:
        run(fn, fake=fake)

    assert fn.count == 1
    assert fake.sleeps == []
    assert failure.value.attempts == 1
    assert failure.value.reason == classify(cause).message
    assert failure.value.__cause__ is cause
    assert isinstance(failure.value, JouleError)


def test_the_attempts_run_out_after_max_attempts():
    fn = failing(*[status_error(500)] * 3)

    with pytest.raises(StepFailed) as failure:
        run(fn, policy=RetryPolicy(max_attempts=3))

    assert fn.count == 3
    assert failure.value.attempts == 3
    assert str(failure.value) == (
        "the model call failed 3 times in a row (last: server answered 500): the "
        "server may be overloaded; run again later or raise [limits].max_attempts"
    )


def test_no_retry_starts_that_would_end_after_the_deadline():
    fake = FakeTime()
    fn = failing(*[ConnectionError("refused")] * 6)
    policy = RetryPolicy(max_attempts=6, deadline_s=10.0, base_s=4.0, cap_s=60.0)

    with pytest.raises(StepFailed) as failure:
        run(fn, policy=policy, fake=fake)

    # Waits of 4 s then 8 s: the second would end at 12 s, past the 10 s deadline.
    assert fake.sleeps == [4.0]
    assert failure.value.attempts == 2
    assert str(failure.value) == (
        "the model call did not succeed within the step deadline of 10 s "
        "(2 attempts, last: could not reach the server): run again later or "
        "raise [limits].step_deadline_s"
    )


def test_time_spent_inside_the_calls_counts_against_the_deadline():
    fake = FakeTime()

    def slow_failure():
        fake.now += 10.0
        raise TimeoutError("read timed out")

    with pytest.raises(StepFailed, match="step deadline of 20 s") as failure:
        run(slow_failure, policy=RetryPolicy(deadline_s=20.0), fake=fake)

    # Failed at 10 s, retried at 10.5 s, failed at 20.5 s: no time left.
    assert fake.sleeps == [0.5]
    assert failure.value.attempts == 2


def test_the_server_retry_after_is_waited_at_least():
    fake = FakeTime()
    limited = status_error(429, "rate_limit_exceeded", headers={"retry-after": "7"})

    run(failing(limited, "ok"), fake=fake, rng=lambda: 0.0)

    assert fake.sleeps == [7.0]


def test_a_retry_after_beyond_the_deadline_gives_up_without_waiting():
    fake = FakeTime()
    limited = status_error(503, headers={"retry-after": "3600"})

    with pytest.raises(StepFailed, match="within the step deadline"):
        run(failing(limited), policy=RetryPolicy(deadline_s=300), fake=fake)

    assert fake.sleeps == []


def test_an_interrupt_is_not_swallowed_by_the_retries():
    fn = failing(KeyboardInterrupt())

    with pytest.raises(KeyboardInterrupt):
        run(fn)

    assert fn.count == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param(
            {"max_attempts": 0}, "max_attempts must be at least 1, got 0", id="attempts"
        ),
        pytest.param(
            {"deadline_s": 0}, "deadline_s must be positive, got 0", id="deadline"
        ),
        pytest.param({"base_s": -1.0}, "must not be negative, got -1.0", id="base"),
    ],
)
def test_an_impossible_policy_is_refused_with_the_bad_value(options, message):
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**options)
