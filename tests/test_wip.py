"""The WIP limit's dispatch rule and the in-progress accounting, in-process with a fake clock.

First on the work state alone, then through the real Service, Store (SQLite in a
temporary folder) and Pool, with workers that are only entries in the pool (no
processes): leases are read from the effects the service hands out, Done is
handed back by the test at the fake time it chooses.
"""

from __future__ import annotations

import pytest

from storypulse import protocol
from storypulse.server.config import ServerConfig
from storypulse.server.pool import Pool, Worker
from storypulse.server.service import Service
from storypulse.server.state import WorkState
from storypulse.server.store import Store
from drive import settle


def stories(state: WorkState, *tasks_per_story: int, estimate: int = 1000) -> None:
    next_task = max(state.live, default=0) + 1
    for tasks in tasks_per_story:
        story_id = len(state.stories) + 1
        state.add_story(story_id, next_task, [estimate] * tasks, created_at=float(story_id))
        next_task += tasks


def lease(state: WorkState, wall: float = 0.0) -> list[int]:
    return [task_id for task_id, _ in state.take_lease(1.0, 10, 0.005, wall)]


# -- the rule on the work state ---------------------------------------------------------
def test_without_a_limit_stories_start_as_their_tasks_go():
    state = WorkState()
    stories(state, 1, 1, 1)
    assert [lease(state, wall=5.0) for _ in range(3)] == [[1], [2], [3]]
    assert state.in_progress == 3 and not state.held()
    assert [state.stories[s].started_at for s in (1, 2, 3)] == [5.0, 5.0, 5.0]
    assert state.started == [1, 2, 3]


def test_with_a_limit_stories_wait_their_turn_in_creation_order():
    state = WorkState()
    state.set_wip_limit(2)
    stories(state, 1, 1, 1, 1)
    assert lease(state) == [1] and lease(state) == [2]
    assert lease(state) == [] and state.held() and not state.dispatchable
    assert state.in_progress == 2 and state.stories[3].started_at is None
    state.complete(2)  # the second story finishes first: the third (not the fourth) goes next
    assert not state.held() and state.in_progress == 1
    assert lease(state) == [3] and lease(state) == []
    state.complete(1)
    assert lease(state) == [4]


def test_tasks_of_a_started_story_keep_going_at_the_limit():
    state = WorkState()
    state.set_wip_limit(1)
    stories(state, 3, 1)
    assert lease(state) == [1] and lease(state) == [2] and lease(state) == [3]
    assert lease(state) == [] and state.held()  # story 2 waits: workers may stand idle
    for task_id in (1, 2, 3):
        state.complete(task_id)
    assert state.in_progress == 0 and lease(state) == [4]


def test_a_lease_of_tiny_tasks_stops_at_a_story_that_must_wait():
    state = WorkState()
    state.set_wip_limit(1)
    stories(state, 2, 2, estimate=0)
    assert lease(state) == [1, 2]  # both of story 1 in one lease; story 2's wait
    assert state.held() and state.queued == 2
    state.set_wip_limit(2)
    assert not state.held() and lease(state) == [3, 4]


def test_deleting_a_story_in_progress_frees_its_slot_and_a_waiting_one_does_not():
    state = WorkState()
    state.set_wip_limit(1)
    stories(state, 2, 1, 1)
    assert lease(state) == [1] and lease(state) == [2] and lease(state) == []
    state.delete_story(2)  # waiting: nothing changes
    assert state.in_progress == 1 and lease(state) == []
    state.delete_story(1)  # in progress, two tasks running
    assert state.in_progress == 0 and state.running == 0
    assert lease(state) == [4] and state.in_progress == 1
    assert state.complete(1) == (None, None)  # the deleted story's running task reports later


