"""An OpenAI-compatible server with simulated answers, for tests, benchmarks and demos.

Start it and point Joule (or any openai client) at it::

    python -m joule.sim --port 8765 --rpm 600 --latency 0.3-0.8
    OPENAI_BASE_URL=http://127.0.0.1:8765/v1 OPENAI_API_KEY=sim \\
        python -m flows.report my-report

It serves ``GET /v1/models`` and non-streaming ``POST /v1/chat/completions``.
An answer depends only on its request, starts with "[simulated answer]" and
quotes up to three figures from the last user message, so a report built from
it reads plausibly and shows which data reached the model. Latency, rate
limits (429 with the hosted API's headers) and faults are set in `SimConfig`.
It listens on 127.0.0.1 only and accepts any API key, which it never logs or
keeps. In Python::

    with Simulator(SimConfig(requests_per_minute=60)) as sim:
        client = openai.OpenAI(base_url=sim.base_url, api_key="sim")
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import hashlib
import json
import logging
import math
import random
import re
import socket
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_MODELS = (
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-4.1-mini",
    "gpt-4.1",
    "gpt-4.1-nano",
    "gpt-5-mini",
)
FAULTS = ("fail_500", "fail_503", "hang", "truncate", "insufficient_quota")
SIMULATED_PREFIX = "[simulated answer]"
HOST = "127.0.0.1"

# Chat formatting costs a few tokens per message and a few to prime the reply;
# counting them keeps the simulated usage close to what hosted models report.
MESSAGE_OVERHEAD_TOKENS = 4
REPLY_PRIMING_TOKENS = 3
CHARS_PER_TOKEN = 4

# A fixed creation time for the model list, so it is the same on every run.
_MODELS_CREATED = 1_700_000_000


@dataclass(frozen=True)
class SimConfig:
    """How the simulated API behaves: its models, latency, rate limits and faults.

    Fault rates are probabilities per admitted completion request and may add
    up to at most 1. `model_faults` maps model name patterns (fnmatch, e.g.
    "gpt-4.1*") to a fault that every request for a matching model gets; the
    first `first_requests` requests get `first_requests_fault`.
    """

    models: tuple[str, ...] = DEFAULT_MODELS
    latency_min_s: float = 0.05
    latency_max_s: float = 0.15
    seed: int = 0
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    burst: float = 1.0
    fail_500: float = 0.0
    fail_503: float = 0.0
    hang: float = 0.0
    hang_s: float = 30.0
    truncate: float = 0.0
    insufficient_quota: float = 0.0
    model_faults: Mapping[str, str] = field(default_factory=dict)
    first_requests: int = 0
    first_requests_fault: str = "fail_503"

    def __post_init__(self) -> None:
        """Reject settings the simulator cannot honour, naming the field to fix."""
        object.__setattr__(self, "models", tuple(self.models))
        object.__setattr__(self, "model_faults", dict(self.model_faults))
        if not self.models:
            raise ValueError("SimConfig.models is empty; name at least one model.")

        if not 0 <= self.latency_min_s <= self.latency_max_s:
            raise ValueError(
                f"SimConfig latency must satisfy 0 <= latency_min_s <= "
                f"latency_max_s; got {self.latency_min_s!r} to "
                f"{self.latency_max_s!r}."
            )
        if self.hang_s < 0:
            raise ValueError(
                f"SimConfig.hang_s must be 0 or more seconds; got {self.hang_s!r}."
            )
        if not 0 < self.burst <= 1:
            raise ValueError(
                f"SimConfig.burst is the share of a minute's budget that can be "
                f"spent at once and must be above 0 and at most 1; "
                f"got {self.burst!r}."
            )
        for name in ("requests_per_minute", "tokens_per_minute"):
            limit = getattr(self, name)
            if limit is not None and (not isinstance(limit, int) or limit < 1):
                raise ValueError(
                    f"SimConfig.{name} must be a whole number of at least 1, "
                    f"or None for no limit; got {limit!r}."
                )

        for name in FAULTS:
            rate = getattr(self, name)
            if not 0 <= rate <= 1:
                raise ValueError(
                    f"SimConfig.{name} is a probability and must be between "
                    f"0 and 1; got {rate!r}."
                )
        total = sum(getattr(self, name) for name in FAULTS)
        if total > 1 + 1e-9:
            raise ValueError(
                f"SimConfig fault rates add up to {total:g}, more than 1; "
                f"lower some of {', '.join(FAULTS)}."
            )

        known = ", ".join(FAULTS)
        for pattern, fault in self.model_faults.items():
            if fault not in FAULTS:
                raise ValueError(
                    f"SimConfig.model_faults[{pattern!r}] names an unknown fault "
                    f"{fault!r}; use one of: {known}."
                )
        if self.first_requests_fault not in FAULTS:
            raise ValueError(
                f"SimConfig.first_requests_fault names an unknown fault "
                f"{self.first_requests_fault!r}; use one of: {known}."
            )
        if self.first_requests < 0:
            raise ValueError(
                f"SimConfig.first_requests must be 0 or more; "
                f"got {self.first_requests!r}."
            )


@dataclass(frozen=True)
class RequestRecord:
    """One request the simulator received, as tests and benchmarks read it.

    Times are `time.monotonic()` readings. `finished_at` is None while the
    request is in flight; `status` is None until a response has been sent, and
    stays None if the server stopped before it could answer.
    """

    number: int
    method: str
    path: str
    arrived_at: float
    finished_at: float | None = None
    model: str | None = None
    status: int | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    fault: str | None = None


def count_tokens(text: str) -> int:
    """The simulator's token count for a text: a token per four characters."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def count_prompt_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    """The prompt tokens the simulator reports for a list of chat messages."""
    per_message = (
        MESSAGE_OVERHEAD_TOKENS + count_tokens(_message_text(message))
        for message in messages
    )
    return REPLY_PRIMING_TOKENS + sum(per_message)


