"""Rates over a sliding window, the stats history ring, and timer cadence.

Pure: every method takes `now` (monotonic seconds), so tests drive them with a
fake clock.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class RateWindow:
    """Events per second over the last `window` seconds, counted in buckets.

    The window slides a bucket at a time (`window / buckets` seconds). Until
    the window has been running for a whole window, the rate is taken over the
    time elapsed so far (at least one bucket), so a fresh server does not
    under-report.
    """

    def __init__(self, window: float, now: float, buckets: int = 50):
        if window <= 0 or buckets < 1:
            raise ValueError("window and buckets must be positive")
        self.window = window
        self.width = window / buckets
        self.counts = [0] * buckets
        self.started = now
        self._index = self._bucket(now)  # absolute index of the newest bucket
        self.total = 0  # sum of counts in the window

    def _bucket(self, now: float) -> int:
        return math.floor(now / self.width)

    def _advance(self, now: float) -> None:
        index = self._bucket(now)
        steps = index - self._index
        if steps <= 0:
            return
        n = len(self.counts)
        if steps >= n:
            self.counts = [0] * n
            self.total = 0
        else:
            for i in range(self._index + 1, index + 1):
                slot = i % n
                self.total -= self.counts[slot]
                self.counts[slot] = 0
        self._index = index

    def add(self, now: float, count: int = 1) -> None:
        self._advance(now)
        self.counts[self._index % len(self.counts)] += count
        self.total += count

    def rate(self, now: float) -> float:
        self._advance(now)
        span = min(self.window, max(now - self.started, self.width))
        return self.total / span


class MeanWindow:
    """Mean of recent samples (e.g. task durations) over a sliding window."""

    def __init__(self, window: float, now: float, buckets: int = 50):
        self.sums = RateWindow(window, now, buckets)
        self.counts = RateWindow(window, now, buckets)

    def add(self, now: float, value: float, count: int = 1) -> None:
        # value is the sum over `count` samples; kept in micro-units so RateWindow stays integral
        self.sums.add(now, round(value * 1e6))
        self.counts.add(now, count)

    def mean(self, now: float, default: float = 0.0) -> float:
        self.sums._advance(now)
        self.counts._advance(now)
        if self.counts.total == 0:
            return default
        return self.sums.total / 1e6 / self.counts.total


class History(Generic[T]):
    """One entry a second, the newest `capacity` of them."""

    def __init__(self, capacity: int = 3600):
        self.entries: deque[T] = deque(maxlen=capacity)
        self._last_second: int | None = None

    def offer(self, now: float, entry: T) -> bool:
        """Keep `entry` if it is the first one in this second; True if kept."""
        second = math.floor(now)
        if second == self._last_second:
            return False
        self._last_second = second
        self.entries.append(entry)
        return True

    def last(self, seconds: int) -> list[T]:
        if seconds <= 0:
            return []
        items = list(self.entries)
        return items[-seconds:]


class Ticker:
    """A cadence on the monotonic clock that skips missed ticks instead of bursting."""

    def __init__(self, interval: float, now: float, *, start_now: bool = False):
        self.interval = interval
        self.next_at = now if start_now else now + interval

    def due(self, now: float) -> bool:
        if now < self.next_at:
            return False
        self.next_at += self.interval
        if self.next_at <= now:  # we fell behind: skip, do not burst
            missed = math.floor((now - self.next_at) / self.interval) + 1
            self.next_at += missed * self.interval
        return True
