"""The seams between the loop and the service: effects, the work state's shutdown, a clock of the test's."""

from __future__ import annotations

import pytest
import zmq

from inproc import FakeClock, InprocServer
from storypulse import protocol
from storypulse.server.config import ServerConfig
from storypulse.server.pool import Pool
from storypulse.server.service import Service
from storypulse.server.state import WorkState
from storypulse.server.store import Store


def test_clearing_the_queue_keeps_every_figure_consistent():
    state = WorkState(window=3)
    state.add_story(1, 1, [100, 200])
    state.add_story(2, 3, [300, 400])  # beyond the window: into the backlog
    running = state.take_lease(1.0, 1, 0.0)  # task 1 runs
    assert running == [(1, 100)] and state.backlog_tasks == 2
    assert state.clear_queue() == 3
    assert (state.queued, state.queued_ms, state.mem_queued, state.backlog_tasks) == (0, 0, 0, 0)
    assert not state.dispatchable and not state.wants_refill()
    assert state.take_lease(1.0, 10, 1.0) == []
    assert state.complete(2) == (None, None)  # taken off: a late Done for it is ignored
    task, finished = state.complete(1)  # the running task still completes
    assert task is not None and finished is None and state.running == 0
    assert state.queued == 0 and state.open_stories == 2  # the stories stay open, on disk


def test_a_service_is_built_and_answers_without_a_loop_behind_it(tmp_path):
    """Config, a store, the pool's bookkeeping and `now`: nothing of the loop, no callback."""
    store = Store.open(str(tmp_path / "alone.db"))
    pool = Pool("tcp://127.0.0.1:1", heartbeat=0.5, min_workers=0, max_workers=1, quiet_window=5)
    try:
        service = Service(ServerConfig.from_options({}), store, pool, 0.0)
        service.handle_request([b"c"], b'{"op": "ping", "id": 7}', 0.0, 1000.0)
        assert not service.effects.replies  # answers wait for the turn's commit
        assert service.commit(0.0, 1000.0)
        ((envelope, payload),) = service.effects.replies
        assert envelope == [b"c"] and protocol.decode_reply(payload).id == 7
    finally:
        store.close()


def test_the_loop_keeps_time_by_the_clock_it_is_given(tmp_path):
    clock = FakeClock()
    srv = InprocServer(tmp_path / "clock.db", workers=0, max_workers=2, stats_interval=1.0,
                       clock=clock)
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.linger = 0
    sub.setsockopt(zmq.SUBSCRIBE, protocol.TOPIC_STATS)
    sub.connect(srv.endpoints.events)
    try:
        srv.turn()
        clock.advance(0.9)
        for _ in range(20):
            srv.turn()
        assert not sub.poll(50), "a stats event before its interval had passed on the clock"
        clock.advance(0.2)

        def stats() -> protocol.Stats | None:
            if not sub.poll(0):
                return None
            topic, payload = sub.recv_multipart()
            return protocol.decode_event(topic, payload)
        # The subscription joins asynchronously: move on a whole interval until one arrives.
        first = srv.turn_until(lambda: stats() or clock.advance(1.0), what="a stats event")
        assert first.ts == pytest.approx(clock.wall())
    finally:
        sub.close(linger=0)
        srv.close()


def test_set_pool_resizes_in_the_turn_that_answers_it(tmp_path):
    clock = FakeClock()
    srv = InprocServer(tmp_path / "pool.db", workers=0, max_workers=2, clock=clock)
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(srv.endpoints.requests)
    try:
        srv.turn()  # the first scale decision: nothing to start
        assert srv.pool.target == 0 and not srv.pool.workers
        sock.send(protocol.encode({"op": "set_pool", "id": 1, "min_workers": 1}))
        srv.turn_until(lambda: sock.poll(0), what="the reply")  # the clock stands still
        reply = protocol.decode_reply(sock.recv())
        assert reply.ok and reply.result["target"] == 1
        assert srv.pool.size == 1  # spawned in that turn, not at the next scale tick
        assert srv.service.take_resize() is None  # the loop took the effect
    finally:
        sock.close(linger=0)
        srv.close()


def test_a_pipelining_client_gets_its_replies_in_order_and_reads_its_own_writes(tmp_path):
    """create, get_story (of that story), ping and snapshot sent at once: the get waits for the
    create's commit (the loop commits, then serves it), and the replies come back in order."""
    srv = InprocServer(tmp_path / "order.db", workers=0, max_workers=1, clock=FakeClock())
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(srv.endpoints.requests)
    sent = [{"op": "create_story", "id": 1, "name": "s", "tasks": [{"estimate_ms": 5}]},
            {"op": "get_story", "id": 2, "story_id": 1},
            {"op": "ping", "id": 3},
            {"op": "snapshot", "id": 4, "history_seconds": 0},
            {"op": "list_stories", "id": 5}]
    try:
        for body in sent:
            sock.send(protocol.encode(body))
        replies: list[protocol.Reply] = []

        def all_in() -> bool:
            while sock.poll(0):
                replies.append(protocol.decode_reply(sock.recv()))
            return len(replies) == len(sent)
        srv.turn_until(all_in, what="every reply")
        assert [r.id for r in replies] == [1, 2, 3, 4, 5] and all(r.ok for r in replies)
        assert replies[1].result["story_id"] == 1 and replies[1].result["status"] == "open"
        assert replies[3].result["stats"]["open_stories"] == 1
        assert replies[4].result["total"] == 1 and len(replies[4].result["stories"]) == 1
        assert not srv.service.deferred
    finally:
        sock.close(linger=0)
        srv.close()
