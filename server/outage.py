"""A database that refuses writes, as a state: since when, why, and when to try again.

Pure (the caller passes `now`), so the backoff is tested with a fake clock.
Retries start quick, since most refusals are short (a lock, a restart), and
back off to a ceiling so a long outage does not keep the loop busy.
"""

from __future__ import annotations

FIRST_RETRY_S = 0.05
MAX_RETRY_S = 2.0


class Outage:
    def __init__(self, cause: str, now: float):
        self.cause = cause
        self.since = now
        self.failures = 1
        self.retry_at = now + FIRST_RETRY_S

    def refused_again(self, cause: str, now: float) -> None:
        self.cause = cause
        self.failures += 1
        self.retry_at = now + min(MAX_RETRY_S, FIRST_RETRY_S * 2 ** (self.failures - 1))

    def due(self, now: float) -> bool:
        return now >= self.retry_at

    def lasted(self, now: float) -> float:
        return now - self.since
