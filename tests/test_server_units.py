"""The server's pure parts, driven directly: rate windows, cadence, config, leases, state, store."""

from __future__ import annotations

import pytest

from storypulse.server.config import DEFAULTS, ConfigError, ServerConfig
from storypulse.server.state import WorkState
from storypulse.server.stats import History, MeanWindow, RateWindow, Ticker
from storypulse import protocol
from storypulse.server.store import Batch, Store, Unavailable

# -- rate windows ----------------------------------------------------------------


def test_rate_window_counts_over_the_sliding_window():
    w = RateWindow(5.0, now=1000.0)
    for i in range(50):  # 10 events a second for 5 s
        w.add(1000.0 + i * 0.1)
    assert w.rate(1005.0) == pytest.approx(10.0, rel=0.05)
    # no more events: the rate falls as the window slides past them
    assert w.rate(1007.5) == pytest.approx(5.0, rel=0.1)
    assert w.rate(1010.1) == 0.0


def test_rate_window_at_start_uses_the_time_elapsed():
    w = RateWindow(5.0, now=0.0)
    w.add(0.5, 10)
    assert w.rate(1.0) == pytest.approx(10.0)  # 10 in the first second, not 10/5
    assert w.rate(0.0) == pytest.approx(10 / 0.1)  # never divides by less than a bucket


def test_rate_window_jumps_over_a_long_gap():
    w = RateWindow(1.0, now=0.0, buckets=10)
    w.add(0.05, 7)
    assert w.rate(100.0) == 0.0
    w.add(100.0, 3)
    assert w.rate(100.5) == pytest.approx(3.0)


def test_mean_window():
    m = MeanWindow(2.0, now=0.0)
    assert m.mean(0.0, default=-1) == -1
    m.add(0.1, 0.2, count=2)  # two samples summing to 0.2 s
    m.add(0.2, 0.4)
    assert m.mean(0.5) == pytest.approx(0.2)
    assert m.mean(5.0, default=0.0) == 0.0


def test_history_keeps_one_entry_a_second_up_to_capacity():
    h: History[int] = History(capacity=3)
    kept = [h.offer(t, i) for i, t in enumerate([0.0, 0.2, 0.9, 1.0, 1.5, 2.1, 3.0, 4.7])]
    assert kept == [True, False, False, True, False, True, True, True]
    assert h.last(10) == [5, 6, 7]
    assert h.last(2) == [6, 7]
    assert h.last(0) == []


def test_ticker_skips_missed_ticks_instead_of_bursting():
    t = Ticker(0.25, now=0.0)
    assert not t.due(0.1)
    assert t.due(0.25)
    assert not t.due(0.3)
    assert t.due(2.0)  # stalled for 1.75 s: one tick, not seven
    assert not t.due(2.05)
    assert t.next_at == pytest.approx(2.25)


# -- config ---------------------------------------------------------------------


def test_config_defaults_come_from_the_table():
    config = ServerConfig.from_options({})
    assert config.as_dict() == DEFAULTS
    assert config.heartbeat_timeout == pytest.approx(3 * DEFAULTS["heartbeat"])
    assert ServerConfig.from_options({"port": None}).port == DEFAULTS["port"]


@pytest.mark.parametrize("options, names", [
    ({"min_workers": 5, "max_workers": 2}, "--min-workers 5 is above --max-workers 2"),
    ({"port": 65534}, "--port"),
    ({"port": 0}, "--port"),
    ({"max_workers": 0}, "--max-workers"),
    ({"min_workers": -1}, "--min-workers"),
    ({"time_scale": -0.5}, "--time-scale"),
    ({"stats_interval": 0}, "--stats-interval"),
    ({"rate_window": 0.1, "stats_interval": 0.5}, "--rate-window"),
    ({"heartbeat": -1}, "--heartbeat"),
    ({"shutdown_grace": -1}, "--shutdown-grace"),
    ({"queue_max": 3}, "--queue-max"),
    ({"log_level": "loud"}, "--log-level"),
    ({"bind": ""}, "--bind"),
    ({"flow_window": 0.0}, "--flow-window 0.0: must be > 0 and <= 86400 seconds"),
    ({"flow_window": 86_401.0}, "--flow-window"),
    ({"wip_limit": -1}, "--wip-limit -1: must be within 0-100000"),
    ({"wip_limit": 100_001}, "--wip-limit"),
    ({"colour": "red"}, "colour"),
])
def test_config_validation_names_the_option(options, names):
    with pytest.raises(ConfigError) as err:
        ServerConfig.from_options(options)
    assert names in str(err.value)


