"""What the work state keeps of a task and of a story while they are open (see state.py)."""

from __future__ import annotations

from typing import Iterable

from .stages import Stage

class LiveTask:
    __slots__ = ("story_id", "estimate_ms", "attempts", "running", "started_at")
    # A task without a block pays nothing for these: class attributes, not slots.
    block_ms = 0
    blocked_until: float | None = None

    def __init__(self, story_id: int, estimate_ms: int, attempts: int = 0):
        self.story_id = story_id
        self.estimate_ms = estimate_ms
        self.attempts = attempts  # dispatches so far; written at completion
        self.running: bool | None = False  # None: blocked
        self.started_at = 0.0  # wall clock of the lease that runs it


class BlockingTask(LiveTask):
    """A task created with a block: blocked `block_ms` (time-scaled) when it first starts."""

    __slots__ = ("block_ms", "blocked_until")

    def __init__(self, story_id: int, estimate_ms: int, attempts: int, block_ms: int,
                 blocked_until: float | None = None):
        super().__init__(story_id, estimate_ms, attempts)
        self.block_ms = block_ms
        self.blocked_until = blocked_until  # wall clock; None: not started yet


# (task_id, estimate_ms, attempts, block_ms, blocked_until) of a task not yet live
TaskRow = tuple


class OpenStory:
    __slots__ = ("remaining", "total", "task_ids", "created_at", "started_at", "stage", "counted",
                 "later", "parked", "blocks", "leases", "active_since", "work_s",
                 "blocked_until")

    def __init__(self, total: int, task_ids: Iterable[int], remaining: int | None = None,
                 created_at: float = 0.0, started_at: float | None = None,
                 stage: Stage | None = None):
        self.total = total
        self.task_ids = task_ids  # a range for new stories; a list after a restart
        self.remaining = total if remaining is None else remaining  # unfinished, every stage
        self.created_at = created_at  # wall clock
        self.started_at = started_at  # wall clock of its first task's start; None: waiting
        self.stage = stage  # the stage of its live tasks
        self.counted: Stage | None = None  # the stage it counts in; None: not started
        self.later: list[tuple[int, list[TaskRow]]] | None = None  # (stage index, tasks) after
        self.parked = 0  # tasks in `later`
        self.blocks = 0  # live tasks whose block has not started
        self.leases = 0  # leases in flight that hold its tasks
        self.active_since = 0.0
        self.work_s = 0.0  # time one of its tasks was on a worker (since this server started)
        self.blocked_until: float | None = None  # the latest end of a block of its tasks (wall)
