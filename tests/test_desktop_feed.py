"""The feed's Clone logic on real sockets: a gap in seq makes it take a new snapshot.

The real server never skips a seq on purpose, so a small publisher that speaks
the protocol plays the server here: it answers ping and snapshot on a ROUTER and
publishes on a PUB, and it can leave a number out.
"""

from __future__ import annotations

import threading
import time

import zmq
from PySide6.QtCore import QObject, Slot

from storypulse import protocol
from storypulse.endpoints import Endpoints
from storypulse.desktop.feed import CONNECTED, Feed
import fuzzing
from support import StandInServer, free_port_block


def stats(seq: int, completed: int) -> protocol.Stats:
    return protocol.Stats(
        seq=seq, ts=time.time(), stories_produced_per_s=0.0, stories_completed_per_s=0.0, open_stories=0,
        completed_stories=completed, tasks_produced_per_s=0.0, tasks_completed_per_s=0.0, tasks_queued=0,
        tasks_running=0, tasks_completed=0, queued_work_s=0.0, workers=1, workers_busy=0, workers_target=1,
        min_workers=1, max_workers=1, rate_window_s=5.0,
    )


class StandIn(threading.Thread):
    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.endpoints = Endpoints("127.0.0.1", port)
        self.seq = 0
        self.completed = 0
        self.snapshots = 0
        self.skip_next = threading.Event()
        self.halt = threading.Event()
        context = zmq.Context.instance()
        self.router = context.socket(zmq.ROUTER)
        self.router.bind(self.endpoints.requests)
        self.pub = context.socket(zmq.PUB)
        self.pub.bind(self.endpoints.events)

    def run(self) -> None:
        next_tick = time.monotonic()
        while not self.halt.is_set():
            if self.router.poll(10):
                identity, frame = self.router.recv_multipart()
                request = protocol.decode_request(frame)
                if isinstance(request, protocol.Ping):
                    result = protocol.PingResult("stand-in", protocol.PROTOCOL_VERSION)
                else:
                    self.snapshots += 1
                    result = protocol.SnapshotResult(self.seq, stats(self.seq, self.completed), [])
                self.router.send_multipart([identity, protocol.ok(request.id, result)])
            if time.monotonic() >= next_tick:
                next_tick += 0.05
                self.seq += 1
                self.completed += 1
                if self.skip_next.is_set():
                    self.skip_next.clear()
                    continue  # this seq is never published: a gap
                self.pub.send_multipart([protocol.TOPIC_STATS, protocol.encode(stats(self.seq, self.completed))])
        self.router.close(0)
        self.pub.close(0)


class Collector(QObject):
    """Lives in the UI thread, so the feed's signal is delivered here (a plain function would run in the feed thread)."""

    def __init__(self):
        super().__init__()
        self.stats: list[protocol.Stats] = []
        self.snapshots: list[protocol.SnapshotResult] = []
        self.threads: set[int] = set()

    @Slot(object)
    def take(self, batch) -> None:
        self.threads.add(threading.get_ident())
        self.stats.extend(batch.stats)
        if batch.snapshot is not None:
            self.snapshots.append(batch.snapshot)


def test_a_gap_in_seq_makes_the_feed_take_a_new_snapshot(qtbot):
    stand_in = StandIn(free_port_block())
    stand_in.start()
    feed = Feed(stand_in.endpoints)
    collector = Collector()
    feed.batch_ready.connect(collector.take)
    seen, snapshots = collector.stats, collector.snapshots
    try:
        with qtbot.waitSignal(feed.state_changed, check_params_cb=lambda state, _: state == CONNECTED,
                              timeout=10_000):
            feed.start()
        qtbot.waitUntil(lambda: len(seen) >= 10, timeout=10_000)
        assert feed.worker.snapshots_taken >= 1
        taken = feed.worker.snapshots_taken
        stand_in.skip_next.set()
        qtbot.waitUntil(lambda: feed.worker.snapshots_taken > taken, timeout=10_000)
        qtbot.waitUntil(lambda: len(snapshots) >= 2, timeout=10_000)
        # After the new snapshot, updates apply in order again, none twice.
        count = len(seen)
        qtbot.waitUntil(lambda: len(seen) >= count + 10, timeout=10_000)
        after = [s.seq for s in seen[count:]]
        assert after == sorted(set(after))
        assert collector.threads == {threading.get_ident()}  # delivered in the UI thread
    finally:
        assert feed.stop()
        stand_in.halt.set()
        stand_in.join(5)


def connected_feed(qtbot, endpoints: Endpoints, timeout_ms: int = 10_000) -> tuple[Feed, Collector]:
    """A started Feed whose batches go to a Collector, once it says it is connected."""
    feed = Feed(endpoints)
    collector = Collector()
    feed.batch_ready.connect(collector.take)
    try:
        with qtbot.waitSignal(feed.state_changed, check_params_cb=lambda state, _: state == CONNECTED,
                              timeout=timeout_ms):
            feed.start()
    except BaseException:
        feed.stop()
        raise
    return feed, collector


def test_the_feed_receives_live_stats_over_ipv6(qtbot, server_factory):
    """Requests and events both reach a server bound to [::1] (the SUB socket needs IPv6 on)."""
    server = server_factory(time_scale=0.01, extra=["--bind", "::1"]).start(wait=False)
    feed, collector = connected_feed(qtbot, Endpoints("::1", server.port), timeout_ms=20_000)
    try:
        qtbot.waitUntil(lambda: len(collector.stats) >= 5, timeout=10_000)
    finally:
        assert feed.stop()


def test_the_feed_drops_garbage_events_and_still_delivers(qtbot):
    """A broken server: one-frame and three-frame messages, bad JSON, deep nesting, absurd times."""
    behaviour = fuzzing.BrokenServer()
    with StandInServer(behaviour.answer, behaviour.cycle) as stand_in:
        feed, collector = connected_feed(qtbot, stand_in.endpoints)
        try:
            qtbot.waitUntil(lambda: len(collector.stats) >= 5
                            and feed.worker.bad_messages >= 2 * len(fuzzing.BROKEN_EVENTS), timeout=10_000)
            assert feed.thread.isRunning()
        finally:
            assert feed.stop()
