"""The windowed queue: only a window of the backlog is in memory, the rest is read in id order.

In-process, on the real Service, Store (SQLite in a temporary folder) and Pool
with workers that are only entries in the pool (the `Bench` of test_wip.py), a
window of 4 tasks (`queue_window`), so that every few leases read the next
stories from the database; on PostgreSQL too when STORYPULSE_TEST_POSTGRES is set. One real-process test restarts a server whose
backlog is many windows long.
"""

from __future__ import annotations

import os
import sqlite3

import pytest

from storypulse import protocol
from support import EventTap, ServerProcess, empty_postgres
from test_wip import Bench

WINDOW = 4


POSTGRES = os.environ.get("STORYPULSE_TEST_POSTGRES")


def counted(store) -> tuple:
    """What the tally should hold, counted over the tables."""
    return store.db.execute_sql(
        "SELECT (SELECT COUNT(*) FROM story WHERE status = 'open'), "
        "(SELECT COUNT(*) FROM story WHERE status = 'done'), "
        "(SELECT COUNT(*) FROM task WHERE status = 'queued'), "
        "(SELECT COUNT(*) FROM task WHERE status = 'done'), "
        "(SELECT COALESCE(SUM(estimate_ms), 0) FROM task WHERE status = 'queued')").fetchone()


def tally(store) -> tuple:
    return store.db.execute_sql("SELECT stories_open, stories_done, tasks_queued, tasks_done, "
                                "queued_ms FROM tally").fetchone()


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    not POSTGRES, reason="set STORYPULSE_TEST_POSTGRES to a database URL"))])
def test_the_tally_moves_with_every_write_and_a_retry_counts_nothing_twice(kind, tmp_path):
    """Start-up reads its counts from the tally: it must agree with the rows."""
    from storypulse.server.store import Batch, Store

    store = Store.open(str(tmp_path / "t.db") if kind == "sqlite" else empty_postgres(POSTGRES))
    stories = [(s, f"s{s}", "", "open", 1.0, 4) for s in range(1, 101)]
    tasks = [(4 * s + k, s, "", 10 * k + s, "queued", 0, 1.0) for s in range(1, 101) for k in range(4)]
    store.apply(Batch(stories=stories, tasks=tasks))
    assert tally(store) == counted(store) == (100, 0, 400, 0, sum(t[3] for t in tasks))
    # two groups of completions, stories done, deletes of open, done and half-done stories
    finishing = Batch(completions=[(1, 2.0, 3.0, [t[0] for t in tasks if t[1] <= 30]),
                                   (2, 2.0, 3.0, [t[0] for t in tasks if t[1] == 31][:2])],
                      done_stories=[(3.0, list(range(1, 21))), (3.0, list(range(21, 31)))],
                      deleted_stories=[5, 31, 90], id_floors={"story_id": 100, "task_id": 404})
    store.apply(finishing)
    assert tally(store) == counted(store)
    store.apply(finishing, again=True)  # as after a commit whose answer was lost
    assert tally(store) == counted(store) == (68, 29, 272, 116, counted(store)[4])
    # a retried insert: the rows a lost commit stored (story 2 is done by now) are not counted
    store.apply(Batch(stories=[stories[1], (200, "new", "", "open", 1.0, 1)],
                      tasks=[tasks[4], (900, 200, "", 3, "queued", 0, 1.0)]), again=True)
    assert tally(store) == counted(store)
    start = store.load()
    assert (start.open_count, start.completed_stories, start.queued_count,
            start.tasks_completed) == (69, 29, 273, 116)
    store.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    not POSTGRES, reason="set STORYPULSE_TEST_POSTGRES to a database URL"))])
def bench(request, tmp_path):
    """Benches on one database (a second one is the same server restarted)."""
    made = []
    db = tmp_path / "backlog.db" if request.param == "sqlite" else empty_postgres(POSTGRES)

    def make(**options) -> Bench:
        options.setdefault("queue_window", WINDOW)
        made.append(Bench(db, **options))
        return made[-1]

    yield make
    for b in made:
        b.close()


def drain(b: Bench, now: float = 1.0) -> list[int]:
    """Run everything queued, one worker's leases at a time; the task ids in the order handed out."""
    order: list[int] = []
    for _ in range(10_000):
        b.dispatch(now)
        busy = [w for w in b.workers if w.leases]
        if not busy:
            return order
        for worker in busy:
            order += b.finish(worker, now)
        now += 0.001
        check_counts(b)
    raise AssertionError("the queue did not drain")


def in_memory(b: Bench) -> int:
    return len(b.service.state.live)