def test_a_lost_lease_goes_back_before_the_waiting_stories():
    state = WorkState()
    state.set_wip_limit(1)
    stories(state, 2, 1)
    assert lease(state) == [1] and lease(state) == [2] and lease(state) == []
    assert state.requeue_front([1]) == 1 and not state.held()
    assert lease(state) == [1] and lease(state) == []  # story 2 still waits
    assert state.in_progress == 1


def test_a_lower_limit_lets_started_stories_finish_and_starts_no_new_one():
    state = WorkState()
    stories(state, 2, 2, 1)
    assert lease(state) == [1] and lease(state) == [2] and lease(state) == [3]
    state.set_wip_limit(1)  # two in progress now
    assert lease(state) == [4] and lease(state) == []
    for task_id in (1, 2):
        state.complete(task_id)
    assert state.in_progress == 1 and lease(state) == []  # still one: at the limit
    for task_id in (3, 4):
        state.complete(task_id)
    assert lease(state) == [5]


def test_after_a_restart_started_stories_go_first():
    state = WorkState()
    # story 1 never started (its tasks ran when the server died); story 2 had started
    state.restore_story(1, 1, [(1, 100, 1)], created_at=1.0, started_at=None)
    state.restore_story(2, 2, [(2, 100, 0), (3, 100, 0)], created_at=2.0, started_at=2.5)
    state.order_queue()
    assert state.in_progress == 1
    state.set_wip_limit(1)
    assert lease(state) == [2] and lease(state) == [3] and lease(state) == []
    state.complete(2)
    state.complete(3)
    assert lease(state) == [1]


# -- through the Service, the Store and the Pool --------------------------------------------
class Bench:
    """A Service on a real store, with `workers` pool entries that take leases but run nothing.

    It carries out the service's effects as the loop does, without sockets: after each
    commit it serves the requests that waited for it, and keeps what would have gone out."""

    def __init__(self, path, workers: int = 4, **options):
        self.path = path
        self.store = Store.open(str(path))
        self.pool = Pool("tcp://127.0.0.1:1", heartbeat=0.5, min_workers=workers,
                         max_workers=workers, quiet_window=5)
        self.events: list[tuple] = []  # the story events published: (event, story_id[, lead, cycle])
        self.replies: list[protocol.Reply] = []
        self.service = Service(ServerConfig.from_options(options), self.store, self.pool, now=0.0)
        self.service.restore(now=0.0, wall=1000.0)
        self.workers = []
        for i in range(workers):
            worker = Worker(f"w{i}".encode(), None, state="idle")
            self.pool.workers[worker.identity] = worker
            self.pool.idle[worker.identity] = worker
            self.workers.append(worker)
        self.sent: dict[bytes, list[list[int]]] = {w.identity: [] for w in self.workers}

    def request(self, body: dict, now: float) -> protocol.Reply:
        self.service.handle_request([b"c"], protocol.encode(body), now, 1000.0 + now)
        self.commit(now)
        return self.replies[-1]

    def commit(self, now: float) -> bool:
        """As the loop ends a turn (tests/drive.py); keeps what would have gone out."""
        out = settle(self.service, now, 1000.0 + now)
        self.replies += out.answers
        self.events += out.story_events()
        for identity, task_ids in out.leases():
            self.sent[identity].append(task_ids)
        return out.committed

    def create(self, tasks: int, now: float, estimate: int = 1000) -> int:
        reply = self.request({"op": "create_story", "name": "s",
                              "tasks": [{"estimate_ms": estimate}] * tasks}, now)
        return reply.result["story_id"]

    def dispatch(self, now: float) -> None:
        self.service.dispatch(now, 1000.0 + now)
        assert self.commit(now)

    def finish(self, worker: Worker, now: float) -> list[int]:
        """The worker reports its oldest lease done."""
        task_ids = worker.leases[0].task_ids
        self.service.complete(worker, task_ids, now, 1000.0 + now)
        assert self.commit(now)
        return task_ids

    def stats(self, now: float) -> protocol.Stats:
        return self.service.stats(now, 1000.0 + now, 0)

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def bench(tmp_path):
    made = []

    def make(**options) -> Bench:
        made.append(Bench(tmp_path / "wip.db", **options))
        return made[-1]

    yield make
    for b in made:
        b.close()


