"""A model call as data: what is asked (the cache identity) and what came back."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field


@dataclass(frozen=True)
class CallRequest:
    """One chat completion request; equal requests are the same call."""

    model: str
    messages: tuple[tuple[str, str], ...]
    temperature: float
    max_tokens: int

    @property
    def key(self) -> str:
        """The call's identity: model, messages and parameters, never the run."""
        payload = json.dumps(
            [self.model, self.messages, self.temperature, self.max_tokens],
            ensure_ascii=False,
        )
        return hashlib.sha256(payload.encode()).hexdigest()

    def message_dicts(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.messages]


@dataclass
class CallOutcome:
    """What one call produced, after every retry."""

    ok: bool
    answer: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    attempts: int = 0
    cached: bool = False
    # True when the call was never sent (the budget refused it).
    skipped: bool = False
    error: str | None = None
    # Why each retried attempt failed ("the server answered 503", ...).
    retries: list[str] = field(default_factory=list)
