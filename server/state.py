"""The scheduling rules: which task starts next, in which stage, within which WIP limits.

Pure (no I/O, no clock: every time is passed in), on top of the work in memory
(backlog.py: the live tasks, the stories, the queues, the window onto the disk).

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

**Stages** (docs/flow.md). With a workflow of several stages each stage has its own
queue (stages.py: the first stage's is `queue`) that its own workers lease from
(`take_lease(..., stage=i)`). A story's tasks of its *current* stage are live; those of
its later stages wait on the story (`later`, parked) and go live, at the back of their
stage's queue, when the last task of the stage before is done: so no task starts
before every task of the story's earlier stages is done, and a stage where the story
has no task is skipped. A story *counts in* a stage (`counted`) from the start of its
first task there until it starts its next stage or is done; a stage's WIP limit bounds
the stories that count in it, so a full stage downstream stops the stages before it
from pulling. The same front-of-queue argument holds per stage, with one more queue
per later stage for new stories that skip the stages before (stages.py).

**Blocked work**: a task created with a block (`block_ms`) is blocked when it first
starts: it leaves the queue, its worker takes the next task, and at `blocked_until` (a
wall time, stored, so a restart keeps it) `release_blocks` puts it at the front of its
stage's queue; it then runs its estimate. A blocked task has `running` None.

**Work time** (flow efficiency): a story works while one of its tasks is on a worker.
`take_lease` counts, per story, the leases that hold its tasks (`leased` lists them for
the caller to keep with the lease); `lease_ended` closes them and adds the time since the
first opened to the story's `work_s`: the union of its tasks' run times.

With one stage every path is the one above: the per-stage task counts are not kept
(the totals are that stage's). Per task nothing more is done than before stages; per
story in a lease, a few counts more (its stage, its work time).
"""

from __future__ import annotations

from heapq import heappop, heappush
from typing import Iterable, Sequence

from storypulse.workflow import DEFAULT_STAGE

from .backlog import WINDOW_DEFAULT, WorkMemory
from .records import LiveTask, OpenStory
from .stages import Stage, StageFigures

__all__ = ["WINDOW_DEFAULT", "LiveTask", "OpenStory", "WorkState"]


