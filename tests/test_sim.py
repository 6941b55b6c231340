"""Tests for the OpenAI-compatible simulator, driven through the real openai client."""

from __future__ import annotations

import functools
import json
import logging
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import pytest

import joule.sim
from joule.sim import (
    DEFAULT_MODELS,
    SimConfig,
    Simulator,
    count_prompt_tokens,
    count_tokens,
    find_figures,
    main,
)

INSTANT = {"latency_min_s": 0.0, "latency_max_s": 0.0}
PROMPT = (
    "Write the grid section for Utrecht. Installed solar capacity is "
    "1.234,5 MW, the congestion backlog is 42 MW and demand grows 3.1 a year."
)


@pytest.fixture(autouse=True)
def _no_openai_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep a developer's own OpenAI settings from steering the client."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID"):
        monkeypatch.delenv(name, raising=False)


def start(**settings: Any) -> Simulator:
    """A running simulator with no latency unless the test asks for some."""
    return Simulator(SimConfig(**{**INSTANT, **settings})).start()


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with start() as simulator:
        yield simulator


@functools.cache
def shared_client() -> openai.OpenAI:
    """One client for the file: building one costs about 0.1 s, copying it none."""
    return openai.OpenAI(base_url="http://127.0.0.1:1/v1", api_key="sk-test")


def client_for(simulator: Simulator, **options: Any) -> openai.OpenAI:
    """An openai client that talks to the simulator and never retries."""
    options = {"max_retries": 0, "timeout": 10, **options}
    return shared_client().with_options(base_url=simulator.base_url, **options)


def ask(client: openai.OpenAI, content: str = PROMPT, **params: Any) -> Any:
    """One chat completion with a single user message."""
    params.setdefault("model", "gpt-4o-mini")
    messages = [{"role": "user", "content": content}]
    return client.chat.completions.create(messages=messages, **params)


