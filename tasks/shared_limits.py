"""Provider limits shared across processes through Prefect global concurrency limits.

Two limits per provider and model, created or updated from report.toml at the
start of each run: one of requests, one of tokens (in units of
TOKEN_UNIT, since a limit counts whole slots). Both decay at the allowed rate,
so `rate_limit` on them paces every process that uses the same names.
"""

from __future__ import annotations

import math
import re
from urllib.parse import urlsplit

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import (
    GlobalConcurrencyLimitCreate,
    GlobalConcurrencyLimitUpdate,
)
from prefect.concurrency.sync import rate_limit
from prefect.exceptions import ObjectAlreadyExists

from joule.shared import SharedCredit, batch_size

TOKEN_UNIT = 100
# The token limit holds this many seconds of the rate, so that one large call
# always fits in it.
TOKEN_HOLD_SECONDS = 10.0


def limit_names(base_url: str, model: str) -> tuple[str, str]:
    """The names of the request and token limits of one provider and model."""
    host = urlsplit(base_url).netloc or base_url
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", f"joule-{host}-{model}")
    return f"{stem}-requests", f"{stem}-tokens"


def _upsert(name: str, limit: int, decay_per_second: float) -> None:
    update = GlobalConcurrencyLimitUpdate(
        limit=limit, slot_decay_per_second=decay_per_second, active=True
    )
    with get_client(sync_client=True) as client:
        try:
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(
                    name=name, limit=limit, slot_decay_per_second=decay_per_second
                )
            )
        except ObjectAlreadyExists:
            # Another run made it first (or an earlier one did): take the
            # settings of this report.toml.
            client.update_global_concurrency_limit(name, update)


def shared_credit(
    base_url: str,
    model: str,
    requests_per_minute: float,
    tokens_per_minute: float | None,
    largest_call_tokens: int,
) -> SharedCredit:
    """Create or update the shared limits and return this process's credit."""
    requests_name, tokens_name = limit_names(base_url, model)
    # A limit of one second of requests: bursts stay small across processes.
    _upsert(
        requests_name,
        max(batch_size(requests_per_minute), math.ceil(requests_per_minute / 60)),
        requests_per_minute / 60,
    )
    if tokens_per_minute:
        hold = max(tokens_per_minute / 60 * TOKEN_HOLD_SECONDS, largest_call_tokens)
        _upsert(
            tokens_name,
            max(1, math.ceil(hold / TOKEN_UNIT)),
            tokens_per_minute / 60 / TOKEN_UNIT,
        )

    def take(requests: int, tokens: int) -> None:
        if requests:
            rate_limit(requests_name, occupy=requests, strict=True)
        if tokens:
            rate_limit(tokens_name, occupy=math.ceil(tokens / TOKEN_UNIT), strict=True)

    return SharedCredit(
        take,
        requests_per_minute=requests_per_minute,
        tokens_per_minute=tokens_per_minute,
    )