class WorkState(WorkMemory):
    def __init__(self, window: int = WINDOW_DEFAULT, stages: Sequence[str] = (DEFAULT_STAGE,)) -> None:
        super().__init__(window, stages)
        if self.staged:
            self.complete = self._complete_staged  # type: ignore[method-assign]

    @property
    def dispatchable(self) -> bool:
        """Something queued may be handed out now (in some stage)."""
        if not self.staged:
            return self.mem_queued > 0 and not self.held()
        return any(self.dispatchable_in(i) for i in range(len(self.stages)))

    def dispatchable_in(self, stage: int) -> bool:
        if not self.staged:
            return self.mem_queued > 0 and not self.held()
        return self.stages[stage].ready > 0 and not self.held(stage)

    def held(self, stage: int = 0) -> bool:
        """A WIP limit keeps every queued task of the stage waiting (see above): at the front of
        each of its queues is a story that has not started the stage, and the stage is full, or
        the story has not started at all and the system is. Drops dead ids at the front on the way."""
        st = self.stages[stage]
        stage_full = st.wip_limit and st.stories >= st.wip_limit
        if not stage_full and (not self.wip_limit or self.in_progress < self.wip_limit):
            return False
        live = self.live
        fronts = False
        for queue in st.queues():
            while queue:
                task = live.get(queue[0])
                if task is None or task.running:
                    queue.popleft()  # lazy removal, as take_lease does
                    continue
                story = self.stories.get(task.story_id)
                if story is None or story.counted is st:
                    return False
                if not stage_full and story.started_at is not None:
                    return False  # in progress: the system's limit does not apply
                fronts = True
                break
        return fronts or self.backlog_tasks > 0  # next comes a backlog story: not started

    def set_wip_limit(self, limit: int) -> None:
        self.wip_limit = limit

    def set_stage_wip_limit(self, stage: int, limit: int) -> None:
        self.stages[stage].wip_limit = limit

    def demand(self, stage: int = 0) -> tuple[int, int]:
        """(tasks, unscaled ms) the stage's workers could start now, for its autoscaler: none
        while a WIP limit holds the stage (more workers would only stand idle). The backlog
        counts for the first stage, where stories start."""
        if self.held(stage):
            return 0, 0
        if not self.staged:
            return self.queued, self.queued_ms
        st = self.stages[stage]
        if stage == 0:
            return st.ready + st.backlog, st.ready_ms + st.backlog_ms
        return st.ready, st.ready_ms

    def figures(self) -> list[StageFigures]:
        """Each stage's counts, in workflow order (the totals are their sums)."""
        if not self.staged:
            st = self.stages[0]
            tasks, ms = self.demand(0)
            return [StageFigures(st.name, self.queued, self.mem_queued, self.running, self.blocked,
                                 st.stories, st.wip_limit, self.held(0), tasks, ms)]
        figures = []
        for st in self.stages:
            tasks, ms = self.demand(st.index)
            figures.append(StageFigures(st.name, st.queued, st.ready, st.running, st.blocked,
                                        st.stories, st.wip_limit, self.held(st.index), tasks, ms))
        return figures

    # -- leases ---------------------------------------------------------------------
    def take_lease(self, time_scale: float, max_tasks: int, max_s: float,
                   wall: float = 0.0, stage: int = 0) -> list[tuple[int, int]]:
        """The next lease of the stage: [(task_id, estimate_ms)], or [] if nothing may start.

        A task whose scaled estimate exceeds `max_s` goes alone; tiny tasks go
        together, up to `max_tasks` and `max_s` scaled seconds in all, in queue
        order (a lease stops at the first task that does not fit, or whose story
        a WIP limit keeps waiting). `wall` is when the lease starts: its tasks'
        `started_at`, and that of the stories it starts (listed in `started`).
        A task whose block has not started blocks instead (`blocks_started`), and
        the lease goes on with the next.
        """
        st = self.stages[stage]
        limit_ms = max_s * 1000 / time_scale if time_scale > 0 else float("inf")
        live, stories = self.live, self.stories
        wip_limit, stage_limit, staged = self.wip_limit, st.wip_limit, self.staged
        lease: list[tuple[int, int]] = []
        leased: list[OpenStory] = []
        self.leased = leased
        total_ms = 0
        last_story = 0  # a story's tasks come together: look each story up once
        queue = st.queue
        while True:  # the stage's queue, then (a later stage's) new stories: see stages.py
            waits = False  # the front story waits for a WIP limit
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
                    if story is not None:
                        if story.counted is not st:  # it starts the stage
                            if stage_limit and st.stories >= stage_limit:
                                waits = True  # it waits, and so does everything behind it
                                break
                            if story.started_at is None:
                                if wip_limit and self.in_progress >= wip_limit:
                                    waits = True
                                    break
                                story.started_at = wall
                                self.in_progress += 1
                                self.started.append(task.story_id)
                            if story.counted is not None:
                                story.counted.stories -= 1  # it moves on from its last stage
                            story.counted = st
                            st.stories += 1
                            if staged:
                                self.entered.append((task.story_id, st.index))
                        if story.blocks:
                            last_story = 0  # look at each of its tasks: one may block
                            if task.blocked_until is None and task.block_ms:
                                queue.popleft()
                                self._block(task_id, task, story, st, wall, time_scale)
                                continue
                        else:
                            last_story = task.story_id
                        if not story.leases:
                            story.active_since = wall
                        story.leases += 1
                        leased.append(story)
                    else:
                        last_story = task.story_id
                queue.popleft()
                lease.append((task_id, estimate))
                total_ms += estimate
                if total_ms > limit_ms:
                    break  # a real task: alone
            else:
                waits = True  # this queue is done with: the next may go on
            if waits and queue is not st.fresh and len(lease) < max_tasks:
                queue, last_story = st.fresh, 0  # its front may have started the stage already
                continue
            break
        for task_id, estimate in lease:
            task = live[task_id]
            task.running = True
            task.attempts += 1
            task.started_at = wall
        n = len(lease)
        self.queued -= n
        self.mem_queued -= n
        self.running += n
        self.queued_ms -= total_ms
        if self.staged:
            st.running += n
            st.counts(n, total_ms, ready=-1)
        return lease

    @staticmethod
    def _count_in(story: OpenStory, st: Stage) -> None:
        """A story read back in progress counts in stage `st` (as take_lease does it)."""
        story.counted = st
        st.stories += 1

    def _block(self, task_id: int, task: LiveTask, story: OpenStory, st: Stage, wall: float,
               time_scale: float) -> None:
        until = wall + task.block_ms * time_scale / 1000.0
        task.blocked_until = until
        task.running = None
        story.blocks -= 1
        story.blocked_until = max(until, story.blocked_until or until)
        heappush(self._blocks, (until, task_id))
        self.blocks_started.append((task_id, until))
        estimate = task.estimate_ms
        self.blocked += 1
        self.queued -= 1
        self.mem_queued -= 1
        self.queued_ms -= estimate
        if self.staged:
            st.blocked += 1
            st.counts(1, estimate, ready=-1)

    def next_unblock(self) -> float | None:
        """When the next block ends (wall clock), or None if no task is blocked."""
        heap, live = self._blocks, self.live
        while heap:
            until, task_id = heap[0]
            task = live.get(task_id)
            if task is not None and task.running is None and task.blocked_until == until:
                return until
            heappop(heap)  # its task was deleted or taken off
        return None

    def release_blocks(self, wall: float) -> list[int]:
        """The tasks whose block has ended by `wall`, back at the front of their stage's queue
        (the earliest ended first): their ids."""
        released: list[int] = []
        while (until := self.next_unblock()) is not None and until <= wall:
            released.append(heappop(self._blocks)[1])
        if not released:
            return released
        live, stories = self.live, self.stories
        fronts: dict[Stage, list[int]] = {}
        for task_id in released:
            task = live[task_id]
            task.running = False
            story = stories.get(task.story_id)
            st = story.stage if story is not None and story.stage is not None else self.stages[0]
            fronts.setdefault(st, []).append(task_id)
            estimate = task.estimate_ms
            self.queued_ms += estimate
            if self.staged:
                st.blocked -= 1
                st.counts(1, estimate, ready=1)
        for st, ids in fronts.items():
            st.queue.extendleft(reversed(ids))
        n = len(released)
        self.blocked -= n
        self.queued += n
        self.mem_queued += n
        return released

    def lease_ended(self, stories: Iterable[OpenStory], wall: float) -> None:
        """A lease was done or lost at `wall`: the stories `leased` listed when it was taken."""
        for story in stories:
            story.leases -= 1
            if not story.leases:
                story.work_s += max(0.0, wall - story.active_since)

    def requeue_front(self, task_ids: Iterable[int]) -> int:
        """Put the still-running tasks of a lost lease back at the front of their stage's queue, in order."""
        live, stories = self.live, self.stories
        fronts: dict[Stage, list[int]] = {}
        for task_id in task_ids:
            task = live.get(task_id)
            if task is not None and task.running:
                task.running = False
                story = stories.get(task.story_id)
                st = story.stage if story is not None and story.stage is not None else self.stages[0]
                fronts.setdefault(st, []).append(task_id)
                self.queued_ms += task.estimate_ms
                if self.staged:
                    st.running -= 1
                    st.counts(1, task.estimate_ms, ready=1)
        back = 0
        for st, ids in fronts.items():
            st.queue.extendleft(reversed(ids))
            back += len(ids)
        self.queued += back
        self.mem_queued += back
        self.running -= back
        return back

    # -- completion and deletion ------------------------------------------------------
    def complete(self, task_id: int) -> tuple[LiveTask | None, OpenStory | None]:
        """Record one task done: (its LiveTask, or None if unknown or already done;
        its story if this finished it, else None). (With stages: `_complete_staged`.)"""
        task = self.live.pop(task_id, None)
        if task is None:
            return None, None  # unknown, already done, or its story was deleted
        if task.running:
            self.running -= 1
        elif not self._done_unleased(task_id, task):
            return None, None
        story = self.stories.get(task.story_id)
        if story is None:
            return task, None
        story.remaining -= 1
        if story.remaining <= 0:
            del self.stories[task.story_id]
            self._stopped(story)
            return task, story
        return task, None

    def _complete_staged(self, task_id: int) -> tuple[LiveTask | None, OpenStory | None]:
        """`complete` with stages: the stage's running count, and the story's next stage when
        this was the last task of its current one."""
        task = self.live.pop(task_id, None)
        if task is None:
            return None, None
        story = self.stories.get(task.story_id)
        if task.running:
            self.running -= 1
            if story is not None and story.stage is not None:
                story.stage.running -= 1
        elif not self._done_unleased(task_id, task):
            return None, None
        if story is None:
            return task, None
        story.remaining -= 1
        if story.remaining > story.parked:
            return task, None
        if story.remaining:
            self._advance(task.story_id, story)
            return task, None
        del self.stories[task.story_id]
        self._stopped(story)
        return task, story

    def _done_unleased(self, task_id: int, task: LiveTask) -> bool:
        """A Done for a task no worker holds. One waiting in a queue was finished by a worker we
        had given up on: it counts (and leaves the queue lazily). One blocked was never handed
        out: the report is wrong, the task stays blocked."""
        if task.running is None:
            self.live[task_id] = task
            return False
        estimate = task.estimate_ms
        self.queued -= 1
        self.mem_queued -= 1
        self.queued_ms -= estimate
        story = self.stories.get(task.story_id)
        if story is not None:
            if task.block_ms and task.blocked_until is None:
                story.blocks -= 1
            if self.staged and story.stage is not None:
                story.stage.counts(1, estimate, ready=-1)
        return True

    def _advance(self, story_id: int, story: OpenStory) -> None:
        """The story's current stage is done: its next stage's tasks go live at the back of that
        stage's queue. It still counts in the stage it was in until one of them starts."""
        later = story.later
        assert later
        (index, rows), story.later = later[0], later[1:] or None
        st = self.stages[index]
        n, ms = len(rows), sum(r[1] for r in rows)
        story.parked -= n
        story.stage = st
        ready, _ = self._go_live(story_id, story, rows, None)
        (st.queue if story.started_at is not None else st.fresh).extend(ready)
        self.mem_queued += n
        st.counts(n, ms, ready=1, parked=-1)

    def _stopped(self, story: OpenStory) -> None:
        """A story left the open ones (done or deleted): its WIP slots are free."""
        if story.started_at is not None:
            self.in_progress -= 1
        if story.counted is not None:
            story.counted.stories -= 1
            story.counted = None

    def delete_story(self, story_id: int) -> OpenStory | None:
        """Forget an open story and its unfinished tasks; None if it is not open."""
        story = self.stories.pop(story_id, None)
        if story is None:
            return None
        self._stopped(story)
        st, staged = story.stage, self.staged
        for task_id in story.task_ids:
            task = self.live.get(task_id)
            if task is None or task.story_id != story_id:
                continue
            del self.live[task_id]
            if task.running:
                self.running -= 1  # its later Done is ignored
                if staged and st is not None:
                    st.running -= 1
            elif task.running is None:
                self.blocked -= 1  # its heap entry is dropped when it comes up
                if staged and st is not None:
                    st.blocked -= 1
            else:
                self.queued -= 1
                self.mem_queued -= 1
                self.queued_ms -= task.estimate_ms
                if staged and st is not None:
                    st.counts(1, task.estimate_ms, ready=-1)
        for index, rows in story.later or ():
            n, ms = len(rows), sum(r[1] for r in rows)
            self.queued -= n
            self.queued_ms -= ms
            if staged:
                self.stages[index].counts(n, ms, parked=-1)
        return story
