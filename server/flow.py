"""Lead and cycle times of the stories completed in a sliding window, with exact percentiles.

Pure: every method takes `now` (monotonic seconds), so tests drive it with a
fake clock. A completion at `at` is in the window while `now - at < window`.

Percentiles are exact, by nearest rank (storypulse.percentiles, the one rule
every side ranks by): always one of the observed values, so a client that
collects the same lead times gets the very same number.

The values are kept in two `sortedcontainers.SortedList`s (insert, remove and
index in O(log n)); expiry walks a deque in completion order, and a deleted
story leaves through a dict by id (its deque entry expires later, dead). A plain list
with `bisect.insort` is as fast up to ~10,000 values but costs O(n) per
insertion: ~20 µs at 100,000 values and ~200 µs at 1,000,000 against ~4 and
~13 µs (measured on the development machine), and a day's window at a busy
server holds millions. SAMPLES_MAX bounds the memory (about 300 bytes each):
beyond it the oldest completions leave the window early.

`covered(now)` is how much of the window the count runs over: from `since`
(when counting started, or a restart's oldest evidence, see `counted_from`) or
the last completion that left early, whichever is later, up to the window. A
throughput is the count over it, not over a window not yet filled.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

from sortedcontainers import SortedList

from storypulse.percentiles import nearest_rank

SAMPLES_MAX = 250_000


class Completed(NamedTuple):
    at: float  # monotonic time of the completion: what expiry goes by
    story_id: int
    completed_at: float  # wall clock
    lead_s: float
    cycle_s: float
    work_s: float | None = None  # time one of its tasks ran on a worker; None: not known


@dataclass(frozen=True)
class FlowFigures:
    count: int  # completions in the window
    lead_mean_s: float | None
    lead_p50_s: float | None
    lead_p85_s: float | None
    lead_p95_s: float | None
    cycle_p50_s: float | None
    cycle_p85_s: float | None
    cycle_p95_s: float | None
    # work time / cycle time of the stories in the window whose work time is known
    flow_efficiency: float | None = None


class FlowWindow:
    def __init__(self, window_s: float, samples_max: int = SAMPLES_MAX, since: float = 0.0):
        if window_s <= 0 or samples_max < 1:
            raise ValueError("window_s and samples_max must be positive")
        self.window = window_s
        self.samples_max = samples_max
        self.since = since  # monotonic: every completion from then on is counted (or expired)
        # in completion order; a discarded (deleted) story's entry stays until it expires,
        # dead: `live` holds the ones that count, by story id (ids are never reused)
        self.entries: deque[Completed] = deque()
        self.live: dict[int, Completed] = {}
        self.lead = SortedList()
        self.cycle = SortedList()
        # in microseconds, so that adding and taking away leaves no rounding behind
        self._lead_sum_us = 0
        self._work_sum_us = 0  # of the stories whose work time is known
        self._worked_cycle_sum_us = 0  # their cycle times

    def __len__(self) -> int:
        return len(self.live)

    def add(self, at: float, story_id: int, completed_at: float, lead_s: float,
            cycle_s: float, work_s: float | None = None) -> None:
        """A story completed at `at`; completions must come in time order (an earlier one is
        clamped to the last). Expiry waits for the next look (figures, recent)."""
        entries = self.entries
        if entries and at < entries[-1].at:
            at = entries[-1].at
        entry = Completed(at, story_id, completed_at, lead_s, cycle_s, work_s)
        entries.append(entry)
        self.live[story_id] = entry
        self.lead.add(lead_s)
        self.cycle.add(cycle_s)
        self._lead_sum_us += round(lead_s * 1e6)
        if work_s is not None:
            self._work_sum_us += round(work_s * 1e6)
            self._worked_cycle_sum_us += round(cycle_s * 1e6)
        if len(entries) > self.samples_max:
            early = entries.popleft()
            self._drop(early)
            self.since = max(self.since, early.at)  # what came before it is no longer counted

    def expire(self, now: float) -> None:
        # `now - at >= window`, the definition itself: `at <= now - window` rounds
        # differently (at 1e-300 and now 1.0, window 1.0 the two disagree).
        entries = self.entries
        while entries and now - entries[0].at >= self.window:
            self._drop(entries.popleft())

    def _drop(self, entry: Completed) -> None:
        """An entry leaves the deque: its values leave the figures, unless discarded before."""
        if self.live.pop(entry.story_id, None) is None:
            return
        self.lead.remove(entry.lead_s)
        self.cycle.remove(entry.cycle_s)
        self._lead_sum_us -= round(entry.lead_s * 1e6)
        if entry.work_s is not None:
            self._work_sum_us -= round(entry.work_s * 1e6)
            self._worked_cycle_sum_us -= round(entry.cycle_s * 1e6)

    def discard(self, story_id: int) -> bool:
        """Take a (deleted) story out of the window; True if it was there."""
        entry = self.live.get(story_id)
        if entry is None:
            return False
        self._drop(entry)
        return True

    def set_window(self, window_s: float, now: float) -> None:
        """A shorter window drops what falls out at once; a longer one fills as stories complete."""
        if window_s <= 0:
            raise ValueError("window_s must be positive")
        self.window = window_s
        self.expire(now)

    def counted_from(self, at: float) -> None:
        """Completions since `at` (monotonic) are all known (a restart read them back)."""
        self.since = min(self.since, at)

    def covered(self, now: float) -> float:
        """Seconds of the window the count runs over: the window, or less while it fills."""
        return min(self.window, max(0.0, now - self.since))

    def figures(self, now: float) -> FlowFigures:
        self.expire(now)
        n = len(self.live)
        lead, cycle = self.lead, self.cycle
        return FlowFigures(
            count=n,
            lead_mean_s=self._lead_sum_us / n / 1e6 if n else None,
            lead_p50_s=nearest_rank(lead, 50),
            lead_p85_s=nearest_rank(lead, 85),
            lead_p95_s=nearest_rank(lead, 95),
            cycle_p50_s=nearest_rank(cycle, 50),
            cycle_p85_s=nearest_rank(cycle, 85),
            cycle_p95_s=nearest_rank(cycle, 95),
            flow_efficiency=(min(1.0, self._work_sum_us / self._worked_cycle_sum_us)
                             if self._worked_cycle_sum_us > 0 else None),
        )

    def recent(self, now: float, limit: int) -> list[Completed]:
        """The newest `limit` completions in the window, oldest first."""
        self.expire(now)
        if limit <= 0:
            return []
        live = self.live
        newest = list(itertools.islice((e for e in reversed(self.entries) if e.story_id in live),
                                       limit))
        newest.reverse()
        return newest
