"""Stages on a real server: the issue's end-to-end guarantees, with real worker processes.

The rules themselves are tested on the work state (test_stages_state.py, the property test)
and on the service alone (test_service_stages.py); these prove them through the real loop,
sockets, pools, worker processes and database: stage order and every WIP limit at every
stats event, blocks timed by the loop, per-stage autoscaling, kill -9 during blocks and
hand-offs, a restart with another workflow, worker hosts of a stage, bad options.
"""

from __future__ import annotations

import random
import subprocess
import sys
from collections import Counter

import pytest

from storypulse import protocol
from storypulse.client import RequestError
from support import REPO, EventTap, wait_for
from test_server_recovery import db_figures

STAGES = ("analysis", "build", "test")


def staged_tasks(rng: random.Random, est: int = 1000, block_chance: float = 0.2,
                 block_ms: int = 3000) -> list[dict]:
    """A story's tasks: 0-1 in analysis, 1-3 in build (some blocked), 0-2 in test."""
    tasks = []
    for stage, (low, high) in zip(STAGES, ((0, 1), (1, 3), (0, 2))):
        for _ in range(rng.randint(low, high)):
            task = {"stage": stage, "estimate_ms": rng.randint(est // 4, est)}
            if rng.random() < block_chance:
                task["blocked_ms"] = rng.randint(block_ms // 4, block_ms)
            tasks.append(task)
    rng.shuffle(tasks)  # the order of `tasks` does not matter
    return tasks


def assert_stage_order(view: protocol.StoryView) -> None:
    """No task of a later stage started before every task of the earlier stages finished."""
    done_by = {}
    for task in view.tasks:
        index = STAGES.index(task.stage)
        done_by[index] = max(done_by.get(index, 0.0), task.finished_at)
    for task in view.tasks:
        index = STAGES.index(task.stage)
        earlier = [done_by[i] for i in done_by if i < index]
        if earlier:
            assert task.started_at >= max(earlier), \
                f"story {view.story_id}: task {task.task_id} ({task.stage}) started before the " \
                f"earlier stages were done"


def assert_limits_and_sums(stats: protocol.Stats, wip: int, stage_wip: dict[str, int]) -> None:
    stages = {s.name: s for s in stats.stages}
    assert list(stages) == list(STAGES)
    if wip:
        assert stats.stories_in_progress <= wip, stats
    for name, limit in stage_wip.items():
        assert stages[name].stories <= limit, (name, stages[name])
    assert sum(s.stories for s in stats.stages) == stats.stories_in_progress
    assert sum(s.tasks_queued for s in stats.stages) == stats.tasks_queued
    assert sum(s.tasks_running for s in stats.stages) == stats.tasks_running
    assert sum(s.tasks_blocked for s in stats.stages) == stats.tasks_blocked
    assert sum(s.workers for s in stats.stages) == stats.workers


def test_stage_order_and_every_wip_limit_hold_at_every_stats_event(server_factory):
    wip, stage_wip = 4, {"build": 2, "test": 1}
    server = server_factory(time_scale=0.01, stats_interval=0.02, extra=[
        "--stages", "analysis:2,build:3,test:1", "--stage-wip", "build=2,test=1",
        "--wip-limit", str(wip)]).start()
    tap = EventTap(server)
    rng = random.Random(16)
    with server.client() as client:
        ids = [client.create_story(f"s{i}", staged_tasks(rng)).story_id for i in range(40)]
        with pytest.raises(RequestError) as refused:  # and the server goes on
            client.create_story("bad", [{"stage": "deploy", "estimate_ms": 1}])
        assert refused.value.code == protocol.INVALID and "'deploy'" in str(refused.value)
        final = tap.wait_stats(lambda s: s.completed_stories == len(ids), 60,
                               what="every story done")
        tap.pump(0.2)
        seen = tap.stats()
        assert len(seen) > 10
        busy = [s for s in seen if s.stories_in_progress]
        assert max(s.stories_in_progress for s in busy) == wip  # the limit was reached ...
        for stats in seen:  # ... and held at every event, with the stages adding up
            assert_limits_and_sums(stats, wip, stage_wip)
        assert any(s.tasks_blocked for s in seen)
        assert final.open_stories == 0 and final.flow_efficiency is not None
        for story_id in ids:
            view = client.get_story(story_id)
            assert view.status == "done" and view.tasks_done == view.tasks_total
            assert_stage_order(view)
        assert client.list_stories(status="done").total == len(ids)  # the bad one stored nothing
    assert server.stop() == 0


def test_a_blocked_task_frees_its_worker_and_the_loop_ends_its_block_on_time(server_factory):
    server = server_factory(time_scale=0.1, extra=["--stages", "build:1,test:1"]).start()
    with server.client() as client:
        blocked = client.create_story("waits", [{"stage": "build", "estimate_ms": 1000,
                                                 "blocked_ms": 8000}]).story_id
        other = client.create_story("moves", [{"stage": "build", "estimate_ms": 1000}]).story_id
        view = wait_for(lambda: (v := client.get_story(blocked)).tasks[0].blocked_until and v, 10,
                        what="the block to start")
        until = view.tasks[0].blocked_until
        assert view.tasks[0].state == "queued" and view.blocked_ms == 8000 and view.stage == "build"
        wait_for(lambda: client.get_story(other).status == "done", 10, what="the other story")
        assert client.get_story(other).completed_at < until  # its one worker was free meanwhile
        wait_for(lambda: client.get_story(blocked).status == "done", 10, what="the blocked story")
        task = client.get_story(blocked).tasks[0]
        assert task.started_at >= until and task.finished_at - task.started_at >= 0.09
    assert server.stop() == 0


def test_each_stage_grows_its_own_pool_for_its_queue(server_factory):
    server = server_factory(time_scale=1.0, stats_interval=0.05, extra=[
        "--stages", "analysis:1-4,build:1-4,test:1-4", "--quiet-window", "60"]).start()
    tap = EventTap(server)
    ready = tap.wait_stats(lambda s: [st.workers for st in s.stages] == [1, 1, 1], 30,
                           what="a worker in each stage")
    with server.client() as client:
        for i in range(8):
            client.create_story(f"b{i}", [{"stage": "build", "estimate_ms": 20_000}])
        grown = tap.wait_stats(lambda s: s.stages[1].workers == 4, 30, what="build to grow")
        assert [st.workers for st in grown.stages] == [1, 4, 1]
        assert grown.bottleneck == "build" and grown.stages[1].wait_s > 0
        grows = [e for e in tap.pool_events() if e.new_size > e.old_size and "grow" in e.reason]
        assert grows and {e.stage for e in grows} == {"build"}
        reply = client.set_pool(stage="test", max_workers=2)
        assert (reply.stage, reply.max_workers) == ("test", 2)
        for story in client.list_stories(status="open").stories:
            client.delete_story(story.story_id)
    tap.pump(0.3)
    since = [s for s in tap.stats() if s.seq >= ready.seq]
    assert all([st.workers for st in s.stages][0::2] == [1, 1] for s in since)  # the others stayed
    assert server.stop() == 0


def test_kill9_during_blocks_and_hand_offs_loses_nothing_and_completes_nothing_twice(server_factory):
    server = server_factory(time_scale=0.01, extra=["--stages", "analysis:2,build:3,test:2"]).start()
    rng = random.Random(9)
    tap = EventTap(server)
    acknowledged: set[int] = set()
    with server.client() as client:
        for i in range(120):
            acknowledged.add(client.create_story(f"s{i}", staged_tasks(rng, est=2000,
                                                                       block_chance=0.3)).story_id)
        # Killed while stories are blocked and between stages, with creates in flight.
        stats = tap.wait_stats(lambda s: s.completed_stories >= 15 and s.tasks_blocked
                               and s.stages[2].stories, 60, what="blocks and stories in test")
        pending = [client.send("create_story", name=f"p{i}", tasks=staged_tasks(rng))
                   for i in range(50)]
        for _ in range(20):
            _, result = client.receive(timeout=10)
            acknowledged.add(result.story_id)
        server.kill9()
    assert pending and 0 < stats.completed_stories < len(acknowledged)
    tap.pump()
    completed_before = [e.story_id for e in tap.story_events("completed")]
    tap.close()
    mid = db_figures(server.db)
    assert mid["integrity"] == "ok" and acknowledged <= mid["ids"], "an acknowledged story was lost"

    server.start()
    tap = EventTap(server)
    stored = len(mid["ids"])
    final = tap.wait_stats(lambda s: s.completed_stories == stored and s.open_stories == 0, 60,
                           what="every stored story to complete after the restart")
    assert final.tasks_queued == final.tasks_running == final.tasks_blocked == 0
    tap.pump(0.3)
    completed_after = [e.story_id for e in tap.story_events("completed")]
    twice = [sid for sid, n in Counter(completed_before + completed_after).items() if n > 1]
    assert not twice, f"stories completed twice: {twice}"
    with server.client() as client:
        for story_id in sorted(acknowledged)[::7]:
            view = client.get_story(story_id)
            assert view.status == "done"
            assert_stage_order(view)
    assert server.stop() == 0
    end = db_figures(server.db)
    assert end["open"] == 0 and end["tasks_queued"] == 0 and end["stories"] == stored


def test_a_restart_with_another_workflow_is_refused_naming_the_stages(server_factory):
    server = server_factory(time_scale=1.0, extra=[
        "--stages", "analysis:1,build:1,test:1", "--shutdown-grace", "0.2"]).start()
    with server.client() as client:
        client.create_story("s", [{"stage": "build", "estimate_ms": 60_000},
                                  {"stage": "test", "estimate_ms": 60_000}])
    assert server.stop() == 0

    for stages in (["--stages", "analysis:1,build:1"], []):  # a stage gone; no stages at all
        server.args = [a for a in server.args if a not in ("analysis:1,build:1,test:1", "--stages",
                                                           "analysis:1,build:1")]
        server.args += stages or ["--min-workers", "1", "--max-workers", "1"]
        server.start(wait=False)
        assert server.proc.wait(20) == 1
        last = server.log().strip().splitlines()[-1]
        assert "cannot start" in last and "'test' (1 tasks)" in last, last
        assert ("its stages are analysis, build" if stages else "its stages are work") in last
        server.args = [a for a in server.args if a not in ("--min-workers", "--max-workers", "1")]
    server.args += ["--stages", "test:1,build:1"]  # reordered, without analysis (nothing left there)
    server.start()
    with server.client() as client:
        assert client.list_stories(status="open").total == 1
    assert server.stop() == 0


def test_a_worker_host_serves_the_stage_it_names_and_one_the_server_lacks_is_refused(server_factory):
    # test has no local worker: its pool starts at 0 and never decides again
    server = server_factory(time_scale=0.01, extra=["--stages", "build:1,test:0-1",
                                                    "--scale-interval", "3600"]).start()
    tap = EventTap(server)
    host = [sys.executable, "-m", "storypulse", "worker", "--server", f"127.0.0.1:{server.port}",
            "--processes", "1"]
    refused = subprocess.run([*host, "--stage", "deploy"], capture_output=True, text=True,
                             timeout=30, cwd=REPO)
    assert refused.returncode == 1
    assert "stage 'deploy' is not a stage of this server; the stages are build, test" in refused.stderr
    with server.client() as client:
        story = client.create_story("s", [{"stage": "build", "estimate_ms": 100},
                                          {"stage": "test", "estimate_ms": 100}]).story_id
        tap.wait_stats(lambda s: s.stages[1].tasks_ready == 1, 10, what="test to wait for a worker")
        worker = subprocess.Popen([*host, "--stage", "test"], stderr=subprocess.PIPE, cwd=REPO)
        try:
            wait_for(lambda: client.get_story(story).status == "done", 30,
                     what="the test task done by the worker host")
            assert tap.wait_stats(lambda s: s.stages[1].workers == 1, 10).stages[0].workers == 1
        finally:
            worker.terminate()
            worker.wait(10)
    assert server.stop() == 0


@pytest.mark.parametrize("options, words", [
    (["--stages", "analysis:1-2,,test:1"], "--stages 'analysis:1-2,,test:1': an empty part"),
    (["--stages", "a:1,A:2"], "stage 'A' is named twice"),
    (["--stages", "a:1", "--stage-wip", "b=2"], "--stage-wip part 'b=2': unknown stage 'b'"),
    (["--scenario", "nowhere"], "--scenario: scenario 'nowhere': no such file"),
    (["--stages", "a:1", "--min-workers", "2"], "--min-workers with --stages"),
])
def test_a_bad_workflow_stops_the_server_at_once_naming_the_part(tmp_path, options, words):
    done = subprocess.run([sys.executable, "-m", "storypulse.server", "--db", str(tmp_path / "x.db"),
                           *options], capture_output=True, text=True, timeout=30, cwd=REPO)
    assert done.returncode == 2 and words in done.stderr, done.stderr
    assert not (tmp_path / "x.db").exists()  # nothing was made


def test_a_bad_scenario_file_names_its_line(tmp_path):
    board = tmp_path / "board.toml"
    board.write_text('name = "b"\n[load]\nrate = 1\n[[stage]]\nname = "dev"\nworkers = "3-1"\n')
    done = subprocess.run([sys.executable, "-m", "storypulse.server", "--db", str(tmp_path / "x.db"),
                           "--scenario", str(board)], capture_output=True, text=True, timeout=30,
                          cwd=REPO)
    assert done.returncode == 2 and f"{board}, line 6: stage 'dev': workers" in done.stderr


def test_metrics_carry_each_stage_as_a_label(server_factory):
    from httpget import get
    from support import free_port_block

    port = free_port_block(1)
    server = server_factory(time_scale=0.01, extra=["--stages", "analysis:1,build:2,test:1",
                                                    "--http-port", str(port)]).start()
    tap = EventTap(server)
    with server.client() as client:
        story = client.create_story("s", [{"stage": "analysis", "estimate_ms": 10},
                                          {"stage": "test", "estimate_ms": 10}]).story_id
        wait_for(lambda: client.get_story(story).status == "done", 20, what="the story")
    tap.wait_stats(lambda s: [st.workers for st in s.stages] == [1, 2, 1], 20, what="the pools")
    done = 'storypulse_task_queue_wait_seconds_count{stage="test"} 1.0'  # once /metrics has it
    body = wait_for(lambda: (reply := get(port, "/metrics")).status == 200 and done in reply.body
                    and reply.body, 20, what="per-stage metrics")
    assert 'storypulse_stage_workers{stage="build"} 2.0' in body
    for stage in STAGES:
        assert f'storypulse_stage_tasks_queued{{stage="{stage}"}}' in body
    assert 'storypulse_task_queue_wait_seconds_count{stage="analysis"} 1.0' in body
    assert 'stage="work"' not in body  # the stages of this workflow only
    assert server.stop() == 0
