"""The call cache: a successful answer, stored under its call's identity.

The key is the hash of model, messages and parameters (CallRequest.key),
never the run id, so any later run that makes the same call gets the answer
for free. Entries are small JSON files written atomically the moment an
answer arrives: a run killed half-way keeps every answer it had received.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from joule.calls import CallOutcome, CallRequest
from joule.files import atomic_write_text

logger = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = ".joule-cache"


@dataclass(frozen=True)
class CachedAnswer:
    model: str
    answer: str
    prompt_tokens: int
    completion_tokens: int
    created_at: str


class CallCache(Protocol):
    def get(self, key: str) -> CachedAnswer | None: ...

    def put(self, key: str, entry: CachedAnswer) -> None: ...


def _relative_path(key: str) -> str:
    # Two-character folders keep any one folder small on large projects.
    return f"{key[:2]}/{key}.json"


def _decode(text: str) -> CachedAnswer:
    return CachedAnswer(**json.loads(text))


def _encode(entry: CachedAnswer) -> str:
    return json.dumps(asdict(entry), ensure_ascii=False)


class FolderCache:
    """Entries as files in a local folder (by default PROJECT_DIR/.joule-cache)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def get(self, key: str) -> CachedAnswer | None:
        path = self.folder / _relative_path(key)
        try:
            return _decode(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as exc:
            # A damaged entry costs one call again, never a wrong answer.
            logger.warning("Ignoring unreadable cache entry %s: %s", path, exc)
            return None

    def put(self, key: str, entry: CachedAnswer) -> None:
        path = self.folder / _relative_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, _encode(entry))

    def __len__(self) -> int:
        return sum(1 for _ in self.folder.glob("*/*.json"))


class StorageCache:
    """Entries in any storage with read/write by path, such as a Prefect block.

    `read` raises (any exception) for a missing path, as Prefect's file
    system blocks do.
    """

    def __init__(
        self, read: Callable[[str], bytes], write: Callable[[str, bytes], object]
    ):
        self._read = read
        self._write = write

    def get(self, key: str) -> CachedAnswer | None:
        try:
            raw = self._read(_relative_path(key))
        except Exception:
            return None
        try:
            return _decode(raw.decode("utf-8"))
        except (ValueError, TypeError) as exc:
            logger.warning("Ignoring unreadable cache entry %s: %s", key, exc)
            return None

    def put(self, key: str, entry: CachedAnswer) -> None:
        self._write(_relative_path(key), _encode(entry).encode("utf-8"))


def entry_from(request: CallRequest, outcome: CallOutcome) -> CachedAnswer:
    return CachedAnswer(
        model=request.model,
        answer=outcome.answer or "",
        prompt_tokens=outcome.prompt_tokens,
        completion_tokens=outcome.completion_tokens,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def outcome_from(entry: CachedAnswer) -> CallOutcome:
    """A cache hit as an outcome: the original usage, no attempt, no cost."""
    return CallOutcome(
        ok=True,
        answer=entry.answer,
        prompt_tokens=entry.prompt_tokens,
        completion_tokens=entry.completion_tokens,
        attempts=0,
        cached=True,
    )
