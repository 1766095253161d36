"""Scoring the server's own backlog forecasts as they mature.

Pure: every method takes `now` (monotonic seconds). A forecast made at `at`,
when `done` completions had been counted, says that `stories` more will be done
within p50/p85/p95 seconds. At each level it is a **hit** if the completion
count reaches `done + stories` by `at + seconds`, a **miss** if that time passes
first. A well-calibrated forecaster hits at about the level's rate.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from dataclasses import dataclass, field

LEVELS = (50, 85, 95)
RECORD_EVERY_S = 5.0  # docs/forecasts.md says why
PENDING_MAX = 10_000  # forecasts waiting to mature; beyond it the oldest is dropped unscored
RECENT_MAX = 4_096  # (time, count) of the latest completions: when a target was reached


@dataclass
class Pending:
    at: float
    target: int  # the completion count that makes it come true
    deadlines: tuple[float, float, float]  # at + seconds, per level
    open: list[bool] = field(default_factory=lambda: [True, True, True])  # not yet scored


class Calibration:
    def __init__(self, now: float, every_s: float = RECORD_EVERY_S, pending_max: int = PENDING_MAX):
        self.every = every_s
        self.pending_max = pending_max
        self.next_at = now  # the first forecast with history is recorded at once
        self.pending: list[Pending] = []  # in the order made
        self._by_target: list[tuple[int, int, Pending]] = []  # heap: the next to come true
        self._seq = itertools.count()
        self.hits = [0, 0, 0]
        self.scored = [0, 0, 0]
        self.dropped = 0
        # A forecast is recorded when its simulation comes back, a few ms after it was made:
        # what completed meanwhile is scored at the time it completed, found here.
        self._recent: deque[tuple[float, int]] = deque(maxlen=RECENT_MAX)

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def record(self, now: float, done: int, stories: int, seconds: tuple[float, float, float]) -> None:
        """A backlog forecast, made at `now` with `done` completions counted so far."""
        self.next_at = now + self.every
        if stories < 1:
            return  # nothing open: a forecast of nothing cannot miss, so it says nothing
        entry = Pending(now, done + stories, tuple(now + s for s in seconds))
        self.pending.append(entry)
        heapq.heappush(self._by_target, (entry.target, next(self._seq), entry))
        if self._recent and self._recent[-1][1] >= entry.target:
            reached = next((at for at, done in self._recent if done >= entry.target), self._recent[0][0])
            self._reach(reached, self._recent[-1][1])
        if len(self.pending) > self.pending_max:
            old = self.pending.pop(0)
            old.open = [False, False, False]
            self.dropped += 1

    def completed(self, now: float, done: int) -> None:
        """The completion count reached `done` at `now`: score what came true."""
        self._recent.append((now, done))
        self._reach(now, done)

    def _reach(self, now: float, done: int) -> None:
        heap = self._by_target
        while heap and heap[0][0] <= done:
            entry = heapq.heappop(heap)[2]
            for i, deadline in enumerate(entry.deadlines):
                if entry.open[i]:
                    self._score(i, now <= deadline)
                    entry.open[i] = False

    def expire(self, now: float) -> None:
        """Score as misses the levels whose time passed before their forecast came true."""
        kept = []
        for entry in self.pending:
            for i, deadline in enumerate(entry.deadlines):
                if entry.open[i] and now > deadline:
                    self._score(i, False)
                    entry.open[i] = False
            if any(entry.open):
                kept.append(entry)
        self.pending = kept
        if len(self._by_target) > 2 * len(kept) + 100:  # scored entries linger in the heap
            self._by_target = [(e.target, next(self._seq), e) for e in kept]
            heapq.heapify(self._by_target)

    def _score(self, level: int, hit: bool) -> None:
        self.scored[level] += 1
        self.hits[level] += bool(hit)

    def hit_rate(self, level: int) -> float | None:
        """Hits / scored at LEVELS[level]; None until one has matured."""
        i = LEVELS.index(level)
        return self.hits[i] / self.scored[i] if self.scored[i] else None