def post(simulator: Simulator, body: bytes) -> tuple[int, dict[str, str], Any]:
    """POST raw bytes to the chat endpoint; the status, headers and JSON body."""
    request = urllib.request.Request(
        simulator.base_url + "/chat/completions",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.load(error)


def wait_until(condition: Any, what: str) -> None:
    """Wait for a condition the test cannot be told about directly."""
    deadline = time.monotonic() + 5
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting until {what}")
        time.sleep(0.005)


class TestCompletions:
    def test_a_completion_carries_an_answer_and_its_token_usage(self, sim):
        completion = ask(client_for(sim))

        content = completion.choices[0].message.content
        assert completion.object == "chat.completion"
        assert completion.id.startswith("chatcmpl-")
        assert completion.model == "gpt-4o-mini"
        assert completion.choices[0].finish_reason == "stop"
        assert completion.choices[0].message.role == "assistant"
        assert content.startswith("[simulated answer] ")
        messages = [{"role": "user", "content": PROMPT}]
        assert completion.usage.prompt_tokens == count_prompt_tokens(messages)
        assert completion.usage.completion_tokens == count_tokens(content)
        assert completion.usage.total_tokens == (
            completion.usage.prompt_tokens + completion.usage.completion_tokens
        )

    def test_prompt_tokens_count_every_message_with_its_overhead(self):
        messages = [
            {"role": "system", "content": "abcd" * 10},
            {"role": "user", "content": [{"type": "text", "text": "abcde"}]},
        ]

        assert count_prompt_tokens(messages) == 3 + (4 + 10) + (4 + 2)

    def test_the_same_request_gets_the_same_answer_from_any_simulator(self, sim):
        first = ask(client_for(sim), temperature=0.2)
        with start(seed=99) as other:
            second = ask(client_for(other), temperature=0.2)

        assert first.choices[0].message.content == second.choices[0].message.content

    def test_another_prompt_gets_another_answer(self, sim):
        client = client_for(sim)

        first = ask(client, "Summarise wind power in Groningen: 512 MW in 2023.")
        second = ask(client, "Summarise wind power in Drenthe: 305 MW in 2023.")

        assert first.choices[0].message.content != second.choices[0].message.content

    def test_the_answer_quotes_figures_and_words_from_the_last_user_message(self, sim):
        completion = client_for(sim).chat.completions.create(
            model="gpt-4.1",
            messages=[
                {"role": "system", "content": "You are an analyst. Use 77 words."},
                {"role": "user", "content": PROMPT},
            ],
        )

        content = completion.choices[0].message.content
        assert "Write the grid section for Utrecht" in content
        for figure in ("1.234,5 MW", "42 MW", "3.1"):
            assert figure in content
        assert "77" not in content

    def test_a_prompt_without_figures_gets_a_qualitative_answer(self, sim):
        completion = ask(client_for(sim), "Describe the mood of the sector")

        content = completion.choices[0].message.content
        assert '"Describe the mood of the sector"' in content
        assert "the request gives no figures, so this draft stays qualitative." in (
            content
        )

    @pytest.mark.parametrize("parameter", ["max_tokens", "max_completion_tokens"])
    def test_a_token_limit_cuts_the_answer_and_says_so(self, sim, parameter):
        completion = ask(client_for(sim), **{parameter: 5})

        assert completion.usage.completion_tokens == 5
        assert completion.choices[0].finish_reason == "length"
        content = completion.choices[0].message.content
        assert content.startswith("[simulated answer] ")
        assert len(content) == 5 * 4

    def test_a_generous_token_limit_leaves_the_answer_whole(self, sim):
        completion = ask(client_for(sim), max_tokens=500)

        assert completion.choices[0].finish_reason == "stop"
        assert completion.usage.completion_tokens < 500


@pytest.mark.parametrize(
    ("text", "figures"),
    [
        ("1.234,5 MW and 42 MW", ["1.234,5 MW", "42 MW"]),
        ("12,000.75 EUR, up 3.1 %", ["12,000.75 EUR", "3.1 %"]),
        ("step 1 of 3: 640 GWh", ["640 GWh"]),
        ("CO2 fell, 5 and 7", ["5", "7"]),
        ("2019 2030 2040 2050", ["2019", "2030", "2040"]),
        ("18 to 20 kt, 18 again", ["18", "20 kt"]),
        (
            "Write 250 words.\n| a | b |\n| --- | --- |\n| 640 | 12,5 |",
            ["640", "12,5", "250"],
        ),
    ],
    ids=[
        "grouped-thousands",
        "units",
        "lone-digits-skipped",
        "lone-digits-if-nothing-else",
        "at-most-three",
        "distinct",
        "table-rows-first",
    ],
)
def test_figures_are_found_with_their_units(text, figures):
    assert find_figures(text) == figures


class TestModels:
    def test_the_model_list_names_every_configured_model(self, sim):
        listed = [model.id for model in client_for(sim).models.list()]

        assert listed == list(DEFAULT_MODELS)

    def test_a_known_model_can_be_fetched_by_name(self, sim):
        assert client_for(sim).models.retrieve("gpt-5-mini").id == "gpt-5-mini"

    def test_an_unknown_model_is_a_404_that_names_it(self, sim):
        with pytest.raises(openai.NotFoundError) as caught:
            ask(client_for(sim), model="gpt-9-turbo")

        assert caught.value.status_code == 404
        assert caught.value.body == {
            "message": (
                "The model `gpt-9-turbo` does not exist or you do not have access "
                "to it."
            ),
            "type": "invalid_request_error",
            "param": None,
            "code": "model_not_found",
        }


class TestBadRequests:
    @pytest.mark.parametrize(
        ("body", "message", "param"),
        [
            (
                b'{"model": "gpt-4o"',
                "The request body is not valid JSON (Expecting ',' delimiter: "
                "line 1 column 19 (char 18)); send a JSON object with 'model' "
                "and 'messages'.",
                None,
            ),
            (
                b'{"model": "gpt-4o"}',
                "'messages' must be a non-empty list of {role, content} objects; "
                "got null.",
                "messages",
            ),
            (
                b'{"model": "gpt-4o", "messages": ["hi"]}',
                "messages[0] must be an object with a 'role' and a 'content'; "
                'got "hi".',
                "messages[0]",
            ),
            (
                b'{"messages": [{"role": "user", "content": "hi"}]}',
                "'model' must name a model, e.g. \"gpt-4o-mini\"; got null.",
                "model",
            ),
            (
                b'{"model": "gpt-4o", "max_tokens": 0, '
                b'"messages": [{"role": "user", "content": "hi"}]}',
                "'max_tokens' must be a whole number of at least 1; got 0.",
                "max_tokens",
            ),
            (
                b'{"model": "gpt-4o", "stream": true, '
                b'"messages": [{"role": "user", "content": "hi"}]}',
                "The simulator does not stream; send 'stream': false or leave it out.",
                "stream",
            ),
        ],
        ids=["broken-json", "no-messages", "bad-message", "no-model", "zero", "stream"],
    )
    def test_a_malformed_request_is_a_400_that_says_what_to_fix(
        self, sim, body, message, param
    ):
        status, _, payload = post(sim, body)

        assert status == 400
        assert payload == {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": param,
                "code": None,
            }
        }

    def test_an_unknown_url_is_a_404_that_lists_what_is_served(self, sim):
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(sim.base_url + "/embeddings", timeout=5)

        assert caught.value.code == 404
        assert json.load(caught.value)["error"]["message"] == (
            "Unknown request URL: GET /v1/embeddings. The simulator serves "
            "GET /v1/models and POST /v1/chat/completions."
        )


