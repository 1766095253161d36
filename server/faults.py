"""What the server drops or fails on: counted for the stats event, logged without flooding.

Nothing from the network may end the loop, so a message that cannot be handled
is dropped (or answered `internal`) at that message; these counts make the
drops visible (`dropped_messages` and `internal_errors` in every stats event)
and the rate limit keeps a flood of bad input from becoming a flood of logs.
"""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger(__name__)


class RateLimitedLog:
    """At most `burst` records per `period` seconds per key; counts the rest."""

    def __init__(self, period: float = 10.0, burst: int = 5):
        self.period, self.burst = period, burst
        self._windows: dict[str, list[float]] = {}  # key -> [window start, count, suppressed]

    def warning(self, key: str, message: str, *args: Any) -> None:
        self.log(logging.WARNING, key, message, *args)

    def log(self, level: int, key: str, message: str, *args: Any,
            exc_info: BaseException | None = None, now: float | None = None) -> None:
        """`now`: the caller's monotonic time (the service reads no clock); else read here."""
        if now is None:
            now = time.monotonic()
        window = self._windows.get(key)
        if window is None or now - window[0] > self.period:
            if window is not None and window[2]:
                log.warning("%d more like this were suppressed: %s", window[2], key)
            window = self._windows[key] = [now, 0, 0]
        window[1] += 1
        if window[1] <= self.burst:
            log.log(level, message, *args, exc_info=exc_info)
        else:
            window[2] += 1


class Faults:
    def __init__(self, period: float = 10.0, burst: int = 5):
        self.log = RateLimitedLog(period, burst)
        self.internal_errors = 0
        self.dropped_messages = 0

    def dropped(self, key: str, message: str, *args: Any, now: float | None = None) -> None:
        """A message dropped unanswered (wrong envelope, not a worker message)."""
        self.dropped_messages += 1
        self.log.log(logging.WARNING, key, message, *args, now=now)

    def internal(self, what: str, exc: BaseException, now: float | None = None) -> None:
        """Handling one message raised: a bug, logged with its traceback (rate-limited)."""
        self.internal_errors += 1
        self.log.log(logging.ERROR, f"internal:{what}:{type(exc).__name__}",
                     "internal error while handling %s: %s: %s", what, type(exc).__name__,
                     exc, exc_info=exc, now=now)
