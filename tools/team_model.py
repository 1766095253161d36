"""A team as a queueing model, for the stand-in server (standin.py): stories through workflow stages.

Stories arrive (Poisson or steady) and go through the stages in order. Each
stage has its own workers and queue; a story takes one piece of work in each
(log-normal around the stage's median), and may block when it first starts a
stage (`block_chance`, for a time drawn from `block_s`): blocked, it holds no
worker, and when the block ends it goes to the front of the stage's queue.
The rules are the server's, simplified to one task per story and stage:

- a story counts in a stage from its start there until it starts the next
  stage or is done, so a story done with `build` and waiting for `test`
  still counts in `build` (a full downstream stage stops upstream pulling);
- a story may enter a stage only while the stage has fewer stories than its
  WIP limit, and start at all only while the system has fewer in progress
  than its own; what is in progress always goes first;
- each queue is first come, first served: a front that must wait holds the rest.

It publishes what the server publishes: the stages' figures (`stages`),
`flow_efficiency` (work time over cycle time of the stories completed in the
flow window) and the `bottleneck` (the stage whose ready work waits longest
for a worker). Without stages it is one stage, `work`. Time is passed in.
"""

from __future__ import annotations

import heapq
import math
import random
import time
from collections import deque
from dataclasses import dataclass, field

from storypulse import protocol
from storypulse.percentiles import nearest_rank

RATE_WINDOW_S = 5.0
NO_WORKER_WAIT_S = 1e9  # work waiting in a stage without workers: it waits "forever", named first


@dataclass
class Stage:
    """One stage: its pool (runs at max_workers, as a benchmark sets min = max), its work and blocks."""

    name: str
    workers: int
    median_s: float
    sigma: float = 0.6
    block_chance: float = 0.0
    block_s: tuple[float, float] = (0.0, 0.0)
    wip_limit: int = 0
    min_workers: int | None = None  # default: workers

    def __post_init__(self) -> None:
        if self.min_workers is None:
            self.min_workers = self.workers
        self.max_workers = self.workers

    @property
    def mean_s(self) -> float:
        return self.median_s * math.exp(self.sigma ** 2 / 2)


def three_stages(scale: float = 1.0) -> list[Stage]:
    """analysis, build, test with test short of people (the `bottleneck` scenario's shape), for about
    `scale` × 3 stories a second: test finishes about 2.3 per `scale` a second, so a queue grows before it."""
    return [Stage("analysis", max(1, round(3 * scale)), 0.6),
            Stage("build", max(1, round(8 * scale)), 1.6, block_chance=0.1, block_s=(2.0, 8.0)),
            Stage("test", max(1, round(3 * scale)), 1.1)]


@dataclass
class _Story:
    story_id: int
    created_at: float
    started_at: float | None = None
    stage: int = -1  # the stage it counts in (-1: none yet)
    taken: int = -1  # the last stage it took (started or blocked in)
    blocked_until: float | None = None
    blocked_ms: int = 0
    work_s: float = 0.0
    finished: int = 0  # stages done


@dataclass
class _Queue:
    """A stage's ready stories, first come first served; those already counting in it at the front."""

    ids: deque = field(default_factory=deque)
    counted: int = 0  # of them, those back from a block (they count in the stage already)


