"""Spending limits: a call is admitted only if its worst case fits the budget."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass

from joule.pricing import cost_usd


@dataclass
class Reservation:
    """The worst case of one admitted call, held until its usage is known."""

    budget: Budget
    model: str
    tokens: int
    cost_usd: float
    settled: bool = False

    def settle(self, prompt_tokens: int, completion_tokens: int) -> None:
        """Replace the worst case by what the call really used."""
        self.budget._settle(self, prompt_tokens, completion_tokens)

    def cancel(self) -> None:
        """The call was not billed (it failed): free its worst case."""
        self.budget._settle(self, 0, 0)


class Budget:
    """The run's limits on cost and tokens, counting calls in flight at worst case."""

    def __init__(
        self,
        max_cost_usd: float | None,
        max_tokens_total: int | None,
        prices: Mapping[str, tuple[float, float]] | None = None,
    ):
        self.max_cost_usd = max_cost_usd
        self.max_tokens_total = max_tokens_total
        self._prices = prices
        self._lock = threading.Lock()
        self.spent_usd = 0.0
        self.spent_tokens = 0
        self.reserved_usd = 0.0
        self.reserved_tokens = 0
        self.refused = 0

    @property
    def limited(self) -> bool:
        return self.max_cost_usd is not None or self.max_tokens_total is not None

    def reserve(
        self, model: str, prompt_estimate: int, max_tokens: int
    ) -> Reservation | str:
        """Hold the call's worst case, or say why it would break the budget."""
        tokens = prompt_estimate + max_tokens
        worst = cost_usd(model, prompt_estimate, max_tokens, self._prices)
        with self._lock:
            if self.max_cost_usd is not None and (
                self.spent_usd + self.reserved_usd + worst > self.max_cost_usd
            ):
                self.refused += 1
                return (
                    f"not run: it could cost up to ${worst:.4f}, which with "
                    f"${self.spent_usd:.4f} spent and ${self.reserved_usd:.4f} "
                    f"held by calls in flight would pass max_cost_usd = "
                    f"${self.max_cost_usd:g}"
                )
            if self.max_tokens_total is not None and (
                self.spent_tokens + self.reserved_tokens + tokens
                > self.max_tokens_total
            ):
                self.refused += 1
                return (
                    f"not run: it could use up to {tokens:,} tokens, which with "
                    f"{self.spent_tokens:,} used and {self.reserved_tokens:,} held "
                    f"by calls in flight would pass max_tokens_total = "
                    f"{self.max_tokens_total:,}"
                )
            self.reserved_usd += worst
            self.reserved_tokens += tokens
        return Reservation(self, model, tokens, worst)

    def _settle(
        self, reservation: Reservation, prompt_tokens: int, completion_tokens: int
    ) -> None:
        actual = cost_usd(
            reservation.model, prompt_tokens, completion_tokens, self._prices
        )
        with self._lock:
            if reservation.settled:
                return
            reservation.settled = True
            self.reserved_usd -= reservation.cost_usd
            self.reserved_tokens -= reservation.tokens
            self.spent_usd += actual
            self.spent_tokens += prompt_tokens + completion_tokens
