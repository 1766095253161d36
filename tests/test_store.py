"""server/store/: the interface on every backend, then what is particular to each.

The interface tests take the `spec` (or `store`) fixture, which gives a new SQLite
file and, when STORYPULSE_TEST_POSTGRES is set, the test PostgreSQL database emptied:
a new backend listed in store.BACKENDS gets a param here and passes these.
"""

from __future__ import annotations

import os

import pytest

from storypulse.server.store import (Batch, BadURL, NotStorypulse, PostgresStore, SqliteStore,
                                     Store, Unavailable, WorkflowMismatch, backend_for)
from support import empty_postgres

POSTGRES = os.environ.get("STORYPULSE_TEST_POSTGRES")
NEEDS_POSTGRES = pytest.mark.skipif(not POSTGRES, reason="set STORYPULSE_TEST_POSTGRES to a database URL")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=NEEDS_POSTGRES)])
def spec(request, tmp_path) -> str:
    """A database of each backend with none of storypulse's tables in it yet."""
    return str(tmp_path / "s.db") if request.param == "sqlite" else empty_postgres(POSTGRES)


@pytest.fixture
def store(spec):
    opened = Store.open(spec)
    yield opened
    opened.close()


def story_rows(first: int, last: int, tasks: int = 1) -> tuple[list[tuple], list[tuple]]:
    """Stories first..last, each with `tasks` queued tasks of ids tasks*id + k."""
    stories = [(s, f"s{s}", "", "open", float(s), tasks) for s in range(first, last + 1)]
    rows = [(tasks * s + k, s, "", 10 + k, "queued", 0, float(s))
            for s in range(first, last + 1) for k in range(tasks)]
    return stories, rows


# -- the interface, on every backend ---------------------------------------------------


def test_a_turn_round_trips_and_start_up_reads_it_back(spec):
    store = Store.open(spec)
    assert type(store) is backend_for(spec)
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

    store = Store.open(spec)
    start = store.load()
    assert start.next_story_id == 4 and start.next_task_id == 5  # 3 was deleted, not reused
    assert start.completed_stories == 1 and start.tasks_completed == 1
    assert start.open_count == 1 and start.queued_count == 2 and start.queued_ms == 5
    assert start.open_stories == {1: (2, 1.0, 9.0, None)}  # started_at is kept
    assert start.recent_done == []  # only asked for with done_since
    assert store.load(done_since=11.0).recent_done == [(2, 2.0, 9.0, 11.0, None)]
    assert store.load(done_since=11.5).recent_done == []
    assert start.queued_tasks == [(1, 1, 5, 0, 0, 0, None), (2, 1, 0, 0, 0, 0, None)]
    assert start.queued_by_stage == [(2, 5)]  # one stage: all of it
    assert store.story(2)[3] == "done" and store.story(3) is None
    assert store.tasks_of(2) == [(3, "x", 7, "done", 1, 2.0, 10.0, 11.0, None, 0, None)]
    assert [r[0] for r in store.stories(None, 0, 10)] == [2, 1]
    assert [r[0] for r in store.stories("open", 0, 10)] == [1]
    assert store.integrity_ok()
    store.close()


def test_the_window_reads_whole_stories_in_id_order(store):
    stories, tasks = story_rows(1, 6, tasks=3)
    store.apply(Batch(stories=stories, tasks=tasks))
    store.apply(Batch(completions=[(1, 1.0, 2.0, [3, 4, 5])], done_stories=[(2.0, [1])],
                      deleted_stories=[4]))
    rows, ended = store.window(0, 4)  # 4 tasks asked: the second story comes whole
    assert [r[0] for r in rows] == [6, 7, 8, 9, 10, 11] and not ended
    assert rows[0] == (6, 2, 10, 0, 3, 2.0, None, 0, 0)
    rows, ended = store.window(11, 4)  # story 4 is gone
    assert [r[1] for r in rows] == [5, 5, 5, 6, 6, 6] and not ended
    rows, ended = store.window(20, 4)
    assert rows == [] and ended
    assert store.load().backlog_after == 5  # before the first task of the oldest open story


def test_reads_page_newest_first_and_count_a_storys_queued_work(store):
    stories, tasks = story_rows(1, 5, tasks=2)
    store.apply(Batch(stories=stories, tasks=tasks))
    store.apply(Batch(completions=[(1, 1.0, 2.0, [4, 5])], done_stories=[(2.0, [2])]))
    assert [r[0] for r in store.stories(None, 1, 2)] == [4, 3]
    assert [r[0] for r in store.stories("done", 0, 10)] == [2]
    assert store.open_story_ids() == [1, 3, 4, 5]
    assert store.queued_of(3) == [(0, 2, 21)] and store.queued_of(2) == []


