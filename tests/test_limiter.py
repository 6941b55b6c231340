"""Tests of the admission controller, driven by a fake clock."""

from __future__ import annotations

import math
import threading
import time

import pytest

from joule.limiter import (
    DEFAULT_PAUSE_S,
    MAX_HEADER_HOLD_S,
    AdmissionController,
    AdmissionTimeout,
    Permit,
    default_limits,
    default_request_burst,
    parse_reset_duration,
    predict_wall_time,
)


class FakeClock:
    """A clock that moves only when a test moves it."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def advancing_wait(clock: FakeClock):
    """A condition wait that lets simulated time pass instead of blocking."""

    def wait(condition: threading.Condition, timeout: float | None) -> None:
        if timeout is None:
            raise AssertionError("the caller would wait forever for a release")
        clock.advance(timeout)

    return wait


def controller(
    clock: FakeClock,
    rpm: float | None = None,
    tpm: float | None = None,
    in_flight: int = 1000,
    **options,
) -> AdmissionController:
    return AdmissionController(
        rpm, tpm, in_flight, clock=clock, wait=advancing_wait(clock), **options
    )


def admit_when_allowed(limiter: AdmissionController, clock: FakeClock, tokens=1):
    """Advance the clock just as far as the limiter asks, then take a permit."""
    while (permit := limiter.try_acquire(tokens)) is None:
        delay = limiter.wait_time(tokens)
        assert math.isfinite(delay), "blocked by the in-flight cap"
        clock.advance(delay)
    return permit


def admission_times(limiter, clock, calls: int, tokens: int = 1) -> list[float]:
    start = clock.now
    times = []
    for _ in range(calls):
        admit_when_allowed(limiter, clock, tokens)
        times.append(round(clock.now - start, 6))
    return times


@pytest.mark.parametrize(
    ("rpm", "burst", "calls", "expected_s"),
    [
        pytest.param(600, 1, 11, 1.0, id="10-per-second-one-at-a-time"),
        pytest.param(60, 1, 4, 3.0, id="1-per-second"),
        pytest.param(600, 5, 15, 1.0, id="burst-of-5-then-paced"),
        pytest.param(30, 1, 3, 4.0, id="below-one-per-second"),
    ],
)
def test_requests_are_paced_at_the_configured_rate(rpm, burst, calls, expected_s):
    clock = FakeClock()
    limiter = controller(clock, rpm=rpm, burst_requests=burst)

    times = admission_times(limiter, clock, calls)

    assert times[-1] == pytest.approx(expected_s)
    assert times[:burst] == [0.0] * burst


def test_blocking_acquire_paces_like_try_acquire():
    clock = FakeClock()
    limiter = controller(clock, rpm=120, burst_requests=1)

    permits = [limiter.acquire(1) for _ in range(5)]

    assert [round(p.admitted_at - 1000.0, 6) for p in permits] == [0, 0.5, 1, 1.5, 2]
    assert permits[-1].waited_s == pytest.approx(0.5)
    assert limiter.admitted == 5


def test_an_idle_spell_saves_up_no_more_than_the_burst():
    clock = FakeClock()
    limiter = controller(clock, rpm=600, burst_requests=3)
    admission_times(limiter, clock, 3)

    clock.advance(3600)
    admitted_at_once = 0
    while limiter.try_acquire(1) is not None:
        admitted_at_once += 1

    assert admitted_at_once == 3


@pytest.mark.parametrize(
    ("rpm", "burst"),
    [
        pytest.param(500, 4, id="gpt-4o-mini-tier-1"),
        pytest.param(120, 1, id="two-per-second"),
        pytest.param(10, 1, id="slower-than-two-per-second-still-one"),
        pytest.param(10_000, 83, id="fast"),
    ],
)
def test_the_default_burst_is_about_half_a_second_of_requests(rpm, burst):
    assert default_request_burst(rpm) == burst


def test_tokens_per_minute_paces_calls_by_their_size():
    clock = FakeClock()
    limiter = controller(clock, tpm=6000)  # 100 tokens a second, bucket of 100

    assert admission_times(limiter, clock, 4, tokens=50) == [0.0, 0.0, 0.5, 1.0]


def test_a_call_larger_than_the_token_bucket_is_admitted_when_it_is_full():
    clock = FakeClock()
    limiter = controller(clock, tpm=6000)

    big = limiter.try_acquire(1000)
    small_wait = limiter.wait_time(10)

    assert big is not None
    # The big call's debt of 900 tokens is paid off at 100 a second first.
    assert small_wait == pytest.approx(9.1)


def test_a_huge_call_waits_for_a_full_bucket_instead_of_forever():
    clock = FakeClock()
    limiter = controller(clock, tpm=6000)
    limiter.acquire(60)

    permit = limiter.acquire(50_000)

    assert permit.waited_s == pytest.approx(0.6)


@pytest.mark.parametrize(
    ("estimate", "actual", "next_call", "expected_wait"),
    [
        pytest.param(100, 40, 60, 0.0, id="refund-of-unused-tokens"),
        pytest.param(50, 150, 50, 1.0, id="charge-for-extra-tokens"),
        pytest.param(100, None, 60, 0.6, id="no-usage-no-correction"),
        pytest.param(100, 100, 60, 0.6, id="exact-estimate"),
    ],
)
def test_release_corrects_the_token_budget_by_the_real_usage(
    estimate, actual, next_call, expected_wait
):
    clock = FakeClock()
    limiter = controller(clock, tpm=6000)

    limiter.try_acquire(estimate).release(actual)

    assert limiter.wait_time(next_call) == pytest.approx(expected_wait)


def test_a_refund_never_grows_the_bucket_beyond_its_capacity():
    clock = FakeClock()
    limiter = controller(clock, tpm=6000)

    limiter.try_acquire(10).release(0)

    assert limiter.try_acquire(100) is not None
    assert limiter.wait_time(100) == pytest.approx(1.0)


def test_no_more_than_max_in_flight_permits_are_out_at_once():
    clock = FakeClock()
    limiter = controller(clock, in_flight=2)
    first, second = limiter.try_acquire(1), limiter.try_acquire(1)

    assert limiter.try_acquire(1) is None
    assert limiter.wait_time(1) == math.inf

    first.release()
    assert limiter.in_flight == 1
    assert isinstance(limiter.try_acquire(1), Permit)
    assert second is not None


def test_releasing_a_permit_twice_frees_only_one_slot():
    clock = FakeClock()
    limiter = controller(clock, in_flight=2)
    permit = limiter.try_acquire(1)
    limiter.try_acquire(1)

    permit.release()
    permit.release()

    assert limiter.in_flight == 1


def test_a_permit_used_as_context_manager_is_released_on_error():
    clock = FakeClock()
    limiter = controller(clock, in_flight=1)

    with pytest.raises(RuntimeError), limiter.try_acquire(1):
        raise RuntimeError("the call failed")

    assert limiter.in_flight == 0


def test_a_blocking_acquire_gives_up_at_its_deadline_and_leaves_the_queue():
    clock = FakeClock()
    limiter = controller(clock, rpm=6, burst_requests=1)
    limiter.acquire(1)

    with pytest.raises(AdmissionTimeout, match="within 3 s"):
        limiter.acquire(1, deadline=clock.now + 3)

    assert limiter.waiting == 0
    assert limiter.acquire(1).waited_s == pytest.approx(7.0)


def test_a_429_pauses_every_caller_for_the_retry_after():
    clock = FakeClock()
    limiter = controller(clock, rpm=6000, tpm=1_000_000)

    limiter.on_rate_limited(2.5)

    assert limiter.try_acquire(1) is None
    assert limiter.wait_time(1) == pytest.approx(2.5)
    assert limiter.rate_limited == 1


def test_a_429_without_retry_after_pauses_for_the_default():
    clock = FakeClock()
    limiter = controller(clock, tpm=1_000_000)

    limiter.on_rate_limited(None)

    assert limiter.wait_time(1) == pytest.approx(DEFAULT_PAUSE_S)


def test_after_a_429_requests_go_out_at_half_the_rate_without_a_burst():
    clock = FakeClock()
    limiter = controller(clock, rpm=600, burst_requests=5)

    limiter.on_rate_limited(1.0)
    times = admission_times(limiter, clock, 4)
    gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]

    assert times[0] == pytest.approx(1.0)
    # 10 a second halved to 5, recovering slowly: gaps near 0.2 s, not 0.1 s.
    assert all(0.18 < gap <= 0.2 + 1e-9 for gap in gaps), gaps
    assert limiter.effective_requests_per_minute == pytest.approx(300, rel=0.1)


def test_the_rate_recovers_gradually_after_the_pause():
    clock = FakeClock()
    limiter = controller(clock, rpm=600)

    limiter.on_rate_limited(2.0)
    during_pause = limiter.rate_factor
    clock.advance(2.0 + 4.0)
    partly = limiter.rate_factor
    clock.advance(6.0)

    assert during_pause == pytest.approx(0.5)
    assert partly == pytest.approx(0.7)
    assert limiter.rate_factor == 1.0
    assert limiter.effective_requests_per_minute == 600


def test_repeated_429s_never_push_the_rate_below_the_floor():
    clock = FakeClock()
    limiter = controller(clock, rpm=600)

    for _ in range(10):
        limiter.on_rate_limited(0.0)
        clock.advance(0.001)

    assert limiter.rate_factor == pytest.approx(0.1, abs=0.001)
    assert limiter.rate_limited == 10


def test_429s_of_calls_sent_before_the_last_decrease_lower_the_rate_once():
    clock = FakeClock()
    limiter = controller(clock, rpm=6000, burst_requests=10)
    early = [limiter.try_acquire(1) for _ in range(3)]

    for permit in early:
        limiter.on_rate_limited(1.0, permit=permit)
    once = limiter.rate_factor
    late = admit_when_allowed(limiter, clock)
    limiter.on_rate_limited(1.0, permit=late)

    assert once == pytest.approx(0.5)
    assert limiter.rate_factor == pytest.approx(0.25)


def test_a_late_429_of_a_call_sent_before_the_back_off_keeps_the_recovery():
    clock = FakeClock()
    limiter = controller(clock, rpm=600)
    slow_call = limiter.try_acquire(1)

    limiter.on_rate_limited(1.0)
    clock.advance(1.0 + 8.0)
    limiter.on_rate_limited(1.0, permit=slow_call)
    clock.advance(1.0)

    assert limiter.rate_factor == pytest.approx(0.5 + 0.05 * 9)


def test_429s_during_the_pause_without_a_permit_lower_the_rate_once():
    clock = FakeClock()
    limiter = controller(clock, rpm=600)

    limiter.on_rate_limited(2.0)
    clock.advance(1.0)
    limiter.on_rate_limited(2.0)

    assert limiter.rate_factor == pytest.approx(0.5)
    assert limiter.wait_time(1) == pytest.approx(2.0)
    assert limiter.rate_limited == 2


def test_without_rate_limits_a_429_lowers_the_calls_in_flight():
    clock = FakeClock()
    limiter = controller(clock, in_flight=8)

    limiter.on_rate_limited(0.0)
    admitted = 0
    while limiter.try_acquire(1) is not None:
        admitted += 1

    assert admitted == 4


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("1s", 1.0, id="seconds"),
        pytest.param("6m0s", 360.0, id="minutes-and-seconds"),
        pytest.param("120ms", 0.12, id="milliseconds"),
        pytest.param("0.5s", 0.5, id="fractional-seconds"),
        pytest.param("1h2m3.5s", 3723.5, id="hours-minutes-seconds"),
        pytest.param("20", 20.0, id="bare-number"),
        pytest.param(" 2s ", 2.0, id="surrounding-space"),
        pytest.param("", None, id="empty"),
        pytest.param("soon", None, id="words"),
        pytest.param("5x", None, id="unknown-unit"),
        pytest.param("1s junk", None, id="trailing-junk"),
        pytest.param("-3", None, id="negative"),
        pytest.param(None, None, id="missing"),
    ],
)
def test_reset_durations_are_read_in_every_format_servers_send(text, seconds):
    result = parse_reset_duration(text)

    assert result == (None if seconds is None else pytest.approx(seconds))


def test_no_requests_remaining_of_an_unknown_limit_holds_until_the_reset():
    clock = FakeClock()
    limiter = controller(clock, rpm=6000, burst_requests=10)

    limiter.observe_headers(
        {"X-RateLimit-Remaining-Requests": "0", "X-RateLimit-Reset-Requests": "2s"}
    )

    assert limiter.wait_time(1) == pytest.approx(2.0)
    assert limiter.rate_factor == 1.0


def test_an_empty_budget_of_a_known_limit_holds_until_one_request_is_back():
    clock = FakeClock()
    limiter = controller(clock, tpm=1_000_000)

    limiter.observe_headers(
        {
            "x-ratelimit-limit-requests": "500",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "1m0s",
        }
    )

    assert limiter.wait_time(1) == pytest.approx(60 / 500)


def test_a_server_that_allows_fewer_requests_than_configured_sets_the_pace():
    clock = FakeClock()
    limiter = controller(clock, rpm=6000, burst_requests=1)

    limiter.observe_headers(
        {"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "59"}
    )

    assert admission_times(limiter, clock, 3) == pytest.approx([0, 1, 2])
    assert limiter.effective_requests_per_minute == pytest.approx(60)


def test_a_server_that_allows_more_than_configured_does_not_raise_the_pace():
    clock = FakeClock()
    limiter = controller(clock, rpm=60, burst_requests=1)

    limiter.observe_headers({"x-ratelimit-limit-requests": "10000"})

    assert admission_times(limiter, clock, 3) == pytest.approx([0, 1, 2])


def test_a_default_rate_rises_to_what_the_server_says_it_allows():
    clock = FakeClock()
    # 60 rpm was Joule's guess for an unknown model, not the user's setting.
    limiter = controller(
        clock, rpm=60, burst_requests=1, adopt_server_limits=["requests"]
    )

    limiter.observe_headers({"x-ratelimit-limit-requests": "600"})

    assert admission_times(limiter, clock, 3) == pytest.approx([0, 0.1, 0.2])


def test_a_long_reset_holds_callers_no_longer_than_a_minute():
    clock = FakeClock()
    limiter = controller(clock, tpm=60_000)

    limiter.observe_headers(
        {"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "6m0s"}
    )

    assert limiter.wait_time(1) == pytest.approx(MAX_HEADER_HOLD_S)


def test_the_bucket_never_holds_more_than_the_server_says_remains():
    clock = FakeClock()
    limiter = controller(clock, tpm=6000)

    limiter.observe_headers(
        {"x-ratelimit-remaining-tokens": "30", "x-ratelimit-reset-tokens": "1s"}
    )

    assert limiter.wait_time(50) == pytest.approx(0.2)


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-headers"),
        pytest.param({"x-ratelimit-remaining-requests": "many"}, id="garbled"),
        pytest.param({"x-ratelimit-remaining-requests": "499"}, id="plenty-left"),
    ],
)
def test_headers_that_grant_plenty_change_nothing(headers):
    clock = FakeClock()
    limiter = controller(clock, rpm=600, burst_requests=3)

    limiter.observe_headers(headers)

    assert admission_times(limiter, clock, 4) == pytest.approx([0, 0, 0, 0.1])


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        pytest.param("rpm", 0, "requests_per_minute must be a positive", id="rpm"),
        pytest.param("tpm", -5, "tokens_per_minute must be a positive", id="tpm"),
        pytest.param("in_flight", 0, "max_in_flight must be at least 1", id="flight"),
        pytest.param("burst_requests", 0, "burst_requests must be", id="burst"),
    ],
)
def test_impossible_limits_are_refused_with_the_bad_value(option, value, message):
    with pytest.raises(ValueError, match=message) as error:
        controller(FakeClock(), **{option: value})

    assert f"got {value}" in str(error.value)


@pytest.mark.parametrize(
    ("model", "limits"),
    [
        pytest.param("gpt-4o-mini", (500, 200_000, 50), id="gpt-4o-mini"),
        pytest.param("gpt-4o-mini-2024-07-18", (500, 200_000, 50), id="dated"),
        pytest.param("gpt-4o", (500, 30_000, 50), id="gpt-4o"),
        pytest.param("GPT-4.1-mini", (500, 200_000, 50), id="upper-case"),
        pytest.param("openai/gpt-4-turbo", (500, 30_000, 50), id="provider-prefix"),
        pytest.param("gpt-3.5-turbo", (3_500, 200_000, 64), id="in-flight-capped"),
        pytest.param("llama3.1:8b", (60, 20_000, 6), id="unknown-conservative"),
    ],
)
def test_default_limits_follow_the_model_family(model, limits):
    assert default_limits(model) == limits


@pytest.mark.parametrize(
    ("calls", "tokens", "rpm", "tpm", "in_flight", "chain", "expected"),
    [
        pytest.param(0, 100, 60, None, 4, 1, 0.0, id="nothing-to-do"),
        pytest.param(61, 100, 60, None, 100, 1, 62.0, id="request-bound"),
        pytest.param(10, 6000, None, 6000, 100, 1, 601.0, id="token-bound"),
        pytest.param(10, [5000, 7000] * 5, None, 6000, 100, 1, 601.0, id="list"),
        pytest.param(40, 100, None, None, 4, 1, 20.0, id="in-flight-bound"),
        pytest.param(3, 100, None, None, 4, 7, 14.0, id="chain-bound"),
    ],
)
def test_predicted_wall_time_is_set_by_the_tightest_limit(
    calls, tokens, rpm, tpm, in_flight, chain, expected
):
    predicted = predict_wall_time(calls, tokens, rpm, tpm, in_flight, 2.0, chain)

    assert predicted == pytest.approx(expected)


def test_eight_threads_are_admitted_in_arrival_order():
    queued = threading.Semaphore(0)

    def announcing_wait(condition: threading.Condition, timeout: float | None):
        queued.release()
        condition.wait(timeout)

    # 200 requests a second: the real waits add up to a few tens of ms.
    limiter = AdmissionController(12_000, None, 1, wait=announcing_wait)
    gate = limiter.try_acquire(1)
    order: list[int] = []

    def call(index: int) -> None:
        permit = limiter.acquire(1, deadline=time.monotonic() + 5)
        order.append(index)
        permit.release()

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
        assert queued.acquire(timeout=2), "a caller never reached the queue"
    assert limiter.waiting == 8
    gate.release()
    for thread in threads:
        thread.join(timeout=2)

    assert not any(thread.is_alive() for thread in threads)
    assert order == list(range(8))
    assert limiter.admitted == 9
    assert limiter.in_flight == 0
