"""server/store.py: a round trip through SQLite, migrations, error causes, PostgreSQL statements."""

from __future__ import annotations

import pytest

from storypulse.server.store import Batch, Store, Unavailable


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


def test_failures_are_explained_with_the_cause_and_the_place():
    from storypulse.server.dberrors import classify, outage_message

    def explain(exc, where):
        return outage_message(classify(exc), where)

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


def test_postgres_rows_go_as_arrays_and_a_shared_value_goes_once():
    from storypulse.server.store.pgsql import TASK_TYPES
    from storypulse.server.store.pgsql import array as _array
    from storypulse.server.store.pgsql import insert_rows as _insert_rows
    from storypulse.server.store.schema import TASK_COLUMNS

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
