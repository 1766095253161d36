"""The Service alone, as a state machine: input with the time in, effects out.

No socket, no process, no loop: a Store on a temporary SQLite file, a Pool
that only keeps books, and worker identities that exist only as the bytes the
test passes in (a worker joins by its Ready, as a remote host would). The test
plays the loop's part by hand: it calls `commit` where the loop would, and
reads the effects (tests/drive.py decodes them). Time is whatever the test says.
"""

from __future__ import annotations

import ast
import sqlite3
from pathlib import Path

import pytest

import drive
from storypulse import protocol
from storypulse.server.config import ServerConfig
from storypulse.server.outage import FIRST_RETRY_S
from storypulse.server.pool import Pool
from storypulse.server.service import Service
from storypulse.server.store import Store

WALL = 1000.0  # the wall clock runs this far ahead of the monotonic one


class Alone:
    """A Service and the store under it; requests come from client b"c"."""

    def __init__(self, path: Path, **options):
        self.path = path
        self.store = Store.open(str(path))
        self.pool = Pool("tcp://127.0.0.1:1", heartbeat=0.5, min_workers=0, max_workers=4,
                         quiet_window=5)
        self.service = Service(ServerConfig.from_options(options), self.store, self.pool, now=0.0)
        self.service.restore(now=0.0, wall=WALL)
        self.start = drive.take(self.service)  # the start note: seq 1, before anything else

    def request(self, body: dict, now: float) -> None:
        self.service.handle_request([b"c"], protocol.encode(body), now, WALL + now)

    def worker(self, identity: bytes, message, now: float) -> None:
        self.service.worker_message(identity, protocol.encode(message), now, WALL + now)

    def pending(self) -> drive.Out:
        """What the service has handed out so far, without a commit."""
        return drive.take(self.service)

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def a(tmp_path):
    service = Alone(tmp_path / "service.db")
    yield service
    service.close()


def test_create_lease_complete_and_the_story_is_done_only_after_each_commit(a):
    service = a.service
    a.worker(b"w1", protocol.Ready(pid=4242, host="elsewhere"), now=0.0)
    assert a.pending().to_workers == []  # welcome, and idle
    a.request({"op": "create_story", "id": "c1", "name": "s",
               "tasks": [{"estimate_ms": 1000}, {"estimate_ms": 1000}]}, now=1.0)
    held = a.pending()
    assert held.replies == [] and held.events == []  # nothing before the commit
    assert a.store.story(1) is None

    service.dispatch(1.0, WALL + 1.0)
    lease = a.pending()  # leases go before the commit: a Done can only come in a later turn
    assert lease.leases() == [(b"w1", [1])] and lease.replies == []
    out = drive.settle(service, 1.0, WALL + 1.0)
    ((envelope, reply),) = out.replies
    assert envelope == [b"c"] and reply.id == "c1" and reply.result == {"story_id": 1,
                                                                        "task_ids": [1, 2]}
    (created,) = out.events
    assert (created.seq, created.event, created.story_id) == (2, "created", 1)  # after the start note
    assert a.store.story(1)[3] == "open"

    a.worker(b"w1", protocol.Done(task_ids=[1]), now=2.0)
    service.dispatch(2.0, WALL + 2.0)
    assert a.pending().leases() == [(b"w1", [2])]
    assert drive.settle(service, 2.0, WALL + 2.0).events == []  # one task left: not done yet

    a.worker(b"w1", protocol.Done(task_ids=[2]), now=3.5)
    assert a.pending().events == [] and a.store.story(1)[3] == "open"
    out = drive.settle(service, 3.5, WALL + 3.5)
    (completed,) = out.events
    assert (completed.seq, completed.event, completed.story_id) == (3, "completed", 1)
    assert (completed.ts, completed.lead_time_s, completed.cycle_time_s) == (WALL + 3.5, 2.5, 2.5)
    assert a.store.story(1)[3] == "done"
    stats = service.stats(3.5, WALL + 3.5)
    assert (stats.seq, stats.open_stories, stats.completed_stories, stats.tasks_completed,
            stats.tasks_queued, stats.tasks_running) == (3, 0, 1, 2, 0, 0)
    assert a.pool.workers[b"w1"].state == "idle"


