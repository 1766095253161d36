"""The feed thread: the SUB socket, snapshots, decoding and coalescing, off the UI thread.

`FeedWorker` is a QObject moved to its own QThread. Its loop owns the SUB
socket and a request Client of its own (ZeroMQ sockets belong to one thread);
what to apply and when to ask for a snapshot is the core's FeedSession
(storypulse.feed_session, the rules `watch` follows too). It hands the UI one
`FeedBatch` at most every 1/`max_rate` seconds, however many messages
arrived: one signal per message would flood the UI thread's event queue.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import msgspec
import zmq
from PySide6.QtCore import QObject, QThread, Signal, Slot

from storypulse import protocol
from storypulse.client import Client, PendingRequest, RequestError, ServerUnavailable
from storypulse.endpoints import Endpoints
from storypulse.events import ready_events, subscriber, wait_for_input
from storypulse.feed_session import (CONNECTED, CONNECTING, DISCONNECTED, RECONNECTING, Apply, AskSnapshot,
                                     Decision, FeedSession, Load, StateChanged)
from storypulse.security import MissingKey

from .threads import stop_thread

__all__ = ["CONNECTED", "CONNECTING", "DISCONNECTED", "RECONNECTING", "Feed", "FeedBatch", "FeedWorker"]

MAX_STORY_EVENTS = 5_000  # per batch; beyond this the UI only needs to know it missed some
REQUEST_TIMEOUT_S = 1.5
IDLE_POLL_S = 0.1  # the longest poll: how soon a stop is noticed


@dataclass
class FeedBatch:
    """Everything that arrived since the previous batch, in order."""

    snapshot: protocol.SnapshotResult | None = None  # apply first when set
    stats: list[protocol.Stats] = field(default_factory=list)
    story_events: list[protocol.StoryEvent] = field(default_factory=list)
    pool_events: list[protocol.PoolEvent] = field(default_factory=list)
    notes: list[protocol.NoteEvent] = field(default_factory=list)  # the server's (annotations)
    story_events_dropped: int = 0
    messages: int = 0  # messages decoded for this batch
    decoded_in_thread: int = 0  # threading.get_ident() of the decoding thread

    def __bool__(self) -> bool:
        return bool(self.snapshot or self.stats or self.story_events or self.pool_events or self.notes
                    or self.story_events_dropped)

    def add(self, event: protocol.Event | protocol.OtherEvent) -> None:
        self.messages += 1
        if isinstance(event, protocol.Stats):
            self.stats.append(event)
        elif isinstance(event, protocol.StoryEvent):
            if len(self.story_events) < MAX_STORY_EVENTS:
                self.story_events.append(event)
            else:
                self.story_events_dropped += 1
        elif isinstance(event, protocol.PoolEvent):
            self.pool_events.append(event)
        elif isinstance(event, protocol.NoteEvent):
            self.notes.append(event)
        # else a topic this app does not know (a newer server's): only its seq counted


class FeedWorker(QObject):
    batch_ready = Signal(object)  # FeedBatch
    state_changed = Signal(str, str)  # state, detail (server version or reason)

    def __init__(self, endpoints: Endpoints, *, history_seconds: int = 3600, max_rate: float = 30.0):
        super().__init__()
        self.endpoints = endpoints
        self.history_seconds = history_seconds
        self.min_emit_gap = 1.0 / max_rate
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
            client = Client(self.endpoints, timeout=REQUEST_TIMEOUT_S)
            # Subscribe before the snapshot (Clone pattern), with room for bursts.
            sub = subscriber(self.endpoints, b"", rcvhwm=200_000)
        except MissingKey as exc:
            self._set_state(DISCONNECTED, str(exc))
            return
        try:
            _Loop(self, sub, client).run()
        finally:
            client.close()
            sub.close(linger=0)
            self._set_state(DISCONNECTED, "stopped")

    def _set_state(self, state: str, detail: str) -> None:
        if state != self._state:
            self._state = state
            self.state_changed.emit(state, detail)


class _Loop:
    """One run of the feed thread: the sockets and the batching around a FeedSession."""

    def __init__(self, worker: FeedWorker, sub: zmq.Socket, client: Client):
        self.worker, self.sub, self.client = worker, sub, client
        self.session = FeedSession(history_seconds=worker.history_seconds, now=time.monotonic())
        self.pending = self._new_batch()
        self.last_emit = time.monotonic()
        self.request: PendingRequest | None = None  # the ping or snapshot in flight
        self.snapshot_history = 0  # the snapshot to ask for once the ping is answered
        self.version = ""

    def _new_batch(self, snapshot: protocol.SnapshotResult | None = None) -> FeedBatch:
        return FeedBatch(snapshot=snapshot, decoded_in_thread=self.worker.decode_thread_id or 0)

    def run(self) -> None:
        worker, session, sub = self.worker, self.session, self.sub
        worker._set_state(CONNECTING, str(worker.endpoints))
        while not worker._stop.is_set():
            now = time.monotonic()
            self._follow(session.tick(now))
            wait = min(worker.min_emit_gap if self.pending else IDLE_POLL_S, session.next_tick() - now)
            events = wait_for_input(sub, self.request, wait)
            if self.request is not None:
                self._take_reply()
            if events:
                for event in ready_events(sub):  # bounded, so a flood cannot starve the emit below
                    if event is None:
                        worker.bad_messages += 1
                        continue
                    worker.messages_total += 1
                    self._follow(session.event(event, time.monotonic()))
            now = time.monotonic()
            if self.pending and now - self.last_emit >= worker.min_emit_gap:
                self._emit(now)

    def _emit(self, now: float) -> None:
        self.worker.batch_ready.emit(self.pending)
        self.pending = self._new_batch()
        self.last_emit = now

    def _follow(self, decisions: list[Decision]) -> None:
        for decision in decisions:
            if isinstance(decision, Apply):
                self.pending.add(decision.event)
            elif isinstance(decision, Load):
                if self.pending:  # what was applied before it goes first, in its own batch
                    self._emit(time.monotonic())
                self.pending = self._new_batch(decision.snapshot)
                self.last_emit = 0.0  # show it at once
                self.worker.snapshots_taken += 1
            elif isinstance(decision, AskSnapshot):
                self._ask(decision.history_seconds)
            elif isinstance(decision, StateChanged):
                self._show_state(decision)

    def _show_state(self, change: StateChanged) -> None:
        endpoints = self.worker.endpoints
        if change.state == CONNECTED:
            self.worker._set_state(CONNECTED, self.version)
        else:
            self.worker._set_state(change.state, f"{endpoints}: {change.reason}")

    def _ask(self, history_seconds: int) -> None:
        # The server's version is shown while connected: ask for it first when (re)connecting.
        self.snapshot_history = history_seconds
        try:
            if not self.version or self.session.state != CONNECTED:
                self.request = self.client.request("ping")
            else:
                self.request = self.client.request("snapshot", history_seconds=history_seconds)
        except zmq.ZMQError as exc:
            self._follow(self.session.snapshot_failed(str(exc), time.monotonic()))

    def _take_reply(self) -> None:
        request = self.request
        assert request is not None
        try:
            done, result = request.take(0)
            if done and request.op == "ping":
                self.version = result.server_version
                self.request = self.client.request("snapshot", history_seconds=self.snapshot_history)
                return
        except (ServerUnavailable, RequestError, msgspec.MsgspecError, zmq.ZMQError) as exc:
            self.request = None
            self._follow(self.session.snapshot_failed(str(exc), time.monotonic()))
            return
        if done:
            self.request = None
            self._follow(self.session.snapshot_reply(result, time.monotonic()))


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
