"""Admission control: keeps every model call of a run within the provider's limits."""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from types import TracebackType

from joule.errors import JouleError
from joule.pricing import model_family

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Wait = Callable[[threading.Condition, float | None], object]

# A bucket holds half a second of its rate. A server's bucket is often one
# second deep: sending at its exact rate and burst leaves no slack for network
# jitter, and the benchmark showed that to cost 2-3 % of requests in 429s,
# each halving the rate; half a second of slack cost none.
BURST_SECONDS = 0.5
# Token budgets are per minute and calls vary in size: a second's worth keeps
# a typical call admissible at once without letting a burst through.
TOKEN_BURST_SECONDS = 1.0
# On a 429 the rates are halved, never below a tenth of the configured limit,
# and grow back by 5 % of the limit per second: fast enough to regain full
# speed within about 10 s, slow enough not to provoke the next 429 at once.
DECREASE_FACTOR = 0.5
FLOOR_FACTOR = 0.1
RECOVERY_PER_SECOND = 0.05
# A 429 without retry-after: hosted APIs refill their short windows in about a
# second, so a longer pause only wastes time.
DEFAULT_PAUSE_S = 1.0
# The limits are per minute; a longer reset belongs to a daily quota, which
# the retry layer reports instead of the limiter waiting for it.
MAX_HEADER_HOLD_S = 60.0
# Enough calls in flight to keep the request rate busy at typical latencies.
TYPICAL_LATENCY_S = 6.0
# Float refills land a hair short of the exact amount waited for.
_EPSILON = 1e-9

# Tier-1 OpenAI limits (requests, tokens per minute) of each model family, as
# published in 2025. Higher tiers allow far more: set yours in [limits].
_TIER1_LIMITS: dict[str, tuple[float, float]] = {
    "gpt-3.5-turbo": (3_500, 200_000),
    "gpt-4": (500, 10_000),
    "gpt-4-turbo": (500, 30_000),
    "gpt-4o": (500, 30_000),
    "gpt-4o-mini": (500, 200_000),
    "gpt-4.1": (500, 30_000),
    "gpt-4.1-mini": (500, 200_000),
    "gpt-4.1-nano": (500, 200_000),
    "gpt-5": (500, 30_000),
    "gpt-5-mini": (500, 200_000),
    "gpt-5-nano": (500, 200_000),
    "o1": (500, 30_000),
    "o3": (500, 30_000),
    "o3-mini": (1_000, 100_000),
    "o4-mini": (1_000, 100_000),
}
# A model we do not know may be a small self-hosted server: start gently.
_UNKNOWN_MODEL_LIMITS = (60.0, 20_000.0)

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(ms|us|µs|ns|h|m|s)")
_DURATION_UNITS = {
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 1e-3,
    "us": 1e-6,
    "µs": 1e-6,
    "ns": 1e-9,
}


class AdmissionTimeout(JouleError):
    """A call could not be admitted before its deadline."""


def default_limits(model: str) -> tuple[float, float, int]:
    """Tier-1 requests/min, tokens/min and calls in flight for a model family."""
    family = model_family(model, _TIER1_LIMITS)
    rpm, tpm = _TIER1_LIMITS[family] if family else _UNKNOWN_MODEL_LIMITS
    in_flight = max(4, min(64, math.ceil(rpm / 60 * TYPICAL_LATENCY_S)))
    return rpm, tpm, in_flight


def effective_limits(
    model: str,
    requests_per_minute: float | None,
    tokens_per_minute: float | None,
    max_in_flight: int | None,
) -> tuple[float, float, int]:
    """The limits a run applies: what [limits] says, the model's defaults else."""
    rpm, tpm, in_flight = default_limits(model)
    return (
        requests_per_minute or rpm,
        tokens_per_minute or tpm,
        max_in_flight or in_flight,
    )


def default_request_burst(requests_per_minute: float) -> int:
    """How many requests may go out at once after an idle spell."""
    return max(1, int(requests_per_minute / 60 * BURST_SECONDS))


def token_capacity(tokens_per_minute: float) -> float:
    """How many tokens the token bucket holds when full."""
    return tokens_per_minute / 60 * TOKEN_BURST_SECONDS


