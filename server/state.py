"""The work in memory: a window onto the queue, the live tasks, the open stories in memory.

Pure bookkeeping (no I/O, no clock): the service decides what to write and what
to read, this module keeps the figures that stats and the scheduler need in step.

The backlog does not live in memory. The queue in task id order (creation
order) is: the tasks in memory (`queue`), then the stories that are only on
disk (the *backlog*: every task id above `cursor`, in whole stories). Of the
backlog only counts are kept (`backlog_tasks`, `backlog_ms`, `backlog_stories`);
`refill` takes the next stories from the database in id order when fewer than
half a `window` of tasks wait in memory. A new story goes to memory while the
backlog is empty and the window has room, else to the backlog; so the two
never overlap, and memory holds at most about a window of waiting tasks plus
the running ones and the stories they belong to.

- `queue` holds queued task ids in creation order; a task put back after a
  worker died goes to the front. Removal is lazy: an id whose task is no
  longer live (deleted, done) or is running is skipped when it reaches the front.
- `live` holds every task that is not done, queued or running.
- `stories` holds every open story with the count of its unfinished tasks.
- `in_progress` counts the open stories one of whose tasks has started (been
  handed to a worker). With a WIP limit (`wip_limit` > 0) a story starts only
  while fewer than that are in progress; tasks of started stories always go.

The WIP rule needs no scan: stories start in queue order (a backlog story
is never started: only tasks in memory are handed out), tasks enter at the
back (new stories, not started) or at the front (a lost lease: started), and
a story's tasks are contiguous; so every queued task of a started story lies
before every queued task of a waiting one. So when the limit is reached and
the front task belongs to a waiting story, nothing queued may start (`held`):
a look at the front of the queue tells, with no scan (with nothing waiting in
memory, the next task is the backlog's: of a waiting story).
"""

from __future__ import annotations

from collections import deque
from typing import Iterable


class LiveTask:
    __slots__ = ("story_id", "estimate_ms", "attempts", "running", "started_at")

    def __init__(self, story_id: int, estimate_ms: int, attempts: int = 0):
        self.story_id = story_id
        self.estimate_ms = estimate_ms
        self.attempts = attempts  # dispatches so far; written at completion
        self.running = False
        self.started_at = 0.0  # wall clock of the lease that runs it


class OpenStory:
    __slots__ = ("remaining", "total", "task_ids", "created_at", "started_at")

    def __init__(self, total: int, task_ids: Iterable[int], remaining: int | None = None,
                 created_at: float = 0.0, started_at: float | None = None):
        self.total = total
        self.task_ids = task_ids  # a range for new stories; a list after a restart
        self.remaining = total if remaining is None else remaining
        self.created_at = created_at  # wall clock
        self.started_at = started_at  # wall clock of its first task's start; None: waiting


WINDOW_DEFAULT = 20_000  # waiting tasks held in memory