def _message_text(message: Mapping[str, Any]) -> str:
    """The text of a chat message, whether its content is a string or parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part.get("text", "")
            for part in content
            if isinstance(part, Mapping) and isinstance(part.get("text"), str)
        )
    return ""


_FIGURE = re.compile(
    # Not the tail of a word ("CO2") or of a longer number.
    r"(?<![\w.,])-?"
    # Grouped thousands with one separator ("1.234,5", "12,000.75"), or plain.
    r"(?:\d{1,3}([.,])\d{3}(?:\1\d{3})*(?:(?!\1)[.,]\d+)?|\d+(?:[.,]\d+)?)"
    r"(?!\d)"
    # An optional unit that energy data often carries.
    r"(?:\s?(?:%|[kMGTP]?Wh?|[kMG]?t|[PTG]J|kV|MVA|EUR|€)(?!\w))?"
)


def find_figures(text: str, limit: int = 3) -> list[str]:
    """Up to `limit` distinct figures in a text, skipping lone digits.

    Figures in the rows of a Markdown table come first: they are the data,
    where numbers in the instructions are more often word counts.
    """
    lines = text.splitlines()
    rows = [line for line in lines if line.lstrip().startswith("|")]
    ordered = "\n".join(rows + [line for line in lines if line not in rows])
    found = list(dict.fromkeys(m.group(0) for m in _FIGURE.finditer(ordered)))
    # A lone digit is more often a list marker or a step number than data.
    meaningful = [figure for figure in found if not re.fullmatch(r"-?\d", figure)]
    return (meaningful or found)[:limit]


_OPENINGS = ('On "{topic}"', 'Regarding "{topic}"', 'As for "{topic}"')
_FINDINGS = (
    "the figures that stand out are {figures}.",
    "the material points to {figures} as the numbers to watch.",
    "the key values in the data are {figures}.",
)
_NO_FIGURES = "the request gives no figures, so this draft stays qualitative."
_REMARKS = (
    "Together they suggest steady progress, with some gaps left to close.",
    "The sources broadly agree, though they differ in the details.",
    "The pace of change matters more here than any single year.",
    "Grid capacity is the constraint most likely to bind first.",
    "A reviewer should check these values against the source tables.",
    "The picture differs between regions, so local detail matters.",
)


def simulated_answer(request: Mapping[str, Any]) -> str:
    """The full answer text for a chat request; equal requests get equal text."""
    digest = _request_digest(request)
    messages = request.get("messages") or []
    text = _last_user_text(messages)

    topic = _topic(text) or "the request"
    opening = _OPENINGS[digest[0] % len(_OPENINGS)].format(topic=topic)
    figures = find_figures(text)
    if figures:
        finding = _FINDINGS[digest[1] % len(_FINDINGS)]
        finding = finding.format(figures="; ".join(figures))
    else:
        finding = _NO_FIGURES
    first = digest[2] % len(_REMARKS)
    second = (first + 1 + digest[3] % (len(_REMARKS) - 1)) % len(_REMARKS)

    remarks = f"{_REMARKS[first]} {_REMARKS[second]}"
    return f"{SIMULATED_PREFIX} {opening}, {finding} {remarks}"


def _request_digest(request: Mapping[str, Any]) -> bytes:
    """A stable fingerprint of a request: its model, messages and parameters."""
    canonical = json.dumps(request, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).digest()


def _last_user_text(messages: Sequence[Any]) -> str:
    """The text of the last user message, or of the last message if none is."""
    usable = [message for message in messages if isinstance(message, Mapping)]
    users = [message for message in usable if message.get("role") == "user"]
    chosen = users or usable
    return _message_text(chosen[-1]) if chosen else ""


def _topic(text: str, max_words: int = 10) -> str:
    """The opening words of a prompt's first sentence, without Markdown marks."""
    plain = re.sub(r"[#*|`_>\[\]{}]", " ", text)
    first_sentence = re.split(r"[.!?:](?:\s|$)", plain.strip(), maxsplit=1)[0]
    words = first_sentence.split()
    topic = " ".join(words[:max_words]).rstrip(".,;:")
    return topic + ("..." if len(words) > max_words else "")


