"""The work in memory and on disk: a window onto the queue, restored after a restart.

The base of the work state (state.py adds the scheduling): the live tasks, the open
stories in memory, the stages' queues, and the counts of what waits where.

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
- `live` holds every task that is not done, queued, running or blocked, of its
  story's current stage; the tasks of a story's later stages wait on the story (parked).
- `stories` holds every open story with the count of its unfinished tasks.

With stages a story read in or created goes in whole: its first stage's tasks into
that stage's queue, the rest parked (see state.py). Counts: `queued` (and `queued_ms`)
is every waiting task, ready in a queue, parked or in the backlog; `mem_queued` the
ready ones in memory; blocked and running tasks are counted apart.
"""

from __future__ import annotations

from collections import deque
from heapq import heappush
from typing import Sequence

from storypulse.workflow import DEFAULT_STAGE

from .records import BlockingTask, LiveTask, OpenStory, TaskRow
from .stages import Stage

WINDOW_DEFAULT = 20_000  # waiting tasks held in memory


class WorkMemory:
    def __init__(self, window: int = WINDOW_DEFAULT, stages: Sequence[str] = (DEFAULT_STAGE,)) -> None:
        if not stages:
            raise ValueError("a work state needs at least one stage")
        self.queue: deque[int] = deque()
        self.stages = [Stage(i, name, self.queue if i == 0 else None) for i, name in enumerate(stages)]
        self.staged = len(self.stages) > 1  # else the per-stage task counts are not kept
        self.live: dict[int, LiveTask] = {}
        self.stories: dict[int, OpenStory] = {}
        self.window = window
        self.queued = 0  # tasks waiting: in memory (ready or parked) and in the backlog
        self.queued_ms = 0  # sum of unscaled estimates of queued tasks
        # live tasks waiting in memory (the queue may hold more ids: lazy removal)
        self.mem_queued = 0
        self.backlog_tasks = 0  # tasks of the stories only on disk (all waiting)
        self.backlog_ms = 0
        self.backlog_stories = 0
        self.cursor = 0  # every task id above it is in the backlog (or not yet created)
        self.running = 0
        self.blocked = 0  # tasks blocked now
        self.in_progress = 0  # open stories with a started task
        self.wip_limit = 0  # 0: none
        self._blocks: list[tuple[float, int]] = []  # heap of (blocked_until, task_id); lazily pruned
        # For the caller to write down and clear:
        self.started: list[int] = []  # stories started by leases since the caller last took them
        self.entered: list[tuple[int, int]] = []  # (story_id, stage index) stage starts (stages only)
        self.blocks_started: list[tuple[int, float]] = []  # (task_id, blocked_until)
        self.leased: list[OpenStory] = []  # the stories of the last lease, one per lease they are in

    @property
    def open_stories(self) -> int:
        return len(self.stories) + self.backlog_stories

    def wants_refill(self) -> bool:
        """The backlog has stories and memory runs low: read the next ones (`refill`)."""
        return self.backlog_tasks > 0 and self.mem_queued <= self.window // 2


    # -- adding work --------------------------------------------------------------
    def add_story(self, story_id: int, first_task_id: int, estimates: list[int],
                  created_at: float = 0.0, stages: Sequence[int] | None = None,
                  blocks: Sequence[int] | None = None) -> range:
        """A new story: into memory while the backlog is empty and the window has room (a
        story bigger than the window too, into an empty one), else into the backlog.
        `stages`: each task's stage index (None: all in the first); `blocks`: each task's
        block in ms (None: none)."""
        count = len(estimates)
        ids = range(first_task_id, first_task_id + count)
        if stages is not None or blocks is not None:
            return self._add_grouped(story_id, ids, estimates, created_at, stages, blocks)
        work = sum(estimates)
        self.queued += count
        self.queued_ms += work
        first = self.stages[0]
        if self.backlog_tasks or (self.mem_queued and self.mem_queued + count > self.window):
            self.backlog_tasks += count
            self.backlog_ms += work
            self.backlog_stories += 1
            if self.staged:
                first.counts(count, work, backlog=1)
            return ids
        live = self.live
        for task_id, estimate in zip(ids, estimates):
            live[task_id] = LiveTask(story_id, estimate)
        self.queue.extend(ids)
        self.stories[story_id] = OpenStory(count, ids, created_at=created_at, stage=first)
        self.mem_queued += count
        self.cursor = ids[-1] if count else self.cursor
        if self.staged:
            first.counts(count, work, ready=1)
        return ids

    def _add_grouped(self, story_id: int, ids: range, estimates: list[int], created_at: float,
                     stages: Sequence[int] | None, blocks: Sequence[int] | None) -> range:
        groups: dict[int, list[TaskRow]] = {}
        for i, (task_id, estimate) in enumerate(zip(ids, estimates)):
            index = stages[i] if stages is not None else 0
            groups.setdefault(index, []).append(
                (task_id, estimate, 0, blocks[i] if blocks is not None else 0, None))
        count = len(estimates)
        if self.backlog_tasks or (self.mem_queued and self.mem_queued + count > self.window):
            work = sum(estimates)
            self.queued += count
            self.queued_ms += work
            self.backlog_tasks += count
            self.backlog_ms += work
            self.backlog_stories += 1
            if self.staged:
                for index, rows in groups.items():
                    self.stages[index].counts(len(rows), sum(r[1] for r in rows), backlog=1)
            return ids
        story = OpenStory(count, ids, created_at=created_at)
        self.stories[story_id] = story
        self._place(story_id, story, sorted(groups.items()))
        self.cursor = ids[-1] if count else self.cursor
        return ids

    def _place(self, story_id: int, story: OpenStory, groups: list[tuple[int, list[TaskRow]]],
               wall: float | None = None) -> None:
        """Bring a story's unfinished tasks into memory, by stage in workflow order: the first
        stage's go live (into its queue, or blocked if their block ends after `wall`), the rest
        are parked on the story. Adds them to the counts."""
        (index, rows), later = groups[0], groups[1:]
        st = self.stages[index]
        story.stage = st
        ready, ready_ms = self._go_live(story_id, story, rows, wall)
        (st.queue if story.started_at is not None else st.fresh).extend(ready)
        self.queued += len(ready)
        self.queued_ms += ready_ms
        self.mem_queued += len(ready)
        blocked = len(rows) - len(ready)
        self.blocked += blocked
        if self.staged:
            st.counts(len(ready), ready_ms, ready=1)
            st.blocked += blocked
        if later:
            story.later = later
            for index, rows in later:
                n, ms = len(rows), sum(r[1] for r in rows)
                story.parked += n
                self.queued += n
                self.queued_ms += ms
                if self.staged:
                    self.stages[index].counts(n, ms, parked=1)

    def _go_live(self, story_id: int, story: OpenStory, rows: list[TaskRow],
                 wall: float | None) -> tuple[list[int], int]:
        """Live tasks from rows; the ids and estimates of those that wait (not blocked)."""
        live = self.live
        ready: list[int] = []
        ready_ms = 0
        for task_id, estimate, attempts, block_ms, until in rows:
            if not block_ms:
                live[task_id] = LiveTask(story_id, estimate, attempts)
            else:
                task = live[task_id] = BlockingTask(story_id, estimate, attempts, block_ms, until)
                if until is None:
                    story.blocks += 1
                elif wall is not None and until > wall:  # still blocked (after a restart)
                    task.running = None
                    story.blocked_until = max(until, story.blocked_until or until)
                    heappush(self._blocks, (until, task_id))
                    continue
            ready.append(task_id)
            ready_ms += estimate
        return ready, ready_ms

    def set_backlog(self, stories: int, tasks: int, work_ms: int, cursor: int = 0,
                    by_stage: Sequence[tuple[int, int]] | None = None) -> None:
        """After a restart: what is queued beyond what `restore_story` put in memory.
        `by_stage`: (tasks, ms) of it per stage (None: all in the first stage)."""
        self.backlog_stories, self.backlog_tasks, self.backlog_ms = stories, tasks, work_ms
        self.queued += tasks
        self.queued_ms += work_ms
        self.cursor = cursor
        if self.staged:
            for st, (n, ms) in zip(self.stages, by_stage or [(tasks, work_ms)]):
                st.counts(n, ms, backlog=1)

    def refill(self, rows: list[tuple], complete: bool) -> tuple[int, int]:
        """Whole stories read from the backlog in id order: (task_id, story_id, estimate_ms,
        attempts, tasks_total, created_at, started_at[, stage index, block_ms]) of their queued
        tasks, ids above `cursor`. `complete`: the read reached the end of the table. A story
        already in memory (a started one read at start-up, ahead of the cursor) is skipped.

        Returns (tasks taken in, backlog stories the end of the table showed were not there,
        such as an open story with no queued task: 0 unless the database was repaired by hand)."""
        stories = self.stories
        taken = taken_ms = 0
        story_id = 0
        story: OpenStory | None = None
        groups: dict[int, list[TaskRow]] = {}
        for row in rows:
            task_id, sid, estimate, attempts, total, created, started = row[:7]
            index, block = (row[7], row[8]) if len(row) > 8 else (0, 0)
            self.cursor = max(self.cursor, task_id)
            if sid != story_id:
                if story is not None:
                    self._place_refilled(story_id, story, groups)
                story_id, groups = sid, {}
                if sid in stories:
                    story = None  # in memory already
                    continue
                story = OpenStory(total, [], remaining=0, created_at=created, started_at=started)
                stories[sid] = story
                self.backlog_stories -= 1
            if story is None:
                continue
            groups.setdefault(index, []).append((task_id, estimate, attempts, block, None))
            story.task_ids.append(task_id)
            story.remaining += 1
            taken += 1
            taken_ms += estimate
            if self.staged:
                self.stages[index].counts(1, estimate, backlog=-1)
        if story is not None:
            self._place_refilled(story_id, story, groups)
        # _place counted them again as waiting in memory
        self.queued -= taken
        self.queued_ms -= taken_ms
        self.backlog_tasks -= taken
        self.backlog_ms -= taken_ms
        missing = 0
        if complete and (self.backlog_tasks or self.backlog_stories):
            # What the counts said is not on disk: trust the disk (and tell).
            missing = self.backlog_stories
            self.queued -= self.backlog_tasks
            self.queued_ms -= self.backlog_ms
            self.backlog_tasks = self.backlog_ms = self.backlog_stories = 0
            for st in self.stages if self.staged else ():
                st.counts(st.backlog, st.backlog_ms, backlog=-1)
        return taken, missing

    def _place_refilled(self, story_id: int, story: OpenStory, groups: dict[int, list[TaskRow]]) -> None:
        self._place(story_id, story, sorted(groups.items()))
        if story.started_at is not None:  # cannot happen (started ones are read first); keep true
            self.in_progress += 1
            self._count_in(story, story.stage)

    def clear_queue(self) -> int:
        """Shutting down: take every waiting and blocked task off (each stays queued on disk), so
        nothing more is handed out or read in. Running tasks stay and may still complete; a late
        Done for a task taken off is ignored (it runs again after a restart); no story moves on
        to its next stage. The stories stay open. Returns the tasks taken off."""
        live = self.live
        for st in self.stages:
            for queue in st.queues():
                for task_id in queue:
                    task = live.get(task_id)
                    if task is not None and task.running is False:
                        del live[task_id]
                queue.clear()
            st.counts(st.ready, st.ready_ms, ready=-1)
            st.counts(st.parked, st.parked_ms, parked=-1)
            st.counts(st.backlog, st.backlog_ms, backlog=-1)
            st.blocked = 0
        for _, task_id in self._blocks:
            task = live.get(task_id)
            if task is not None and task.running is None:
                del live[task_id]
        self._blocks.clear()
        for story in self.stories.values():
            story.later, story.parked, story.blocks = None, 0, 0
        taken = self.queued + self.blocked
        self.queued = self.queued_ms = self.mem_queued = self.blocked = 0
        self.backlog_tasks = self.backlog_ms = 0
        return taken

    def forget_backlog_story(self, tasks: int, work_ms: int,
                             by_stage: Sequence[tuple[int, int, int]] | None = None) -> None:
        """A backlog story is gone (deleted, or its creation refused): `tasks` of it waited;
        `by_stage`: (stage index, tasks, ms) of them (None: all in the first stage)."""
        self.backlog_stories -= 1
        self.backlog_tasks -= tasks
        self.backlog_ms -= work_ms
        self.queued -= tasks
        self.queued_ms -= work_ms
        if self.staged:
            for index, n, ms in by_stage or [(0, tasks, work_ms)]:
                self.stages[index].counts(n, ms, backlog=-1)

    def restore_story(self, story_id: int, total: int, tasks: list[tuple],
                      created_at: float = 0.0, started_at: float | None = None,
                      stage: int | None = None, wall: float = 0.0, work_s: float = 0.0) -> None:
        """After a restart: (task_id, estimate_ms, attempts[, stage index, block_ms,
        blocked_until]) of its unfinished tasks, by id. `stage`: the stage it counted in (None:
        the stage of its first unfinished task, if it had started). A block that ends after
        `wall` goes on; one that ended is over (its task waits at the front)."""
        groups: dict[int, list[TaskRow]] = {}
        for task in tasks:
            if len(task) > 3:
                task_id, estimate, attempts, index, block, until = task
            else:
                (task_id, estimate, attempts), index, block, until = task, 0, 0, None
            groups.setdefault(index, []).append((task_id, estimate, attempts, block, until))
        story = OpenStory(total, [t[0] for t in tasks], remaining=len(tasks),
                          created_at=created_at, started_at=started_at)
        story.work_s = work_s
        self.stories[story_id] = story
        self._place(story_id, story, sorted(groups.items()), wall)
        if started_at is not None:
            self.in_progress += 1
            self._count_in(story, story.stage if stage is None else self.stages[stage])

    def order_queue(self) -> None:
        """After a restart: in each stage, the tasks of the stories that count in it first (those
        whose block is over at their head), then by id (creation order)."""
        live, stories = self.live, self.stories
        for st in self.stages:
            def key(task_id: int, st: Stage = st) -> tuple[bool, bool, int]:
                task = live[task_id]
                story = stories.get(task.story_id)
                waiting = story is None or story.counted is not st
                return waiting, task.blocked_until is None, task_id

            st.queue = deque(sorted(st.queue, key=key))
            st.fresh = st.queue if st.index == 0 else deque(sorted(st.fresh))
        self.queue = self.stages[0].queue
