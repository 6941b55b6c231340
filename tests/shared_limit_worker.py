"""One process of the shared-limits test: N calls through shared Prefect limits.

python tests/shared_limit_worker.py BASE_URL CALLS RPM
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor

from joule.calls import CallRequest
from joule.llm import Endpoint, ModelCaller, make_client
from joule.settings import ReportSettings
from tasks.shared_limits import shared_credit


def main() -> None:
    base_url, calls, rpm = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    settings = ReportSettings.model_validate(
        {
            "title": "worker",
            "limits": {"requests_per_minute": rpm, "max_in_flight": 8},
            "llm": {"max_tokens": 20},
        }
    )
    client = make_client(Endpoint(base_url, "not-needed"), 10)
    caller = ModelCaller(client, settings)
    caller.shared = shared_credit(base_url, "gpt-4o-mini", rpm, None, 100)
    requests = [
        CallRequest("gpt-4o-mini", (("user", f"call {i} of {sys.argv[1]}"),), 0, 20)
        for i in range(calls)
    ]
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(caller.call, requests))
    print(sum(o.ok for o in outcomes), caller.shared.refills)


if __name__ == "__main__":
    main()
