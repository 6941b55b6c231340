"""Limits shared by several processes: credit drawn in batches from a common pool.

When several flow runs (several workers, or a distributed task runner) call
the same provider, each process's own limiter only sees its own calls. The
pool behind `take` (Prefect's global concurrency limits, in tasks/) sees all
of them, but asking it costs a round trip to the server and is slow under
contention; so each process draws credit for a batch of calls at once and
spends it locally, paying one round trip per batch, not per call.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

# Half a second of the request rate per batch: large enough to amortise the
# round trip, small enough that no process hoards what another could use.
BATCH_SECONDS = 0.5


def batch_size(per_minute: float) -> int:
    """How much credit one refill draws: BATCH_SECONDS of the rate, at least 1."""
    return max(1, math.floor(per_minute / 60 * BATCH_SECONDS))


class SharedCredit:
    """Per-process credit for requests and tokens, refilled from a shared pool."""

    def __init__(
        self,
        take: Callable[[int, int], None],
        *,
        requests_per_minute: float,
        tokens_per_minute: float | None,
    ):
        self._take = take
        self._lock = threading.Lock()
        self._requests = 0
        self._tokens = 0
        self.batch_requests = max(
            1, math.floor(requests_per_minute / 60 * BATCH_SECONDS)
        )
        self.batch_tokens = (
            max(1, math.floor(tokens_per_minute / 60 * BATCH_SECONDS))
            if tokens_per_minute
            else 0
        )
        self.refills = 0

    def acquire(self, tokens: int) -> None:
        """Block until this process holds credit for one request of `tokens`."""
        # Holding the lock while the pool is asked is deliberate: the threads
        # behind us need the same batch, and one round trip serves them all.
        with self._lock:
            need_requests = self.batch_requests if self._requests < 1 else 0
            need_tokens = 0
            if self.batch_tokens and self._tokens < tokens:
                need_tokens = max(self.batch_tokens, tokens - self._tokens)
            if need_requests or need_tokens:
                self._take(need_requests, need_tokens)
                self.refills += 1
                self._requests += need_requests
                self._tokens += need_tokens
            self._requests -= 1
            if self.batch_tokens:
                self._tokens -= tokens
