"""The same server on PostgreSQL, when a test database is given.

    STORYPULSE_TEST_POSTGRES=postgresql://user@127.0.0.1:5432/empty_db pytest tests/test_server_postgres.py

The database must be empty (or hold only this test's tables): the test drops them first.
"""

from __future__ import annotations

import os

import pytest

from support import EventTap, empty_postgres, wait_for
from test_backlog import counted, tally

URL = os.environ.get("STORYPULSE_TEST_POSTGRES")
pytestmark = pytest.mark.skipif(not URL, reason="set STORYPULSE_TEST_POSTGRES to a database URL")


def test_stories_complete_and_survive_kill9_on_postgres(server_factory):
    server = server_factory(workers=2, time_scale=0.01).use_db(empty_postgres(URL)).start()
    with server.client() as client:
        ids = [client.create_story(f"pg{i}", [{"estimate_ms": 500}] * 3).story_id
               for i in range(40)]
        wait_for(lambda: client.list_stories(status="done").total >= 5, 20, what="some done")
    server.kill9()
    server.start()
    tap = EventTap(server)
    final = tap.wait_stats(lambda s: s.completed_stories == len(ids) and s.open_stories == 0, 30,
                           what="every story done after the restart")
    assert final.tasks_completed == 3 * len(ids)
    with server.client() as client:
        client.delete_story(ids[0])
        assert client.list_stories().total == len(ids) - 1
        assert client.get_story(ids[1]).tasks_done == 3
    tap.close()
    assert server.stop() == 0


def test_started_at_survives_kill9_and_an_old_table_gets_it_on_postgres(server_factory):
    from storypulse.server.store import Store

    store = Store.open(empty_postgres(URL))
    store.db.execute_sql("ALTER TABLE story DROP COLUMN started_at")  # as an earlier version made it
    store.close()
    server = server_factory(workers=2, time_scale=1.0, extra=["--wip-limit", "1"]).use_db(URL).start()
    with server.client() as client:
        ids = [client.create_story(f"pg{i}", [{"estimate_ms": 1000}]).story_id for i in range(3)]
        wait_for(lambda: client.get_story(ids[0]).tasks[0].state == "running", 10, what="one runs")
        started = client.get_story(ids[0]).started_at
        assert client.get_story(ids[1]).started_at is None  # the limit holds it back
    server.kill9()
    server.start()
    tap = EventTap(server)
    with server.client() as client:
        assert client.snapshot(0).stats.stories_in_progress == 1
        assert client.get_story(ids[0]).started_at == started
        final = tap.wait_stats(lambda s: s.completed_stories == 3, 30, what="all three done")
        assert final.stories_completed_in_window == 3 and final.lead_time_p95_s >= 2.0
        done = client.list_stories(status="done").stories
        assert all(s.cycle_time_s is not None and s.cycle_time_s <= s.lead_time_s for s in done)
    tap.close()
    assert server.stop() == 0


def test_the_bulk_writes_store_every_row_and_value_exactly_on_postgres():
    """COPY and `= ANY(array)`: awkward text, exact doubles, batches past any chunk size,
    and a retried batch that skips what a lost commit stored."""
    from storypulse.server.store import Batch, Store, Unavailable

    store = Store.open(empty_postgres(URL))
    awkward = ["tab\there", "new\nline", "back\\slash", "\\N", "cr\rlf", "ünï ☃", "", "'quote\""]
    stories = [(i, awkward[i % len(awkward)], awkward[-1 - i % len(awkward)], "open",
                1e9 + i / 3, 3) for i in range(1, 1201)]
    tasks = [(3 * s + k, s, awkward[k], k, "queued", 0, 1e9 + s / 7)
             for s in range(1, 1201) for k in range(3)]
    store.apply(Batch(stories=stories, tasks=tasks))
    first = [t[0] for t in tasks if t[1] <= 700]
    store.apply(Batch(completions=[(2, 0.1 + 0.2, 1 / 3, first)],
                      started_stories=[(0.1 + 0.2, list(range(1, 701)))],
                      done_stories=[(1 / 3, list(range(1, 701)))],
                      deleted_stories=list(range(1101, 1201)),
                      id_floors={"story_id": 1200, "task_id": 3602}))
    assert store.story(5) == (5, stories[4][1], stories[4][2], "done", stories[4][4], 1 / 3, 3,
                              0.1 + 0.2, None, 0)
    assert store.tasks_of(5) == [(3 * 5 + k, awkward[k], k, "done", 2, 1e9 + 5 / 7, 0.1 + 0.2,
                                  1 / 3, None, 0, None) for k in range(3)]
    assert store.story(800)[1:5] == stories[799][1:5] and store.story(1150) is None
    start = store.load()
    assert start.completed_stories == 700 and start.tasks_completed == 2100
    assert start.open_count == 400 and start.next_story_id == 1201
    assert start.open_stories == {}  # none started: the backlog stays on disk, read in windows
    assert start.queued_count == 1200
    rows, ended = store.window(0, 10_000)
    assert ended and [r[0] for r in rows] == [t[0] for t in tasks if 700 < t[1] <= 1100]

    retried = Batch(stories=stories[1000:1100] + [(2000, "new", "", "open", 5.0, 1)],
                    tasks=tasks[3000:3300] + [(9000, 2000, "", 1, "queued", 0, 5.0)])
    with pytest.raises(Unavailable):
        store.apply(retried)  # the same rows again: refused, as it should be
    store.apply(retried, again=True)
    assert store.db.execute_sql("SELECT COUNT(*) FROM task").fetchone()[0] == 3300 + 1
    assert store.tasks_of(2000)[0][0] == 9000
    store.close()


def test_a_database_of_the_previous_version_is_counted_and_loses_its_slow_parts_on_postgres():
    """The previous version: a status index on task, a foreign key to story, no tally."""
    from storypulse.server.store import Batch, Store

    store = Store.open(empty_postgres(URL))
    store.apply(Batch(stories=[(1, "a", "", "open", 1.0, 2), (2, "b", "", "open", 1.0, 1)],
                      tasks=[(1, 1, "", 5, "queued", 0, 1.0), (2, 1, "", 7, "queued", 0, 1.0),
                             (3, 2, "", 9, "queued", 0, 1.0)]))
    store.apply(Batch(completions=[(1, 2.0, 3.0, [3])], done_stories=[(3.0, [2])]))
    sql = store.db.execute_sql
    sql("DROP TABLE tally")
    sql("CREATE INDEX task_status_estimate_ms ON task (status, estimate_ms)")
    sql("ALTER TABLE task ADD FOREIGN KEY (story_id) REFERENCES story (id) ON DELETE CASCADE")
    store.close()

    store = Store.open(URL)
    assert tally(store) == (1, 1, 2, 1, 12)
    assert "task_status_estimate_ms" not in {i.name for i in store.db.get_indexes("task")}
    assert store.db.execute_sql("SELECT COUNT(*) FROM pg_constraint WHERE contype = 'f' "
                                "AND conrelid = 'task'::regclass").fetchone()[0] == 0
    # An earlier version opened it again (making its index) and wrote: counted afresh.
    sql = store.db.execute_sql
    sql("CREATE INDEX task_status_estimate_ms ON task (status, estimate_ms)")
    sql("UPDATE task SET status = 'done' WHERE id = 1")
    store.close()
    store = Store.open(URL)
    assert tally(store) == counted(store) == (1, 1, 1, 2, 7)
    store.close()