class _TokenBucket:
    """A per-minute budget that refills evenly and holds at most `capacity`."""

    def __init__(self, per_minute: int, burst: float, now: float):
        self.per_minute = per_minute
        self.capacity = max(1.0, per_minute * burst)
        self.level = self.capacity
        self.updated = now

    def refill(self, now: float) -> None:
        """Add what the time since the last refill has earned, up to capacity."""
        earned = (now - self.updated) * self.per_minute / 60
        self.level = min(self.capacity, self.level + earned)
        self.updated = now

    def seconds_until(self, amount: float) -> float:
        """How long until `amount` can be taken: 0 if now, inf if never."""
        if amount > self.capacity:
            return math.inf
        return max(0.0, (amount - self.level) * 60 / self.per_minute)

    def headers(self, kind: str) -> dict[str, str]:
        """The x-ratelimit-* headers a hosted API sends for this budget."""
        until_full = (self.capacity - self.level) * 60 / self.per_minute
        return {
            f"x-ratelimit-limit-{kind}": str(self.per_minute),
            f"x-ratelimit-remaining-{kind}": str(max(0, math.floor(self.level))),
            f"x-ratelimit-reset-{kind}": _duration(until_full),
        }


def _duration(seconds: float) -> str:
    """A duration the way rate-limit headers spell it: "12ms", "1.2s", "6m0s"."""
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    if seconds < 60:
        return f"{math.ceil(seconds * 10) / 10:g}s"
    minutes, rest = divmod(math.ceil(seconds), 60)
    return f"{minutes}m{rest}s"


@dataclass(frozen=True)
class _Admission:
    """The rate limiter's verdict on one request."""

    headers: dict[str, str]
    limited_by: str | None = None
    used: int = 0
    retry_after_s: float = 0.0


