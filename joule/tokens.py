"""Token estimates made before a call, when only the text is known."""

from __future__ import annotations

import math

# No machine here can download tiktoken's encodings, so the estimate is by
# characters. English and Dutch prose average about four characters a token;
# three overestimates on purpose, because the estimate guards rate limits and
# budgets, where guessing low costs 429s or overspending.
CHARS_PER_TOKEN = 3.0
TOKENS_PER_MESSAGE = 4


def estimate_tokens(text: str) -> int:
    """A conservative token count for one piece of text."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def estimate_prompt_tokens(messages: list[dict[str, str]]) -> int:
    """A conservative token count for a list of chat messages."""
    return sum(
        TOKENS_PER_MESSAGE + estimate_tokens(m.get("content") or "") for m in messages
    )
