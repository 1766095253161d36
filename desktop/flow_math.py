"""The Flow tab's arithmetic, apart from Qt and sockets so that it can be tested directly.

- cumulative flow: done, in progress and waiting stacked, from counts the stats carry;
- completions: a bounded buffer of (completed at, lead time, cycle time) for the
  lead-time scatterplot, merged with a snapshot's recent completions;
- aging work in progress: the oldest open stories by age, against the p85 lead time;
- Little's law: work in progress next to throughput × mean lead time, the
  throughput over the time the server's flow window has actually counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

# The Stats fields the Flow tab keeps as series ("ts" first, as SeriesBuffer wants).
FLOW_FIELDS = (
    "ts",
    "open_stories",
    "completed_stories",
    "stories_in_progress",
    "stories_completed_in_window",
    "flow_window_s",
    "lead_time_mean_s",
    "lead_time_p50_s",
    "lead_time_p85_s",
    "lead_time_p95_s",
    "cycle_time_p50_s",
    "cycle_time_p85_s",
    "cycle_time_p95_s",
    "wip_limit",
)
AGING_LIMIT = 200  # the oldest open stories shown, one list_stories page


# -- cumulative flow ------------------------------------------------------------
def cfd_edges(done: np.ndarray, in_progress: np.ndarray, open_: np.ndarray,
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The tops of the stacked bands: done, done + in progress, done + open (= arrived).

    Waiting stories are the open ones not yet started; in progress is clipped to
    the open count, so that a band is never negative whatever the stats say.
    """
    done = np.asarray(done, dtype=float)
    open_ = np.maximum(np.asarray(open_, dtype=float), 0.0)
    progress = np.clip(np.nan_to_num(np.asarray(in_progress, dtype=float)), 0.0, open_)
    return done, done + progress, done + open_


def stride(first: int, last: int, step: int) -> np.ndarray:
    """Row indices first, first + step, ... and always the last one: decimation that keeps every series aligned."""
    if last <= first:
        return np.empty(0, dtype=int)
    rows = np.arange(first, last, max(1, step))
    return rows if rows[-1] == last - 1 else np.append(rows, last - 1)


# -- the time the flow window covers ------------------------------------------------
RESTART_GAP_S = 10.0  # stats this far apart: the server stopped between them and counts afresh
EARLIER_SLACK_S = 2.0  # history is a row a second: a completion this much before the first row predates it
CHANGES_KEPT = 1_000
SAME_SINCE_S = 0.5  # the server's start of counting moved less than this: the same start


class FlowCoverage:
    """How long the server has been counting the completions of its flow window, at any time.

    The server counts the stories completed in the last `flow_window_s`. Until it
    has run that long (it started, or the window was made longer) it has counted
    for less, and dividing its count by the whole window makes the throughput
    climb from zero through the first window: a warm-up, not a change in the flow.
    This follows the stats in time order and remembers since when the count runs:

    - the first row, or the first after a gap of RESTART_GAP_S (the server
      stopped): counting starts there;
    - a longer window at time t: it covers from t - the old window (or since
      counting started, if later) and fills as time passes;
    - a completion the server's window holds that is older than the first row
      (a restarted server reloads its recent completions): the window reaches
      back before this client saw it, so it counts as full.

    A server that says how much it has counted (`flow_window_covered_s` in
    stats) is taken at its word instead (`take`): it knows when it started and
    what a restart read back; the inference above is for older servers.

    Time is the stats' own clock (`ts`): tests feed rows, no clock is read.
    """

    def __init__(self) -> None:
        self._from: list[float] = []  # from this ts on ...
        self._since: list[float] = []  # ... the count runs since this ts (-inf: the whole window)
        self._last_ts: float | None = None
        self._last_window: float | None = None
        self._told = False  # the last row carried the server's own figure

    def take(self, stats) -> None:
        """A stats row, in time order: the server's covered seconds when it sends them, else
        `observe`'s inference (an older server, or a stand-in, leaves the field out)."""
        covered = getattr(stats, "flow_window_covered_s", None)
        if covered is None or not stats.flow_window_s:
            self._told = False
            self.observe(stats.ts, stats.flow_window_s)
            return
        ts, window = stats.ts, stats.flow_window_s
        if self._last_ts is not None and ts <= self._last_ts:
            return
        since = -math.inf if covered >= window else ts - covered
        current = self._since[-1] if self._from else None
        # Marks only where the start of the count moves (the server's figure and stamp come
        # from two clocks: a few ms of drift between rows is no move).
        if current is None or (since != current and not abs(since - current) <= SAME_SINCE_S):
            self._mark(ts, since)
        self._told = True
        self._last_ts, self._last_window = ts, window

    def observe(self, ts: float, window_s: float | None) -> None:
        """A stats row (its ts and flow_window_s), in time order; older rows are ignored."""
        if self._last_ts is not None and ts <= self._last_ts:
            return
        if self._last_ts is None or ts - self._last_ts > RESTART_GAP_S:
            self._mark(ts, ts)
        elif window_s and self._last_window and window_s > self._last_window:
            self._mark(ts, max(self._since[-1], ts - self._last_window))
        self._last_ts, self._last_window = ts, window_s

    def saw_completion(self, completed_at: float) -> None:
        """A completion in the server's window (a snapshot's oldest, say): older than the count, it fills it.
        (A server that sends its own figure counted it in already.)"""
        if self._since and not self._told and completed_at < self._since[-1] - EARLIER_SLACK_S:
            self._since[-1] = -math.inf

    def covered(self, ts, window_s):
        """Seconds of the window counted at each `ts` (arrays or numbers): the window, or less while it fills."""
        ts = np.asarray(ts, dtype=float)
        window = np.asarray(window_s, dtype=float)
        if not self._from:
            return window * np.ones_like(ts)
        index = np.searchsorted(self._from, ts, side="right") - 1
        since = np.where(index >= 0, np.asarray(self._since)[np.maximum(index, 0)], -np.inf)
        return np.minimum(window, np.maximum(ts - since, 0.0))

    def _mark(self, at: float, since: float) -> None:
        self._from.append(at)
        self._since.append(since)
        if len(self._from) > CHANGES_KEPT:
            del self._from[0], self._since[0]