def parse_reset_duration(text: str | None) -> float | None:
    """Seconds in a rate-limit reset header such as '1s', '6m0s' or '120ms'."""
    if text is None:
        return None
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        parts = list(_DURATION_PART.finditer(text))
        if not parts or "".join(part.group(0) for part in parts) != text:
            return None
        seconds = sum(float(p.group(1)) * _DURATION_UNITS[p.group(2)] for p in parts)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def predict_wall_time(
    calls: int,
    tokens_per_call: Sequence[int] | float,
    requests_per_minute: float | None,
    tokens_per_minute: float | None,
    max_in_flight: int,
    latency_s: float,
    longest_chain: int = 1,
) -> float:
    """A lower bound on the seconds a run of `calls` model calls takes."""
    if calls <= 0:
        return 0.0
    if isinstance(tokens_per_call, Sequence):
        total_tokens = float(sum(tokens_per_call))
    else:
        total_tokens = tokens_per_call * calls

    # Each limit alone sets a floor; the slowest floor is the estimate.
    bounds = [
        math.ceil(calls / max_in_flight) * latency_s,
        longest_chain * latency_s,
    ]
    if requests_per_minute:
        queued = max(0, calls - default_request_burst(requests_per_minute))
        bounds.append(queued / (requests_per_minute / 60) + latency_s)
    if tokens_per_minute:
        queued_tokens = max(0.0, total_tokens - token_capacity(tokens_per_minute))
        bounds.append(queued_tokens / (tokens_per_minute / 60) + latency_s)
    return max(bounds)


def _wait_on(condition: threading.Condition, timeout: float | None) -> None:
    condition.wait(timeout)


class _Bucket:
    """A token bucket that may run into debt, so an oversized call never starves."""

    def __init__(self, rate_per_s: float, capacity: float, now: float):
        self.rate_per_s = rate_per_s
        self.capacity = capacity
        self.level = capacity
        # May lie in the future: the bucket then stays frozen until that time.
        self.updated = now

    def refill(self, now: float, factor: float) -> None:
        """Add what the rate earned since the last update."""
        if now > self.updated:
            earned = (now - self.updated) * self.rate_per_s * factor
            self.level = min(self.capacity, self.level + earned)
            self.updated = now

    def seconds_until(self, amount: float, now: float, factor: float) -> float:
        """Seconds until `amount` can be taken; a full bucket admits any amount."""
        missing = min(amount, self.capacity) - self.level
        frozen = max(0.0, self.updated - now)
        if missing <= _EPSILON:
            return frozen
        return frozen + missing / (self.rate_per_s * factor)

    def adjust(self, amount: float) -> None:
        """Give back (positive) or charge (negative) an amount."""
        self.level = min(self.capacity, self.level + amount)

    def clamp(self, most: float) -> None:
        """Hold no more than the server says remains."""
        self.level = min(self.level, most)

    def hold(self, most: float, until: float) -> None:
        """Keep at most `most` in the bucket and stop refilling it until `until`."""
        self.level = min(self.level, most)
        self.updated = max(self.updated, until)


class Permit:
    """One admitted call; release it when the call ends, with the tokens it used."""

    def __init__(
        self,
        controller: AdmissionController,
        tokens: int,
        admitted_at: float,
        waited_s: float,
        generation: int,
    ):
        self.tokens = tokens
        self.admitted_at = admitted_at
        self.waited_s = waited_s
        # How many 429 back-offs had happened when this call was admitted.
        self.generation = generation
        self._controller = controller
        self._released = False

    def release(self, actual_tokens: int | None = None) -> None:
        """Free the slot and correct the token budget by what the call really used."""
        if self._released:
            return
        self._released = True
        self._controller._release(self, actual_tokens)

    def __enter__(self) -> Permit:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


