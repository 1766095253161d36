"""The figures for Prometheus that the stats event does not carry: counts since start and
distributions, kept by the loop in plain ints and lists (no lock, no library on the hot path).

- Counters since this server started (Prometheus counters restart at zero with the
  process; `rate()` and `increase()` expect that): stories created, completed and
  deleted, tasks completed. Not the database's totals, which fall when a story is
  deleted: those are the gauges of the stats event (`completed_stories`).
- Histograms of the lead and cycle time of every story completed since start, and
  of the time tasks waited in their stage's queue (a lease's start minus the task's
  enqueue time) per stage. A story's tasks go together, so a lease's tasks of one
  story are one `observe(value, count)`.

Once a stats tick, `Snapshot.take` copies all of it with the stats just published
into one immutable object; the HTTP thread reads only the newest snapshot (a single
reference, swapped whole), so a scrape never touches the loop's state.
"""

from __future__ import annotations

import itertools
from bisect import bisect_left
from dataclasses import dataclass
from typing import Iterable, NamedTuple, Sequence

import msgspec

from storypulse import protocol
from storypulse.workflow import DEFAULT_STAGE

# Upper bounds (seconds) shared by the three histograms: a simulated task lasts from
# milliseconds (a time scale of 0.01) to hours, so the buckets go 1-2.5-5 over that.
BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
             25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0)
OLDEST_SCAN = 64  # open stories looked at for the oldest (see `oldest_open_created`)


class HistogramFigures(NamedTuple):
    """A histogram as Prometheus shows it: cumulative counts per upper bound (+Inf last)."""

    bounds: tuple[float, ...]
    cumulative: tuple[int, ...]  # len(bounds) + 1
    sum: float

    @property
    def count(self) -> int:
        return self.cumulative[-1]


class Histogram:
    """Counts per bucket and the sum; `observe` is a bisect and two additions."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = BUCKETS_S):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: above every bound
        self.sum = 0.0

    def observe(self, value: float, count: int = 1) -> None:
        # bisect_left: a value equal to a bound belongs to it (Prometheus buckets are `le`)
        self.counts[bisect_left(self.bounds, value)] += count
        self.sum += value * count

    def figures(self) -> HistogramFigures:
        return HistogramFigures(self.bounds, tuple(itertools.accumulate(self.counts)), self.sum)


class Meters:
    """Owned by the service; updated where the events happen, read once a stats tick."""

    def __init__(self, stages: Sequence[str] = (DEFAULT_STAGE,)) -> None:
        """`stages`: the workflow's, in order (each gets its queue-wait histogram at once)."""
        self.stories_created = 0
        self.stories_completed = 0
        self.stories_deleted = 0
        self.tasks_completed = 0
        self.lead_time = Histogram()
        self.cycle_time = Histogram()
        self.queue_wait: dict[str, Histogram] = {stage: Histogram() for stage in stages}

    def published(self, events: Iterable[tuple]) -> None:
        """The story events of a commit: (event, story_id[, lead_s, cycle_s])."""
        created = completed = deleted = 0
        lead, cycle = self.lead_time.observe, self.cycle_time.observe
        for event in events:
            kind = event[0]
            if kind == "created":
                created += 1
            elif kind == "completed":
                completed += 1
                lead(event[2])
                cycle(event[3])
            elif kind == "deleted":
                deleted += 1
        self.stories_created += created
        self.stories_completed += completed
        self.stories_deleted += deleted

    def leased(self, state, tasks: list[tuple[int, int]], started: float,
               stage: str = DEFAULT_STAGE) -> None:
        """A lease of `tasks` ((task_id, estimate_ms), as `WorkState.take_lease` gives them)
        starting at `started` (wall clock): each task's first run waited since its story was
        created (its tasks are enqueued with it). A re-run after a lost worker is left out:
        when it went back to the queue is not kept."""
        histogram = self.queue_wait.get(stage)
        if histogram is None:
            histogram = self.queue_wait[stage] = Histogram()
        task_of, story_of = state.live.get, state.stories.get
        story_id, created, count = None, 0.0, 0
        for task_id, _ in tasks:
            task = task_of(task_id)
            if task is None or task.attempts != 1:
                continue
            if task.story_id == story_id:
                count += 1
                continue
            if count:
                histogram.observe(max(0.0, started - created), count)
            story_id, count = task.story_id, 1
            story = story_of(story_id)
            created = story.created_at if story is not None else started
        if count:
            histogram.observe(max(0.0, started - created), count)


def oldest_open_created(state) -> float | None:
    """The creation time (wall) of the oldest open story in memory, None if none is.

    Open stories enter memory in creation order (new ones at the back, the backlog
    read in id order), and a started story is older than every waiting one (state.py),
    so the oldest is among the first; a few are looked at, not thousands."""
    oldest = None
    for story in itertools.islice(state.stories.values(), OLDEST_SCAN):
        if oldest is None or story.created_at < oldest:
            oldest = story.created_at
    return oldest


@dataclass(frozen=True)
class Snapshot:
    """Everything a scrape shows, as of one stats tick; never changed once made."""

    stats: protocol.Stats
    stories_created: int
    stories_completed: int
    stories_deleted: int
    tasks_completed: int
    lead_time: HistogramFigures
    cycle_time: HistogramFigures
    queue_wait: tuple[tuple[str, HistogramFigures], ...]  # (stage, figures)
    oldest_open_age_s: float | None
    started_at: float  # wall clock of the server's start: the counters' `_created`

    @classmethod
    def take(cls, stats: protocol.Stats, meters: Meters, state, started_at: float) -> Snapshot:
        oldest = oldest_open_created(state)
        return cls(
            stats=msgspec.structs.replace(stats),  # a copy: the loop's object is its own
            stories_created=meters.stories_created,
            stories_completed=meters.stories_completed,
            stories_deleted=meters.stories_deleted,
            tasks_completed=meters.tasks_completed,
            lead_time=meters.lead_time.figures(),
            cycle_time=meters.cycle_time.figures(),
            queue_wait=tuple((stage, h.figures()) for stage, h in meters.queue_wait.items()),
            oldest_open_age_s=None if oldest is None else max(0.0, stats.ts - oldest),
            started_at=started_at,
        )