# -- Little's law -----------------------------------------------------------------
def predicted_wip(completed_in_window, covered_s, mean_lead_s):
    """Throughput × mean lead time (Little's law: L = λW); NaN where a figure is missing.

    The throughput is the count over the time it covers (FlowCoverage.covered),
    which is the window once the window is full.
    """
    completed = np.asarray(completed_in_window, dtype=float)
    covered = np.asarray(covered_s, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        throughput = np.where(covered > 0, completed / covered, np.nan)
    return throughput * np.asarray(mean_lead_s, dtype=float)


@dataclass(frozen=True)
class LittlesLaw:
    wip: int  # open stories now
    throughput_per_s: float | None  # stories completed per second over the time the flow window covers
    mean_lead_s: float | None
    window_s: float | None
    covered_s: float | None = None  # the part of the window counted so far (None: all of it)

    @property
    def predicted(self) -> float | None:
        """Throughput × mean lead time: what the WIP should be in a steady flow."""
        if self.throughput_per_s is None or self.mean_lead_s is None:
            return None
        return self.throughput_per_s * self.mean_lead_s

    @property
    def filling(self) -> bool:
        """Whether the window is not full yet (the server has counted for less than it)."""
        return self.covered_s is not None and self.window_s is not None and self.covered_s < self.window_s


def littles_law(stats, covered_s: float | None = None) -> LittlesLaw:
    """Little's law from one stats; `covered_s` from FlowCoverage (None: the window is full)."""
    window = stats.flow_window_s
    over = window if covered_s is None or window is None else min(window, covered_s)
    throughput = stats.stories_completed_in_window / over if over else None
    return LittlesLaw(stats.open_stories, throughput, stats.lead_time_mean_s, window,
                      None if covered_s is None else over)


# -- completions -------------------------------------------------------------------
COMPLETED_AT, LEAD, CYCLE, STORY = range(4)


@dataclass(frozen=True)
class Measure:
    """What the time-per-story chart plots: lead time (created → done, the queue before the start
    included) or cycle time (started → done, what a WIP limit on a bottleneck cuts)."""

    key: str  # as remembered in the settings
    name: str  # "Lead time"
    column: int  # of CompletionBuffer: LEAD or CYCLE
    percentiles: dict[str, str]  # "p50", "p85", "p95" → the Stats field of that percentile


def _measure(key: str, name: str, column: int) -> Measure:
    return Measure(key, name, column, {p: f"{key}_time_{p}_s" for p in ("p50", "p85", "p95")})


MEASURES = {"lead": _measure("lead", "Lead time", LEAD), "cycle": _measure("cycle", "Cycle time", CYCLE)}


class CompletionBuffer:
    """Completed stories, oldest first, the newest `capacity` kept: (completed at, lead, cycle, story id).

    Rows live in an array twice the capacity, appended at the end and moved to
    the front when it fills (as in series.SeriesBuffer), so a read is a view.
    A missing cycle time is NaN.
    """

    def __init__(self, capacity: int = 50_000):
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._data = np.zeros((2 * capacity, 4), dtype=np.float64)
        self._start = self._end = 0
        self.appended = 0  # rows ever kept: a stable absolute number for decimation

    def __len__(self) -> int:
        return self._end - self._start

    def extend(self, rows: Iterable[Sequence[float | None]]) -> int:
        """Add rows (completed_at, lead_time_s, cycle_time_s, story_id) in completion order."""
        new = np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=np.float64)
        if not len(new):
            return 0
        new = new[-self.capacity:]
        if self._end + len(new) > len(self._data):
            keep = min(self._end - self._start, self.capacity - len(new))
            self._data[:keep] = self._data[self._end - keep:self._end]
            self._start, self._end = 0, keep
        self._data[self._end:self._end + len(new)] = new
        self._end += len(new)
        self.appended += len(new)
        self._start = max(self._start, self._end - self.capacity)
        return len(new)

    def merge_snapshot(self, completions: Sequence) -> None:
        """A snapshot's completions (oldest first) replace what is kept from the first of them on.

        After a gap in the stream the snapshot has the completions this client
        missed; those before its first are the client's own and stay.
        """
        if not completions:
            return
        first = completions[0].completed_at
        cut = self._start + int(np.searchsorted(self.column(COMPLETED_AT), first, side="left"))
        self.appended -= self._end - cut
        self._end = cut
        self.extend((c.completed_at, c.lead_time_s, c.cycle_time_s, c.story_id) for c in completions)

    def column(self, index: int) -> np.ndarray:
        view = self._data[self._start:self._end, index]
        view.flags.writeable = False
        return view

    def window(self, since: float, max_points: int) -> np.ndarray:
        """The rows completed at or after `since`, thinned to about `max_points`.

        Thinning keeps every k-th row by absolute number, k a power of two, so
        that dots do not change places as rows arrive: a new k keeps half of
        them or adds some between. Returns a copy (completed at, lead, cycle, id).
        """
        first = self._start + int(np.searchsorted(self.column(COMPLETED_AT), since, side="left"))
        count = self._end - first
        needed = max(1, -(-count // max(max_points, 1)))
        step = 1 << (needed - 1).bit_length()
        absolute = self.appended - (self._end - first)
        first += (-absolute) % step  # the first row whose absolute number is a multiple of step
        return self._data[first:self._end:step].copy()


# -- aging work in progress -------------------------------------------------------
def oldest_page(total_open: int, limit: int = AGING_LIMIT) -> tuple[int, int]:
    """(offset, limit) of the oldest open stories: list_stories is newest first."""
    return max(0, total_open - limit), limit


WAITING, IN_PROGRESS = 0, 1  # the aging chart's columns (with a workflow: 1 + the stage's index)


def jitter(story_ids: np.ndarray, width: float = 0.7) -> np.ndarray:
    """A spread within a column that depends only on the story: a dot keeps its place between refreshes.

    MurmurHash3's 64-bit finaliser: consecutive ids (stories created one after
    another) land far apart, not in the stripes a plain multiplication draws.
    """
    h = np.asarray(story_ids, dtype=np.uint64).copy()
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    h ^= h >> np.uint64(33)
    return ((h >> np.uint64(11)).astype(float) / float(1 << 53) - 0.5) * width


@dataclass(frozen=True)
class Aging:
    """Open stories by age: ids, chart column (+ jitter), age in seconds, and which are at risk."""

    story_ids: np.ndarray
    x: np.ndarray
    age_s: np.ndarray
    at_risk: np.ndarray  # older than the p85 lead time
    p85_s: float | None
    now: float
    blocked: np.ndarray | None = None  # blocked now (a block of its tasks ends after `now`)

    @property
    def blocked_ids(self) -> list[int]:
        return [] if self.blocked is None else [int(i) for i in self.story_ids[self.blocked]]

    @property
    def risky_ids(self) -> list[int]:
        """At-risk stories, oldest first."""
        order = np.argsort(-self.age_s[self.at_risk], kind="stable")
        return [int(i) for i in self.story_ids[self.at_risk][order]]


def aging(stories: Sequence, now: float, p85_s: float | None, stages: Sequence[str] = ()) -> Aging:
    """Where each open story stands: waiting (no task started) or in progress, and how old it is.

    With a workflow (`stages`, in order) a story in progress stands in the column of
    the stage it counts in (a stage the list does not know: the first).
    """
    ids = np.array([s.story_id for s in stories], dtype=np.int64)
    started = np.array([s.started_at is not None or s.tasks_done > 0 for s in stories], dtype=bool)
    age = np.maximum(0.0, now - np.array([s.created_at for s in stories], dtype=float))
    column = np.where(started, IN_PROGRESS, WAITING).astype(float)
    if stages:
        place = {name: i for i, name in enumerate(stages)}
        column += np.array([place.get(getattr(s, "stage", None), 0) for s in stories], dtype=float) * started
    until = np.array([getattr(s, "blocked_until", None) or 0.0 for s in stories], dtype=float)
    limit = p85_s if p85_s is not None and math.isfinite(p85_s) else math.inf
    return Aging(ids, column + jitter(ids), age, age > limit, p85_s, now, until > now)