class AdmissionController:
    """Admits model calls in arrival order within request, token and in-flight limits.

    One controller is shared by every call of a run, from any number of threads.
    A 429 pauses every caller and lowers the rates, which then recover gradually.
    """

    def __init__(
        self,
        requests_per_minute: float | None,
        tokens_per_minute: float | None,
        max_in_flight: int,
        *,
        burst_requests: int | None = None,
        clock: Clock = time.monotonic,
        wait: Wait = _wait_on,
        adopt_server_limits: Collection[str] = (),
    ):
        _require_positive("requests_per_minute", requests_per_minute)
        _require_positive("tokens_per_minute", tokens_per_minute)
        if max_in_flight < 1:
            raise ValueError(
                f"max_in_flight must be at least 1, got {max_in_flight}: "
                "fix [limits].max_in_flight"
            )
        if burst_requests is not None and burst_requests < 1:
            raise ValueError(f"burst_requests must be at least 1, got {burst_requests}")

        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self.max_in_flight = max_in_flight
        self._clock = clock
        self._wait = wait
        # Kinds ("requests", "tokens") whose rate was a default guess rather
        # than configured: the server's own x-ratelimit-limit may raise it too.
        self._adopt = frozenset(adopt_server_limits)
        self._lock = threading.Lock()
        # One condition per waiter, all on the same lock, so that a release
        # wakes only the caller at the head of the queue, not every thread.
        self._queue: deque[threading.Condition] = deque()

        now = clock()
        self._requests: _Bucket | None = None
        if requests_per_minute is not None:
            burst = burst_requests or default_request_burst(requests_per_minute)
            self._requests = _Bucket(requests_per_minute / 60, burst, now)
        self._tokens: _Bucket | None = None
        if tokens_per_minute is not None:
            capacity = token_capacity(tokens_per_minute)
            self._tokens = _Bucket(tokens_per_minute / 60, capacity, now)

        self._in_flight = 0
        self._paused_until = -math.inf
        self._low_factor = 1.0
        self._recover_from = -math.inf
        self._decreases = 0
        self.admitted = 0
        self.rate_limited = 0

    @property
    def in_flight(self) -> int:
        """Permits handed out and not yet released."""
        return self._in_flight

    @property
    def waiting(self) -> int:
        """Callers blocked in `acquire`."""
        return len(self._queue)

    @property
    def rate_factor(self) -> float:
        """The share of the configured rates currently allowed (1.0 = all)."""
        return self._factor(self._clock())

    @property
    def effective_requests_per_minute(self) -> float | None:
        """The request rate currently allowed, after any 429 back-off."""
        if self._requests is None:
            return None
        return self._requests.rate_per_s * 60 * self.rate_factor

    def wait_time(self, tokens: int) -> float:
        """Seconds until a call of `tokens` could start; inf while slots are full."""
        with self._lock:
            return self._seconds_until(tokens, self._clock())

    def try_acquire(self, tokens: int) -> Permit | None:
        """Admit a call of `tokens` now if the limits allow and nobody waits."""
        _require_tokens(tokens)
        with self._lock:
            now = self._clock()
            if self._queue or self._seconds_until(tokens, now) > 0:
                return None
            return self._admit(tokens, now, waited_s=0.0)

    def acquire(self, tokens: int, deadline: float | None = None) -> Permit:
        """Block until a call of `tokens` may start; callers are admitted in order.

        `deadline` is a time on the controller's clock; past it, AdmissionTimeout.
        """
        _require_tokens(tokens)
        with self._lock:
            started = self._clock()
            turn = threading.Condition(self._lock)
            self._queue.append(turn)
            try:
                while True:
                    now = self._clock()
                    at_head = self._queue[0] is turn
                    delay = self._seconds_until(tokens, now) if at_head else math.inf
                    if delay <= 0:
                        return self._admit(tokens, now, waited_s=now - started)
                    if deadline is not None:
                        if now >= deadline:
                            raise AdmissionTimeout(_timeout_message(now - started))
                        delay = min(delay, deadline - now)
                    self._wait(turn, None if math.isinf(delay) else delay)
            finally:
                self._queue.remove(turn)
                self._wake_head()

    def on_rate_limited(
        self, retry_after_s: float | None = None, *, permit: Permit | None = None
    ) -> None:
        """Pause every caller after a 429 and lower the rates.

        Pass the permit of the call that got the 429: calls admitted before the
        last decrease were sent at the old rate and do not lower it again.
        """
        with self._lock:
            now = self._clock()
            self._refill(now)
            self.rate_limited += 1
            if retry_after_s is None or not math.isfinite(retry_after_s):
                retry_after_s = DEFAULT_PAUSE_S
            self._paused_until = max(self._paused_until, now + max(0.0, retry_after_s))
            if self._requests is not None:
                # One request may go when the pause ends, as the server invited;
                # a full bucket would burst straight into the next 429.
                self._requests.hold(1.0, self._paused_until)

            if permit is not None:
                echo = permit.generation < self._decreases
            else:
                echo = now < self._recover_from
            if not echo:
                self._low_factor = max(
                    FLOOR_FACTOR, self._factor(now) * DECREASE_FACTOR
                )
                self._decreases += 1
                self._recover_from = self._paused_until
                log.info(
                    "Rate limited: every call pauses %.1f s, rates lowered to %.0f%%",
                    self._paused_until - now,
                    self._low_factor * 100,
                )

    def observe_headers(self, headers: Mapping[str, str]) -> None:
        """Trust what the server's x-ratelimit-* headers say it allows and has left."""
        lowered = {name.lower(): value for name, value in headers.items()}
        with self._lock:
            now = self._clock()
            self._refill(now)
            for kind, bucket in (
                ("requests", self._requests),
                ("tokens", self._tokens),
            ):
                limit = parse_number(lowered.get(f"x-ratelimit-limit-{kind}"))
                remaining = parse_number(lowered.get(f"x-ratelimit-remaining-{kind}"))
                if bucket is not None and limit is not None and limit > 0:
                    # A server that allows less than configured is the one to
                    # believe (a lower tier than [limits] assumes); one that
                    # allows more is believed only where [limits] was silent.
                    if kind in self._adopt:
                        bucket.rate_per_s = limit / 60
                    else:
                        bucket.rate_per_s = min(bucket.rate_per_s, limit / 60)
                if remaining is None:
                    continue
                if bucket is not None:
                    bucket.clamp(remaining)
                if remaining <= 0:
                    reset = parse_reset_duration(
                        lowered.get(f"x-ratelimit-reset-{kind}")
                    )
                    hold = min(_hold_for_empty(reset, limit), MAX_HEADER_HOLD_S)
                    self._paused_until = max(self._paused_until, now + hold)
                    log.debug("No %s left on the server: holding %.2f s", kind, hold)

    def _factor(self, now: float) -> float:
        recovered = RECOVERY_PER_SECOND * max(0.0, now - self._recover_from)
        return min(1.0, self._low_factor + recovered)

    def _in_flight_cap(self, now: float) -> int:
        # With no rate to lower, a 429 can only be answered with fewer calls.
        if self._requests is None and self._tokens is None:
            return max(1, math.floor(self.max_in_flight * self._factor(now)))
        return self.max_in_flight

    def _refill(self, now: float) -> None:
        for bucket in (self._requests, self._tokens):
            if bucket is not None:
                # The rate at the start of the interval: the conservative end.
                bucket.refill(now, self._factor(bucket.updated))

    def _seconds_until(self, tokens: int, now: float) -> float:
        self._refill(now)
        if self._in_flight >= self._in_flight_cap(now):
            return math.inf
        factor = self._factor(now)
        delay = max(0.0, self._paused_until - now)
        if self._requests is not None:
            delay = max(delay, self._requests.seconds_until(1, now, factor))
        if self._tokens is not None:
            delay = max(delay, self._tokens.seconds_until(tokens, now, factor))
        return delay

    def _admit(self, tokens: int, now: float, waited_s: float) -> Permit:
        if self._requests is not None:
            self._requests.adjust(-1)
        if self._tokens is not None:
            self._tokens.adjust(-tokens)
        self._in_flight += 1
        self.admitted += 1
        return Permit(self, tokens, now, waited_s, self._decreases)

    def _release(self, permit: Permit, actual_tokens: int | None) -> None:
        with self._lock:
            self._in_flight -= 1
            if actual_tokens is not None and self._tokens is not None:
                self._refill(self._clock())
                self._tokens.adjust(permit.tokens - actual_tokens)
            self._wake_head()

    def _wake_head(self) -> None:
        if self._queue:
            self._queue[0].notify()


def _require_positive(name: str, value: float | None) -> None:
    if value is not None and not value > 0:
        raise ValueError(
            f"{name} must be a positive number, got {value}: "
            f"fix [limits].{name} or remove it to use the model's default"
        )


def _require_tokens(tokens: int) -> None:
    if tokens < 0:
        raise ValueError(f"a call cannot need a negative number of tokens ({tokens})")


def parse_number(text: str | None) -> float | None:
    """A finite number from a header value, or None."""
    if text is None:
        return None
    try:
        number = float(text.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _hold_for_empty(reset_s: float | None, limit: float | None) -> float:
    """How long nothing can pass once the server reports an empty budget."""
    if reset_s is None:
        return DEFAULT_PAUSE_S
    if limit is None or limit <= 0:
        return reset_s
    # The limit is per minute and hosted APIs refill continuously, so the
    # first unit is back after 60 / limit seconds; the pacing does the rest.
    return min(reset_s, 60 / limit)


def _timeout_message(waited_s: float) -> str:
    return (
        f"no model call slot became free within {waited_s:.0f} s: the limits in "
        "[limits] are too low for this run, or earlier calls are hanging; raise "
        "requests_per_minute, tokens_per_minute or step_deadline_s"
    )