def check_counts(b: Bench) -> None:
    """What stats say is what the database says (running tasks are queued on disk)."""
    b.commit(0.0)
    s = b.stats(0.0)
    db = b.store.db
    queued, work = db.execute_sql("SELECT COUNT(*), COALESCE(SUM(estimate_ms), 0) FROM task "
                                  "WHERE status = 'queued'").fetchone()
    assert s.tasks_queued + s.tasks_running == queued
    running_ms = sum(t.estimate_ms for t in b.service.state.live.values() if t.running)
    assert b.service.state.queued_ms + running_ms == work
    opened = db.execute_sql("SELECT COUNT(*) FROM story WHERE status = 'open'").fetchone()[0]
    assert s.open_stories == opened
    done = db.execute_sql("SELECT COUNT(*) FROM task WHERE status = 'done'").fetchone()[0]
    assert s.tasks_completed == done


def test_fifo_across_refills_with_at_most_a_window_in_memory(bench):
    b = bench(workers=1)
    for _ in range(10):
        b.create(3, now=0.0)
    state = b.service.state
    # the first story fits the window; the other nine are only counted
    assert in_memory(b) == 3 and state.backlog_stories == 9 and state.backlog_tasks == 27
    check_counts(b)
    order = drain(b)
    assert order == list(range(1, 31))
    assert state.queued == 0 and state.open_stories == 0 and b.stats(1.0).completed_stories == 10


def test_memory_stays_near_the_window_while_a_backlog_drains(bench):
    b = bench(workers=2)
    for _ in range(50):
        b.create(2, now=0.0)
    highest = 0
    now = 1.0
    while b.service.state.queued or any(w.leases for w in b.workers):
        b.dispatch(now)
        highest = max(highest, in_memory(b))
        for worker in [w for w in b.workers if w.leases]:
            b.finish(worker, now)
        now += 0.001
    # a window, plus the whole story that crosses it, plus what the two workers run
    assert highest <= WINDOW + 2 + 2


def test_new_stories_queue_behind_the_backlog(bench):
    b = bench(workers=1)
    for _ in range(4):
        b.create(2, now=0.0)
    b.dispatch(1.0)
    first = b.finish(b.workers[0], 1.0)
    for _ in range(2):
        b.create(2, now=1.0)  # behind stories 3 and 4, which are on disk only
    assert first + drain(b, 2.0) == list(range(1, 13))


def test_restart_runs_started_stories_first_then_the_backlog_in_order(bench, tmp_path):
    b = bench(workers=1)
    for _ in range(8):
        b.create(2, now=0.0)  # tasks 1-16; the window holds stories 1 and 2
    b.dispatch(1.0)
    assert b.finish(b.workers[0], 1.0) == [1]
    b.dispatch(1.0)  # task 2 runs when the server dies: it runs again after the restart
    b.close()

    b = bench(workers=1)  # the same database, a new server
    state = b.service.state
    assert in_memory(b) <= WINDOW + 2  # story 1 (started) and a window of the rest
    assert state.in_progress == 1 and b.stats(0.0).open_stories == 8
    check_counts(b)
    assert drain(b) == list(range(2, 17))


def test_restart_with_a_story_started_far_behind_the_front(bench):
    """A lost lease and a WIP limit can leave a started story anywhere: it is read at start,
    ahead of the window, and not read again when the window reaches it."""
    b = bench(workers=1)
    for _ in range(6):
        b.create(1, now=0.0)
    b.store.db.execute_sql("UPDATE story SET started_at = 900.0 WHERE id = 5")  # as if started
    b.close()
    b = bench(workers=1)
    assert b.service.state.in_progress == 1
    assert drain(b) == [5, 1, 2, 3, 4, 6]
    check_counts(b)


def test_deleting_a_story_that_is_only_on_disk(bench):
    b = bench(workers=1)
    ids = [b.create(2, now=0.0) for _ in range(6)]
    state = b.service.state
    assert ids[4] not in state.stories  # on disk only
    reply = b.request({"op": "delete_story", "story_id": ids[4]}, now=0.5)
    assert reply.ok
    check_counts(b)
    assert b.stats(0.5).tasks_queued == 10 and b.stats(0.5).open_stories == 5
    order = drain(b)
    assert order == [1, 2, 3, 4, 5, 6, 7, 8, 11, 12]
    reply = b.request({"op": "delete_story", "story_id": ids[4]}, now=2.0)
    assert not reply.ok and reply.error.code == "not_found"


def test_deleting_backlog_stories_at_the_refill_point_and_in_memory(bench):
    b = bench(workers=1)
    ids = [b.create(2, now=0.0) for _ in range(6)]
    b.dispatch(1.0)
    b.finish(b.workers[0], 1.0)  # task 1 done: story 1 in progress
    for story_id in (ids[0], ids[2], ids[5]):  # in memory (started), next to be read, the last
        assert b.request({"op": "delete_story", "story_id": story_id}, now=1.0).ok
        check_counts(b)
    assert drain(b, 2.0) == [3, 4, 7, 8, 9, 10]
    assert b.stats(3.0).open_stories == 0 and b.stats(3.0).completed_stories == 3