class _RateLimits:
    """Requests and tokens per minute, checked and spent together under a lock."""

    def __init__(self, config: SimConfig):
        now = time.monotonic()
        self._lock = threading.Lock()
        self._buckets: dict[str, _TokenBucket] = {}
        if config.requests_per_minute is not None:
            self._buckets["requests"] = _TokenBucket(
                config.requests_per_minute, config.burst, now
            )
        if config.tokens_per_minute is not None:
            self._buckets["tokens"] = _TokenBucket(
                config.tokens_per_minute, config.burst, now
            )

    def admit(self, tokens: int) -> _Admission:
        """Spend one request and `tokens` if both budgets allow, else say which not."""
        wanted = {"requests": 1, "tokens": tokens}
        with self._lock:
            now = time.monotonic()
            for bucket in self._buckets.values():
                bucket.refill(now)

            # Nothing is spent unless every budget allows it, as with a hosted API.
            for kind, bucket in self._buckets.items():
                wait = bucket.seconds_until(wanted[kind])
                if wait > 0:
                    return _Admission(
                        headers=self._headers(),
                        limited_by=kind,
                        used=math.ceil(bucket.capacity - bucket.level),
                        retry_after_s=wait,
                    )
            for kind, bucket in self._buckets.items():
                bucket.level -= wanted[kind]
            return _Admission(headers=self._headers())

    def _headers(self) -> dict[str, str]:
        """The x-ratelimit-* headers of every budget that is limited."""
        headers: dict[str, str] = {}
        for kind, bucket in self._buckets.items():
            headers.update(bucket.headers(kind))
        return headers


@dataclass
class _Reply:
    """What the simulator decided to answer, before it is sent."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    fault: str | None = None
    delay_s: float = 0.0


class _BadRequest(Exception):
    """A chat request the simulator refuses with a 400, naming the parameter."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


def _error_reply(
    status: int,
    message: str,
    *,
    kind: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
) -> _Reply:
    """A reply carrying an error body shaped like the OpenAI API's."""
    error = {"message": message, "type": kind, "param": param, "code": code}
    return _Reply(status=status, body={"error": error})