# -- leases and the work state --------------------------------------------------


def state_with(*stories: list[int]) -> WorkState:
    state = WorkState()
    next_task = 1
    for story_id, estimates in enumerate(stories, start=1):
        state.add_story(story_id, next_task, estimates)
        next_task += len(estimates)
    return state


def test_tiny_tasks_go_together_and_real_ones_alone():
    state = state_with([0] * 10, [2000], [0, 0])
    lease = state.take_lease(time_scale=1.0, max_tasks=4, max_s=0.005)
    assert lease == [(1, 0), (2, 0), (3, 0), (4, 0)]  # capped by max_tasks
    assert state.take_lease(1.0, 100, 0.005) == [(i, 0) for i in range(5, 11)]  # stops at the big one
    assert state.take_lease(1.0, 100, 0.005) == [(11, 2000)]  # alone
    assert state.take_lease(1.0, 100, 0.005) == [(12, 0), (13, 0)]
    assert state.take_lease(1.0, 100, 0.005) == []
    assert state.running == 13 and state.queued == 0 and state.queued_ms == 0


def test_lease_respects_the_scaled_work_limit():
    state = state_with([2, 2, 2, 2])
    assert [t for t, _ in state.take_lease(1.0, 100, 0.005)] == [1, 2]  # 4 ms; a third would be 6
    state = state_with([200, 200, 200])
    # at time scale 0.01, 200 ms is 2 ms of real time: two fit in 5 ms
    assert [t for t, _ in state.take_lease(0.01, 100, 0.005)] == [1, 2]
    state = state_with([10**6, 0])
    assert state.take_lease(0.0, 100, 0.005) == [(1, 10**6), (2, 0)]  # time scale 0: all tiny


def test_lost_lease_goes_back_to_the_front_in_order():
    state = state_with([100, 100, 100], [100])
    first = state.take_lease(1.0, 10, 0.005)
    second = state.take_lease(1.0, 10, 0.005)
    assert (first, second) == ([(1, 100)], [(2, 100)])
    assert state.requeue_front([1]) == 1
    assert state.live[1].attempts == 1 and not state.live[1].running
    assert [t for t, _ in state.take_lease(1.0, 10, 0.005)] == [1]
    assert state.live[1].attempts == 2
    assert [t for t, _ in state.take_lease(1.0, 10, 0.005)] == [3]


def test_completion_is_idempotent_and_finishes_the_story_once():
    state = state_with([0, 0], [0])
    lease = state.take_lease(1.0, 10, 0.005)
    assert [t for t, _ in lease] == [1, 2, 3]
    task, done = state.complete(1)
    assert task is not None and not done
    assert state.complete(1) == (None, None)  # twice: ignored
    task, done = state.complete(2)
    assert done and 1 not in state.stories
    assert state.complete(2) == (None, None)
    assert state.complete(99) == (None, None)  # unknown
    assert state.running == 1


def test_delete_drops_queued_and_ignores_running():
    state = state_with([100, 100, 100])
    state.take_lease(1.0, 10, 0.005)  # task 1 runs
    story = state.delete_story(1)
    assert story is not None and story.remaining == 3
    assert state.queued == 0 and state.running == 0 and state.queued_ms == 0
    assert state.take_lease(1.0, 10, 0.005) == []  # lazy removal skips 2 and 3
    assert state.complete(1) == (None, None)  # the running task's later Done
    assert state.delete_story(1) is None


def test_requeued_task_completed_by_its_first_worker():
    state = state_with([100])
    state.take_lease(1.0, 10, 0.005)
    state.requeue_front([1])
    task, done = state.complete(1)  # a late Done from a worker we gave up on
    assert done and state.queued == 0 and state.queued_ms == 0
    assert state.take_lease(1.0, 10, 0.005) == []