def test_lost_lease_goes_back_to_the_front_across_refills(bench):
    b = bench(workers=2)
    for _ in range(6):
        b.create(2, now=0.0)
    b.dispatch(1.0)
    w0, w1 = b.workers
    assert w0.leases[0].task_ids == [1] and w1.leases[0].task_ids == [2]
    lost = b.pool.remove(w0)
    b.service.lost(w0, lost, "missed 3 heartbeats", 1001.0)
    b.workers = [w1]
    order = b.finish(w1, 1.0) + drain(b, 2.0)
    assert order == [2, 1] + list(range(3, 13))
    check_counts(b)


def test_wip_limit_holds_the_backlog_and_lets_it_start_in_order(bench):
    b = bench(workers=2, wip_limit=1)
    for _ in range(5):
        b.create(2, now=0.0)
    b.dispatch(1.0)
    assert b.stats(1.0).stories_in_progress == 1
    assert b.service.load(1.0).queued_tasks == 0  # held: no more workers wanted
    assert drain(b, 2.0) == list(range(1, 11))


def test_a_refused_commit_takes_back_the_backlog_stories_it_created(bench, monkeypatch):
    b = bench(workers=1)
    for _ in range(3):
        b.create(2, now=0.0)
    service = b.service
    from storypulse.server.store import Unavailable

    def refuse(batch, again=False):
        raise Unavailable("database is full: test")

    monkeypatch.setattr(b.store, "apply", refuse)
    service.handle_request([b"c"], protocol.encode(
        {"op": "create_story", "name": "x", "tasks": [{"estimate_ms": 5}] * 3}), 0.5, 1000.5)
    assert service.state.backlog_tasks == 5  # stories 3 and 4; 1 and 2 fill the window
    assert not service.commit(0.5, 1000.5)
    assert service.state.backlog_tasks == 2 and service.stats(0.5, 1000.5, 0).tasks_queued == 6
    monkeypatch.undo()
    assert service.commit(10.0, 1010.0, force=True)
    check_counts(b)
    assert drain(b, 11.0) == [1, 2, 3, 4, 5, 6]


def test_no_refill_reads_a_batch_that_is_not_committed(bench, monkeypatch):
    """During an outage memory may run dry; the backlog is read again only after the held batch
    commits (else a window would show its completed tasks as queued)."""
    b = bench(workers=1)
    for _ in range(4):
        b.create(2, now=0.0)
    from storypulse.server.store import Unavailable

    def refuse(batch, again=False):
        raise Unavailable("database connection lost: test")

    monkeypatch.setattr(b.store, "apply", refuse)
    windows = []
    real_window = b.store.window
    monkeypatch.setattr(b.store, "window", lambda *a: windows.append(a) or real_window(*a))
    order = []
    for now in (1.0, 1.1, 1.2, 1.3):  # tasks 1-4 run and complete; nothing commits
        b.service.dispatch(now, 1000.0 + now)
        for worker in [w for w in b.workers if w.leases]:
            ids = worker.leases[0].task_ids
            b.service.complete(worker, ids, now, 1000.0 + now)
            order += ids
        b.service.commit(now, 1000.0 + now)
    assert order == [1, 2, 3, 4] and windows == [] and not b.service.state.dispatchable
    monkeypatch.setattr(b.store, "apply", type(b.store).apply.__get__(b.store))
    assert b.service.commit(30.0, 1030.0, force=True)
    assert windows  # read only now
    assert order + drain(b, 31.0) == list(range(1, 9))
    check_counts(b)


# -- a real server -------------------------------------------------------------------------------
def test_a_real_restart_with_a_backlog_of_many_windows(tmp_path):
    db = tmp_path / "backlog.db"
    server = ServerProcess(db, workers=1, time_scale=1e6, stats_interval=0.05,
                           extra=["--queue-window", "10"])
    server.start()
    with server.client() as client:
        ids = [client.create_story(f"s{i}", [{"estimate_ms": 1000}] * 3).story_id
               for i in range(40)]
        assert client.snapshot().stats.tasks_queued + 1 == 120  # one task runs, for ages
    server.kill9()

    server.args[server.args.index("--time-scale") + 1] = "0"
    server.start()
    tap = EventTap(server)
    tap.wait_stats(lambda s: s.open_stories == 0, 60, what="every story done")
    tap.pump()
    with server.client() as client:
        stats = client.snapshot().stats
    server.stop()
    tap.close()
    assert stats.completed_stories == 40 and stats.tasks_completed == 120
    with sqlite3.connect(db) as conn:
        finished = [row[0] for row in conn.execute(
            "SELECT id FROM task WHERE status = 'done' ORDER BY finished_at, id")]
        assert sorted(finished) == list(range(1, 121))
        done = [row[0] for row in conn.execute(
            "SELECT id FROM story WHERE status = 'done' ORDER BY completed_at, id")]
    assert done == ids  # one worker: stories complete in creation order
    assert "restored: 40 open stories" in server.log()
