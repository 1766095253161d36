"""Crash and restart: kill -9 of the server mid-work, SIGTERM, resume on the same database."""

from __future__ import annotations

import random
import sqlite3
import time
from collections import Counter

import pytest

from storypulse.client import ServerUnavailable
from support import wait_for
from support import EventTap
from test_server_e2e import make_tasks


def db_figures(path) -> dict:
    con = sqlite3.connect(path)
    try:
        return {
            "integrity": con.execute("PRAGMA integrity_check").fetchone()[0],
            "stories": con.execute("SELECT COUNT(*) FROM story").fetchone()[0],
            "open": con.execute("SELECT COUNT(*) FROM story WHERE status = 'open'").fetchone()[0],
            "tasks_queued": con.execute(
                "SELECT COUNT(*) FROM task WHERE status != 'done'").fetchone()[0],
            "ids": {r[0] for r in con.execute("SELECT id FROM story")},
            "journal": con.execute("PRAGMA journal_mode").fetchone()[0],
        }
    finally:
        con.close()


def test_kill9_mid_processing_then_restart_completes_every_acknowledged_story(server_factory):
    server = server_factory(workers=2, time_scale=0.01).start()
    rng = random.Random(11)
    tap = EventTap(server)
    acknowledged: set[int] = set()
    with server.client() as client:
        for i in range(150):
            acknowledged.add(client.create_story(f"s{i}", make_tasks(rng, est=1000)).story_id)
        tap.wait_stats(lambda s: s.completed_stories >= 20, what="some stories done")
        # More creates in flight when the server dies: only answered ones are promised.
        pending = [client.send("create_story", name=f"p{i}", tasks=make_tasks(rng, est=1000))
                   for i in range(100)]
        for _ in range(40):
            _, result = client.receive(timeout=10)
            acknowledged.add(result.story_id)
        stats_before = tap.last_stats()
        server.kill9()
    assert pending
    assert 0 < stats_before.completed_stories < len(acknowledged), "killed mid-processing"
    tap.pump()
    completed_before = [e.story_id for e in tap.story_events("completed")]
    tap.close()

    mid = db_figures(server.db)
    assert mid["integrity"] == "ok" and mid["journal"] == "wal"
    assert acknowledged <= mid["ids"], "an acknowledged story was lost"
    assert mid["open"] > 0

    server.start()
    tap = EventTap(server)
    stored = len(mid["ids"])
    final = tap.wait_stats(lambda s: s.completed_stories == stored and s.open_stories == 0, 30,
                           what="every stored story to complete after the restart")
    assert final.tasks_queued == 0 and final.tasks_running == 0
    tap.pump(0.3)
    completed_after = [e.story_id for e in tap.story_events("completed")]
    twice = [sid for sid, n in Counter(completed_before + completed_after).items() if n > 1]
    assert not twice, f"stories completed twice: {twice}"
    with server.client() as client:
        assert client.list_stories(status="done").total == stored
        assert client.list_stories(status="open").total == 0
    assert server.stop() == 0
    end = db_figures(server.db)
    assert end["integrity"] == "ok"
    assert end["open"] == 0 and end["tasks_queued"] == 0 and end["stories"] == stored


@pytest.mark.parametrize("grace", [5.0, 0.2])
def test_sigterm_exits_zero_and_restart_resumes(server_factory, grace):
    server = server_factory(workers=2, time_scale=1.0,
                            extra=["--shutdown-grace", str(grace)]).start()
    with server.client() as client:
        ids = [client.create_story(f"s{i}", [{"estimate_ms": 400}, {"estimate_ms": 400}]).story_id
               for i in range(6)]
        wait_for(lambda: client.snapshot().stats.workers_busy == 2, 10, what="both workers busy")
    started = time.monotonic()
    assert server.stop() == 0
    assert time.monotonic() - started < grace + 5
    log = server.log()
    assert "stopping" in log and "Traceback" not in log
    figures = db_figures(server.db)
    assert figures["integrity"] == "ok" and figures["open"] > 0

    server.start()
    with server.client() as client:
        wait_for(lambda: client.list_stories(status="done").total == len(ids), 30,
                 what="every story done after the restart")
        for story_id in ids:
            story = client.get_story(story_id)
            assert story.status == "done" and story.tasks_done == 2
    assert server.stop() == 0
    with pytest.raises(ServerUnavailable):
        with server.client(timeout=0.3) as client:
            client.ping()
