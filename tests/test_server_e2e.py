"""End to end: the real server loop, real worker processes, real sockets and store.

The loop runs in this process (tests/inproc.py): clients reach it over inproc://
with the real Client, its workers over loopback TCP. The command line is tried
on a real process.
"""

from __future__ import annotations

import random

import pytest

from storypulse import protocol
from storypulse.client import RequestError
from support import EventTap, wait_for


@pytest.fixture
def server(inproc_factory):
    """A running server in this process: 2 workers, estimates at 1/100 of their length."""
    return inproc_factory(time_scale=0.01).start()


def assert_seq_contiguous(messages) -> None:
    seqs = [m.seq for _, m in messages]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a gap or repeat in seq"


def make_tasks(rng: random.Random, low: int = 1, high: int = 5, est: int = 100) -> list[dict]:
    return [{"estimate_ms": rng.randint(0, est), "name": f"t{i}"}
            for i in range(rng.randint(low, high))]


def test_stories_flow_to_done_with_counts_and_events(server):
    tap = EventTap(server)
    rng = random.Random(7)
    created = {}
    with server.client() as client:
        for i in range(30):
            result = client.create_story(f"story {i}", make_tasks(rng))
            created[result.story_id] = len(result.task_ids)
        final = tap.wait_stats(lambda s: s.completed_stories == 30 and s.open_stories == 0,
                               what="all 30 stories done")
        tap.pump(0.3)
        assert final.tasks_completed == sum(created.values())
        assert final.tasks_queued == 0
        # every story event exactly once
        assert sorted(e.story_id for e in tap.story_events("created")) == sorted(created)
        assert sorted(e.story_id for e in tap.story_events("completed")) == sorted(created)
        assert_seq_contiguous(tap.messages)
        # the database agrees with the figures
        listing = client.list_stories(status="done", limit=1000)
        assert listing.total == 30 and len(listing.stories) == 30
        assert [s.story_id for s in listing.stories] == sorted(created, reverse=True)
        assert client.list_stories(status="open").total == 0
        for story_id, count in created.items():
            story = client.get_story(story_id)
            assert story.status == "done" and story.completed_at is not None
            assert story.tasks_done == story.tasks_total == count
            assert all(t.state == "done" and t.attempts == 1 and t.finished_at >= t.started_at
                       for t in story.tasks)
        snap = client.snapshot()
        assert snap.stats.completed_stories == 30 and snap.stats.workers == 2
        assert snap.stats.rate_window_s == 5.0
    tap.close()


def test_list_stories_pages_newest_first(server):
    with server.client() as client:
        ids = [client.create_story(f"s{i}", [{"estimate_ms": 0}]).story_id for i in range(7)]
        page = client.list_stories(offset=2, limit=3)
        assert page.total == 7
        assert [s.story_id for s in page.stories] == ids[::-1][2:5]


def test_late_joiner_gets_snapshot_then_events_without_gap(server):
    rng = random.Random(3)
    with server.client() as client:
        for i in range(10):
            client.create_story(f"early {i}", make_tasks(rng))
        # Subscribe first, then snapshot; keep only what is newer than the snapshot.
        tap = EventTap(server)
        snap = client.snapshot(history_seconds=60)
        assert snap.history, "history has one entry a second"
        assert snap.stats.seq == snap.seq
        later = [client.create_story(f"late {i}", make_tasks(rng)).story_id for i in range(10)]
        tap.wait_stats(lambda s: s.completed_stories == 20, what="all 20 done")
        newer = [(t, m) for t, m in tap.messages if m.seq > snap.seq]
        assert newer[0][1].seq == snap.seq + 1, "the first event after the snapshot is missing"
        assert_seq_contiguous(newer)
        created_after = {m.story_id for t, m in newer
                         if t == protocol.TOPIC_STORY and m.event == "created"}
        assert created_after == set(later)
        tap.close()