def test_a_commit_retried_after_an_unseen_success_stores_each_row_once(store):
    """A refusal can hide a commit that happened (the connection dropped before the answer)."""
    batch = Batch(stories=[(1, "a", "", "open", 1.0, 1)], tasks=[(1, 1, "", 5, "queued", 0, 1.0)])
    store.apply(batch)
    batch.completions.append((1, 2.0, 3.0, [1]))
    batch.done_stories.append((3.0, [1]))
    with pytest.raises(Unavailable):
        store.apply(batch)  # the same inserts again: refused as it should be
    store.apply(batch, again=True)
    assert store.story(1)[3] == "done" and store.tasks_of(1)[0][3] == "done"
    assert store.db.execute_sql("SELECT COUNT(*) FROM task").fetchone()[0] == 1
    start = store.load()
    assert (start.completed_stories, start.tasks_completed, start.queued_count) == (1, 1, 0)


def test_a_refused_write_says_where_stores_none_of_its_rows_and_the_next_goes_in(store):
    store.apply(Batch(stories=[(1, "a", "", "open", 1.0, 1)], tasks=[(1, 1, "", 5, "queued", 0, 1.0)]))
    stories, tasks = story_rows(2, 3)
    with pytest.raises(Unavailable) as refused:
        store.apply(Batch(stories=stories + [(1, "again", "", "open", 1.0, 1)], tasks=tasks))
    assert refused.value.cause.startswith(f"database error on {store.where}: ")
    assert store.story(2) is None  # the whole turn or nothing
    store.apply(Batch(stories=stories, tasks=tasks))  # the connection is usable again
    assert store.open_story_ids() == [1, 2, 3]


@pytest.mark.parametrize("level", ["power-loss", "crash"])
def test_each_durability_level_is_in_force_as_the_backend_says(spec, level):
    store = Store.open(spec, level)
    try:
        assert store.durability_in_force() == type(store).durability_setting(level)
    finally:
        store.close()


def test_the_path_or_url_picks_the_backend():
    assert backend_for(None) is SqliteStore and backend_for("/var/sp.db") is SqliteStore
    assert backend_for("sqlite:///sp.db") is SqliteStore
    assert backend_for("postgresql://u@h/db") is PostgresStore
    assert backend_for("POSTGRES://u@h/db") is PostgresStore
    with pytest.raises(BadURL, match="storypulse runs on SQLite or PostgreSQL"):
        backend_for("mysql://u@h/db")
    with pytest.raises(BadURL, match="has no database name"):
        Store.open("postgresql://u@localhost")


# -- SQLite ----------------------------------------------------------------------------


def test_sqlite_pragmas_come_with_every_connection(tmp_path):
    store = Store.open(str(tmp_path / "s.db"))
    assert store.db.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1
    assert store.db.execute_sql("PRAGMA synchronous").fetchone()[0] == 2  # full: the default durability, power-loss
    store.close()


def test_store_accepts_a_sqlite_url(tmp_path):
    store = Store.open(f"sqlite:///{tmp_path / 'u.db'}")
    assert store.db.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.load().next_story_id == 1
    store.close()


def test_a_sqlite_file_may_hold_only_our_tables(tmp_path):
    import sqlite3

    with sqlite3.connect(tmp_path / "other.db") as con:
        con.execute("CREATE TABLE invoice (id INTEGER PRIMARY KEY)")
    with pytest.raises(NotStorypulse, match="other tables: invoice"):
        Store.open(str(tmp_path / "other.db"))


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
    assert store.story(1) == (1, "old", "", "done", 1.0, 4.0, 1, None, None, 0)
    assert store.load(done_since=0.0).recent_done == [(1, 1.0, None, 4.0, None)]
    store.close()
    assert Store.open(str(path)).story(1)[7] is None  # opening again changes nothing


# -- PostgreSQL --------------------------------------------------------------------------


def test_postgres_rows_go_as_arrays_and_a_shared_value_goes_once():
    from storypulse.server.store.pgsql import TASK_TYPES, array, insert_rows
    from storypulse.server.store.schema import TASK_COLUMNS

    rows = [(1, 7, "", 0, "queued", 0, 5.5), (2, 7, 'a"b\\c', 3, "queued", 0, 5.5)]
    sql, params = insert_rows("task", TASK_COLUMNS, TASK_TYPES, rows)
    assert sql == ("INSERT INTO task (id, story_id, name, estimate_ms, status, attempts, created_at) "
                   "SELECT u.id, %s::bigint, u.name, u.estimate_ms, %s::text, %s::int, %s::float8 "
                   "FROM unnest(%s::bigint[], %s::text[], %s::int[]) AS u(id, name, estimate_ms)")
    assert params == [7, "queued", 0, 5.5, "{1,2}", '{"","a\\"b\\\\c"}', "{0,3}"]
    one, _ = insert_rows("task", TASK_COLUMNS, TASK_TYPES, rows[:1])  # the id is always an array
    assert one.endswith("FROM unnest(%s::bigint[]) AS u(id)")
    assert array([0.1, 1e300, None]) == "{0.1,1e+300,NULL}"
    assert array(["x", None], "text") == '{"x",NULL}'


