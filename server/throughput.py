"""Throughput history: stories completed per sampling interval, the last `history_s` of them.

Pure: every method takes `now` (monotonic seconds). An interval is counted once
it has closed; the one still open is not a sample yet (it would look slow).
The history is the last intervals the server ran, not the last minutes of the
wall clock: after a restart the intervals read back from the database come
first, and the time the server was down is not counted as time without
completions (see `restore`).
"""

from __future__ import annotations

import math
from collections import deque

INTERVAL_S = 1.0  # docs/forecasts.md says why one second


class Throughput:
    def __init__(self, history_s: float, now: float, interval_s: float = INTERVAL_S):
        if not interval_s > 0 or history_s < interval_s:
            raise ValueError("interval_s must be positive and history_s at least one interval")
        self.interval = interval_s
        self.counts: deque[int] = deque(maxlen=int(round(history_s / interval_s)))
        self._index = math.floor(now / interval_s)  # absolute index of the open interval
        self._open = 0  # completions in the open interval
        self.completed = 0  # every completion counted since start (what calibration follows)

    @property
    def capacity(self) -> int:
        return self.counts.maxlen or 0

    def add(self, now: float, count: int = 1) -> None:
        self._advance(now)
        self._open += count
        self.completed += count

    def _advance(self, now: float) -> None:
        index = math.floor(now / self.interval)
        steps = index - self._index
        if steps <= 0:
            return
        self.counts.append(self._open)
        # intervals that passed without a completion (at most a whole history of them)
        self.counts.extend([0] * min(steps - 1, self.capacity))
        self._open = 0
        self._index = index

    def samples(self, now: float) -> list[int]:
        """The closed intervals' counts, oldest first."""
        self._advance(now)
        return list(self.counts)

    def span_s(self, now: float) -> float:
        """Seconds of history held."""
        self._advance(now)
        return len(self.counts) * self.interval

    def restore(self, intervals: list[tuple[int, int]]) -> None:
        """Put back the intervals the database remembers, before the live ones: `intervals`
        holds (index, completions) of the intervals with completions in the history window,
        oldest first, where index = floor(completed_at / interval_s) on the wall clock. The
        intervals from the first to the last are counted, zeros included; before the first
        and after the last the server may have been down, so those are left out (the live
        history takes their place)."""
        if not intervals:
            return
        first = intervals[0][0]
        restored = [0] * (intervals[-1][0] - first + 1)
        for index, count in intervals:
            restored[index - first] += count
        live = list(self.counts)
        self.counts.clear()
        self.counts.extend(restored[-self.capacity:])
        self.counts.extend(live)