def _parse_chat_request(raw: bytes) -> dict[str, Any]:
    """The decoded chat request, or a _BadRequest saying what is wrong with it."""
    try:
        request = json.loads(raw.decode("utf-8") or "null")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _BadRequest(
            f"The request body is not valid JSON ({exc}); send a JSON object "
            f"with 'model' and 'messages'."
        ) from exc
    if not isinstance(request, dict):
        raise _BadRequest(
            f"The request body must be a JSON object with 'model' and "
            f"'messages'; got {_shorten(request)}."
        )

    model = request.get("model")
    if not isinstance(model, str) or not model:
        raise _BadRequest(
            f"'model' must name a model, e.g. \"gpt-4o-mini\"; got {_shorten(model)}.",
            param="model",
        )
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _BadRequest(
            f"'messages' must be a non-empty list of {{role, content}} objects; "
            f"got {_shorten(messages)}.",
            param="messages",
        )
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise _BadRequest(
                f"messages[{index}] must be an object with a 'role' and a "
                f"'content'; got {_shorten(message)}.",
                param=f"messages[{index}]",
            )

    for name in ("max_tokens", "max_completion_tokens"):
        value = request.get(name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise _BadRequest(
                f"'{name}' must be a whole number of at least 1; "
                f"got {_shorten(value)}.",
                param=name,
            )
    if request.get("stream"):
        raise _BadRequest(
            "The simulator does not stream; send 'stream': false or leave it out.",
            param="stream",
        )
    if request.get("n", 1) != 1:
        raise _BadRequest(
            f"The simulator returns one choice; send 'n': 1 or leave it out, "
            f"not {_shorten(request.get('n'))}.",
            param="n",
        )
    return request


def _shorten(value: Any, limit: int = 60) -> str:
    """A JSON rendering of a bad value, cut short enough for an error message."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Server(ThreadingHTTPServer):
    """The HTTP server, tracking open connections so stop() can close them."""

    daemon_threads = True
    # The default backlog of 5 drops connections when a benchmark opens dozens
    # at once, and each dropped one costs the client a second to retry.
    request_queue_size = 256

    def __init__(self, port: int, simulator: Simulator):
        self.simulator = simulator
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__((HOST, port), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Remember the connection, then serve it on its own thread."""
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        """Forget the connection once its thread is done with it."""
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """End idle keep-alive connections, which would otherwise outlive stop()."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # Already closed by the client.

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Note a broken connection quietly: clients time out and go away."""
        logger.debug("Connection from %s ended with an error", client_address[0])


class _Handler(BaseHTTPRequestHandler):
    """Hands every request to the simulator that owns the server."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle's algorithm on, the
    # second waits for a delayed ACK and every answer gains about 40 ms.
    disable_nagle_algorithm = True
    server_version = "JouleSimulator"
    sys_version = ""
    server: _Server

    def do_GET(self) -> None:
        """Serve a GET request."""
        self.server.simulator._serve(self, "GET")

    def do_POST(self) -> None:
        """Serve a POST request."""
        self.server.simulator._serve(self, "POST")

    def log_message(self, format: str, *args: Any) -> None:
        """Stay silent: the simulator logs its own line, without any headers."""


class Simulator:
    """A loopback OpenAI-compatible server; use it as a context manager."""

    def __init__(self, config: SimConfig | None = None, *, port: int = 0):
        self.config = config or SimConfig()
        self.port = port
        self._limits = _RateLimits(self.config)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        self._log: dict[int, RequestRecord] = {}
        self._received = 0

    @property
    def base_url(self) -> str:
        """The URL to give an openai client, e.g. "http://127.0.0.1:8765/v1"."""
        if self._server is None:
            raise RuntimeError(
                "The simulator is not running; call start() or use it in a "
                "with block first."
            )
        return f"http://{HOST}:{self.port}/v1"

    def start(self) -> Simulator:
        """Listen on 127.0.0.1 (a free port unless one was given) in the background."""
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server(self.port, self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            # stop() waits up to one poll; 10 ms keeps test suites quick, and
            # a hundred idle wake-ups a second cost next to nothing.
            kwargs={"poll_interval": 0.01},
            name=f"joule-sim-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, cutting short requests that are waiting or hanging."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        # Waiting requests wake at once; letting them finish keeps the log whole.
        with self._idle:
            self._idle.wait_for(lambda: self._in_flight == 0, timeout=5)
        self._server.close_connections()
        if self._thread is not None:
            self._thread.join()
        self._server = None
        self._thread = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def requests(self) -> list[RequestRecord]:
        """A copy of the request log, in order of arrival."""
        with self._lock:
            return list(self._log.values())

    def count(
        self,
        *,
        status: int | None = None,
        model: str | None = None,
        fault: str | None = None,
    ) -> int:
        """How many logged requests match every criterion given (None: any)."""
        return sum(
            1
            for record in self.requests
            if (status is None or record.status == status)
            and (model is None or record.model == model)
            and (fault is None or record.fault == fault)
        )

    def reset_log(self) -> None:
        """Forget the logged requests; rate limits and numbering carry on."""
        with self._lock:
            self._log.clear()

    def _serve(self, handler: _Handler, method: str) -> None:
        """Answer one HTTP request from arrival to the last byte sent."""
        raw = _read_body(handler)
        path = handler.path.split("?", 1)[0].rstrip("/")
        number = self._arrive(method, path)
        try:
            self._exchange(handler, number, method, path, raw)
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def _exchange(
        self, handler: _Handler, number: int, method: str, path: str, raw: bytes
    ) -> None:
        """Decide the reply to a logged request, wait as configured, and send it."""
        reply = self._decide(number, method, path, raw)
        self._update(
            number,
            model=reply.model,
            fault=reply.fault,
            prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
        )
        if reply.delay_s and self._stopping.wait(reply.delay_s):
            # Stopping: leave without an answer, as a server going down does.
            handler.close_connection = True
            self._update(number, finished_at=time.monotonic())
            return

        # Logged before sending, so a client that reads the log right after
        # its answer arrives finds the request complete.
        self._update(number, finished_at=time.monotonic(), status=reply.status)
        logger.debug(
            "%s %s #%d model=%s -> %s%s",
            method,
            path,
            number,
            reply.model,
            reply.status,
            f" (fault {reply.fault})" if reply.fault else "",
        )
        if not self._send(handler, reply):
            self._update(number, status=None)
            logger.debug("Request #%d: the client left before the answer", number)

    def _arrive(self, method: str, path: str) -> int:
        """Log a new request and return its number, counting from 1."""
        with self._lock:
            self._received += 1
            self._in_flight += 1
            number = self._received
            self._log[number] = RequestRecord(
                number=number, method=method, path=path, arrived_at=time.monotonic()
            )
        return number

    def _update(self, number: int, **changes: Any) -> None:
        """Amend a logged request, unless the log was reset since it arrived."""
        with self._lock:
            if number in self._log:
                self._log[number] = dataclasses.replace(self._log[number], **changes)

    def _decide(self, number: int, method: str, path: str, raw: bytes) -> _Reply:
        """Route a request and decide its reply, without sending anything."""
        if method == "GET" and path == "/v1/models":
            return _Reply(status=200, body=self._model_list())
        if method == "GET" and path.startswith("/v1/models/"):
            return self._model(path.removeprefix("/v1/models/"))
        if method == "POST" and path == "/v1/chat/completions":
            return self._chat_completion(number, raw)
        return _error_reply(
            404,
            f"Unknown request URL: {method} {path}. The simulator serves "
            f"GET /v1/models and POST /v1/chat/completions.",
            code="unknown_url",
        )

    def _model_list(self) -> dict[str, Any]:
        """The body of GET /v1/models."""
        return {
            "object": "list",
            "data": [_model_object(m) for m in self.config.models],
        }

    def _model(self, model: str) -> _Reply:
        """The reply to GET /v1/models/{model}."""
        if model not in self.config.models:
            return self._unknown_model(model)
        return _Reply(status=200, body=_model_object(model), model=model)

    def _unknown_model(self, model: str) -> _Reply:
        """A 404 worded as the OpenAI API words it for a model it does not have."""
        reply = _error_reply(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            code="model_not_found",
        )
        reply.model = model
        return reply

    def _chat_completion(self, number: int, raw: bytes) -> _Reply:
        """Validate, rate-limit, maybe fault, and answer a chat completion."""
        try:
            request = _parse_chat_request(raw)
        except _BadRequest as exc:
            return _error_reply(400, str(exc), param=exc.param)
        model = request["model"]
        if model not in self.config.models:
            return self._unknown_model(model)

        prompt_tokens = count_prompt_tokens(request["messages"])
        text = simulated_answer(request)
        finish_reason = "stop"
        max_tokens = request.get("max_completion_tokens") or request.get("max_tokens")
        if max_tokens is not None and count_tokens(text) > max_tokens:
            text = text[: max_tokens * CHARS_PER_TOKEN]
            finish_reason = "length"
        completion_tokens = count_tokens(text)

        # Hosted APIs reserve the prompt plus the most the answer may use.
        reserved = prompt_tokens + (max_tokens or completion_tokens)
        admission = self._limits.admit(reserved)
        if admission.limited_by is not None:
            reply = _rate_limited(model, admission, reserved)
        else:
            usage = _usage(prompt_tokens, completion_tokens)
            reply = self._answer(number, model, text, finish_reason, usage)
        reply.model = model
        reply.prompt_tokens = prompt_tokens
        reply.headers = {**admission.headers, **reply.headers}
        return reply

    def _answer(
        self,
        number: int,
        model: str,
        text: str,
        finish_reason: str,
        usage: dict[str, int],
    ) -> _Reply:
        """The reply to an admitted completion: an answer, or an injected fault."""
        # Seeding by request number makes each request's draw independent of
        # which thread happens to reach the generator first.
        rng = random.Random(f"{self.config.seed}:{number}")
        latency = rng.uniform(self.config.latency_min_s, self.config.latency_max_s)
        fault = self._fault(number, model, rng.random())

        if fault == "fail_500":
            reply = _error_reply(
                500,
                "Simulated server error while processing the request; "
                "retrying may succeed.",
                kind="server_error",
            )
        elif fault == "fail_503":
            reply = _error_reply(
                503,
                "Simulated overload: the server cannot take this request now; "
                "retry after a short wait.",
                kind="server_error",
            )
        elif fault == "insufficient_quota":
            reply = _error_reply(
                429,
                "Simulated quota exhaustion: this account has used all of its "
                "credit. Check the plan and billing of the account behind the "
                "API key; retrying will not help.",
                kind="insufficient_quota",
                code="insufficient_quota",
            )
            latency = 0.0
        else:
            body = _completion(number, model, text, finish_reason, usage)
            reply = _Reply(status=200, body=body)
            reply.completion_tokens = usage["completion_tokens"]
            if fault == "hang":
                latency = self.config.hang_s
        reply.fault = fault
        reply.delay_s = latency
        reply.headers["x-request-id"] = f"req_sim_{number}"
        return reply

    def _fault(self, number: int, model: str, roll: float) -> str | None:
        """The fault this request gets: forced ones first, then by chance."""
        if number <= self.config.first_requests:
            return self.config.first_requests_fault
        for pattern, fault in self.config.model_faults.items():
            if fnmatch.fnmatchcase(model, pattern):
                return fault
        threshold = 0.0
        for fault in FAULTS:
            threshold += getattr(self.config, fault)
            if roll < threshold:
                return fault
        return None

    def _send(self, handler: _Handler, reply: _Reply) -> bool:
        """Write the reply; False if the client had already gone."""
        payload = json.dumps(reply.body).encode("utf-8")
        if reply.fault == "truncate":
            # The length header matches the cut body, so only the JSON is broken.
            payload = payload[: len(payload) // 2]
        try:
            handler.send_response(reply.status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            for name, value in reply.headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(payload)
            handler.wfile.flush()
        except OSError:
            handler.close_connection = True
            return False
        return True


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    """The request body; read in full so the connection can be reused."""
    try:
        length = int(handler.headers.get("Content-Length") or 0)
    except ValueError:
        handler.close_connection = True
        return b""
    return handler.rfile.read(length) if length > 0 else b""


def _model_object(model: str) -> dict[str, Any]:
    """One entry of the model list."""
    return {
        "id": model,
        "object": "model",
        "created": _MODELS_CREATED,
        "owned_by": "joule-simulator",
    }


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """The usage block of a completion."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _completion(
    number: int, model: str, text: str, finish_reason: str, usage: dict[str, int]
) -> dict[str, Any]:
    """A chat.completion body with one assistant message."""
    message = {"role": "assistant", "content": text, "refusal": None}
    return {
        "id": f"chatcmpl-sim{number:08d}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage,
        "system_fingerprint": "fp_joule_sim",
    }


