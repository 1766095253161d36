"""The feed thread: the SUB socket, snapshots, decoding and coalescing, off the UI thread.

`FeedWorker` is a QObject moved to its own QThread. Its loop owns the SUB
socket and a request Client of its own (ZeroMQ sockets belong to one thread),
follows the Clone pattern (the core's SeqTracker, storypulse.clone, as `watch`
does), and hands the UI one `FeedBatch` at most every 1/`max_rate` seconds,
however many messages arrived: one signal per message would flood the UI
thread's event queue.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import msgspec
import zmq
from PySide6.QtCore import QObject, QThread, Signal, Slot

from storypulse import protocol
from storypulse.client import Client, RequestError, ServerUnavailable
from storypulse.clone import APPLY, GAP, RESTARTED, SeqTracker
from storypulse.endpoints import Endpoints
from storypulse.events import ready_events, subscriber
from storypulse.security import MissingKey

from .threads import stop_thread

CONNECTING, CONNECTED, RECONNECTING, DISCONNECTED = "connecting", "connected", "reconnecting", "disconnected"
MAX_STORY_EVENTS = 5_000  # per batch; beyond this the UI only needs to know it missed some


@dataclass
class FeedBatch:
    """Everything that arrived since the previous batch, in order."""

    snapshot: protocol.SnapshotResult | None = None  # apply first when set
    stats: list[protocol.Stats] = field(default_factory=list)
    story_events: list[protocol.StoryEvent] = field(default_factory=list)
    pool_events: list[protocol.PoolEvent] = field(default_factory=list)
    story_events_dropped: int = 0
    messages: int = 0  # messages decoded for this batch
    decoded_in_thread: int = 0  # threading.get_ident() of the decoding thread

    def __bool__(self) -> bool:
        return bool(self.snapshot or self.stats or self.story_events or self.pool_events or self.story_events_dropped)


class FeedWorker(QObject):
    batch_ready = Signal(object)  # FeedBatch
    state_changed = Signal(str, str)  # state, detail (server version or reason)

    def __init__(self, endpoints: Endpoints, *, history_seconds: int = 3600, max_rate: float = 30.0,
                 silence_s: float = 2.0):
        super().__init__()
        self.endpoints = endpoints
        self.history_seconds = history_seconds
        self.min_emit_gap = 1.0 / max_rate
        self.min_silence_s = silence_s
        self.decode_thread_id: int | None = None
        self.messages_total = 0
        self.snapshots_taken = 0
        self.bad_messages = 0  # events dropped as malformed (a broken or newer server)
        self._stop = threading.Event()
        self._state = ""

    # -- called from the UI thread -----------------------------------------
    def stop(self) -> None:
        """Thread-safe: the loop notices within one poll timeout."""
        self._stop.set()

    # -- runs in the feed thread --------------------------------------------
    @Slot()
    def run(self) -> None:
        self.decode_thread_id = threading.get_ident()
        try:  # CURVE keys are needed off loopback
            client = Client(self.endpoints, timeout=1.5)
            # Subscribe before the snapshot (Clone pattern), with room for bursts
            # while the snapshot request is in flight.
            sub = subscriber(self.endpoints, b"", rcvhwm=200_000)
        except MissingKey as exc:
            self._set_state(DISCONNECTED, str(exc))
            return
        try:
            self._loop(sub, client)
        finally:
            client.close()
            sub.close(linger=0)
            self._set_state(DISCONNECTED, "stopped")

    def _loop(self, sub: zmq.Socket, client: Client) -> None:
        tracker = SeqTracker()
        pending = FeedBatch(decoded_in_thread=self.decode_thread_id or 0)
        need_snapshot, next_attempt = True, 0.0
        last_emit = last_message = time.monotonic()
        interval = 0.25  # stats interval, learnt from the stream
        last_stats_ts: float | None = None
        last_data_at: float | None = None  # wall clock of the last stats applied
        version = ""
        self._set_state(CONNECTING, str(self.endpoints))

        while not self._stop.is_set():
            now = time.monotonic()
            if need_snapshot and now >= next_attempt:
                try:
                    if not version or self._state != CONNECTED:
                        ping = self._request(client, "ping")
                        if ping is None:
                            break  # stopping
                        version = ping.server_version
                    # The full history only when the charts have nothing; after a gap or an
                    # outage, just the missing part (a full hour is a megabyte to send).
                    history = self.history_seconds
                    if last_data_at is not None:
                        history = int(min(history, max(0.0, time.time() - last_data_at) + 5))
                    snap = self._request(client, "snapshot", history_seconds=history)
                    if snap is None:
                        break  # stopping
                except (ServerUnavailable, RequestError, msgspec.MsgspecError, zmq.ZMQError) as exc:
                    next_attempt = time.monotonic() + 1.0
                    if self._state in (CONNECTING, DISCONNECTED):
                        self._set_state(DISCONNECTED, f"{self.endpoints}: {exc}")
                    else:
                        self._set_state(RECONNECTING, str(self.endpoints))
                else:
                    tracker.reset(snap.seq, snap.stats.ts)
                    last_data_at = time.time()
                    self.snapshots_taken += 1
                    need_snapshot = False
                    pending = FeedBatch(snapshot=snap, decoded_in_thread=self.decode_thread_id or 0)
                    last_message = time.monotonic()
                    last_emit = 0.0  # show it at once
                    self._set_state(CONNECTED, version)

            wait = self.min_emit_gap if pending else 0.1
            if sub.poll(int(wait * 1000)):
                for event in ready_events(sub):  # bounded, so a flood cannot starve the emit below
                    if event is None:
                        self.bad_messages += 1
                        continue
                    last_message = time.monotonic()
                    self.messages_total += 1
                    verdict = tracker.classify(event.seq, event.ts)
                    if verdict == GAP:
                        # Keep showing data meanwhile; a snapshot repairs counts and the table.
                        tracker.skip_to(event.seq)
                        if not need_snapshot:
                            need_snapshot = True
                            next_attempt = max(next_attempt, time.monotonic())
                        verdict = APPLY
                    elif verdict == RESTARTED:
                        need_snapshot, next_attempt = True, 0.0
                        continue
                    if verdict != APPLY:
                        continue
                    pending.messages += 1
                    if isinstance(event, protocol.Stats):
                        if last_stats_ts is not None and event.ts > last_stats_ts:
                            interval = 0.8 * interval + 0.2 * min(event.ts - last_stats_ts, 5.0)
                        last_stats_ts = event.ts
                        last_data_at = time.time()
                        pending.stats.append(event)
                    elif isinstance(event, protocol.StoryEvent):
                        if len(pending.story_events) < MAX_STORY_EVENTS:
                            pending.story_events.append(event)
                        else:
                            pending.story_events_dropped += 1
                    else:
                        pending.pool_events.append(event)

            now = time.monotonic()
            if pending and now - last_emit >= self.min_emit_gap:
                self.batch_ready.emit(pending)
                pending = FeedBatch(decoded_in_thread=self.decode_thread_id or 0)
                last_emit = now
            silence_limit = max(self.min_silence_s, 3 * interval)
            if self._state == CONNECTED and now - last_message > silence_limit:
                # Quiet is not dead: stats come every interval, so this long without any is.
                self._set_state(RECONNECTING, str(self.endpoints))
                need_snapshot, next_attempt = True, 0.0
                version = ""

    def _request(self, client: Client, op: str, **fields):
        """One request, waiting in short slices so that a stop is noticed at once; None if stopped."""
        pending = client.request(op, **fields)
        while not self._stop.is_set():
            done, result = pending.take(0.1)
            if done:
                return result
        return None

    def _set_state(self, state: str, detail: str) -> None:
        if state != self._state:
            self._state = state
            self.state_changed.emit(state, detail)


class Feed(QObject):
    """Owns the feed thread: start, stop, and the worker's signals for the UI."""

    def __init__(self, endpoints: Endpoints, parent: QObject | None = None, **options):
        super().__init__(parent)
        self.thread = QThread()
        self.thread.setObjectName("storypulse-feed")
        self.worker = FeedWorker(endpoints, **options)  # no parent: it moves to the thread
        self.worker.moveToThread(self.thread)
        self.thread.started.connect(self.worker.run)
        self.batch_ready = self.worker.batch_ready
        self.state_changed = self.worker.state_changed

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout_ms: int = 5000) -> bool:
        """Stop the loop and join the thread; True when it ended in time."""
        return stop_thread(self.thread, self.worker.stop, timeout_ms)