@NEEDS_POSTGRES
def test_a_postgresql_database_may_hold_others_tables_but_not_a_story_table_of_its_own():
    from playhouse.db_url import connect

    other = connect(empty_postgres(POSTGRES))
    other.execute_sql("CREATE TABLE IF NOT EXISTS sp_test_invoice (id int)")
    try:
        Store.open(POSTGRES).close()
        other.execute_sql("DROP TABLE story CASCADE")
        other.execute_sql("CREATE TABLE story (title text)")
        with pytest.raises(NotStorypulse, match="table story has no column id"):
            Store.open(POSTGRES)
    finally:
        other.execute_sql("DROP TABLE IF EXISTS sp_test_invoice, story")
        other.close()
        empty_postgres(POSTGRES)


# -- stages and blocks, on every backend -------------------------------------------------

STAGES = ("analysis", "build", "test")


def stage_tally(store) -> dict[str, tuple[int, int]]:
    """The stages' tally as kept, and as counted from the rows: they must agree."""
    kept = {stage: (int(n), int(ms)) for stage, n, ms in store.db.execute_sql(
        "SELECT stage, tasks_queued, queued_ms FROM stage_tally").fetchall() if n or ms}
    counted = {stage: (int(n), int(ms)) for stage, n, ms in store.db.execute_sql(
        "SELECT f.stage, COUNT(*), SUM(t.estimate_ms) FROM task t JOIN task_flow f "
        "ON f.task_id = t.id WHERE t.status = 'queued' AND f.stage IS NOT NULL "
        "GROUP BY f.stage").fetchall()}
    assert kept == counted
    return kept


def staged_story(story_id: int, first_task: int, stages: tuple = STAGES,
                 blocks: tuple[int, ...] = ()) -> Batch:
    """A story with one task in each of `stages` (estimate 10 * position + 1), blocks in order,
    as the service writes it: plain rows, and flow rows for its stages and blocks."""
    blocks = blocks + (0,) * (len(stages) - len(blocks))
    ids = range(first_task, first_task + len(stages))
    return Batch(
        stories=[(story_id, f"s{story_id}", "", "open", float(story_id), len(stages))],
        tasks=[(task_id, story_id, "", 10 * i + 1, "queued", 0, float(story_id))
               for i, task_id in enumerate(ids)],
        task_flows=[(task_id, stage, block) for task_id, stage, block in zip(ids, stages, blocks)
                    if stage is not None or block],
        story_flows=[(story_id, sum(blocks))] if any(blocks) else [])


def together(*batches: Batch) -> Batch:
    joined = Batch()
    for batch in batches:
        for name in ("stories", "tasks", "task_flows", "story_flows"):
            getattr(joined, name).extend(getattr(batch, name))
    return joined


def test_stages_blocks_and_work_time_round_trip_and_the_stages_tally_keeps_step(spec):
    store = Store.open(spec)
    store.use_workflow(STAGES)
    store.apply(together(staged_story(1, 1, blocks=(0, 500)), staged_story(2, 4),
                         staged_story(3, 7, stages=("build", "test"))))
    assert stage_tally(store) == {"analysis": (2, 2), "build": (3, 23), "test": (3, 53)}
    # Story 1 starts, is done with analysis, starts build, whose task blocks; story 2 is done.
    store.apply(Batch(started_stories=[(5.0, [1, 2])], stage_entries=[("analysis", [1, 2])],
                      completions=[(1, 5.0, 6.0, [1, 4, 5, 6])]))
    store.apply(Batch(stage_entries=[("build", [1])], blocks=[(2, 99.5)],
                      done_stories=[(6.0, [2])], work_times=[(2, 0.75)]))
    assert stage_tally(store) == {"build": (2, 12), "test": (2, 32)}
    store.apply(Batch(deleted_stories=[3]))
    assert stage_tally(store) == {"build": (1, 11), "test": (1, 21)}
    flows = store.db.execute_sql("SELECT COUNT(*) FROM task_flow WHERE task_id >= 7").fetchone()[0]
    assert flows == 0  # deleted with its tasks
    store.close()

    store = Store.open(spec)
    store.use_workflow(STAGES)
    start = store.load(done_since=0.0)
    assert start.open_stories == {1: (3, 1.0, 5.0, 1)}  # counts in build
    assert start.queued_tasks == [(2, 1, 11, 0, 1, 500, 99.5), (3, 1, 21, 0, 2, 0, None)]
    assert start.queued_by_stage == [(0, 0), (1, 11), (1, 21)]
    assert start.recent_done == [(2, 2.0, 5.0, 6.0, 0.75)]
    assert store.story(1)[8:] == ("build", 500) and store.story(2)[8:] == ("analysis", 0)
    assert [t[8:] for t in store.tasks_of(1)] == [("analysis", 0, None), ("build", 500, 99.5),
                                                  ("test", 0, None)]
    rows, ended = store.window(0, 10)
    assert ended and [r[7:] for r in rows] == [(1, 500), (2, 0)]  # stage index, block
    assert store.queued_of(1) == [(1, 1, 11), (2, 1, 21)]
    assert [r[8:] for r in store.stories("open", 0, 10)] == [("build", 500)]
    store.close()


