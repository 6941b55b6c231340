"""List prices per model, in US dollars per million tokens (input, output)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

# List prices of OpenAI's standard tier as published in 2026; a project
# overrides or extends them in [llm.prices] of its report.toml.
LIST_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "o4-mini": (1.10, 4.40),
}

# A model missing from the table is priced like an expensive one, so a budget
# errs on the side of stopping early rather than overspending.
UNKNOWN_MODEL_PRICE = (5.00, 20.00)


def model_family(model: str, families: Iterable[str]) -> str | None:
    """The entry of a per-model table that applies to a model name.

    Dated snapshots ("gpt-4o-mini-2024-07-18") and provider prefixes
    ("openai/gpt-4o") belong to their family; the longest match wins, so
    gpt-4o-mini is not taken for gpt-4o.
    """
    name = model.strip().lower().rsplit("/", 1)[-1]
    matches = [f for f in families if name == f or name.startswith(f + "-")]
    return max(matches, key=len, default=None)


def price_of(
    model: str, overrides: Mapping[str, tuple[float, float]] | None = None
) -> tuple[float, float]:
    """Input and output price per million tokens for a model."""
    table = {**LIST_PRICES, **(overrides or {})}
    if model in table:
        return table[model]
    family = model_family(model, table)
    return table[family] if family else UNKNOWN_MODEL_PRICE


def cost_usd(
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    overrides: Mapping[str, tuple[float, float]] | None = None,
) -> float:
    """What a call cost at list prices."""
    input_price, output_price = price_of(model, overrides)
    return (prompt_tokens * input_price + completion_tokens * output_price) / 1e6
