"""A board for driving the work state (server/state.py) by hand or by Hypothesis, with a fake clock.

`Board` does what the service does around the work state, without a database: it
keeps a dict "disk" of every story and task (what the service would have written:
stories' starts and stages, blocks' ends, completions), reads the backlog from it
in windows, restarts a fresh work state from it, and hands out, finishes and loses
leases. On every start of a task (a lease or a block) it checks the stage order
against the disk: every task of the story's earlier stages is done.

`recount` counts everything the work state keeps (per stage and in total) from its
tasks, stories and queues, and `assert_consistent` compares: the counts the
scheduler and the stats rely on are what is really there.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from storypulse.server.state import WorkState

SCALE = 1.0  # time scale: estimates and blocks in ms are that many ms on the board's clock
MAX_S = 0.005  # a lease of tiny tasks holds at most 5 ms of work


@dataclass
class DiskTask:
    story: int
    stage: int
    estimate: int
    block: int
    blocked_until: float | None = None
    done: int = 0  # times recorded done: never more than once


@dataclass
class DiskStory:
    created: float
    tasks: list[int]
    started: float | None = None
    counted: int | None = None  # the stage it counts in, as the service would store it
    status: str = "open"  # open, done, deleted


@dataclass
class Lease:
    stage: int
    task_ids: list[int]
    stories: list = field(default_factory=list)


def recount(state: WorkState) -> dict:
    """Every count of the work state, counted again from what it holds."""
    live, stories = state.live, state.stories
    waiting: dict[int, int] = {}  # task id -> the stage whose queue holds it
    for st in state.stages:
        for queue in st.queues():
            for task_id in queue:
                task = live.get(task_id)
                if task is None or task.running is not False:
                    continue  # a dead id: removed lazily
                assert task_id not in waiting, f"task {task_id} waits in two places"
                waiting[task_id] = st.index
    per = [Counter() for _ in state.stages]
    heap = set(state._blocks)
    for task_id, task in live.items():
        story = stories[task.story_id]
        index = story.stage.index
        if task.running is True:
            per[index]["running"] += 1
        elif task.running is None:
            per[index]["blocked"] += 1
            assert (task.blocked_until, task_id) in heap, f"blocked task {task_id} has no end"
        else:
            assert waiting.get(task_id) == index, f"task {task_id} waits in no queue of its stage"
            per[index]["ready"] += 1
            per[index]["ready_ms"] += task.estimate_ms
    started = 0
    for story_id, story in stories.items():
        mine = [t for t in live.values() if t.story_id == story_id]
        later = story.later or []
        assert all(index > story.stage.index for index, _ in later), f"story {story_id} parks backwards"
        assert story.parked == sum(len(rows) for _, rows in later)
        for index, rows in later:
            per[index]["parked"] += len(rows)
            per[index]["parked_ms"] += sum(r[1] for r in rows)
        assert story.blocks == sum(1 for t in mine if t.block_ms and t.blocked_until is None)
        assert story.remaining == len(mine) + story.parked, f"story {story_id} lost count"
        assert (story.started_at is None) == (story.counted is None)
        if story.counted is not None:
            per[story.counted.index]["stories"] += 1
            assert story.counted.index <= story.stage.index
            started += 1
    return {"per": per, "started": started}


def assert_consistent(state: WorkState) -> None:
    counted = recount(state)
    per = counted["per"]
    ready = sum(c["ready"] for c in per)
    parked = sum(c["parked"] for c in per)
    assert state.running == sum(c["running"] for c in per)
    assert state.blocked == sum(c["blocked"] for c in per)
    assert state.mem_queued == ready
    assert state.queued == ready + parked + state.backlog_tasks
    assert state.queued_ms == (sum(c["ready_ms"] for c in per) + sum(c["parked_ms"] for c in per)
                               + state.backlog_ms)
    assert state.in_progress == counted["started"]
    for st, c in zip(state.stages, per):
        assert st.stories == c["stories"], st.name
    if state.staged:
        assert sum(st.backlog for st in state.stages) == state.backlog_tasks
        assert sum(st.backlog_ms for st in state.stages) == state.backlog_ms
        for st, c in zip(state.stages, per):
            got = (st.ready, st.ready_ms, st.parked, st.parked_ms, st.running, st.blocked)
            want = (c["ready"], c["ready_ms"], c["parked"], c["parked_ms"], c["running"], c["blocked"])
            assert got == want, f"stage {st.name}: {got} != {want}"
            assert st.queued == st.ready + st.parked + st.backlog
            assert st.queued_ms == st.ready_ms + st.parked_ms + st.backlog_ms
    figures = state.figures()
    assert sum(f.tasks_queued for f in figures) == state.queued
    assert sum(f.tasks_running for f in figures) == state.running
    assert sum(f.tasks_blocked for f in figures) == state.blocked
    assert sum(f.stories for f in figures) == state.in_progress


class Board:
    def __init__(self, stages: int = 3, *, window: int = 20_000, wip_limit: int = 0,
                 stage_wip: dict[int, int] | None = None):
        self.names = tuple(f"s{i}" for i in range(stages)) if stages > 1 else ("work",)
        self.window = window
        self.wip_limit = wip_limit
        self.stage_wip = dict(stage_wip or {})
        self.clock = 0.0
        self.stories: dict[int, DiskStory] = {}
        self.tasks: dict[int, DiskTask] = {}
        self.leases: list[Lease] = []
        self.next_story = self.next_task = 1
        self.state = self._new_state()

    def _new_state(self) -> WorkState:
        state = WorkState(self.window, self.names)
        state.set_wip_limit(self.wip_limit)
        for index, limit in self.stage_wip.items():
            state.set_stage_wip_limit(index, limit)
        return state

    # -- what a client and the workers do ---------------------------------------------
    def create(self, tasks: list[tuple[int, int, int]], *, plain: bool = False) -> int:
        """A story of (stage, estimate_ms, block_ms) tasks. `plain`: pass no stages and no
        blocks when there are none (the single-stage path)."""
        story_id, first = self.next_story, self.next_task
        self.next_story += 1
        self.next_task += len(tasks)
        ids = list(range(first, first + len(tasks)))
        self.stories[story_id] = DiskStory(self.clock, ids)
        for task_id, (stage, estimate, block) in zip(ids, tasks):
            self.tasks[task_id] = DiskTask(story_id, stage, estimate, block)
        stages = [t[0] for t in tasks]
        blocks = [t[2] for t in tasks]
        if plain and not any(stages) and not any(blocks):
            stages = blocks = None
        self.state.add_story(story_id, first, [t[1] for t in tasks], self.clock, stages, blocks)
        self.refill()
        return story_id

    def lease(self, stage: int = 0, max_tasks: int = 10) -> list[int]:
        lease = self.state.take_lease(SCALE, max_tasks, MAX_S, self.clock, stage)
        ids = [task_id for task_id, _ in lease]
        for task_id in ids:
            self.check_order(task_id)
            assert self.tasks[task_id].stage == stage, f"task {task_id} leased by the wrong stage"
        self.absorb()
        if ids:
            self.leases.append(Lease(stage, ids, self.state.leased))
        return ids

    def absorb(self) -> None:
        """Write down what the work state asks to (as the service would, in the turn's batch)."""
        state = self.state
        for story_id in state.started:
            self.stories[story_id].started = self.clock
        for story_id, index in state.entered:
            story = self.stories[story_id]
            assert any(self.tasks[t].stage == index for t in story.tasks), \
                f"story {story_id} entered stage {index}, where it has no task"
            story.counted = index
        for task_id, until in state.blocks_started:
            self.check_order(task_id)
            self.tasks[task_id].blocked_until = until
        state.started, state.entered, state.blocks_started = [], [], []

    def check_order(self, task_id: int) -> None:
        task = self.tasks[task_id]
        for other in self.stories[task.story].tasks:
            if self.tasks[other].stage < task.stage:
                assert self.tasks[other].done, \
                    f"task {task_id} (stage {task.stage}) started before task {other} was done"

    def finish(self, index: int = 0) -> list[int]:
        """The lease at `index` is done: the stories finished by it."""
        lease = self.leases.pop(index)
        self.state.lease_ended(lease.stories, self.clock)
        return self.done(lease.task_ids)

    def done(self, task_ids: list[int]) -> list[int]:
        finished = []
        for task_id in task_ids:
            task, story = self.state.complete(task_id)
            if task is None:
                continue
            disk = self.tasks[task_id]
            assert not disk.done, f"task {task_id} done twice"
            disk.done += 1
            if story is not None:
                assert all(self.tasks[t].done for t in self.stories[disk.story].tasks)
                self.stories[disk.story].status = "done"
                finished.append(disk.story)
        self.absorb()
        self.refill()
        return finished

    def lose(self, index: int = 0) -> int:
        lease = self.leases.pop(index)
        self.state.lease_ended(lease.stories, self.clock)
        return self.state.requeue_front(lease.task_ids)

    def tick(self, seconds: float) -> list[int]:
        self.clock += seconds
        return self.state.release_blocks(self.clock)

    def delete(self, story_id: int) -> bool:
        disk = self.stories[story_id]
        if disk.status != "open":
            return False
        if self.state.delete_story(story_id) is None:  # only on disk: counted in the backlog
            left = [self.tasks[t] for t in disk.tasks if not self.tasks[t].done]
            by_stage = Counter()
            for t in left:
                by_stage[t.stage, "n"] += 1
                by_stage[t.stage, "ms"] += t.estimate
            stages = sorted({t.stage for t in left})
            self.state.forget_backlog_story(len(left), sum(t.estimate for t in left),
                                            [(s, by_stage[s, "n"], by_stage[s, "ms"]) for s in stages])
        disk.status = "deleted"
        self.refill()
        return True

    # -- what the store does ----------------------------------------------------------
    def open_tasks(self, story_id: int) -> list[int]:
        return [t for t in self.stories[story_id].tasks if not self.tasks[t].done]

    def read_window(self, after: int, limit: int) -> tuple[list[tuple], bool]:
        rows: list[tuple] = []
        for story_id in sorted(self.stories):
            story = self.stories[story_id]
            if story.status != "open":
                continue
            left = [t for t in self.open_tasks(story_id) if t > after]
            if not left:
                continue
            if len(rows) >= limit:
                return rows, False
            for task_id in left:
                t = self.tasks[task_id]
                rows.append((task_id, story_id, t.estimate, 0, len(story.tasks), story.created,
                             story.started, t.stage, t.block))
        return rows, True

    def refill(self) -> None:
        state = self.state
        while state.wants_refill():
            rows, complete = self.read_window(state.cursor, state.window)
            state.refill(rows, complete)
            if complete or not rows:
                return

    def restart(self) -> None:
        """The server dies and starts again: leases are lost, memory is read back from the disk."""
        self.leases = []
        state = self.state = self._new_state()
        backlog_stories = 0
        backlog: Counter = Counter()
        oldest = None
        for story_id in sorted(self.stories):
            story = self.stories[story_id]
            if story.status != "open":
                continue
            left = self.open_tasks(story_id)
            oldest = story.tasks[0] if oldest is None else oldest
            if story.started is None:
                backlog_stories += 1
                for task_id in left:
                    backlog[self.tasks[task_id].stage, "n"] += 1
                    backlog[self.tasks[task_id].stage, "ms"] += self.tasks[task_id].estimate
                continue
            rows = [(t, self.tasks[t].estimate, 0, self.tasks[t].stage, self.tasks[t].block,
                     self.tasks[t].blocked_until) for t in left]
            state.restore_story(story_id, len(story.tasks), rows, story.created, story.started,
                                story.counted, wall=self.clock)
        state.order_queue()
        tasks = sum(backlog[s, "n"] for s in range(len(self.names)))
        work = sum(backlog[s, "ms"] for s in range(len(self.names)))
        state.set_backlog(backlog_stories, tasks, work, max(0, (oldest or 1) - 1),
                          [(backlog[s, "n"], backlog[s, "ms"]) for s in range(len(self.names))])
        self.refill()

    # -- to the end ------------------------------------------------------------------------
    def drain(self, rounds: int = 10_000) -> None:
        """Run everything left to the end: every open story completes."""
        for _ in range(rounds):
            while self.leases:
                self.finish(0)
            for stage in range(len(self.names)):
                while self.lease(stage, max_tasks=50):
                    pass
            if not self.leases:
                nxt = self.state.next_unblock()
                if nxt is None:
                    if not any(s.status == "open" for s in self.stories.values()):
                        return
                    raise AssertionError(f"stuck: {self.state.figures()}")
                self.tick(max(0.0, nxt - self.clock))
        raise AssertionError("did not drain")