def test_a_story_deleted_while_it_runs_ignores_its_late_done_and_keeps_the_counts(a):
    service = a.service
    for identity in (b"w1", b"w2"):
        a.worker(identity, protocol.Ready(pid=1), now=0.0)
    a.request({"op": "create_story", "name": "doomed", "tasks": [{"estimate_ms": 1000}] * 3},
              now=0.0)
    service.dispatch(0.0, WALL)
    drive.settle(service, 0.0, WALL)
    a.worker(b"w1", protocol.Done(task_ids=[1]), now=1.0)  # one done, one running, one queued
    drive.settle(service, 1.0, WALL + 1.0)
    assert service.stats(1.0, WALL + 1.0).tasks_completed == 1

    a.request({"op": "delete_story", "id": "d", "story_id": 1}, now=1.5)  # in memory: at once
    assert not service.deferred and a.pending().replies == []
    out = drive.settle(service, 1.5, WALL + 1.5)
    assert [(r.id, r.ok) for r in out.answers] == [("d", True)]
    assert out.story_events() == [("deleted", 1)]

    a.worker(b"w2", protocol.Done(task_ids=[2]), now=2.0)  # the running task reports late
    out = drive.settle(service, 2.0, WALL + 2.0)
    assert out.events == [] and out.to_workers == []  # ignored: no event, and w2 may stay
    s = service.stats(2.0, WALL + 2.0)
    assert (s.open_stories, s.completed_stories, s.tasks_completed, s.tasks_queued,
            s.tasks_running, s.stories_in_progress) == (0, 0, 0, 0, 0, 0)
    assert a.store.story(1) is None and a.store.tasks_of(1) == []
    assert a.pool.workers[b"w2"].state == "idle"
    start = a.store.load()  # what a restart would count
    assert (start.open_count, start.completed_stories, start.tasks_completed) == (0, 0, 0)