def test_a_retried_staged_batch_moves_the_stages_tally_once(store):
    store.use_workflow(STAGES)
    batch = staged_story(1, 1)
    store.apply(batch)
    batch.completions.append((1, 2.0, 3.0, [1]))
    store.apply(batch, again=True)  # the inserts were stored by a commit thought lost
    store.apply(batch, again=True)  # and the completion too
    assert stage_tally(store) == {"build": (1, 11), "test": (1, 21)}
    assert store.load().queued_by_stage == [(0, 0), (1, 11), (1, 21)]


def test_another_workflow_is_refused_naming_the_stages_and_nothing_changes(spec):
    store = Store.open(spec)
    store.use_workflow(STAGES)
    store.apply(staged_story(1, 1))
    store.apply(Batch(completions=[(1, 2.0, 3.0, [1])]))  # nothing left in analysis
    store.close()

    store = Store.open(spec)
    with pytest.raises(WorkflowMismatch) as refused:
        store.use_workflow(("analysis", "review"))
    message = str(refused.value)
    assert "'build' (1 tasks), 'test' (1 tasks)" in message
    assert "its stages are analysis, review" in message and store.where in message
    with pytest.raises(WorkflowMismatch, match="its stages are work"):
        store.use_workflow(("work",))  # one stage, another name
    assert stage_tally(store) == {"build": (1, 11), "test": (1, 21)}  # nothing changed
    # Reordered, and without the stage nothing is left in: fine (a task's stage is its name).
    store.use_workflow(("test", "build"))
    start = store.load()
    assert start.queued_by_stage == [(1, 21), (1, 11)]
    rows, _ = store.window(0, 10)
    assert [r[7] for r in rows] == [1, 0]  # build is second now, test first
    store.close()


def test_one_stage_writes_no_names_and_takes_back_its_own_tasks_once(spec):
    """A server with one stage names no stage (null: the first): its rows are plain ones.
    Started where a server with stages left tasks of its one stage's name, it writes those
    back as null; a later server with stages has them in its first stage."""
    store = Store.open(spec)
    store.use_workflow(("build", "test"))
    store.apply(staged_story(1, 1, stages=("build", "build")))
    store.close()

    store = Store.open(spec)
    store.use_workflow(("build",))
    assert stage_tally(store) == {}
    assert [t[8] for t in store.tasks_of(1)] == [None, None]
    store.apply(staged_story(2, 3, stages=(None,), blocks=(40,)))  # a block: a flow row
    store.apply(Batch(stories=[(3, "plain", "", "open", 3.0, 1)],
                      tasks=[(4, 3, "", 7, "queued", 0, 3.0)]))
    assert store.load().queued_by_stage == [(4, 20)]
    assert store.tasks_of(2)[0][8:] == (None, 40, None) and store.tasks_of(3)[0][8:] == (None, 0, None)
    store.close()

    store = Store.open(spec)
    store.use_workflow(("analysis", "build"))  # null tasks: the first stage
    start = store.load()
    assert start.queued_by_stage == [(4, 20), (0, 0)]
    assert [r[7:] for r in store.window(0, 10)[0]] == [(0, 0), (0, 0), (0, 40), (0, 0)]
    store.apply(Batch(completions=[(1, 2.0, 3.0, [1, 3])]))  # null tasks move no stage's tally
    assert stage_tally(store) == {} and store.load().queued_by_stage == [(2, 18), (0, 0)]
    store.close()


def test_without_flow_rows_the_plain_reads_are_the_same_rows(store):
    """A server that never had a stage or a block: reads leave the flow tables out."""
    stories, tasks = story_rows(1, 3, tasks=2)
    store.apply(Batch(stories=stories, tasks=tasks))
    assert not store.has_flows
    assert [r[7:] for r in store.window(0, 10)[0]] == [(0, 0)] * 6
    store.apply(Batch(deleted_stories=[2]))
    assert store.open_story_ids() == [1, 3]
    store.apply(staged_story(4, 20, stages=(None,), blocks=(9,)))
    assert store.has_flows and store.window(0, 10)[0][-1][7:] == (0, 9)