def test_delete_in_every_state(inproc_factory):
    server = inproc_factory(workers=1, time_scale=1.0).start()
    tap = EventTap(server)
    with server.client() as client:
        running = client.create_story("running", [{"estimate_ms": 1500}])
        queued = client.create_story("queued", [{"estimate_ms": 1000}, {"estimate_ms": 1000}])
        wait_for(lambda: client.get_story(running.story_id).tasks[0].state == "running", 10,
                 what="the first task to run")
        assert client.get_story(queued.story_id).tasks[0].state == "queued"

        client.delete_story(queued.story_id)
        with pytest.raises(RequestError) as err:
            client.get_story(queued.story_id)
        assert err.value.code == "not_found"

        client.delete_story(running.story_id)
        # The running task's completion arrives later and is ignored.
        stats = tap.wait_stats(lambda s: s.workers_busy == 0 and s.tasks_running == 0, 10,
                               what="the worker to finish its task")
        assert stats.open_stories == 0 and stats.completed_stories == 0
        assert stats.tasks_completed == 0 and stats.tasks_queued == 0

        done = client.create_story("done", [{"estimate_ms": 0}, {"estimate_ms": 0}])
        tap.wait_stats(lambda s: s.completed_stories == 1, what="the third story to finish")
        client.delete_story(done.story_id)
        stats = tap.wait_stats(lambda s: s.completed_stories == 0, what="counts after delete")
        assert stats.tasks_completed == 0
        assert client.list_stories().total == 0

        with pytest.raises(RequestError) as err:
            client.delete_story(done.story_id)
        assert err.value.code == "not_found"
        with pytest.raises(RequestError) as err:
            client.delete_story(999_999)
        assert err.value.code == "not_found"

        tap.pump(0.3)
        deleted = [e.story_id for e in tap.story_events("deleted")]
        assert deleted == [queued.story_id, running.story_id, done.story_id]
        assert [e.story_id for e in tap.story_events("completed")] == [done.story_id]
        # a new story does not reuse the id of a deleted one
        fresh = client.create_story("fresh", [{"estimate_ms": 0}])
        assert fresh.story_id > done.story_id
    tap.close()


def test_set_pool_validates_bounds(server):
    with server.client() as client:
        with pytest.raises(RequestError) as err:
            client.set_pool(min_workers=5, max_workers=3)
        assert err.value.code == "invalid_request"
        assert "min_workers" in err.value.message and "max_workers" in err.value.message
        result = client.set_pool(min_workers=3, max_workers=3)
        assert (result.min_workers, result.max_workers, result.target) == (3, 3, 3)
        wait_for(lambda: client.snapshot().stats.workers == 3, 20, what="the pool to grow to 3")


def test_ping_reports_versions(server):
    with server.client() as client:
        pong = client.ping()
    assert pong.protocol_version == protocol.PROTOCOL_VERSION
    from storypulse import __version__
    assert pong.server_version == __version__


def test_stats_cadence_is_steady(server):
    tap = EventTap(server)
    first = tap.stats()[0].ts
    tap.wait_stats(lambda last: last.ts - first >= 1.0, 10, what="a second of stats events")
    stats = tap.stats()
    span = stats[-1].ts - first
    # stats_interval is 0.1 s in the test server: about ten a second, never a burst
    # (half a second of slack: a loaded machine may publish the first one late)
    assert len(stats) - 1 <= (span + 0.5) / 0.1
    assert len(stats) >= 4
    seqs = [s.seq for s in stats]
    assert seqs == sorted(seqs)
    tap.close()


def test_create_story_gets_busy_when_the_queue_is_full(inproc_factory):
    server = inproc_factory(workers=1, time_scale=1.0, queue_max=600).start()
    with server.client() as client:
        client.create_story("fills", [{"estimate_ms": 60_000}] * 500)
        with pytest.raises(RequestError) as err:
            client.create_story("too much", [{"estimate_ms": 1}] * 200)
        assert err.value.code == "busy"
        client.create_story("still fits", [{"estimate_ms": 1}] * 50)
        assert client.list_stories().total == 2


def test_bad_options_exit_2_with_a_message(tmp_path):
    import subprocess
    import sys

    from support import REPO

    def run(*args, env=None):
        import os
        return subprocess.run([sys.executable, "-m", "storypulse.server", *args], cwd=REPO,
                              env={**os.environ, **(env or {})},
                              capture_output=True, text=True, timeout=30)

    done = run("--min-workers", "4", "--max-workers", "2")
    assert done.returncode == 2 and "--min-workers 4 is above --max-workers 2" in done.stderr
    done = run("--port", "x")
    assert done.returncode == 2 and "--port" in done.stderr
    done = run(env={"STORYPULSE_PORT": "70000"})
    assert done.returncode == 2 and "STORYPULSE_PORT" in done.stderr
    done = run("--version")
    assert done.returncode == 0 and "protocol" in done.stdout


def test_set_pool_publishes_one_pool_event_per_change(server):
    tap = EventTap(server)
    with server.client() as client:
        client.set_pool(min_workers=3, max_workers=3)
    tap.wait_stats(lambda s: s.workers == 3, 20, what="the pool to grow to 3")
    tap.pump()
    # The start-up event ("start at the target of 2") reaches a subscriber that joined early
    # enough; it is no change of set_pool's.
    pool_events = [e for e in tap.pool_events() if not e.reason.startswith("start at the target")]
    assert [(e.old_size, e.new_size) for e in pool_events] == [(2, 3)], pool_events
    seqs = [m.seq for _, m in tap.messages]
    stamps = [m.ts for _, m in tap.messages]
    assert seqs == sorted(seqs) and stamps == sorted(stamps)
    tap.close()