def test_an_outage_refuses_creates_holds_deletes_and_answers_them_when_a_retry_succeeds(a):
    service = a.service
    a.store.db.execute_sql("PRAGMA busy_timeout = 20")
    a.request({"op": "create_story", "id": 1, "name": "kept", "tasks": [{"estimate_ms": 5}]},
              now=0.0)
    assert drive.settle(service, 0.0, WALL).committed

    lock = sqlite3.connect(a.path, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    a.request({"op": "create_story", "id": 2, "name": "refused", "tasks": [{"estimate_ms": 5}]},
              now=1.0)
    a.request({"op": "delete_story", "id": 3, "story_id": 1}, now=1.0)
    out = drive.settle(service, 1.0, WALL + 1.0)
    assert not out.committed and service.outage.failures == 1
    (refused,) = out.answers  # the create: a definite no at once; the delete waits
    assert (refused.id, refused.error.code) == (2, protocol.UNAVAILABLE)
    (began,) = out.events  # no story event: only the note that the outage began
    assert (began.kind, began.ts) == ("outage_began", WALL + 1.0) and "locked" in began.cause

    # While it lasts: writes refused at once, reads and pings answered.
    a.request({"op": "create_story", "id": 4, "name": "x", "tasks": [{"estimate_ms": 5}]}, now=1.01)
    a.request({"op": "delete_story", "id": 5, "story_id": 1}, now=1.01)
    a.request({"op": "ping", "id": 6}, now=1.01)
    out = drive.settle(service, 1.01, WALL + 1.01)  # before the backoff allows a retry
    assert [(r.id, r.ok and "ok" or r.error.code) for r in out.answers] == \
        [(4, protocol.UNAVAILABLE), (5, protocol.UNAVAILABLE), (6, "ok")]
    assert service.outage.failures == 1  # not tried
    stats = service.stats(1.01, WALL + 1.01)
    assert stats.database == "unavailable" and "locked" in stats.database_error

    tried = service.outage.retry_at
    out = drive.settle(service, tried, WALL + tried)  # due, and still locked
    assert not out.committed and out.replies == [] and out.events == []
    assert service.outage.failures == 2 and len(service.group.held) == 1
    assert service.outage.retry_at == pytest.approx(tried + 2 * FIRST_RETRY_S)  # backing off

    lock.execute("ROLLBACK")
    lock.close()
    retry = service.outage.retry_at
    out = drive.settle(service, retry, WALL + retry)
    assert out.committed and service.outage is None
    assert [(r.id, r.ok) for r in out.answers] == [(3, True)]  # the held delete, answered now
    assert out.story_events() == [("deleted", 1)]
    ended = out.events[0]  # first the note, then what the outage held
    assert (ended.kind, ended.lasted_s) == ("outage_ended", pytest.approx(retry - 1.0, abs=1e-3))
    assert a.store.story(1) is None and a.store.story(2) is None
    s = service.stats(retry, WALL + retry)
    assert (s.database, s.open_stories, s.completed_stories) == ("ok", 0, 0)
    a.request({"op": "create_story", "id": 7, "name": "after", "tasks": [{"estimate_ms": 5}]},
              now=retry)
    (after,) = drive.settle(service, retry, WALL + retry).answers
    assert after.result["story_id"] == 3  # ids are never reused, not even a refused one's


def test_reads_of_committed_data_wait_for_the_commit_and_replies_keep_their_order(a):
    service = a.service
    a.request({"op": "create_story", "id": 1, "name": "s", "tasks": [{"estimate_ms": 5}]}, now=0.0)
    a.request({"op": "get_story", "id": 2, "story_id": 1}, now=0.0)  # must see the create
    a.request({"op": "ping", "id": 3}, now=0.0)  # answered after the get, as it came after
    a.request({"op": "snapshot", "id": 4, "history_seconds": 0}, now=0.0)
    assert [type(r).__name__ for _, r in service.deferred] == ["GetStory", "Ping", "Snapshot"]

    assert service.commit(0.0, WALL)  # the loop commits first ...
    first = drive.take(service)
    assert first.answers[0].id == 1 and len(first.answers) == 1
    assert [e.seq for e in first.events] == [2]
    service.resume(0.0, WALL)  # ... then serves what waited, and commits again
    assert not service.deferred
    rest = drive.settle(service, 0.0, WALL)
    get, ping, snap = rest.answers
    assert (get.id, get.result["story_id"], ping.id, snap.id) == (2, 1, 3, 4)
    assert snap.result["seq"] == 2  # it covers the created event published before it
    assert snap.result["stats"]["open_stories"] == 1


def test_a_read_with_nothing_uncommitted_is_served_at_once(a):
    a.request({"op": "list_stories", "id": 1}, now=0.0)
    a.request({"op": "delete_story", "id": 2, "story_id": 99}, now=0.0)
    assert not a.service.deferred
    answers = drive.settle(a.service, 0.0, WALL).answers
    assert answers[0].result == {"stories": [], "total": 0}
    assert (answers[1].id, answers[1].error.code) == (2, protocol.NOT_FOUND)


def test_a_frame_that_does_not_decode_is_answered_in_its_place(a):
    a.request({"op": "create_story", "id": 1, "name": "s", "tasks": [{"estimate_ms": 5}]}, now=0.0)
    a.request({"op": "list_stories", "id": 2}, now=0.0)
    a.service.handle_request([b"c"], b'{"op": "nope", "id": 3}', 0.0, WALL)
    answers = drive.settle(a.service, 0.0, WALL).answers
    assert [(r.id, r.ok) for r in answers] == [(1, True), (2, True), (3, False)]
    assert answers[1].result["total"] == 1 and answers[2].error.code == protocol.INVALID


def test_worker_reports_out_of_turn_get_stop_and_a_bad_one_is_counted(a):
    a.worker(b"ghost", protocol.Done(task_ids=[5]), now=0.0)
    a.worker(b"ghost", protocol.Heartbeat(), now=0.0)
    assert [m for _, m in a.pending().to_workers] == [protocol.Stop(), protocol.Stop()]
    a.service.worker_message(b"w", b"not a worker message", 0.0, WALL)
    assert a.service.faults.dropped_messages == 1


def test_timers_and_the_scaler_are_numbered_in_the_order_they_are_published(a):
    service = a.service
    service.publish_stats(0.0, WALL)
    service.pool_changed(0, 1, "more work", WALL)
    a.request({"op": "create_story", "name": "s", "tasks": [{"estimate_ms": 5}]}, now=0.0)
    events = drive.settle(service, 0.0, WALL).events
    assert [(type(e).__name__, e.seq) for e in events] == \
        [("Stats", 2), ("PoolEvent", 3), ("StoryEvent", 4)]
    assert service.figures.history.last(1)[0].seq == 2


SERVICE_MODULES = ("service", "ops", "commit", "effects", "figures", "state", "flow", "stats",
                   "outage", "autoscale", "notes")


@pytest.mark.parametrize("name", SERVICE_MODULES)
def test_the_service_reads_no_clock(name):
    """Time comes in with each input: none of the service's modules imports a clock."""
    import storypulse.server as server

    tree = ast.parse((Path(server.__file__).parent / f"{name}.py").read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert not imported & {"time", "datetime"}, f"{name}.py imports a clock"