class FlowModel:
    def __init__(self, *, rate: float, workers: int = 1, median_s: float = 1.0, sigma: float = 0.6,
                 window_s: float = 60.0, wip_limit: int = 0, seed: int = 1, start: float | None = None,
                 poisson: bool = True, stages: list[Stage] | None = None):
        self.rng = random.Random(seed)
        self.rate = rate
        self.stages = stages or [Stage("work", workers, median_s, sigma)]
        self.window_s = window_s
        self.wip_limit = wip_limit
        self.poisson = poisson
        self.now = time.time() if start is None else start
        self.seq = 0
        self.next_id = 1
        self.open: dict[int, _Story] = {}  # in creation order
        n = len(self.stages)
        self.queues = [_Queue() for _ in range(n)]
        self.running: list[tuple[float, int, int]] = []  # heap of (finishes at, story id, stage)
        self.blocks: list[tuple[float, int, int]] = []  # heap of (block ends, story id, stage)
        self.busy = [0] * n
        self.blocked = [0] * n
        self.counts = [0] * n  # stories counting in each stage
        self.taken = [0] * n  # open stories that took each stage (started or blocked there)
        self.in_progress = 0
        self.completed = 0
        self.tasks_completed = 0
        self.recent: deque[protocol.Completion] = deque()  # completed in the flow window
        self.recent_work: deque[float] = deque()  # their work times, in step
        self.done: deque[protocol.StoryView] = deque(maxlen=10_000)  # the newest done stories, for lists
        self.arrivals: deque[float] = deque()  # in the rate window
        self.finishes: deque[float] = deque()
        self.task_finishes: deque[float] = deque()
        self.history: deque[protocol.Stats] = deque(maxlen=protocol.HISTORY_SECONDS_MAX)
        self.next_arrival = self.now + self._gap()

    @property
    def workers(self) -> int:
        return sum(s.workers for s in self.stages)

    def _gap(self) -> float:
        if self.rate <= 0:
            return math.inf
        return self.rng.expovariate(self.rate) if self.poisson else 1.0 / self.rate

    def _number(self) -> int:
        self.seq += 1
        return self.seq

    def next_event_at(self) -> float:
        return min(self.next_arrival, self.running[0][0] if self.running else math.inf,
                   self.blocks[0][0] if self.blocks else math.inf)

    def advance(self, until: float) -> list[protocol.StoryEvent]:
        """Everything that happens up to `until`, in time order, as story events."""
        events: list[protocol.StoryEvent] = []
        while True:
            finish = self.running[0][0] if self.running else math.inf
            unblock = self.blocks[0][0] if self.blocks else math.inf
            at = min(self.next_arrival, finish, unblock)
            if at > until:
                break
            if finish == at:
                _, story_id, stage = heapq.heappop(self.running)
                event = self._finish(self.open[story_id], stage, at)
                if event is not None:
                    events.append(event)
            elif unblock == at:
                _, story_id, stage = heapq.heappop(self.blocks)
                story = self.open[story_id]
                self.blocked[stage] -= 1
                self.queues[stage].ids.appendleft(story_id)  # back at the front, counting already
                self.queues[stage].counted += 1
            else:
                story = _Story(self.next_id, at)
                self.next_id += 1
                self.open[story.story_id] = story
                self.queues[0].ids.append(story.story_id)
                self.arrivals.append(at)
                self.next_arrival = at + self._gap()
                events.append(protocol.StoryEvent(seq=self._number(), ts=at, event="created",
                                                  story_id=story.story_id))
            self._start_ready(at)
        self.now = max(self.now, until)
        return events

    def _finish(self, story: _Story, stage: int, at: float) -> protocol.StoryEvent | None:
        self.busy[stage] -= 1
        self.tasks_completed += 1
        story.finished += 1
        self.task_finishes.append(at)
        if stage + 1 < len(self.stages):
            self.queues[stage + 1].ids.append(story.story_id)  # done here, still counting here
            return None
        del self.open[story.story_id]
        self.counts[stage] -= 1
        self.in_progress -= 1
        for i in range(len(self.stages)):
            self.taken[i] -= 1
        lead, cycle = at - story.created_at, at - story.started_at
        self.completed += 1
        self.recent.append(protocol.Completion(story.story_id, at, lead, cycle))
        self.recent_work.append(min(story.work_s, cycle))
        self.done.append(self._view(story, "done", completed_at=at, lead_time_s=lead, cycle_time_s=cycle))
        self.finishes.append(at)
        return protocol.StoryEvent(seq=self._number(), ts=at, event="completed", story_id=story.story_id,
                                   lead_time_s=lead, cycle_time_s=cycle)

    def _may_start(self, stage: int) -> bool:
        """Whether the front of a stage's queue may start now (a worker aside)."""
        queue = self.queues[stage]
        if queue.counted:
            return True  # back from a block: it counts here already
        limit = self.stages[stage].wip_limit
        if limit and self.counts[stage] >= limit:
            return False
        return stage > 0 or not self.wip_limit or self.in_progress < self.wip_limit

    def _start_ready(self, now: float) -> None:
        # Downstream first: a story that moves on frees a place upstream in the same turn.
        for i in reversed(range(len(self.stages))):
            stage, queue = self.stages[i], self.queues[i]
            while queue.ids and self.busy[i] < stage.workers and self._may_start(i):
                story = self.open[queue.ids.popleft()]
                if queue.counted:
                    queue.counted -= 1
                else:
                    self._enter(story, i, now)
                    if story.taken < i:
                        story.taken = i
                        self.taken[i] += 1
                        if stage.block_chance and self.rng.random() < stage.block_chance:
                            self._block(story, i, now)
                            continue
                service = stage.median_s * math.exp(self.rng.gauss(0.0, stage.sigma))
                story.work_s += service
                self.busy[i] += 1
                heapq.heappush(self.running, (now + service, story.story_id, i))

    def _enter(self, story: _Story, stage: int, now: float) -> None:
        if story.stage >= 0:
            self.counts[story.stage] -= 1
        else:
            story.started_at = now
            self.in_progress += 1
        story.stage = stage
        self.counts[stage] += 1

    def _block(self, story: _Story, stage: int, now: float) -> None:
        low, high = self.stages[stage].block_s
        story.blocked_until = now + self.rng.uniform(low, high)
        story.blocked_ms += round((story.blocked_until - now) * 1000)
        self.blocked[stage] += 1
        heapq.heappush(self.blocks, (story.blocked_until, story.story_id, stage))

    # -- changes from requests ----------------------------------------------------------
    def set_wip_limit(self, limit: int) -> None:
        self.wip_limit = limit
        self._start_ready(self.now)

    def stage_index(self, name: str) -> int:
        """The index of a stage; ValueError naming the stages when there is none of that name."""
        for i, stage in enumerate(self.stages):
            if stage.name == name:
                return i
        raise ValueError(f"stage {name!r}: not a stage of this server; the stages are "
                         f"{', '.join(s.name for s in self.stages)}")

    def set_stage_wip_limits(self, limits: dict[str, int]) -> None:
        """Per stage (0 lifts one); an unknown stage changes nothing (ValueError)."""
        indexes = {self.stage_index(name): limit for name, limit in limits.items()}
        for i, limit in indexes.items():
            self.stages[i].wip_limit = limit
        self._start_ready(self.now)

    def set_pool(self, stage: str | None, low: int | None, high: int | None) -> Stage:
        """New bounds for a stage's pool (None: the first stage's); it runs at its upper bound."""
        target = self.stages[self.stage_index(stage) if stage else 0]
        low = target.min_workers if low is None else low
        high = target.max_workers if high is None else high
        if low > high:
            raise ValueError(f"min_workers {low} is above max_workers {high}")
        target.min_workers, target.max_workers = low, high
        target.workers = high
        self._start_ready(self.now)
        return target

    # -- figures --------------------------------------------------------------------------
    def _expire(self) -> None:
        while self.recent and self.recent[0].completed_at < self.now - self.window_s:
            self.recent.popleft()
            self.recent_work.popleft()
        for times in (self.arrivals, self.finishes, self.task_finishes):
            while times and times[0] < self.now - RATE_WINDOW_S:
                times.popleft()

    def stage_stats(self) -> list[protocol.StageStats]:
        figures = []
        for i, stage in enumerate(self.stages):
            queue = self.queues[i]
            ready = len(queue.ids)
            wait = 0.0
            if ready and self._may_start(i):
                wait = ready * stage.mean_s / stage.workers if stage.workers else NO_WORKER_WAIT_S
            figures.append(protocol.StageStats(
                name=stage.name, workers=stage.workers, workers_busy=self.busy[i],
                min_workers=stage.min_workers, max_workers=stage.max_workers,
                tasks_queued=len(self.open) - self.taken[i] + queue.counted, tasks_ready=ready,
                tasks_running=self.busy[i], tasks_blocked=self.blocked[i], stories=self.counts[i],
                wip_limit=stage.wip_limit, wait_s=wait))
        return figures

    def stats(self, publish: bool = True) -> protocol.Stats:
        """The figures now; `publish` numbers them as a message (a snapshot's stats carry the last seq)."""
        self._expire()
        leads = sorted(c.lead_time_s for c in self.recent)
        cycles = sorted(c.cycle_time_s for c in self.recent)
        stages = self.stage_stats()
        slowest = max(stages, key=lambda s: s.wait_s)
        cycle_sum = sum(cycles)
        queued = sum(s.tasks_queued for s in stages)
        n = len(self.stages)
        stats = protocol.Stats(
            seq=self._number() if publish else self.seq, ts=self.now,
            stories_produced_per_s=len(self.arrivals) / RATE_WINDOW_S,
            stories_completed_per_s=len(self.finishes) / RATE_WINDOW_S,
            open_stories=len(self.open), completed_stories=self.completed,
            tasks_produced_per_s=n * len(self.arrivals) / RATE_WINDOW_S,
            tasks_completed_per_s=len(self.task_finishes) / RATE_WINDOW_S,
            tasks_queued=queued, tasks_running=sum(self.busy), tasks_completed=self.tasks_completed,
            queued_work_s=sum(s.tasks_queued * st.mean_s for s, st in zip(stages, self.stages)),
            workers=self.workers, workers_busy=sum(self.busy), workers_target=self.workers,
            min_workers=sum(s.min_workers for s in self.stages), max_workers=sum(s.max_workers for s in self.stages),
            rate_window_s=RATE_WINDOW_S, stories_in_progress=self.in_progress, stories_completed_in_window=len(leads),
            lead_time_mean_s=sum(leads) / len(leads) if leads else None,
            lead_time_p50_s=nearest_rank(leads, 50), lead_time_p85_s=nearest_rank(leads, 85),
            lead_time_p95_s=nearest_rank(leads, 95), cycle_time_p50_s=nearest_rank(cycles, 50),
            cycle_time_p85_s=nearest_rank(cycles, 85), cycle_time_p95_s=nearest_rank(cycles, 95),
            flow_window_s=self.window_s, wip_limit=self.wip_limit,
            stages=stages, tasks_blocked=sum(self.blocked),
            flow_efficiency=min(1.0, sum(self.recent_work) / cycle_sum) if cycle_sum > 0 else None,
            bottleneck=slowest.name if slowest.wait_s > 0 else None,
        )
        if publish and (not self.history or stats.ts - self.history[-1].ts >= 1.0):
            self.history.append(stats)  # one row a second, as the server keeps it
        return stats

    def snapshot(self, history_seconds: int) -> protocol.SnapshotResult:
        history = [s for s in self.history if s.ts >= self.now - history_seconds] if history_seconds else []
        return protocol.SnapshotResult(self.seq, self.stats(publish=False), history,
                                       list(self.recent)[-protocol.COMPLETIONS_MAX:])

    def _view(self, story: _Story, status: str, **done) -> protocol.StoryView:
        counting = status == "open" and story.stage >= 0
        return protocol.StoryView(
            story_id=story.story_id, name=f"story {story.story_id}", description="", status=status,
            created_at=story.created_at, tasks_total=len(self.stages),
            tasks_done=story.finished,
            started_at=story.started_at, stage=self.stages[story.stage].name if counting else None,
            blocked_ms=story.blocked_ms or None, blocked_until=story.blocked_until if status == "open" else None,
            **done)

    def list_stories(self, status: str | None, offset: int, limit: int) -> protocol.ListStoriesResult:
        """Stories newest first, as list_stories pages them (done ones: the newest 10,000)."""
        if status == "open":
            newest_first = list(reversed(self.open))[offset:offset + limit]
            page = [self._view(self.open[i], "open") for i in newest_first]
            return protocol.ListStoriesResult(page, len(self.open))
        if status == "done":
            stories = list(reversed(self.done))
        else:
            stories = sorted([self._view(s, "open") for s in self.open.values()] + list(self.done),
                             key=lambda v: -v.story_id)
        return protocol.ListStoriesResult(stories[offset:offset + limit], len(stories))
