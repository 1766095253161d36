"""Workers that die or hang: their tasks go back to the queue and complete elsewhere, once."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from storypulse import protocol
from support import wait_for
from support import EventTap


def session_processes(leader: int) -> dict[int, int]:
    """pid -> parent pid of every process in the session of `leader`."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ppid, sid = int(fields[1]), int(fields[3])
        if sid == leader and int(entry.name) != leader:
            found[int(entry.name)] = ppid
    return found


def worker_pids(server) -> list[int]:
    """Workers are children of the forkserver, which is a child of the server."""
    procs = session_processes(server.proc.pid)
    forkservers = {pid for pid, ppid in procs.items() if ppid == server.proc.pid}
    return sorted(pid for pid, ppid in procs.items() if ppid in forkservers)


def running_story(server, client, estimate_ms: int):
    story = client.create_story("victim", [{"estimate_ms": estimate_ms}])
    wait_for(lambda: client.get_story(story.story_id).tasks[0].state == "running", 10,
             what="the task to run")
    return story


def test_kill9_of_a_worker_mid_task(server_factory):
    server = server_factory(workers=1, time_scale=1.0).start()
    tap = EventTap(server)
    with server.client() as client:
        story = running_story(server, client, 1000)
        pids = wait_for(lambda: worker_pids(server), 5, what="the worker's pid")
        assert len(pids) == 1
        os.kill(pids[0], signal.SIGKILL)
        killed_at = time.monotonic()
        # The task is back in the queue at once and runs on the replacement worker.
        wait_for(lambda: client.get_story(story.story_id).status == "done", 15,
                 what="the story to complete on another worker")
        assert time.monotonic() - killed_at < 10
        view = client.get_story(story.story_id)
        assert view.tasks[0].attempts == 2
        new_pids = worker_pids(server)
        assert pids[0] not in new_pids and len(new_pids) == 1
    stats = tap.wait_stats(lambda s: s.completed_stories == 1 and s.workers == 1)
    assert stats.tasks_completed == 1
    tap.pump(0.3)
    assert [e.story_id for e in tap.story_events("completed")] == [story.story_id]
    pool_events = [m for t, m in tap.messages if t == protocol.TOPIC_POOL]
    assert any("exited" in e.reason and e.new_size == 0 for e in pool_events)
    assert any(e.reason == "back to the target of 1" and e.new_size == 1 for e in pool_events)
    assert "back at the front of the queue" in server.log()


def test_hung_worker_is_replaced_after_the_heartbeat_timeout(server_factory):
    server = server_factory(workers=1, time_scale=1.0, extra=["--heartbeat", "0.2"]).start()
    tap = EventTap(server)
    with server.client() as client:
        story = running_story(server, client, 800)
        pids = wait_for(lambda: worker_pids(server), 5, what="the worker's pid")
        os.kill(pids[0], signal.SIGSTOP)
        stopped_at = time.monotonic()
        try:
            wait_for(lambda: client.get_story(story.story_id).status == "done", 15,
                     what="the story to complete after the hung worker is replaced")
        finally:
            try:
                os.kill(pids[0], signal.SIGCONT)
            except ProcessLookupError:
                pass  # the server killed it, as it should
        # 3 missed beats of 0.2 s, a new worker, then 0.8 s of work
        assert time.monotonic() - stopped_at < 8
        assert client.get_story(story.story_id).tasks[0].attempts == 2
        wait_for(lambda: pids[0] not in worker_pids(server), 5, what="the hung worker reaped")
    tap.wait_stats(lambda s: s.completed_stories == 1 and s.workers == 1)
    tap.pump(0.3)
    assert [e.story_id for e in tap.story_events("completed")] == [story.story_id]
    assert "missed 3 heartbeats" in server.log()


def test_many_short_tasks_survive_repeated_worker_kills(server_factory):
    server = server_factory(workers=2, time_scale=0.01).start()
    tap = EventTap(server)
    with server.client() as client:
        ids = [client.create_story(f"s{i}", [{"estimate_ms": 3000}] * 3).story_id
               for i in range(20)]
        for _ in range(3):
            pids = wait_for(lambda: len(worker_pids(server)) == 2 and worker_pids(server), 10,
                            what="two workers")
            os.kill(pids[0], signal.SIGKILL)
            wait_for(lambda: pids[0] not in worker_pids(server), 5, what="the worker reaped")
        final = tap.wait_stats(lambda s: s.completed_stories == len(ids) and s.open_stories == 0,
                               30, what="every story done")
        assert final.tasks_completed == 60
    tap.pump(0.3)
    completed = [e.story_id for e in tap.story_events("completed")]
    assert sorted(completed) == sorted(ids)


def test_a_worker_host_connects_from_outside_the_pool(server_factory):
    import subprocess
    import sys

    from support import REPO

    server = server_factory(workers=0, max_workers=1, time_scale=0.01).start()
    host = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from storypulse.server.cli import worker_command; sys.exit(worker_command(sys.argv[1:]))",
         "--server", f"127.0.0.1:{server.port}", "--processes", "2", "--log-level", "warning"],
        cwd=REPO, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        tap = EventTap(server)
        tap.wait_stats(lambda s: s.workers >= 2, 20, what="two remote workers")
        with server.client() as client:
            ids = [client.create_story(f"r{i}", [{"estimate_ms": 100}] * 3).story_id
                   for i in range(10)]
        tap.wait_stats(lambda s: s.completed_stories == len(ids), 20, what="every story done")
        tap.close()
        assert "remote worker" in server.log()
        assert server.stop() == 0
        # the server told its workers to stop: the host exits by itself
        assert host.wait(15) == 0
    finally:
        if host.poll() is None:
            os.killpg(host.pid, signal.SIGKILL)
            host.wait()