def test_with_limit_two_only_two_one_task_stories_run_on_four_workers(bench):
    b = bench(workers=4, wip_limit=2)
    ids = [b.create(1, now=0.0, estimate=10_000) for _ in range(6)]  # none due to end soon
    b.dispatch(0.0)
    s = b.stats(0.0)
    assert (s.stories_in_progress, s.workers_busy, s.wip_limit) == (2, 2, 2)
    assert s.tasks_queued == 4 and len(b.pool.idle) == 2  # idle workers: the point of a limit
    started = [b.request({"op": "get_story", "story_id": i}, 0.0).result for i in ids]
    assert [v.get("started_at") for v in started] == [1000.0, 1000.0, None, None, None, None]
    busy = [w for w in b.workers if w.leases]
    b.finish(busy[0], now=1.0)
    b.dispatch(1.0)
    s = b.stats(1.0)
    assert (s.stories_in_progress, s.workers_busy, s.completed_stories) == (2, 2, 1)
    third = b.request({"op": "get_story", "story_id": ids[2]}, 1.0).result
    assert third["started_at"] == 1001.0 and "lead_time_s" not in third
    # lifting the limit starts more at once
    reply = b.request({"op": "set_flow", "wip_limit": 0}, 1.0)
    assert reply.result == {"wip_limit": 0, "flow_window_s": 60.0}
    b.dispatch(1.0)
    assert b.stats(1.0).stories_in_progress == 4 and b.stats(1.0).workers_busy == 4


def test_lead_and_cycle_times_in_views_events_stats_and_the_snapshot(bench):
    b = bench(workers=1)
    first = b.create(2, now=0.0)
    second = b.create(1, now=0.5)
    b.dispatch(1.0)  # first task of the first story at 1.0
    (worker,) = b.workers
    b.finish(worker, now=2.0)
    b.dispatch(2.0)
    b.finish(worker, now=3.0)  # first story done at 3.0: lead 3.0, cycle 2.0
    events = [e for e in b.events if e[0] == "completed"]
    assert events == [("completed", first, 3.0, 2.0)]
    b.dispatch(3.0)
    b.finish(worker, now=7.0)  # second: created 0.5, started 3.0, done 7.0
    view = b.request({"op": "get_story", "story_id": second}, 7.0).result
    assert (view["started_at"], view["lead_time_s"], view["cycle_time_s"]) == (1003.0, 6.5, 4.0)
    listed = b.request({"op": "list_stories", "status": "done"}, 7.0).result["stories"]
    assert [(v["story_id"], v["lead_time_s"], v["cycle_time_s"]) for v in listed] == \
        [(second, 6.5, 4.0), (first, 3.0, 2.0)]
    s = b.stats(7.0)
    assert (s.stories_completed_in_window, s.lead_time_p50_s, s.lead_time_p95_s) == (2, 3.0, 6.5)
    assert (s.cycle_time_p50_s, s.cycle_time_p85_s, s.lead_time_mean_s) == (2.0, 4.0, 4.75)
    snap = b.request({"op": "snapshot", "history_seconds": 0}, 7.0).result
    assert snap["completions"] == [
        {"story_id": first, "completed_at": 1003.0, "lead_time_s": 3.0, "cycle_time_s": 2.0},
        {"story_id": second, "completed_at": 1007.0, "lead_time_s": 6.5, "cycle_time_s": 4.0},
    ]
    assert b.stats(63.0).stories_completed_in_window == 1  # the first left the 60 s window
    b.request({"op": "delete_story", "story_id": second}, 63.0)
    s = b.stats(63.0)
    assert s.stories_completed_in_window == 0 and s.lead_time_p50_s is None