class TestRateLimits:
    def test_successful_answers_carry_the_remaining_budget(self):
        with start(requests_per_minute=5, tokens_per_minute=10_000) as sim:
            raw = client_for(sim).chat.completions.with_raw_response.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "hi"}],
                max_tokens=100,
            )

        assert raw.headers["x-ratelimit-limit-requests"] == "5"
        assert raw.headers["x-ratelimit-remaining-requests"] == "4"
        assert re.fullmatch(r"1[12]\.?\d?s", raw.headers["x-ratelimit-reset-requests"])
        assert raw.headers["x-ratelimit-limit-tokens"] == "10000"
        # 100 reserved for the answer, 3 + 4 + 1 for the prompt "hi".
        assert raw.headers["x-ratelimit-remaining-tokens"] == "9892"
        assert raw.headers["x-request-id"] == "req_sim_1"

    def test_the_request_over_the_rpm_gets_a_429_that_says_when_to_retry(self):
        with start(requests_per_minute=2) as sim:
            client = client_for(sim)
            ask(client)
            ask(client)
            with pytest.raises(openai.RateLimitError) as caught:
                ask(client)

        error = caught.value
        assert error.code == "rate_limit_exceeded"
        assert error.type == "requests"
        assert error.message.startswith(
            "Error code: 429 - Rate limit reached for gpt-4o-mini on requests per "
            "min (RPM): Limit 2, Used 2, Requested 1. Please try again in "
        )
        headers = error.response.headers
        # Two a minute refill one every 30 s; the test took a little of that.
        assert 25_000 < int(headers["retry-after-ms"]) <= 30_000
        assert headers["retry-after"] == "30"
        assert headers["x-ratelimit-limit-requests"] == "2"
        assert headers["x-ratelimit-remaining-requests"] == "0"
        assert re.fullmatch(r"\d+(\.\d)?s", headers["x-ratelimit-reset-requests"])
        assert sim.count(status=429) == 1

    def test_a_request_over_the_token_budget_gets_a_tokens_429(self):
        with start(tokens_per_minute=1_000) as sim:
            client = client_for(sim)
            ask(client, "hi", max_tokens=600)
            with pytest.raises(openai.RateLimitError) as caught:
                ask(client, "hi", max_tokens=600)

        assert caught.value.type == "tokens"
        assert caught.value.code == "rate_limit_exceeded"
        assert caught.value.response.headers["x-ratelimit-limit-tokens"] == "1000"
        assert int(caught.value.response.headers["retry-after"]) > 0

    def test_a_request_larger_than_the_budget_is_told_to_shrink(self):
        with start(tokens_per_minute=1_000) as sim:
            with pytest.raises(openai.RateLimitError) as caught:
                ask(client_for(sim), "hi", max_tokens=2_000)

        assert caught.value.body["message"] == (
            "Request too large for gpt-4o-mini on tokens per min (TPM): Limit 1000, "
            "Requested 2008. Shorten the prompt or lower max_tokens."
        )
        assert "retry-after" not in caught.value.response.headers

    def test_a_small_burst_spreads_the_minute_budget(self):
        # Three at once, then one every 10 s: far slower than this test.
        with start(requests_per_minute=6, burst=0.5) as sim:
            client = client_for(sim)
            for _ in range(3):
                ask(client)
            with pytest.raises(openai.RateLimitError):
                ask(client)