class WorkState:
    def __init__(self, window: int = WINDOW_DEFAULT) -> None:
        self.queue: deque[int] = deque()
        self.live: dict[int, LiveTask] = {}
        self.stories: dict[int, OpenStory] = {}
        self.window = window
        self.queued = 0  # tasks waiting: in memory and in the backlog
        self.queued_ms = 0  # sum of unscaled estimates of queued tasks
        # live tasks waiting in memory (the queue may hold more ids: lazy removal)
        self.mem_queued = 0
        self.backlog_tasks = 0  # tasks of the stories only on disk (all waiting)
        self.backlog_ms = 0
        self.backlog_stories = 0
        self.cursor = 0  # every task id above it is in the backlog (or not yet created)
        self.running = 0
        self.in_progress = 0  # open stories with a started task
        self.wip_limit = 0  # 0: none
        self.started: list[int] = []  # stories started by leases since the caller last took them

    @property
    def dispatchable(self) -> bool:
        """Something queued may be handed out now."""
        return self.mem_queued > 0 and not self.held()

    @property
    def open_stories(self) -> int:
        return len(self.stories) + self.backlog_stories

    def wants_refill(self) -> bool:
        """The backlog has stories and memory runs low: read the next ones (`refill`)."""
        return self.backlog_tasks > 0 and self.mem_queued <= self.window // 2

    def held(self) -> bool:
        """The WIP limit keeps every queued task waiting (see above): the limit is reached and
        the first queued task's story has not started. Drops dead ids at the front on the way."""
        if not self.wip_limit or self.in_progress < self.wip_limit:
            return False
        queue, live = self.queue, self.live
        while queue:
            task = live.get(queue[0])
            if task is None or task.running:
                queue.popleft()  # lazy removal, as take_lease does
                continue
            story = self.stories.get(task.story_id)
            return story is not None and story.started_at is None
        return self.backlog_tasks > 0  # next comes a backlog story: not started

    def set_wip_limit(self, limit: int) -> None:
        self.wip_limit = limit

    # -- adding work --------------------------------------------------------------
    def add_story(self, story_id: int, first_task_id: int, estimates: list[int],
                  created_at: float = 0.0) -> range:
        """A new story: into memory while the backlog is empty and the window has room (a
        story bigger than the window too, into an empty one), else into the backlog."""
        count = len(estimates)
        ids = range(first_task_id, first_task_id + count)
        work = sum(estimates)
        self.queued += count
        self.queued_ms += work
        if self.backlog_tasks or (self.mem_queued and self.mem_queued + count > self.window):
            self.backlog_tasks += count
            self.backlog_ms += work
            self.backlog_stories += 1
            return ids
        live = self.live
        for task_id, estimate in zip(ids, estimates):
            live[task_id] = LiveTask(story_id, estimate)
        self.queue.extend(ids)
        self.stories[story_id] = OpenStory(count, ids, created_at=created_at)
        self.mem_queued += count
        self.cursor = ids[-1] if count else self.cursor
        return ids

    def set_backlog(self, stories: int, tasks: int, work_ms: int, cursor: int = 0) -> None:
        """After a restart: what is queued beyond what `restore_story` put in memory."""
        self.backlog_stories, self.backlog_tasks, self.backlog_ms = stories, tasks, work_ms
        self.queued += tasks
        self.queued_ms += work_ms
        self.cursor = cursor

    def refill(self, rows: list[tuple], complete: bool) -> tuple[int, int]:
        """Whole stories read from the backlog in id order: (task_id, story_id, estimate_ms,
        attempts, tasks_total, created_at, started_at) of their queued tasks, ids above
        `cursor`. `complete`: the read reached the end of the table. A story already in memory
        (a started one read at start-up, ahead of the cursor) is skipped.

        Returns (tasks taken in, backlog stories the end of the table showed were not there,
        such as an open story with no queued task: 0 unless the database was repaired by hand)."""
        live, stories, queue = self.live, self.stories, self.queue
        taken = taken_ms = 0
        story_id = 0
        story: OpenStory | None = None
        for task_id, sid, estimate, attempts, total, created, started in rows:
            self.cursor = max(self.cursor, task_id)
            if sid != story_id:
                story_id = sid
                if sid in stories:
                    story = None  # in memory already
                    continue
                story = OpenStory(total, [], remaining=0, created_at=created, started_at=started)
                stories[sid] = story
                self.backlog_stories -= 1
                if started is not None:  # cannot happen (started ones are read first); keep true
                    self.in_progress += 1
            if story is None:
                continue
            live[task_id] = LiveTask(sid, estimate, attempts)
            queue.append(task_id)
            story.task_ids.append(task_id)
            story.remaining += 1
            taken += 1
            taken_ms += estimate
        self.backlog_tasks -= taken
        self.backlog_ms -= taken_ms
        self.mem_queued += taken
        missing = 0
        if complete and (self.backlog_tasks or self.backlog_stories):
            # What the counts said is not on disk: trust the disk (and tell).
            missing = self.backlog_stories
            self.queued -= self.backlog_tasks
            self.queued_ms -= self.backlog_ms
            self.backlog_tasks = self.backlog_ms = self.backlog_stories = 0
        return taken, missing

    def clear_queue(self) -> int:
        """Shutting down: take every waiting task off (each stays queued on disk), so nothing
        more is handed out or read in. Running tasks stay and may still complete; a late Done
        for a task taken off is ignored (it runs again after a restart). The stories stay
        open. Returns the tasks taken off."""
        live = self.live
        for task_id in self.queue:
            task = live.get(task_id)
            if task is not None and not task.running:
                del live[task_id]
        self.queue.clear()
        taken = self.queued
        self.queued = self.queued_ms = self.mem_queued = 0
        self.backlog_tasks = self.backlog_ms = 0
        return taken

    def forget_backlog_story(self, tasks: int, work_ms: int) -> None:
        """A backlog story is gone (deleted, or its creation refused): `tasks` of it waited."""
        self.backlog_stories -= 1
        self.backlog_tasks -= tasks
        self.backlog_ms -= work_ms
        self.queued -= tasks
        self.queued_ms -= work_ms

    def restore_story(self, story_id: int, total: int, tasks: list[tuple[int, int, int]],
                      created_at: float = 0.0, started_at: float | None = None) -> None:
        """After a restart: (task_id, estimate_ms, attempts) of its unfinished tasks, by id."""
        for task_id, estimate, attempts in tasks:
            self.live[task_id] = LiveTask(story_id, estimate, attempts)
            self.queue.append(task_id)
            self.queued_ms += estimate
        self.queued += len(tasks)
        self.mem_queued += len(tasks)
        self.stories[story_id] = OpenStory(total, [t[0] for t in tasks], remaining=len(tasks),
                                           created_at=created_at, started_at=started_at)
        if started_at is not None:
            self.in_progress += 1

    def order_queue(self) -> None:
        """After a restart: started stories' tasks first, then by id (creation order)."""
        live, stories = self.live, self.stories

        def waiting(task_id: int) -> bool:
            story = stories.get(live[task_id].story_id)
            return story is not None and story.started_at is None

        self.queue = deque(sorted(self.queue, key=lambda task_id: (waiting(task_id), task_id)))

    # -- leases ---------------------------------------------------------------------
    def take_lease(self, time_scale: float, max_tasks: int, max_s: float,
                   wall: float = 0.0) -> list[tuple[int, int]]:
        """The next lease: [(task_id, estimate_ms)], or [] if nothing may start.

        A task whose scaled estimate exceeds `max_s` goes alone; tiny tasks go
        together, up to `max_tasks` and `max_s` scaled seconds in all, in queue
        order (a lease stops at the first task that does not fit, or whose story
        the WIP limit keeps waiting). `wall` is when the lease starts: its tasks'
        `started_at`, and that of the stories it starts (listed in `started`).
        """
        queue, live, stories = self.queue, self.live, self.stories
        limit_ms = max_s * 1000 / time_scale if time_scale > 0 else float("inf")
        wip_limit = self.wip_limit
        lease: list[tuple[int, int]] = []
        total_ms = 0
        last_story = 0  # a story's tasks come together: look each story up once
        while queue and len(lease) < max_tasks:
            task_id = queue[0]
            task = live.get(task_id)
            if task is None or task.running:
                queue.popleft()  # lazy removal of a deleted or done task
                continue
            estimate = task.estimate_ms
            if lease and total_ms + estimate > limit_ms:
                break
            if task.story_id != last_story:
                story = stories.get(task.story_id)
                if story is not None and story.started_at is None:
                    if wip_limit and self.in_progress >= wip_limit:
                        break  # it waits, and so does everything behind it
                    story.started_at = wall
                    self.in_progress += 1
                    self.started.append(task.story_id)
                last_story = task.story_id
            queue.popleft()
            lease.append((task_id, estimate))
            total_ms += estimate
            if total_ms > limit_ms:
                break  # a real task: alone
        for task_id, estimate in lease:
            task = live[task_id]
            task.running = True
            task.attempts += 1
            task.started_at = wall
        self.queued -= len(lease)
        self.mem_queued -= len(lease)
        self.running += len(lease)
        self.queued_ms -= total_ms
        return lease

    def requeue_front(self, task_ids: Iterable[int]) -> int:
        """Put the still-running tasks of a lost lease back at the front, in order."""
        back = []
        for task_id in task_ids:
            task = self.live.get(task_id)
            if task is not None and task.running:
                task.running = False
                back.append(task_id)
                self.queued_ms += task.estimate_ms
        self.queue.extendleft(reversed(back))
        self.queued += len(back)
        self.mem_queued += len(back)
        self.running -= len(back)
        return len(back)

    # -- completion and deletion ------------------------------------------------------
    def complete(self, task_id: int) -> tuple[LiveTask | None, OpenStory | None]:
        """Record one task done: (its LiveTask, or None if unknown or already done;
        its story if this finished it, else None)."""
        task = self.live.pop(task_id, None)
        if task is None:
            return None, None  # unknown, already done, or its story was deleted
        if task.running:
            self.running -= 1
        else:  # completed by a worker we had given up on, while it waited in the queue
            self.queued -= 1
            self.mem_queued -= 1
            self.queued_ms -= task.estimate_ms
        story = self.stories.get(task.story_id)
        if story is None:
            return task, None
        story.remaining -= 1
        if story.remaining <= 0:
            del self.stories[task.story_id]
            self._stopped(story)
            return task, story
        return task, None

    def _stopped(self, story: OpenStory) -> None:
        """A story left the open ones (done or deleted): its WIP slot is free."""
        if story.started_at is not None:
            self.in_progress -= 1

    def delete_story(self, story_id: int) -> OpenStory | None:
        """Forget an open story and its unfinished tasks; None if it is not open."""
        story = self.stories.pop(story_id, None)
        if story is None:
            return None
        self._stopped(story)
        for task_id in story.task_ids:
            task = self.live.get(task_id)
            if task is None or task.story_id != story_id:
                continue
            del self.live[task_id]
            if task.running:
                self.running -= 1  # its later Done is ignored
            else:
                self.queued -= 1
                self.mem_queued -= 1
                self.queued_ms -= task.estimate_ms
        return story
