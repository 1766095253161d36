"""Flow figures and the WIP limit on the real server (real workers, sockets, database).

The WIP limit and set_flow run on the loop in this process (tests/inproc.py); what
an outside client's own clock sees, and the restarts, on a real server process.
"""

from __future__ import annotations

import random
import threading
import time

import pytest

from storypulse import protocol
from storypulse.client import RequestError
from storypulse.percentiles import nearest_rank
from support import EventTap, subscribe_all, wait_for

STATS_INTERVAL = 0.1  # the test servers' --stats-interval


@pytest.fixture
def server(inproc_factory):
    """A running server in this process: 2 workers, estimates at 1/100 of their length."""
    return inproc_factory(time_scale=0.01).start()


class CompletionClock:
    """An outside client's own view: a thread on its own SUB socket that stamps every
    `completed` event with this machine's clock the moment it arrives."""

    def __init__(self, server):
        self.seen: dict[int, tuple[float, protocol.StoryEvent]] = {}
        self.stats: list[protocol.Stats] = []
        self._stop = threading.Event()
        self._joined = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(server.endpoints.events,),
                                        daemon=True)
        self._thread.start()
        assert self._joined.wait(10), "no stats event: the subscription never joined"

    def _run(self, endpoint: str) -> None:
        sock = subscribe_all(endpoint)
        try:
            while not self._stop.is_set():
                if not sock.poll(50):
                    continue
                topic, payload = sock.recv_multipart()
                arrived = time.time()
                event = protocol.decode_event(topic, payload)
                if isinstance(event, protocol.Stats):
                    self.stats.append(event)
                    self._joined.set()
                elif event.event == "completed":
                    self.seen[event.story_id] = (arrived, event)
        finally:
            sock.close(linger=0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


def test_an_outside_client_sees_the_lead_time_percentiles_the_stats_report(server_factory):
    server = server_factory(workers=2, time_scale=0.02).start()
    clock = CompletionClock(server)
    rng = random.Random(5)
    replied: dict[int, float] = {}  # story id -> when our create_story was answered
    try:
        with server.client() as client:
            for i in range(60):  # faster than 2 workers can go: a queue builds, lead times spread
                tasks = [{"estimate_ms": rng.randint(100, 2000)} for _ in range(rng.randint(1, 3))]
                story_id = client.create_story(f"timed {i}", tasks).story_id
                replied[story_id] = time.time()
        wait_for(lambda: len(clock.seen) == len(replied), 60, what="every story's completed event")
        final = wait_for(lambda: clock.stats and clock.stats[-1].stories_completed_in_window == 60
                         and clock.stats[-1], 10, what="stats over all 60 stories")
    finally:
        clock.close()
    ours = {sid: clock.seen[sid][0] - replied[sid] for sid in replied}
    served = {sid: clock.seen[sid][1].lead_time_s for sid in replied}
    assert max(ours.values()) - min(ours.values()) > 0.5, "lead times too alike to tell apart"
    for sid in replied:  # each story: our stopwatch and the server's agree
        assert abs(ours[sid] - served[sid]) < STATS_INTERVAL, sid
    for p, reported in ((50, final.lead_time_p50_s), (85, final.lead_time_p85_s),
                        (95, final.lead_time_p95_s)):
        # nearest rank over the events' own lead times: exactly what the stats say
        assert reported == nearest_rank(sorted(served.values()), p), p
        # over our own timestamps: the same within a stats interval
        assert abs(nearest_rank(sorted(ours.values()), p) - reported) < STATS_INTERVAL, p
    assert final.lead_time_mean_s == pytest.approx(sum(served.values()) / 60, abs=1e-6)
    cycles = sorted(e.cycle_time_s for _, e in clock.seen.values())
    assert final.cycle_time_p50_s == nearest_rank(cycles, 50)
    assert final.cycle_time_p95_s <= final.lead_time_p95_s


def one_task_stories(client, count: int, estimate_ms: int) -> list[int]:
    return [client.create_story(f"one {i}", [{"estimate_ms": estimate_ms}]).story_id
            for i in range(count)]


def test_wip_limit_two_on_four_workers_then_lifted(inproc_factory):
    server = inproc_factory(workers=4, time_scale=0.1, wip_limit=2).start()
    tap = EventTap(server)
    with server.client() as client:
        one_task_stories(client, 16, estimate_ms=2000)  # 0.2 s each
        tap.wait_stats(lambda s: s.completed_stories == 16, 30, what="the 16 stories done")
        under_limit = tap.stats()
        assert all(s.wip_limit == 2 for s in under_limit)
        assert max(s.stories_in_progress for s in under_limit) == 2, "the limit was never reached"
        assert all(s.stories_in_progress <= 2 for s in under_limit)
        assert all(s.workers_busy <= 2 and s.tasks_running <= 2 for s in under_limit)
        # workers stood idle with work waiting: what a limit does
        assert any(s.workers == 4 and s.workers_busy <= 2 and s.tasks_queued > 0 for s in under_limit)

        assert client.set_flow(wip_limit=0) == protocol.FlowResult(0, 60.0)
        one_task_stories(client, 16, estimate_ms=2000)
        tap.wait_stats(lambda s: s.completed_stories == 32, 30, what="16 more done")
        lifted = [s for s in tap.stats()[len(under_limit):] if s.wip_limit == 0]
        assert max(s.stories_in_progress for s in lifted) > 2
        assert max(s.workers_busy for s in lifted) > 2
    tap.close()


def test_a_story_deleted_while_in_progress_frees_its_wip_slot(inproc_factory):
    server = inproc_factory(workers=2, time_scale=1.0, wip_limit=1).start()
    tap = EventTap(server)
    with server.client() as client:
        doomed = client.create_story("long", [{"estimate_ms": 60_000}]).story_id
        waiting = client.create_story("next", [{"estimate_ms": 50}]).story_id
        wait_for(lambda: client.get_story(doomed).tasks[0].state == "running", 10,
                 what="the long story to start")
        tap.wait_stats(lambda s: s.stories_in_progress == 1 and s.tasks_queued == 1,
                       what="one in progress, one waiting")
        assert client.get_story(waiting).started_at is None  # an idle worker, and it waits
        deleted_at = time.time()
        client.delete_story(doomed)
        wait_for(lambda: client.get_story(waiting).status == "done", 10, what="the next to run")
        story = client.get_story(waiting)
        assert story.started_at >= deleted_at - 0.01
        assert story.cycle_time_s == pytest.approx(story.completed_at - story.started_at)
        tap.wait_stats(lambda s: s.stories_in_progress == 0 and s.open_stories == 0,
                       what="nothing in progress")
    tap.close()


def test_a_restart_with_stories_in_progress_keeps_their_started_at(server_factory):
    server = server_factory(workers=4, time_scale=1.0, extra=["--wip-limit", "2"]).start()
    with server.client() as client:
        ids = one_task_stories(client, 4, estimate_ms=1500)
        wait_for(lambda: sum(client.get_story(i).tasks[0].state == "running" for i in ids) == 2,
                 10, what="two stories running")
        before = {i: client.get_story(i).started_at for i in ids}
    started = [i for i in ids if before[i] is not None]
    assert started == ids[:2]  # in creation order; the other two wait
    server.kill9()  # mid-task: the two running tasks are lost with the workers

    server.start()
    tap = EventTap(server)
    with server.client() as client:
        first = client.snapshot(history_seconds=0).stats
        assert (first.stories_in_progress, first.open_stories, first.wip_limit) == (2, 4, 2)
        assert {i: client.get_story(i).started_at for i in ids} == before  # survived
        tap.wait_stats(lambda s: s.completed_stories == 4, 30, what="all four done after it")
        assert all(s.stories_in_progress <= 2 for s in tap.stats())
        assert sorted(e.story_id for e in tap.story_events("completed")) == sorted(ids)
        for story_id in started:  # their cycle runs from the first start, across the crash
            story = client.get_story(story_id)
            assert story.cycle_time_s == pytest.approx(story.completed_at - before[story_id])
            assert story.cycle_time_s >= 1.5
        later = [client.get_story(i) for i in ids[2:]]
        assert all(s.started_at is not None and s.started_at > max(before[i] for i in started)
                   for s in later)
    tap.close()


def test_the_snapshot_carries_recent_completions_and_a_restart_keeps_the_window(server_factory):
    server = server_factory(workers=2, time_scale=0.01).start()
    with server.client() as client:
        ids = one_task_stories(client, 5, estimate_ms=100)
        wait_for(lambda: client.snapshot(0).stats.completed_stories == 5, 20, what="5 done")
        snap = client.snapshot(history_seconds=0)
        # Oldest first; stories completed in one turn share a time, in no set order.
        assert sorted(c.story_id for c in snap.completions) == sorted(ids)
        times = [c.completed_at for c in snap.completions]
        assert times == sorted(times)
        for c in snap.completions:
            story = client.get_story(c.story_id)
            assert c.completed_at == story.completed_at
            assert c.lead_time_s == pytest.approx(story.lead_time_s)
            assert c.cycle_time_s == pytest.approx(story.cycle_time_s)
        assert snap.stats.stories_completed_in_window == 5
    assert server.stop() == 0
    server.start()
    with server.client() as client:
        after = client.snapshot(history_seconds=0)
        assert [(c.completed_at, c.story_id) for c in after.completions] == \
            sorted((c.completed_at, c.story_id) for c in snap.completions)
        assert after.stats.lead_time_p50_s == pytest.approx(snap.stats.lead_time_p50_s)


@pytest.mark.parametrize("fields, path, limit", [
    ({"wip_limit": -1}, "$.wip_limit", ">= 0"),
    ({"wip_limit": protocol.WIP_LIMIT_MAX + 1}, "$.wip_limit", str(protocol.WIP_LIMIT_MAX)),
    ({"flow_window_s": 0}, "$.flow_window_s", "> 0"),
    ({"flow_window_s": 86_401}, "$.flow_window_s", "86400"),
    ({"wip_limit": "2"}, "$.wip_limit", "int"),
])
def test_set_flow_refuses_out_of_range_values_naming_the_field(server, fields, path, limit):
    with server.client() as client:
        with pytest.raises(RequestError) as caught:
            client.call("set_flow", **fields)
        assert caught.value.code == protocol.INVALID
        assert f"`{path}`" in caught.value.message and limit in caught.value.message
        assert client.set_flow() == protocol.FlowResult(0, 60.0)  # nothing changed
        assert client.set_flow(flow_window_s=5.5) == protocol.FlowResult(0, 5.5)