class TestFaults:
    @pytest.mark.parametrize(
        ("fault", "error_type", "status"),
        [
            ("fail_500", openai.InternalServerError, 500),
            ("fail_503", openai.InternalServerError, 503),
            ("insufficient_quota", openai.RateLimitError, 429),
        ],
    )
    def test_an_injected_error_reaches_the_client_as_its_status(
        self, fault, error_type, status
    ):
        with start(**{fault: 1.0}) as sim:
            with pytest.raises(error_type) as caught:
                ask(client_for(sim))

        assert caught.value.status_code == status
        assert sim.count(fault=fault, status=status) == 1

    def test_exhausted_quota_is_a_429_that_retrying_cannot_fix(self):
        with start(insufficient_quota=1.0) as sim:
            with pytest.raises(openai.RateLimitError) as caught:
                ask(client_for(sim))

        assert caught.value.code == "insufficient_quota"
        assert caught.value.type == "insufficient_quota"
        assert "retry-after" not in caught.value.response.headers

    def test_a_truncated_body_arrives_with_status_200_and_fails_to_decode(self):
        with start(truncate=1.0) as sim:
            raw = client_for(sim).chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}]
            )
            with pytest.raises(json.JSONDecodeError):
                raw.parse()

        assert raw.status_code == 200
        assert sim.count(status=200, fault="truncate") == 1

    def test_a_hanging_request_times_out_at_the_client(self):
        with start(hang=1.0, hang_s=30) as sim:
            with pytest.raises(openai.APITimeoutError):
                ask(client_for(sim, timeout=0.2))

        assert sim.requests[0].fault == "hang"

    def test_a_hanging_request_does_not_hold_up_other_requests(self):
        with start(model_faults={"gpt-4.1*": "hang"}, hang_s=30) as sim:
            client = client_for(sim, timeout=10)
            outcome: list[BaseException] = []

            def hanging_call() -> None:
                try:
                    ask(client, model="gpt-4.1-mini")
                except openai.APIError as error:
                    outcome.append(error)

            hanging = threading.Thread(target=hanging_call)
            hanging.start()
            wait_until(lambda: sim.count(fault="hang") == 1, "the hang began")

            completion = ask(client, model="gpt-4o-mini")
            hung = sim.requests[0]

        hanging.join()
        assert completion.choices[0].finish_reason == "stop"
        assert (hung.model, hung.status, hung.finished_at) == (
            "gpt-4.1-mini",
            None,
            None,
        )
        assert isinstance(outcome[0], openai.APIConnectionError)

    def test_stopping_ends_a_hanging_request_without_an_answer(self):
        sim = start(hang=1.0, hang_s=30)
        failures: list[BaseException] = []

        def hanging_call() -> None:
            try:
                ask(client_for(sim, timeout=30))
            except openai.APIError as error:
                failures.append(error)

        caller = threading.Thread(target=hanging_call)
        caller.start()
        wait_until(lambda: sim.count(fault="hang") == 1, "the hang began")
        sim.stop()
        # Far shorter than the 30 s hang: stop() must not wait it out.
        caller.join(timeout=5)

        assert not caller.is_alive()
        assert type(failures[0]) is openai.APIConnectionError
        record = sim.requests[0]
        assert record.status is None
        assert record.finished_at is not None

    def test_the_first_requests_can_be_made_to_fail(self):
        with start(first_requests=2, first_requests_fault="fail_503") as sim:
            client = client_for(sim)
            for _ in range(2):
                with pytest.raises(openai.InternalServerError):
                    ask(client)
            ask(client)

        assert [r.status for r in sim.requests] == [503, 503, 200]

    def test_a_model_pattern_fails_only_the_models_it_matches(self):
        with start(model_faults={"gpt-4.1*": "fail_500"}) as sim:
            client = client_for(sim)
            with pytest.raises(openai.InternalServerError):
                ask(client, model="gpt-4.1-nano")
            ask(client, model="gpt-4o")

        assert sim.count(fault="fail_500") == 1
        assert sim.count(model="gpt-4o", status=200) == 1

    def test_random_faults_repeat_for_the_same_seed(self):
        def statuses(seed: int) -> list[int | None]:
            with start(fail_500=0.5, seed=seed) as sim:
                client = client_for(sim)
                for _ in range(12):
                    try:
                        ask(client)
                    except openai.InternalServerError:
                        pass
            return [record.status for record in sim.requests]

        first = statuses(seed=7)

        assert statuses(seed=7) == first
        assert {200, 500} == set(first)


