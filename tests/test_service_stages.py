"""Stages in the Service alone: the work state's rules as the service applies them, with the time
given by the test (docs/flow.md).

As tests/test_service.py: a Store on a temporary SQLite file, pools that only keep books
(one per stage, none spawned: workers join by their Ready, naming their stage as a worker
host does), and the test plays the loop: dispatch, commit (drive.settle), read the effects.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import drive
from storypulse import protocol
from storypulse.server.config import ServerConfig
from storypulse.server.pools import Pools
from storypulse.server.service import Service
from storypulse.server.store import Store, WorkflowMismatch

WALL = 1000.0
STAGES = "analysis:0-2,build:0-3,test:0-1"


class Board:
    """A Service with a workflow, its store, and worker identities by stage."""

    def __init__(self, path: Path, stages: str | None = STAGES, **options):
        self.path = path
        self.options = dict(options, **({"stages": stages} if stages else {}))
        self.store = Store.open(str(path))
        self.start()

    def start(self) -> None:
        config = ServerConfig.from_options(self.options)
        self.pools = Pools.of(config.workflow, "tcp://127.0.0.1:1", 0.5, 5.0)
        self.service = Service(config, self.store, self.pools, now=0.0)
        self.service.restore(now=0.0, wall=WALL)

    def restart(self, **options) -> None:
        """The server stops (its leases are lost) and starts again on the same database."""
        self.store.close()
        self.options.update(options)
        self.store = Store.open(str(self.path))
        self.start()

    def join(self, identity: bytes, stage: str | None, now: float = 0.0) -> drive.Out:
        self.service.worker_message(identity, protocol.encode(protocol.Ready(pid=1, stage=stage)),
                                    now, WALL + now)
        return drive.take(self.service)

    def create(self, *tasks: tuple, now: float = 0.0, id: object = None) -> protocol.Reply:
        """A story of (stage, estimate_ms[, blocked_ms]) tasks; the reply after its commit."""
        body = {"op": "create_story", "id": id, "name": "s",
                "tasks": [{"stage": t[0], "estimate_ms": t[1], "blocked_ms": t[2] if len(t) > 2 else 0}
                          for t in tasks]}
        return self.request(body, now)

    def request(self, body: dict, now: float) -> protocol.Reply:
        self.service.handle_request([b"c"], protocol.encode(body), now, WALL + now)
        (answer,) = drive.settle(self.service, now, WALL + now).answers
        return answer

    def turn(self, now: float) -> dict[bytes, list[int]]:
        """Dispatch and commit, as a turn of the loop does: the leases handed out, by worker."""
        self.service.dispatch(now, WALL + now)
        out = drive.settle(self.service, now, WALL + now)
        leases: dict[bytes, list[int]] = {}
        for identity, task_ids in out.leases():
            leases.setdefault(identity, []).extend(task_ids)
        return leases

    def done(self, identity: bytes, task_ids: list[int], now: float) -> list[tuple]:
        self.service.worker_message(identity, protocol.encode(protocol.Done(task_ids=task_ids)),
                                    now, WALL + now)
        return [tuple(round(x, 6) if isinstance(x, float) else x for x in event)
                for event in drive.settle(self.service, now, WALL + now).story_events()]

    def stats(self, now: float) -> protocol.Stats:
        return self.service.stats(now, WALL + now)

    def stage(self, now: float, name: str) -> protocol.StageStats:
        return next(s for s in self.stats(now).stages if s.name == name)

    def story(self, story_id: int, now: float) -> dict:
        return self.request({"op": "get_story", "story_id": story_id}, now).result


@pytest.fixture
def board(tmp_path):
    made: list[Board] = []

    def make(stages: str | None = STAGES, **options) -> Board:
        made.append(Board(tmp_path / f"stages-{len(made)}.db", stages, **options))
        return made[-1]

    yield make
    for b in made:
        b.store.close()


def test_each_stage_has_its_workers_and_a_story_works_its_stages_in_order(board):
    b = board()
    for identity, stage in ((b"a1", "analysis"), (b"b1", "build"), (b"b2", "build"), (b"t1", "test")):
        assert b.join(identity, stage).to_workers == []  # welcome, each in its stage's pool
    assert [p.connected for p in b.pools] == [1, 2, 1]
    one = b.create(("analysis", 1000), ("build", 1000), ("build", 1000), ("test", 1000)).result
    two = b.create(("build", 500)).result  # no analysis task: it skips analysis
    assert one["task_ids"] == [1, 2, 3, 4] and two["task_ids"] == [5]

    assert b.turn(0.0) == {b"a1": [1], b"b1": [5]}  # story 1's build waits for its analysis
    assert b.story(1, 0.0)["stage"] == "analysis" and b.story(2, 0.0)["stage"] == "build"
    assert b.done(b"b1", [5], 0.5) == [("completed", 2, 0.5, 0.5)]
    assert b.turn(0.5) == {}  # two build workers idle, story 1's build tasks still parked
    assert b.done(b"a1", [1], 1.0) == []
    assert b.story(1, 1.0)["stage"] == "analysis"  # done with it, and counts there until build starts
    assert b.turn(1.0) == {b"b2": [2], b"b1": [3]}  # its build tasks side by side
    assert b.story(1, 1.0)["stage"] == "build"
    assert b.done(b"b2", [2], 2.0) == [] and b.turn(2.0) == {}  # test waits for task 3
    assert b.done(b"b1", [3], 2.2) == [] and b.turn(2.2) == {b"t1": [4]}
    assert b.done(b"t1", [4], 3.2) == [("completed", 1, 3.2, 3.2)]
    view = b.story(1, 3.2)
    assert [(t["stage"], t["state"]) for t in view["tasks"]] == [
        ("analysis", "done"), ("build", "done"), ("build", "done"), ("test", "done")]
    assert "stage" not in view  # done: it counts in no stage
    # every later stage's task started after the earlier stages' last one finished
    tasks = view["tasks"]
    assert tasks[1]["started_at"] >= tasks[0]["finished_at"]
    assert tasks[3]["started_at"] >= max(tasks[1]["finished_at"], tasks[2]["finished_at"])
    s = b.stats(3.2)
    assert (s.completed_stories, s.tasks_completed, s.open_stories) == (2, 5, 0)
    assert [(st.name, st.workers, st.tasks_queued, st.stories) for st in s.stages] == [
        ("analysis", 1, 0, 0), ("build", 2, 0, 0), ("test", 1, 0, 0)]
    assert (s.workers, s.min_workers, s.max_workers) == (4, 0, 6)  # the sums


def test_a_blocked_task_frees_its_worker_another_story_moves_and_it_returns_first(board):
    b = board()
    b.join(b"b1", "build")
    b.create(("build", 1000, 2000))  # blocks for 2 s when it first starts
    b.create(("build", 1000))
    assert b.turn(0.0) == {b"b1": [2]}  # task 1 blocked at once: its worker took story 2's
    view = b.story(1, 0.0)
    assert view["stage"] == "build" and view["blocked_ms"] == 2000
    assert view["tasks"][0]["blocked_until"] == WALL + 2.0 and view["tasks"][0]["state"] == "queued"
    assert view["blocked_until"] == WALL + 2.0  # the story too: the aging chart marks it
    listed = b.request({"op": "list_stories", "status": "open"}, 0.0).result["stories"]
    assert [(v["story_id"], v.get("blocked_until")) for v in listed] == [(2, None), (1, WALL + 2.0)]
    build = b.stage(0.5, "build")
    assert (build.tasks_blocked, build.tasks_running, build.stories) == (1, 1, 2)
    assert b.stats(0.5).tasks_blocked == 1
    assert b.service.next_due(0.5, WALL + 0.5) == pytest.approx(2.0)  # the block's end wakes the loop
    assert b.done(b"b1", [2], 1.0) == [("completed", 2, 1.0, 1.0)]
    assert b.turn(1.0) == {}  # still blocked
    b.create(("build", 100), now=1.5)
    assert b.turn(1.5) == {b"b1": [3]}
    assert b.done(b"b1", [3], 1.6) == [("completed", 3, 0.1, 0.1)]
    assert b.turn(2.0) == {b"b1": [1]}  # its block over: it goes first, then works its estimate
    assert b.done(b"b1", [1], 3.0) == [("completed", 1, 3.0, 3.0)]
    # It worked 1 s of its 3 s cycle: the flow window shows it (and the store kept it).
    row = b.store.db.execute_sql("SELECT work_s FROM story_flow WHERE story_id = 1").fetchone()
    assert row[0] == pytest.approx(1.0)
    assert 0 < b.stats(3.0).flow_efficiency < 1


def test_a_full_downstream_stage_stops_upstream_pulling(board):
    b = board(stage_wip="test=1,build=1")
    for identity, stage in ((b"a1", "analysis"), (b"b1", "build"), (b"t1", "test")):
        b.join(identity, stage)
    for _ in range(3):
        b.create(("analysis", 100), ("build", 100), ("test", 10_000))
    assert b.turn(0.0) == {b"a1": [1]}
    assert b.done(b"a1", [1], 0.1) == [] and b.turn(0.1) == {b"b1": [2], b"a1": [4]}
    b.done(b"b1", [2], 0.2)
    b.done(b"a1", [4], 0.2)
    # Story 1 starts test, which frees build for story 2 in the same turn (the stages
    # downstream pull first).
    assert b.turn(0.2) == {b"t1": [3], b"b1": [5], b"a1": [7]}
    b.done(b"b1", [5], 0.3)
    b.done(b"a1", [7], 0.3)
    assert b.turn(0.3) == {}
    # Story 2 is done with build and waits for test (full: story 1): it still counts in build,
    # so build (limit 1) takes no new story, though its worker is idle and story 3 is ready.
    assert [(st.name, st.stories, st.tasks_ready) for st in b.stats(0.3).stages] == [
        ("analysis", 1, 0), ("build", 1, 1), ("test", 1, 1)]
    assert b.service.load(0.3, 1).queued_tasks == 0  # held: no more build workers wanted
    assert b.done(b"t1", [3], 10.2) == [("completed", 1, 10.2, 10.2)]
    assert b.turn(10.2) == {b"t1": [6], b"b1": [8]}  # story 2 into test, so story 3 into build
    assert [(st.name, st.stories) for st in b.stats(10.2).stages] == [
        ("analysis", 0), ("build", 1), ("test", 1)]


def test_each_stage_scales_for_its_own_queue(board):
    b = board()
    for _ in range(20):
        b.create(("build", 2000))
    loads = [b.service.load(0.0, i) for i in range(3)]
    assert [load.queued_tasks for load in loads] == [0, 20, 0]
    changes = [pool.decide(load) for pool, load in zip(b.pools, loads)]
    assert changes[0] is None and changes[2] is None  # analysis and test stay at 0
    old, new, reason = changes[1]
    assert (old, new) == (0, 3) and "20 queued tasks" in reason  # build grows, to its max


def test_unknown_stages_and_bad_blocks_are_refused_and_nothing_is_stored(board):
    b = board()
    reply = b.create(("analysis", 10), ("deploy", 10), id=1)
    assert reply.error.code == protocol.INVALID
    assert reply.error.message == ("tasks[1].stage 'deploy': not a stage of this server; the "
                                   "stages are analysis, build, test")
    reply = b.create(("build", 10, protocol.ESTIMATE_MS_MAX + 1), id=2)
    assert reply.error.code == protocol.INVALID and "$.tasks[0].blocked_ms" in reply.error.message
    assert b.store.story(1) is None and b.stats(0.0).open_stories == 0
    assert b.create(("test", 10), id=3).result["story_id"] == 1  # the server goes on

    reply = b.request({"op": "set_flow", "wip_limit": 3, "stage_wip_limits": {"build": 2, "qa": 1}}, 0.0)
    assert reply.error.message == ("stage_wip_limits: 'qa': not a stage of this server; the "
                                   "stages are analysis, build, test")
    s = b.stats(0.0)
    assert s.wip_limit == 0 and [st.wip_limit for st in s.stages] == [0, 0, 0]  # nothing changed
    reply = b.request({"op": "set_flow", "stage_wip_limits": {"build": 2}}, 0.0)
    assert reply.result["stage_wip_limits"] == {"analysis": 0, "build": 2, "test": 0}

    reply = b.request({"op": "set_pool", "stage": "qa", "max_workers": 2}, 0.0)
    assert reply.error.message.startswith("stage 'qa': not a stage of this server")
    reply = b.request({"op": "set_pool", "stage": "test", "max_workers": 4}, 0.0)
    assert reply.result == {"min_workers": 0, "max_workers": 4, "workers": 0, "target": 1,
                            "stage": "test"}  # decided at once: the story's test task wants one
    assert b.pools.by_name["test"].max_workers == 4 and b.pools.by_name["build"].max_workers == 3

    out = b.join(b"x", "deploy")  # a worker host for a stage this server lacks
    ((identity, stop),) = out.to_workers
    assert identity == b"x" and stop == protocol.Stop(
        reason="stage 'deploy' is not a stage of this server; the stages are analysis, build, test")
    assert b"x" not in b.pools.workers


def test_a_restart_keeps_blocks_and_stages_and_refuses_another_workflow(board):
    b = board()
    b.join(b"a1", "analysis")
    b.join(b"b1", "build")
    b.create(("analysis", 100), ("build", 1000, 5000), ("build", 1000))
    b.create(("build", 100))
    assert b.turn(0.0) == {b"a1": [1], b"b1": [4]}
    assert b.done(b"b1", [4], 0.1) == [("completed", 2, 0.1, 0.1)]
    assert b.done(b"a1", [1], 0.2) == []
    assert b.turn(0.2) == {b"b1": [3]}  # task 2 blocked until 5.2; task 3 runs
    assert b.story(1, 0.2)["tasks"][1]["blocked_until"] == WALL + 5.2

    b.restart()  # b1's lease is lost
    assert b.story(1, 0.3)["blocked_until"] == WALL + 5.2  # read back with its task
    s = b.stats(0.3)
    assert (s.open_stories, s.stories_in_progress, s.tasks_blocked, s.tasks_queued) == (1, 1, 1, 1)
    assert [(st.name, st.stories, st.tasks_blocked, st.tasks_ready) for st in s.stages] == [
        ("analysis", 0, 0, 0), ("build", 1, 1, 1), ("test", 0, 0, 0)]
    b.join(b"b1", "build", now=0.3)
    assert b.turn(0.3) == {b"b1": [3]}  # runs again; the blocked one still waits
    assert b.service.next_due(0.3, WALL + 0.3) == pytest.approx(5.2)
    assert b.done(b"b1", [3], 1.3) == [] and b.turn(5.2) == {b"b1": [2]}
    assert b.done(b"b1", [2], 6.2) == [("completed", 1, 6.2, 6.2)]

    b.create(("test", 100))  # left unfinished in 'test'
    with pytest.raises(WorkflowMismatch, match=r"stages this server's workflow lacks: 'test' "
                                               r"\(1 tasks\); its stages are analysis, build"):
        b.restart(stages="analysis:1,build:1")
    b.restart(stages="test:1,analysis:1,build:1")  # reordered: fine, by name
    assert [(st.name, st.tasks_queued) for st in b.stats(0.0).stages] == [
        ("test", 1), ("analysis", 0), ("build", 0)]


def test_one_stage_takes_blocks_and_its_own_name(board):
    b = board(stages=None)
    b.join(b"w1", None)
    assert b.create(("work", 100, 1000), ("work", 100)).ok
    assert b.create((None, 100)).ok
    assert b.create(("build", 100)).error.message.endswith("the stages are work")
    assert b.turn(0.0) == {b"w1": [2]}
    assert [t[8:] for t in b.store.tasks_of(1)] == [(None, 1000, WALL + 1.0), (None, 0, None)]
    s = b.stats(0.0)
    assert [(st.name, st.tasks_blocked, st.tasks_running) for st in s.stages] == [("work", 1, 1)]
    assert b.story(1, 0.0)["tasks"][0]["stage"] == "work"
    assert b.request({"op": "set_flow", "wip_limit": 2}, 0.0).result == {"wip_limit": 2,
                                                                        "flow_window_s": 60.0}