def _rate_limited(model: str, admission: _Admission, reserved: int) -> _Reply:
    """A 429 for a spent budget, with the headers that say when to come back."""
    kind = admission.limited_by or "requests"
    unit = "requests per min (RPM)" if kind == "requests" else "tokens per min (TPM)"
    limit = admission.headers[f"x-ratelimit-limit-{kind}"]
    requested = 1 if kind == "requests" else reserved

    if math.isinf(admission.retry_after_s):
        # Waiting cannot help, so no retry-after: the request must shrink.
        return _error_reply(
            429,
            f"Request too large for {model} on {unit}: Limit {limit}, "
            f"Requested {requested}. Shorten the prompt or lower max_tokens.",
            kind=kind,
            code="rate_limit_exceeded",
        )
    wait = admission.retry_after_s
    reply = _error_reply(
        429,
        f"Rate limit reached for {model} on {unit}: Limit {limit}, "
        f"Used {admission.used}, Requested {requested}. "
        f"Please try again in {_duration(wait)}.",
        kind=kind,
        code="rate_limit_exceeded",
    )
    reply.headers = {
        "retry-after-ms": str(math.ceil(wait * 1000)),
        "retry-after": str(math.ceil(wait)),
    }
    return reply


def latency_range(text: str) -> tuple[float, float]:
    """Parse "0.2" or "0.3-0.8" (seconds) for a --latency option."""
    try:
        low, _, high = text.partition("-")
        bounds = (float(low), float(high or low))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected seconds like 0.2 or a range like 0.3-0.8, got {text!r}"
        ) from None
    if not 0 <= bounds[0] <= bounds[1]:
        raise argparse.ArgumentTypeError(f"expected 0 <= MIN <= MAX, got {text!r}")
    return bounds