class TestLog:
    def test_the_log_records_every_request_in_order(self, sim):
        client = client_for(sim)
        ask(client, max_tokens=5)
        with pytest.raises(openai.NotFoundError):
            ask(client, model="nope")
        client.models.list()

        records = sim.requests
        assert [(r.number, r.method, r.path) for r in records] == [
            (1, "POST", "/v1/chat/completions"),
            (2, "POST", "/v1/chat/completions"),
            (3, "GET", "/v1/models"),
        ]
        assert (records[0].status, records[0].completion_tokens) == (200, 5)
        assert records[0].prompt_tokens == count_prompt_tokens(
            [{"role": "user", "content": PROMPT}]
        )
        assert all(r.arrived_at <= r.finished_at for r in records)
        assert sim.count(status=200) == 2
        assert sim.count(model="nope", status=404) == 1
        assert sim.count() == 3

    def test_resetting_the_log_keeps_the_numbering(self, sim):
        client = client_for(sim)
        ask(client)
        sim.reset_log()
        ask(client)

        assert [record.number for record in sim.requests] == [2]

    def test_each_answer_waits_at_least_the_minimum_latency(self):
        with start(latency_min_s=0.05, latency_max_s=0.06) as sim:
            ask(client_for(sim))

        record = sim.requests[0]
        assert record.finished_at - record.arrived_at >= 0.05

    def test_the_api_key_is_neither_logged_nor_kept(self, sim, caplog, capfd):
        caplog.set_level(logging.DEBUG, logger="joule.sim")
        client = client_for(sim, api_key="sk-secret-4711")
        ask(client)

        captured = capfd.readouterr()
        assert "POST /v1/chat/completions #1 model=gpt-4o-mini -> 200" in caplog.text
        for text in (caplog.text, captured.out, captured.err, repr(sim.requests)):
            assert "sk-secret-4711" not in text


