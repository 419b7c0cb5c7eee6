"""Locking a username after repeated failed sign-ins (guessing passwords is slowed to a crawl).

``SignInThrottle`` counts failed sign-ins per username (case-insensitive) within a window; the
``max_failures``-th failure locks that username for ``lock_seconds``, during which no password is
even checked. Usernames that do not exist are counted alike, so the answers do not tell which
names exist. The state is per process: every session of one app server shares it.

Memory is bounded without forgetting real users: failures of configured usernames (``known``)
are kept apart and never evicted (there are only as many as the configuration has users); the
made-up names an attacker can invent without end share ``MAX_TRACKED_NAMES`` places, oldest
evicted first, so 10,000 made-up names cannot reset a real user's count.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import OrderedDict
from typing import Callable

MAX_FAILURES = 5
LOCK_SECONDS = 15 * 60
WINDOW_SECONDS = 15 * 60
MAX_TRACKED_NAMES = 10_000  # bounds the memory an attacker can make us spend on made-up names


@dataclasses.dataclass
class _Record:
    failures: list[float] = dataclasses.field(default_factory=list)
    locked_until: float = 0.0


class SignInThrottle:
    """Failed sign-ins per username, and the lock that follows too many.

    Args:
        max_failures: failures within ``window_seconds`` that lock the username.
        lock_seconds: how long the lock lasts.
        window_seconds: how far back failures count.
        clock: seconds, monotonic (injectable for tests).
    """

    def __init__(self, max_failures: int = MAX_FAILURES, lock_seconds: float = LOCK_SECONDS,
                 window_seconds: float = WINDOW_SECONDS,
                 clock: Callable[[], float] = time.monotonic):
        if isinstance(max_failures, bool) or not isinstance(max_failures, int) or \
                max_failures < 1:
            raise ValueError(f"max_failures must be an integer >= 1; received {max_failures!r}.")
        if lock_seconds <= 0 or window_seconds <= 0:
            raise ValueError(f"lock_seconds and window_seconds must be > 0; received "
                             f"{lock_seconds!r} and {window_seconds!r}.")
        self.max_failures = max_failures
        self.lock_seconds = float(lock_seconds)
        self.window_seconds = float(window_seconds)
        self._clock = clock
        self._records: OrderedDict[str, _Record] = OrderedDict()  # made-up names, bounded
        self._known: dict[str, _Record] = {}  # configured usernames, never evicted
        self._lock = threading.Lock()

    def locked_for(self, username: str) -> float:
        """Seconds left on ``username``'s lock (0 when it may try to sign in)."""
        with self._lock:
            record = self._lookup(normalise(username))
            return max(0.0, record.locked_until - self._clock()) if record else 0.0

    def failures(self, username: str) -> int:
        """Failures of ``username`` within the window (reset by a lock or a success)."""
        with self._lock:
            record = self._lookup(normalise(username))
            return len(self._recent(record)) if record else 0

    def record_failure(self, username: str, known: bool = False) -> float:
        """Count a failed sign-in; returns the lock's length in seconds if this one locked it.

        ``known``: the username is one of the configured users (its count is never evicted).
        """
        now = self._clock()
        with self._lock:
            key = normalise(username)
            record = self._known.setdefault(key, self._records.pop(key, None) or _Record()) \
                if known else self._record(key)
            record.failures = [*self._recent(record), now]
            if len(record.failures) < self.max_failures:
                return 0.0
            record.failures = []
            record.locked_until = now + self.lock_seconds
            return self.lock_seconds

    def record_success(self, username: str) -> None:
        """Forget ``username``'s failures after a good sign-in."""
        with self._lock:
            self._records.pop(normalise(username), None)
            self._known.pop(normalise(username), None)

    def _lookup(self, key: str) -> _Record | None:
        return self._known.get(key) or self._records.get(key)

    def _recent(self, record: _Record) -> list[float]:
        cutoff = self._clock() - self.window_seconds
        return [moment for moment in record.failures if moment > cutoff]

    def _record(self, key: str) -> _Record:
        record = self._records.pop(key, None) or _Record()
        self._records[key] = record  # most recently used last
        while len(self._records) > MAX_TRACKED_NAMES:
            oldest, stale = next(iter(self._records.items()))
            if stale.locked_until > self._clock():
                break  # never forget a live lock to make room
            self._records.pop(oldest)
        return record


def normalise(username) -> str:
    """How usernames are compared: stripped, case-folded."""
    return str(username or "").strip().casefold()