# -- the store ------------------------------------------------------------------


def test_store_round_trip_and_restart_load(tmp_path):
    store = Store.open(str(tmp_path / "s.db"))
    assert store.db.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1
    assert store.db.execute_sql("PRAGMA synchronous").fetchone()[0] == 2  # full: the default durability, power-loss
    batch = Batch()
    batch.stories += [(1, "a", "", "open", 1.0, 2), (2, "b", "d", "open", 2.0, 1),
                      (3, "c", "", "open", 3.0, 1)]
    batch.tasks += [(1, 1, "", 5, "queued", 0, 1.0), (2, 1, "", 0, "queued", 0, 1.0),
                    (3, 2, "x", 7, "queued", 0, 2.0), (4, 3, "", 1, "queued", 0, 3.0)]
    store.apply(batch)
    batch = Batch(completions=[(1, 10.0, 11.0, [3])], done_stories=[(11.0, [2])],
                  started_stories=[(9.0, [1, 2])],
                  deleted_stories=[3], id_floors={"story_id": 3, "task_id": 4})
    store.apply(batch)
    store.close()

    store = Store.open(str(tmp_path / "s.db"))
    start = store.load()
    assert start.next_story_id == 4 and start.next_task_id == 5  # 3 was deleted, not reused
    assert start.completed_stories == 1 and start.tasks_completed == 1
    assert start.open_stories == {1: (2, 1.0, 9.0)}  # started_at is kept
    assert start.recent_done == []  # only asked for with done_since
    assert store.load(done_since=11.0).recent_done == [(2, 2.0, 9.0, 11.0)]
    assert store.load(done_since=11.5).recent_done == []
    assert start.queued_tasks == [(1, 1, 5, 0), (2, 1, 0, 0)]
    assert store.story(2)[3] == "done" and store.story(3) is None
    assert store.tasks_of(2) == [(3, "x", 7, "done", 1, 2.0, 10.0, 11.0)]
    assert [r[0] for r in store.stories(None, 0, 10)] == [2, 1]
    assert [r[0] for r in store.stories("open", 0, 10)] == [1]
    assert store.integrity_ok()
    store.close()


