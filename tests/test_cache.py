"""The call cache: what counts as the same call, and what survives a process."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from joule.budget import Budget
from joule.cache import CachedAnswer, FolderCache, StorageCache
from joule.calls import CallRequest
from joule.engine import CallEngine
from joule.llm import Endpoint, ModelCaller, make_client
from joule.settings import ReportSettings

BASE = CallRequest(
    model="gpt-4o-mini",
    messages=(("system", "Be brief."), ("user", "Solar in Noord: 30 TJ.")),
    temperature=0.2,
    max_tokens=300,
)


def test_the_same_request_has_the_same_key_in_every_process():
    again = CallRequest(
        "gpt-4o-mini",
        (("system", "Be brief."), ("user", "Solar in Noord: 30 TJ.")),
        0.2,
        300,
    )
    assert again.key == BASE.key
    # Pinned, so that a change of the key's recipe (which would silently
    # invalidate every user's cache) is a deliberate one.
    assert (
        BASE.key == "5f77b2888d80b23da1800c6cbc685fc6f9837b8a7e5aa6d9b7df82e89b77516f"
    )


@pytest.mark.parametrize(
    "change",
    [
        {"model": "gpt-4o"},
        {"messages": (("system", "Be brief."), ("user", "Solar in Noord: 31 TJ."))},
        {"messages": (("user", "Solar in Noord: 30 TJ."),)},
        {"temperature": 0.0},
        {"max_tokens": 301},
    ],
    ids=["model", "prompt", "system", "temperature", "max_tokens"],
)
def test_a_change_of_model_prompt_or_parameter_is_another_call(change):
    assert dataclasses.replace(BASE, **change).key != BASE.key


def test_folder_cache_keeps_answers_across_instances(tmp_path):
    entry = CachedAnswer("gpt-4o-mini", "30 TJ", 12, 3, "2026-12-03T12:00:00+00:00")
    FolderCache(tmp_path).put(BASE.key, entry)

    assert FolderCache(tmp_path).get(BASE.key) == entry
    assert FolderCache(tmp_path).get("0" * 64) is None
    assert len(FolderCache(tmp_path)) == 1


def test_a_damaged_cache_entry_is_a_miss_not_a_wrong_answer(tmp_path):
    cache = FolderCache(tmp_path)
    cache.put(BASE.key, CachedAnswer("gpt-4o-mini", "ok", 1, 1, "now"))
    path = next(tmp_path.glob("*/*.json"))
    path.write_text('{"model": "gpt-4o-mini", "answ', encoding="utf-8")

    assert cache.get(BASE.key) is None


def test_storage_cache_treats_a_failed_read_as_a_miss():
    store: dict[str, bytes] = {}
    cache = StorageCache(store.__getitem__, store.__setitem__)
    entry = CachedAnswer("gpt-4o-mini", "answer", 5, 2, "now")

    assert cache.get(BASE.key) is None
    cache.put(BASE.key, entry)
    assert cache.get(BASE.key) == entry


def _caller(sim, **limits) -> ModelCaller:
    settings = ReportSettings.model_validate(
        {"title": "t", "limits": {"max_in_flight": 4, **limits}}
    )
    return ModelCaller(make_client(Endpoint(sim.base_url, "x"), 10), settings)


def test_engine_answers_from_the_cache_and_stores_new_answers(sim, tmp_path):
    cache = FolderCache(tmp_path)
    first = CallEngine(_caller(sim).call, max_workers=2, cache=cache)
    answered = first.submit(BASE).result()
    assert answered.ok and not answered.cached

    second = CallEngine(_caller(sim).call, max_workers=2, cache=cache)
    again = second.submit(BASE).result()
    refreshed = (
        CallEngine(_caller(sim).call, max_workers=2, cache=cache)
        .submit(BASE, refresh=True)
        .result()
    )

    assert again.cached and again.answer == answered.answer and again.attempts == 0
    assert not refreshed.cached
    assert sim.count(status=200) == 2


def test_equal_requests_in_one_run_share_one_call(sim):
    engine = CallEngine(_caller(sim).call, max_workers=4)

    futures = [engine.submit(BASE) for _ in range(5)]

    assert len({id(f) for f in futures}) == 1
    assert futures[0].result().ok
    assert sim.count(status=200) == 1


def test_budget_counts_calls_in_flight_at_their_worst_case():
    budget = Budget(max_cost_usd=0.001, max_tokens_total=None)
    # gpt-4o-mini: 1,000 in + 1,000 out at worst costs $0.00075.
    held = budget.reserve("gpt-4o-mini", 1_000, 1_000)
    assert not isinstance(held, str)

    refused = budget.reserve("gpt-4o-mini", 1_000, 1_000)
    assert isinstance(refused, str)
    assert refused == (
        "not run: it could cost up to $0.0008, which with $0.0000 spent and "
        "$0.0008 held by calls in flight would pass max_cost_usd = $0.001"
    )

    held.settle(200, 100)  # it used far less than its worst case
    assert not isinstance(budget.reserve("gpt-4o-mini", 1_000, 1_000), str)
    assert budget.spent_usd == pytest.approx((200 * 0.15 + 100 * 0.60) / 1e6)


def test_budget_never_admits_past_its_limit_from_many_threads():
    budget = Budget(max_cost_usd=None, max_tokens_total=10_000)
    admitted = []
    lock = threading.Lock()

    def reserve():
        held = budget.reserve("gpt-4o-mini", 700, 300)
        if not isinstance(held, str):
            with lock:
                admitted.append(held)

    threads = [threading.Thread(target=reserve) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(admitted) == 10
    assert budget.refused == 30