class TestLifecycle:
    def test_it_listens_on_loopback_only(self, sim):
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", sim.base_url)

    def test_many_concurrent_requests_are_all_answered(self, sim):
        client = client_for(sim)
        capacities = [f"{megawatts} MW" for megawatts in range(10, 490, 10)]
        with ThreadPoolExecutor(max_workers=len(capacities)) as pool:
            answers = list(
                pool.map(lambda figure: ask(client, f"Region: {figure}"), capacities)
            )

        quoted = [answer.choices[0].message.content for answer in answers]
        assert all(
            figure in text for figure, text in zip(capacities, quoted, strict=True)
        )
        assert sim.count(status=200) == len(capacities) == 48

    def test_after_stopping_even_a_kept_alive_connection_is_refused(self):
        sim = start()
        client = client_for(sim, timeout=5)
        ask(client)
        sim.stop()

        with pytest.raises(openai.APIConnectionError):
            ask(client)

    def test_a_stopped_simulator_has_no_url(self):
        with pytest.raises(RuntimeError) as caught:
            _ = Simulator().base_url

        assert str(caught.value) == (
            "The simulator is not running; call start() or use it in a with "
            "block first."
        )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"fail_500": 0.7, "fail_503": 0.5},
            "SimConfig fault rates add up to 1.2, more than 1; lower some of "
            "fail_500, fail_503, hang, truncate, insufficient_quota.",
        ),
        (
            {"hang": 1.5},
            "SimConfig.hang is a probability and must be between 0 and 1; got 1.5.",
        ),
        (
            {"latency_min_s": 0.5, "latency_max_s": 0.1},
            "SimConfig latency must satisfy 0 <= latency_min_s <= latency_max_s; "
            "got 0.5 to 0.1.",
        ),
        (
            {"requests_per_minute": 0},
            "SimConfig.requests_per_minute must be a whole number of at least 1, "
            "or None for no limit; got 0.",
        ),
        (
            {"model_faults": {"gpt-4o": "explode"}},
            "SimConfig.model_faults['gpt-4o'] names an unknown fault 'explode'; use "
            "one of: fail_500, fail_503, hang, truncate, insufficient_quota.",
        ),
        (
            {"burst": 0},
            "SimConfig.burst is the share of a minute's budget that can be spent at "
            "once and must be above 0 and at most 1; got 0.",
        ),
    ],
    ids=["rates-over-one", "rate-over-one", "latency", "rpm", "fault-name", "burst"],
)
def test_impossible_settings_are_refused_with_the_field_named(settings, message):
    with pytest.raises(ValueError) as caught:
        SimConfig(**settings)

    assert str(caught.value) == message


class TestCommandLine:
    def test_it_serves_until_interrupted(self):
        root = Path(joule.sim.__file__).resolve().parents[1]
        process = subprocess.Popen(
            [sys.executable, "-m", "joule.sim", "--port", "0", "--latency", "0"],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            banner = process.stdout.readline()
            url = re.search(r"http://127\.0\.0\.1:\d+/v1", banner).group(0)
            with urllib.request.urlopen(url + "/models", timeout=5) as response:
                assert response.status == 200
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=10)
        finally:
            process.kill()

        assert banner == (
            "Joule simulator (OpenAI-compatible, answers are simulated) "
            f"listening on {url}\n"
        )
        assert out == "Stopped after 1 request.\n"
        assert err == ""
        assert process.returncode == 0

    def test_a_port_in_use_is_reported_without_a_traceback(self, sim, capsys):
        assert main(["--port", str(sim.port)]) == 2

        assert capsys.readouterr().err == (
            f"Cannot listen on 127.0.0.1:{sim.port} (Address already in use); "
            "choose another port with --port.\n"
        )

    def test_a_bad_latency_is_refused_before_serving(self, capsys):
        with pytest.raises(SystemExit) as caught:
            main(["--latency", "soon"])

        assert caught.value.code == 2
        assert capsys.readouterr().err.endswith(
            "argument --latency: expected seconds like 0.2 or a range like "
            "0.3-0.8, got 'soon'\n"
        )

    def test_impossible_settings_are_refused_before_serving(self, capsys):
        with pytest.raises(SystemExit) as caught:
            main(["--fail-500", "2"])

        assert caught.value.code == 2
        assert capsys.readouterr().err.endswith(
            "SimConfig.fail_500 is a probability and must be between 0 and 1; "
            "got 2.0.\n"
        )
