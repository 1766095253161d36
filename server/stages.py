"""One stage of the workflow inside the work state: its queues, its counts, its WIP; the bottleneck.

Pure bookkeeping, kept by state.py (WorkState). A stage's tasks are, at any moment, in one
of these places, and `queued` counts all the waiting ones, so that the stages' counts add up
to the work state's totals:

- *ready*: in the stage's queue in memory (the story's earlier stages are done), or
- *parked*: on a story in memory that is still in an earlier stage, or
- *in the backlog*: of a story only on disk (not started);
- `running` on a worker (kept only with more than one stage: with one it is the total),
- `blocked` (started, and blocked until a time: see WorkState.release_blocks).

Two deques: `queue` holds the tasks of stories in progress (those that started this stage
first, then those that finished their earlier stages, in the order they did), `fresh` the
tasks of stories not started at all whose first task is in this stage, in creation order.
In progress goes first (finish before starting), and a new story waiting for the system's
WIP limit never stands in front of a story in progress (that could wait forever). Each
deque keeps the tasks of the stories that count in the stage at its front (they started
from the front, or went back there), so a look at each front tells whether anything in
it may start; a front that must wait does not stop the other deque. In the
first stage no story is ever in progress without having started there, so `fresh` is
`queue` itself: one deque, exactly the queue of a server without stages.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Sequence


class Stage:
    __slots__ = ("index", "name", "queue", "fresh", "wip_limit", "stories",
                 "queued", "queued_ms", "ready", "ready_ms", "parked", "parked_ms",
                 "backlog", "backlog_ms", "running", "blocked")

    def __init__(self, index: int, name: str, queue: deque[int] | None = None) -> None:
        self.index = index
        self.name = name
        self.queue: deque[int] = deque() if queue is None else queue
        self.fresh: deque[int] = self.queue if index == 0 else deque()
        self.wip_limit = 0  # stories in the stage at once; 0: none
        self.stories = 0  # stories that count in it (see WorkState)
        self.queued = self.queued_ms = 0  # ready + parked + backlog
        self.ready = self.ready_ms = 0
        self.parked = self.parked_ms = 0
        self.backlog = self.backlog_ms = 0
        self.running = 0
        self.blocked = 0

    def queues(self) -> tuple[deque[int], ...]:
        return (self.queue,) if self.fresh is self.queue else (self.queue, self.fresh)

    def full(self) -> bool:
        return bool(self.wip_limit) and self.stories >= self.wip_limit

    def counts(self, n: int, ms: int, *, ready: int = 0, parked: int = 0, backlog: int = 0) -> None:
        """Move `n` tasks of `ms` into (+1) or out of (-1) the waiting places named by sign."""
        self.queued += n * (ready + parked + backlog)
        self.queued_ms += ms * (ready + parked + backlog)
        self.ready += n * ready
        self.ready_ms += ms * ready
        self.parked += n * parked
        self.parked_ms += ms * parked
        self.backlog += n * backlog
        self.backlog_ms += ms * backlog


@dataclass(frozen=True)
class StageFigures:
    """What stats show of a stage, apart from its pool (the service adds the workers)."""

    name: str
    tasks_queued: int  # not started, wherever they wait: the stages add up to the total
    tasks_ready: int  # of those, in the stage's own queue
    tasks_running: int
    tasks_blocked: int
    stories: int
    wip_limit: int
    held: bool  # a WIP limit keeps every ready task of it waiting
    demand_tasks: int  # what its workers could start now: 0 when held (see WorkState.demand)
    demand_ms: int  # their estimates, unscaled


def wait_s(figures: StageFigures, workers: int, time_scale: float) -> float:
    """How long a task that joins the stage's queue now waits for a worker: the work its
    workers may start now, shared among them (queue length over service rate, Little's law
    read backwards). Infinite when work waits and the stage has no worker at all; 0 when
    nothing waits or a WIP limit holds it all (it then waits for the limit, not for a worker)."""
    if not figures.demand_ms and not figures.demand_tasks:
        return 0.0
    work = figures.demand_ms * time_scale / 1000.0
    if workers <= 0:
        return float("inf")
    return work / workers


def bottleneck(figures: Sequence[StageFigures], workers: Sequence[int],
               time_scale: float) -> str | None:
    """The stage whose stories wait longest for a worker (the largest `wait_s`, the first of
    equals in workflow order); None when no stage has work waiting for one."""
    best, longest = None, 0.0
    for stage, count in zip(figures, workers):
        wait = wait_s(stage, count, time_scale)
        if wait > longest or (best is None and stage.demand_tasks and wait >= longest):
            best, longest = stage.name, wait
    return best