def test_a_story_deleted_in_progress_frees_its_slot(bench):
    b = bench(workers=2, wip_limit=1)
    doomed = b.create(1, now=0.0)
    waiting = b.create(1, now=0.0)
    b.dispatch(0.0)
    assert b.stats(0.0).stories_in_progress == 1 and b.stats(0.0).tasks_queued == 1
    assert b.request({"op": "delete_story", "story_id": doomed}, 0.5).ok
    b.dispatch(0.5)
    s = b.stats(0.5)
    assert (s.stories_in_progress, s.tasks_queued, s.open_stories) == (1, 0, 1)
    assert b.request({"op": "get_story", "story_id": waiting}, 0.5).result["started_at"] == 1000.5


def test_a_restart_keeps_started_at_and_the_in_progress_count(bench):
    b = bench(workers=2, wip_limit=2)
    a, b1, c = b.create(2, now=0.0), b.create(1, now=0.0), b.create(1, now=0.0)
    b.dispatch(0.0)  # both of a's tasks (ids 1, 2) start: one story in progress
    assert b.stats(0.0).stories_in_progress == 1
    b.finish(b.workers[0], now=1.0)
    b.dispatch(1.0)  # b's task (3) starts on the freed worker; c waits for neither worker
    assert b.stats(1.0).stories_in_progress == 2 and b.stats(1.0).tasks_queued == 1
    b.close()

    # The server dies with tasks 2 and 3 running; a new one starts on the same database.
    again = bench(workers=2, wip_limit=2)
    s = again.stats(0.0)
    assert (s.stories_in_progress, s.open_stories, s.tasks_queued) == (2, 3, 3)
    views = [again.request({"op": "get_story", "story_id": i}, 0.0).result for i in (a, b1, c)]
    assert [v.get("started_at") for v in views] == [1000.0, 1001.0, None]
    again.dispatch(0.0)  # the started stories' tasks run again; c still waits its turn
    leased = sorted(t for w in again.workers for lease in w.leases for t in lease.task_ids)
    assert leased == [2, 3] and again.stats(0.0).stories_in_progress == 2


def test_a_story_started_by_a_prefetched_lease_starts_when_that_lease_does(bench):
    b = bench(workers=1)
    (worker,) = b.workers
    first = b.create(1, now=0.0)
    b.dispatch(0.0)  # runs 0.0-1.0
    second = b.create(1, now=0.5)
    b.dispatch(0.99)  # due to end within PREFETCH_S: the next lease goes out early
    assert len(worker.leases) == 2
    expected = b.request({"op": "get_story", "story_id": second}, 0.99).result["started_at"]
    assert expected == pytest.approx(1001.0)  # when the first lease should end
    b.finish(worker, now=1.25)  # it ends late: the second story really starts now
    assert b.request({"op": "get_story", "story_id": second}, 1.25).result["started_at"] == 1001.25
    b.finish(worker, now=2.25)
    done = b.request({"op": "get_story", "story_id": second}, 2.25).result  # read from the store
    assert (done["started_at"], done["cycle_time_s"], done["lead_time_s"]) == (1001.25, 1.0, 1.75)
    assert done["tasks"][0]["started_at"] == 1001.25
    assert b.request({"op": "get_story", "story_id": first}, 2.25).result["cycle_time_s"] == 1.25


def test_work_the_limit_holds_back_does_not_grow_the_pool(bench):
    b = bench(workers=1, wip_limit=1)
    b.create(1, now=0.0, estimate=10_000)
    for _ in range(20):
        b.create(5, now=0.0, estimate=10_000)
    b.dispatch(0.0)
    assert b.stats(0.0).tasks_queued == 100  # the figures still say what waits
    load = b.service.load(0.0)
    assert (load.queued_tasks, load.queued_work_s, load.busy) == (0, 0.0, 1)
    b.request({"op": "set_flow", "wip_limit": 0}, 0.0)
    assert b.service.load(0.0).queued_tasks == 100  # no longer held: it counts
