"""`storypulse watch`: the live figures in a terminal, kept current with the Clone pattern.

A late joiner subscribes to the PUB socket first, then asks for a snapshot
(which carries the seq of the last message published before it), then applies
only events with a higher seq. A gap in seq, or a seq that goes backwards after
newer events were applied (the server restarted), makes it ask again.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections import deque
from typing import Any, Callable, TextIO

import zmq

from . import format as fmt
from . import protocol
from .client import Client
from .endpoints import Endpoints
from .security import client_security_for

HISTORY_POINTS = 120  # one a second: what the sparklines can show
SPARK_WIDTH = 40

# What Figures.apply says about one event.
APPLIED, OLD, GAP = "applied", "old", "gap"


class Figures:
    """The latest stats, recent history and last pool decision, with the seq they are good to."""

    def __init__(self) -> None:
        self.seq: int | None = None  # None until the first snapshot
        self.stats: protocol.Stats | None = None
        self.pool: protocol.PoolEvent | None = None
        self.history: deque[protocol.Stats] = deque(maxlen=HISTORY_POINTS)
        self.snapshots = 0
        self._applied_since_snapshot = False

    def load_snapshot(self, snap: protocol.SnapshotResult) -> None:
        self.seq = snap.seq
        self.stats = snap.stats
        self.history.clear()
        self.history.extend(snap.history)
        self.snapshots += 1
        self._applied_since_snapshot = False

    def apply(self, event: protocol.Stats | protocol.StoryEvent | protocol.PoolEvent) -> str:
        """APPLIED, OLD (already in the snapshot: dropped) or GAP (ask for a new snapshot)."""
        if self.seq is None:
            return GAP
        if event.seq <= self.seq:
            # Older than the snapshot is normal right after it; older than an event
            # we already applied means the numbering restarted with the server.
            return GAP if self._applied_since_snapshot else OLD
        if event.seq != self.seq + 1:
            return GAP
        self.seq = event.seq
        self._applied_since_snapshot = True
        if isinstance(event, protocol.Stats):
            self.stats = event
            # Keep the history at one point a second, like the snapshot's.
            if not self.history or event.ts >= self.history[-1].ts + 1.0:
                self.history.append(event)
        elif isinstance(event, protocol.PoolEvent):
            self.pool = event
        return APPLIED


def render(figures: Figures, server: str, state: str, now: float) -> list[str]:
    """The panel as lines of text; `now` is the wall clock (for "x s ago")."""
    head = f"storypulse watch · {server} · {state}"
    if figures.seq is not None:
        head += f" · seq {figures.seq}"
    s = figures.stats
    if s is None:
        return [head, "", "  no figures yet"]
    produced = [h.stories_produced_per_s for h in figures.history]
    completed = [h.stories_completed_per_s for h in figures.history]
    lines = [head + f" · {fmt.clock(s.ts, now)}", ""]
    if s.database != "ok":
        lines += [f"  DATABASE UNAVAILABLE — writes refused, retrying: {s.database_error}", ""]
    lines += [
        f"  stories produced   {fmt.rate(s.stories_produced_per_s):>12}   {fmt.sparkline(produced, SPARK_WIDTH)}",
        f"  stories completed  {fmt.rate(s.stories_completed_per_s):>12}   {fmt.sparkline(completed, SPARK_WIDTH)}",
        f"  open stories       {fmt.count(s.open_stories):>12}",
        f"  completed stories  {fmt.count(s.completed_stories):>12}",
        "",
        f"  tasks    queued {fmt.count(s.tasks_queued)} · running {fmt.count(s.tasks_running)}"
        f" · queued work {fmt.duration(s.queued_work_s)} · done {fmt.count(s.tasks_completed)}"
        f" · in {fmt.rate(s.tasks_produced_per_s)} · out {fmt.rate(s.tasks_completed_per_s)}",
        f"  workers  busy {s.workers_busy} / {s.workers} · target {s.workers_target}"
        f" · bounds {s.min_workers}-{s.max_workers}",
    ]
    p = figures.pool
    if p is not None:
        lines.append(
            f"  last resize  {p.old_size} -> {p.new_size}: {p.reason} ({fmt.duration(now - p.ts)} ago)"
        )
    else:
        lines.append("  last resize  none seen yet")
    lines += flow_lines(s)
    lines.append(f"  rates over the last {s.rate_window_s:g} s")
    return lines


def flow_lines(s: protocol.Stats) -> list[str]:
    """In progress and waiting, lead and cycle times; nothing from a server without them."""
    if s.flow_window_s is None:
        return []
    limit = f" (limit {s.wip_limit})" if s.wip_limit else " (no limit)"
    waiting = s.open_stories - s.stories_in_progress

    def times(p50: float | None, p85: float | None, p95: float | None) -> str:
        return f"p50 {fmt.duration(p50)} · p85 {fmt.duration(p85)} · p95 {fmt.duration(p95)}"

    return [
        f"  flow     in progress {fmt.count(s.stories_in_progress)}{limit} · waiting {fmt.count(waiting)}"
        f" · {fmt.count(s.stories_completed_in_window)} done in the last {fmt.duration(s.flow_window_s)}",
        f"  lead     {times(s.lead_time_p50_s, s.lead_time_p85_s, s.lead_time_p95_s)}"
        f" · mean {fmt.duration(s.lead_time_mean_s)}",
        f"  cycle    {times(s.cycle_time_p50_s, s.cycle_time_p85_s, s.cycle_time_p95_s)}",
    ]


def subscriber(endpoints: Endpoints, topic: bytes, context: zmq.Context | None = None,
               *, rcvhwm: int | None = None) -> zmq.Socket:
    """A SUB socket on the events endpoint (CURVE off loopback, like the request socket)."""
    sub = (context or zmq.Context.instance()).socket(zmq.SUB)
    sub.linger = 0
    if rcvhwm is not None:
        sub.rcvhwm = rcvhwm
    security = client_security_for(endpoints.host)
    if security is not None:
        security.apply(sub)
    sub.setsockopt(zmq.SUBSCRIBE, topic)
    sub.ipv6 = endpoints.ipv6
    sub.connect(endpoints.events)
    return sub


class Feed:
    """Owns the SUB socket and the snapshot request; keeps `figures` current."""

    def __init__(self, endpoints: Endpoints, figures: Figures, *, timeout: float,
                 context: zmq.Context | None = None,
                 on_stats: Callable[[protocol.Stats], Any] | None = None):
        self.endpoints = endpoints
        self.figures = figures
        self.timeout = timeout
        self.on_stats = on_stats
        ctx = context or zmq.Context.instance()
        # Subscribe before the first snapshot, so nothing published after it is missed.
        self.client = Client(endpoints, timeout=timeout, context=ctx)  # raises MissingKey first
        self.sub = subscriber(endpoints, b"", ctx)
        self.need_snapshot = True
        self.snapshot_id: int | None = None
        self.snapshot_sent = 0.0
        self.failed_snapshots = 0  # requests that got no reply in time
        self.last_stats = 0.0  # monotonic time of the last applied stats event
        self.bad_events = 0

    def close(self) -> None:
        self.sub.close(linger=0)
        self.client.close()

    def pump(self, until: float) -> None:
        """Handle events and replies until the monotonic deadline `until`."""
        while True:
            now = time.monotonic()
            self._maybe_snapshot(now)
            wait = until - now
            if wait <= 0:
                return
            poller = zmq.Poller()
            poller.register(self.sub, zmq.POLLIN)
            if self.snapshot_id is not None:
                poller.register(self.client.socket, zmq.POLLIN)
                wait = min(wait, max(0.0, self.snapshot_sent + self.timeout - now))
            ready = dict(poller.poll(wait * 1000))
            if self.snapshot_id is not None and self.client.socket in ready:
                self._take_reply()
            if self.sub in ready:
                self._drain_events()

    def _maybe_snapshot(self, now: float) -> None:
        if self.snapshot_id is not None:
            if now - self.snapshot_sent < self.timeout:
                return
            # No reply: drop the socket so a late answer cannot be taken for the next one.
            self.client.close()
            self.snapshot_id = None
            self.failed_snapshots += 1
        if self.need_snapshot:
            self.snapshot_id = self.client.send("snapshot", history_seconds=HISTORY_POINTS)
            self.snapshot_sent = now

    def _take_reply(self) -> None:
        try:
            reply_id, result = self.client.receive(timeout=0)
        except Exception:  # an error reply; ask again on the next turn
            self.snapshot_id = None
            return
        if reply_id == self.snapshot_id and isinstance(result, protocol.SnapshotResult):
            self.figures.load_snapshot(result)
            self.snapshot_id = None
            self.need_snapshot = False
            self.last_stats = time.monotonic()
            if self.on_stats:
                self.on_stats(result.stats)

    def _drain_events(self) -> None:
        for _ in range(10_000):  # bounded, so a flood cannot starve the redraw
            try:
                frames = self.sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                event = protocol.decode_event_frames(frames)
            except protocol.ProtocolError:  # a broken or newer server: drop, count, go on
                self.bad_events += 1
                continue
            outcome = self.figures.apply(event)
            if outcome == GAP:
                self.need_snapshot = True
            elif outcome == APPLIED and isinstance(event, protocol.Stats):
                self.last_stats = time.monotonic()
                if self.on_stats:
                    self.on_stats(event)

    def state(self, now: float, stale_after: float) -> str:
        if self.figures.seq is None:
            return "waiting for server…"
        if now - self.last_stats > stale_after:
            # Quiet too long: ask for a fresh snapshot; it tells "restarted" from "gone".
            self.need_snapshot = True
            return f"reconnecting… (no figures for {fmt.duration(now - self.last_stats)})"
        return "live"


def run(endpoints: Endpoints, *, once: bool, duration: float | None, refresh: float,
        timeout: float, as_json: bool, stale_after: float = 2.0,
        out: TextIO = sys.stdout) -> int:
    """The watch loop; returns an exit code. Raises ServerUnavailable when `once` gets no snapshot."""
    from .client import ServerUnavailable

    figures = Figures()
    def emit_json(stats: protocol.Stats) -> None:
        print(protocol.encode(stats).decode(), file=out, flush=True)

    # JSON lines: one per stats event as it is applied (with --once, only the last at the end).
    feed = Feed(endpoints, figures, timeout=timeout, on_stats=emit_json if as_json and not once else None)
    tty = out.isatty() and not as_json
    drawn = 0  # lines of the last frame, to redraw over it
    start = time.monotonic()
    end = start + duration if duration else None
    try:
        if tty and not once:
            out.write("\x1b[?25l")  # hide the cursor while redrawing
        while True:
            now = time.monotonic()
            if once:
                feed.pump(min(now + 0.05, start + timeout))
                if figures.seq is not None or feed.failed_snapshots:
                    break
                if time.monotonic() >= start + timeout:
                    break
                continue
            next_frame = now + refresh
            if end is not None:
                next_frame = min(next_frame, end)
            feed.pump(next_frame)
            now = time.monotonic()
            if not as_json:
                lines = render(figures, str(endpoints), feed.state(now, stale_after), time.time())
                drawn = _draw(out, lines, drawn if tty else 0, tty)
            else:
                feed.state(now, stale_after)
            if end is not None and now >= end:
                break
        if once:
            if figures.seq is None or figures.stats is None:
                raise ServerUnavailable(f"no reply from {endpoints.requests}")
            if as_json:
                emit_json(figures.stats)
            else:
                _draw(out, render(figures, str(endpoints), "live", time.time()), 0, False)
        return 0
    finally:
        if tty and not once:
            out.write("\x1b[?25h")
            out.flush()
        feed.close()


def _draw(out: TextIO, lines: list[str], previous: int, tty: bool) -> int:
    if tty:
        # Cut lines to the terminal's width: a wrapped line would break the redraw.
        width = shutil.get_terminal_size().columns
        lines = [line[:width] for line in lines]
        # Back to the top of the last frame, clear below, draw the new one.
        prefix = f"\x1b[{previous}F\x1b[J" if previous else ""
        out.write(prefix + "\n".join(lines) + "\n")
    else:
        out.write("\n".join(lines) + "\n\n")
    out.flush()
    return len(lines)