def test_a_database_of_an_earlier_version_gets_started_at(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    con = sqlite3.connect(path)  # the story table as earlier versions made it
    con.execute("CREATE TABLE story (id INTEGER PRIMARY KEY, name VARCHAR(200), description TEXT, "
                "status VARCHAR(8), created_at REAL, completed_at REAL, tasks_total INTEGER)")
    con.execute("INSERT INTO story VALUES (1, 'old', '', 'done', 1.0, 4.0, 1)")
    con.commit()
    con.close()
    store = Store.open(str(path))
    assert store.story(1) == (1, "old", "", "done", 1.0, 4.0, 1, None)
    assert store.load(done_since=0.0).recent_done == [(1, 1.0, None, 4.0)]
    store.close()
    assert Store.open(str(path)).story(1)[-1] is None  # opening again changes nothing


def test_store_accepts_a_sqlite_url(tmp_path):
    store = Store.open(f"sqlite:///{tmp_path / 'u.db'}")
    assert store.db.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.load().next_story_id == 1
    store.close()


# -- the pool's lease bookkeeping ---------------------------------------------------


def test_pool_gives_the_next_lease_just_in_time():
    from storypulse.server.pool import PREFETCH_S, Pool, Worker

    pool = Pool("tcp://127.0.0.1:1", heartbeat=0.5, min_workers=1, max_workers=1, quiet_window=5)
    worker = Worker(b"w1", None, state="idle")
    pool.workers[b"w1"] = worker
    pool.idle[b"w1"] = worker
    first = pool.give_lease(worker, [1], work_s=0.05, now=10.0, wall=1000.0)
    assert worker.state == "busy" and not pool.idle and pool.busy == 1
    assert (first.started, first.ends) == (10.0, pytest.approx(10.05))
    assert pool.prefetch_candidates(10.0) == []
    assert pool.next_prefetch_at() == pytest.approx(10.05 - PREFETCH_S)
    assert pool.prefetch_candidates(10.04) == [worker]
    second = pool.give_lease(worker, [2], work_s=0.05, now=10.04, wall=1000.04)
    assert second.started == pytest.approx(10.05) and second.wall == pytest.approx(1000.05)
    assert pool.prefetch_candidates(10.049) == []  # two at most
    # the first reports late: the second starts now
    assert pool.finish_lease(worker, [1], now=10.06, wall=1000.06) is first
    assert worker.state == "busy" and second.started == pytest.approx(10.06)
    assert second.wall == pytest.approx(1000.06)
    assert pool.finish_lease(worker, [99], now=10.07, wall=1000.07) is None  # not one of its leases
    assert pool.finish_lease(worker, [2], now=10.11, wall=1000.11) is second
    assert worker.state == "idle" and pool.idle == {b"w1": worker}
    pool.give_lease(worker, [3, 4], 0.0, 11.0, 1001.0)
    pool.give_lease(worker, [5], 0.0, 11.0, 1001.0)
    assert pool.remove(worker) == [3, 4, 5]  # a lost worker's tasks, in order


def _service_on(path):
    from storypulse.server.pool import Pool
    from storypulse.server.service import Service

    store = Store.open(str(path))
    pool = Pool("tcp://127.0.0.1:1", heartbeat=0.5, min_workers=1, max_workers=1, quiet_window=5)
    service = Service(ServerConfig.from_options({}), store, pool, now=0.0,
                      flush=lambda: service.commit(0.0),  # as the loop does, without sockets
                      published_seq=lambda: 0)
    return store, service


def _replies(service) -> list[protocol.Reply]:
    return [protocol.decode_reply(payload) for _, payload in service.take_replies()]


CREATE = b'{"op": "create_story", "id": 1, "name": "a", "tasks": [{"estimate_ms": 1}]}'


def test_a_refused_commit_refuses_its_creates_holds_its_deletes_and_resumes(tmp_path):
    import sqlite3

    path = tmp_path / "c.db"
    store, service = _service_on(path)
    store.db.execute_sql("PRAGMA busy_timeout = 20")
    service.handle_request([b"c"], CREATE, 0.0, 1.0)
    assert service.commit(0.0) is True
    assert _replies(service)[0].result["story_id"] == 1
    assert service.take_events() == [("created", 1)]  # published, as the loop does after a commit

    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    service.handle_request([b"c"], CREATE.replace(b'"id": 1', b'"id": 2'), 1.0, 1.0)
    service.handle_request([b"c"], b'{"op": "delete_story", "id": 3, "story_id": 1}', 1.0, 1.0)
    assert service.commit(1.0) is False
    assert service.outage is not None and "locked" in service.outage.cause
    assert str(path) in service.outage.cause
    (create,) = _replies(service)  # the new story: a definite no, at once
    assert (create.id, create.ok, create.error.code) == (2, False, protocol.UNAVAILABLE)
    assert "locked" in create.error.message and str(path) in create.error.message
    assert len(service.held) == 1  # the delete's reply waits for its commit
    assert 2 not in service.state.stories and service.take_events() == [("deleted", 1)]

    service.handle_request([b"c"], b'{"op": "ping", "id": 4}', 1.0, 1.0)
    service.handle_request([b"c"], CREATE.replace(b'"id": 1', b'"id": 5'), 1.0, 1.0)
    service.handle_request([b"c"], b'{"op": "delete_story", "id": 6, "story_id": 1}', 1.0, 1.0)
    ping, create, delete = _replies(service)
    assert ping.ok and ping.id == 4
    assert (create.ok, create.error.code) == (False, protocol.UNAVAILABLE)
    assert (delete.ok, delete.error.code) == (False, protocol.UNAVAILABLE)
    stats = service.stats(1.0, 1.0, 0)
    assert stats.database == "unavailable" and "locked" in stats.database_error
    assert stats.open_stories == 0

    assert service.commit(1.01) is False  # not due yet: no try, no wait on the lock
    assert service.outage.failures == 1
    other.execute("ROLLBACK")
    other.close()
    assert service.commit(service.outage.retry_at) is True
    (held,) = _replies(service)
    assert held.ok and held.id == 3
    assert service.outage is None and service.stats(2.0, 2.0, 0).database == "ok"
    assert store.story(1) is None and store.story(2) is None
    service.handle_request([b"c"], CREATE, 2.0, 2.0)
    assert service.commit(2.0) is True
    assert _replies(service)[0].result["story_id"] == 3  # ids are never reused
    store.close()


def test_a_commit_retried_after_an_unseen_success_stores_each_row_once(tmp_path):
    """A refusal can hide a commit that happened (the connection dropped before the answer)."""
    store = Store.open(str(tmp_path / "twice.db"))
    batch = Batch(stories=[(1, "a", "", "open", 1.0, 1)], tasks=[(1, 1, "", 5, "queued", 0, 1.0)])
    store.apply(batch)
    batch.completions.append((1, 2.0, 3.0, [1]))
    batch.done_stories.append((3.0, [1]))
    with pytest.raises(Unavailable):
        store.apply(batch)  # the same inserts again: refused as it should be
    store.apply(batch, again=True)
    assert store.story(1)[3] == "done" and store.tasks_of(1)[0][3] == "done"
    assert store.db.execute_sql("SELECT COUNT(*) FROM task").fetchone()[0] == 1
    store.close()


def test_failures_are_explained_with_the_cause_and_the_place():
    from storypulse.server.store import explain

    full = sqlite3_error("database or disk is full")
    try:
        try:
            raise full
        except Exception:
            raise RuntimeError("cannot rollback - no transaction is active")
    except RuntimeError as masked:
        assert explain(masked, "/data/s.db") == "database is full: /data/s.db"
    assert explain(sqlite3_error("attempt to write a readonly database"), "/x.db") == \
        "database is read-only: /x.db"
    lost = explain(OSError("server closed the connection unexpectedly\n\tThis probably..."),
                   "postgresql://u@h:5432/d")
    assert lost == ("database connection lost: postgresql://u@h:5432/d "
                    "(server closed the connection unexpectedly)")
    assert explain(ValueError("odd"), "/x.db") == "database error on /x.db: ValueError: odd"


def sqlite3_error(message: str) -> Exception:
    import sqlite3

    return sqlite3.OperationalError(message)


def test_outage_backoff_grows_to_a_ceiling():
    from storypulse.server.outage import FIRST_RETRY_S, MAX_RETRY_S, Outage

    outage = Outage("database is full: x", now=100.0)
    assert not outage.due(100.0) and outage.due(100.0 + FIRST_RETRY_S)
    delays = []
    for _ in range(10):
        now = outage.retry_at
        outage.refused_again("database is full: x", now)
        delays.append(outage.retry_at - now)
    assert delays[0] == pytest.approx(2 * FIRST_RETRY_S)
    assert delays == sorted(delays) and delays[-1] == MAX_RETRY_S
    assert outage.lasted(outage.retry_at) > sum(delays[:-1])


def test_postgres_rows_go_as_arrays_and_a_shared_value_goes_once():
    from storypulse.server.store import TASK_COLUMNS, TASK_TYPES, _array, _insert_rows

    rows = [(1, 7, "", 0, "queued", 0, 5.5), (2, 7, 'a"b\\c', 3, "queued", 0, 5.5)]
    sql, params = _insert_rows("task", TASK_COLUMNS, TASK_TYPES, rows)
    assert sql == ("INSERT INTO task (id, story_id, name, estimate_ms, status, attempts, created_at) "
                   "SELECT u.id, %s::bigint, u.name, u.estimate_ms, %s::text, %s::int, %s::float8 "
                   "FROM unnest(%s::bigint[], %s::text[], %s::int[]) AS u(id, name, estimate_ms)")
    assert params == [7, "queued", 0, 5.5, "{1,2}", '{"","a\\"b\\\\c"}', "{0,3}"]
    one, _ = _insert_rows("task", TASK_COLUMNS, TASK_TYPES, rows[:1])  # the id is always an array
    assert one.endswith("FROM unnest(%s::bigint[]) AS u(id)")
    assert _array([0.1, 1e300, None]) == "{0.1,1e+300,NULL}"
    assert _array(["x", None], "text") == '{"x",NULL}'