def _port(text: str) -> int:
    """Parse a TCP port for --port."""
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected 0 to 65535, got {text!r}")
    return int(text)


def _parser() -> argparse.ArgumentParser:
    """The command line of `python -m joule.sim`."""
    parser = argparse.ArgumentParser(
        prog="python -m joule.sim",
        description=(
            "Serve a simulated OpenAI-compatible API on 127.0.0.1 until Ctrl-C. "
            "Answers are made up; they quote figures from the prompt."
        ),
        epilog=(
            "example: python -m joule.sim --rpm 600 --fail-503 0.02, then run "
            "Joule with OPENAI_BASE_URL=http://127.0.0.1:8765/v1 OPENAI_API_KEY=sim"
        ),
    )
    add = parser.add_argument
    add("--port", type=_port, default=8765, help="port to listen on (0: any free)")
    add(
        "--latency",
        type=latency_range,
        default=(0.05, 0.15),
        metavar="MIN-MAX",
        help="seconds per answer, e.g. 0.3-0.8 (default: 0.05-0.15)",
    )
    add("--rpm", type=int, help="requests per minute (default: unlimited)")
    add("--tpm", type=int, help="tokens per minute (default: unlimited)")
    add("--burst", type=float, default=1.0, help="share of a minute's budget at once")
    add(
        "--fail-500",
        type=float,
        default=0.0,
        metavar="RATE",
        help="share of completions failing with 500",
    )
    add(
        "--fail-503",
        type=float,
        default=0.0,
        metavar="RATE",
        help="share of completions failing with 503",
    )
    add(
        "--hang",
        type=float,
        default=0.0,
        metavar="RATE",
        help="share of completions hanging --hang-s",
    )
    add("--hang-s", type=float, default=30.0, help="how long a hang lasts (s)")
    add(
        "--truncate",
        type=float,
        default=0.0,
        metavar="RATE",
        help="share answered with a cut-off body",
    )
    add(
        "--quota",
        type=float,
        default=0.0,
        metavar="RATE",
        help="share refused as out of quota (429)",
    )
    add("--seed", type=int, default=0, help="seed for latency and faults")
    add("--models", help="comma-separated model names (default: common ones)")
    add("--verbose", "-v", action="store_true", help="log every request")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the simulator from the command line until interrupted."""
    parser = _parser()
    args = parser.parse_args(argv)
    models = [m.strip() for m in (args.models or "").split(",") if m.strip()]
    try:
        config = SimConfig(
            models=tuple(models) or DEFAULT_MODELS,
            latency_min_s=args.latency[0],
            latency_max_s=args.latency[1],
            seed=args.seed,
            requests_per_minute=args.rpm,
            tokens_per_minute=args.tpm,
            burst=args.burst,
            fail_500=args.fail_500,
            fail_503=args.fail_503,
            hang=args.hang,
            hang_s=args.hang_s,
            truncate=args.truncate,
            insufficient_quota=args.quota,
        )
    except ValueError as exc:
        parser.error(str(exc))
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG, format="%(message)s")

    simulator = Simulator(config, port=args.port)
    try:
        simulator.start()
    except OSError as exc:
        print(
            f"Cannot listen on {HOST}:{args.port} ({exc.strerror}); "
            f"choose another port with --port.",
            file=sys.stderr,
        )
        return 2
    try:
        print(
            "Joule simulator (OpenAI-compatible, answers are simulated) "
            f"listening on {simulator.base_url}",
            flush=True,
        )
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        simulator.stop()
    served = len(simulator.requests)
    print(f"Stopped after {served} request{'' if served == 1 else 's'}.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
