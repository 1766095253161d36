"""`storypulse watch`: the live figures in a terminal, kept current with the Clone pattern.

The rules are the core's feed session (storypulse.feed_session, shared with the
desktop app): subscribe first, then ask for a snapshot, apply only what follows
it; a gap is repaired by a new snapshot while the figures carry on; a server
that restarted, or a silence of a few stats intervals (2 s at least), makes it
join afresh. This module owns only the sockets and the drawing.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import Any, Callable, Iterable, TextIO

import zmq

from storypulse import format as fmt
from storypulse import protocol
from storypulse.client import Client, PendingRequest, RequestError, ServerUnavailable
from storypulse.endpoints import Endpoints
from storypulse.events import ready_events, subscriber, wait_for_input
from storypulse.feed_session import CONNECTED, RECONNECTING, Apply, AskSnapshot, Decision, FeedSession, Load
from storypulse.security import MissingKey

from .figures import HISTORY_POINTS, Figures, render
from .options import client_parser, fail, no_reply, positive_float


def watch(argv: list[str]) -> int:
    """The live figures in the terminal."""
    parser = client_parser("watch", "The live figures: stories produced and completed per second, open and "
                                    "completed stories, tasks, workers, the last pool resize, the server's last note.")
    parser.add_argument("--once", action="store_true", help="print one frame and exit")
    parser.add_argument("--duration", type=positive_float, metavar="S", help="stop after S seconds")
    parser.add_argument("--refresh", type=positive_float, metavar="S",
                        help="seconds between frames (default 0.25 on a terminal, 1 otherwise)")
    args = parser.parse_args(argv)
    refresh = args.refresh or (0.25 if sys.stdout.isatty() else 1.0)
    try:
        return run(args.server, once=args.once, duration=args.duration, refresh=refresh,
                   timeout=args.timeout, as_json=args.json)
    except ServerUnavailable:
        return no_reply("watch", args.server)
    except MissingKey as exc:
        return fail("watch", str(exc))
    except KeyboardInterrupt:
        return 0


def show(figures: Figures, decisions: Iterable[Decision],
         on_stats: Callable[[protocol.Stats], Any] | None = None) -> list[AskSnapshot]:
    """Apply the session's decisions to the figures; the snapshots it asks for are returned.

    `on_stats` sees every stats event applied, and the first snapshot's stats."""
    asks = []
    for decision in decisions:
        if isinstance(decision, Apply):
            figures.apply(decision.event)
            if on_stats and isinstance(decision.event, protocol.Stats):
                on_stats(decision.event)
        elif isinstance(decision, Load):
            first = figures.stats is None
            figures.load_snapshot(decision.snapshot)
            if on_stats and first:
                on_stats(decision.snapshot.stats)
        elif isinstance(decision, AskSnapshot):
            asks.append(decision)
    return asks


class Feed:
    """Owns the SUB socket and the snapshot request; keeps `figures` current through a FeedSession."""

    def __init__(self, endpoints: Endpoints, figures: Figures, *, timeout: float,
                 context: zmq.Context | None = None,
                 on_stats: Callable[[protocol.Stats], Any] | None = None):
        self.endpoints = endpoints
        self.figures = figures
        self.on_stats = on_stats
        ctx = context or zmq.Context.instance()
        # Subscribe before the first snapshot, so nothing published after it is missed.
        self.client = Client(endpoints, timeout=timeout, context=ctx)  # raises MissingKey first
        self.sub = subscriber(endpoints, b"", ctx)
        self.session = FeedSession(history_seconds=HISTORY_POINTS, now=time.monotonic())
        self.snapshot: PendingRequest | None = None
        self.failed_snapshots = 0  # requests that got no reply in time
        self.bad_events = 0  # malformed events dropped (a broken or newer server)

    def close(self) -> None:
        self.sub.close(linger=0)
        self.client.close()

    def pump(self, until: float) -> None:
        """Handle events, replies and the session's timer until the monotonic deadline `until`."""
        while True:
            now = time.monotonic()
            self._follow(self.session.tick(now))
            if until <= now:
                return
            events = wait_for_input(self.sub, self.snapshot, min(until, self.session.next_tick()) - now)
            if self.snapshot is not None:
                self._take_snapshot()
            if events:
                for event in ready_events(self.sub):
                    if event is None:
                        self.bad_events += 1
                    else:
                        self._follow(self.session.event(event, time.monotonic()))

    def _follow(self, decisions: list[Decision]) -> None:
        for ask in show(self.figures, decisions, self.on_stats):
            self.snapshot = self.client.request("snapshot", history_seconds=ask.history_seconds)

    def _take_snapshot(self) -> None:
        assert self.snapshot is not None
        try:
            done, result = self.snapshot.take(0)
        except (ServerUnavailable, RequestError) as exc:  # no reply in time (the socket went with it), or an error
            self.snapshot = None
            if isinstance(exc, ServerUnavailable):
                self.failed_snapshots += 1
            self._follow(self.session.snapshot_failed(str(exc), time.monotonic()))
            return
        if done:
            self.snapshot = None
            self._follow(self.session.snapshot_reply(result, time.monotonic()))

    def state(self, now: float) -> str:
        session = self.session
        if session.state == CONNECTED:
            return "live"
        if session.state == RECONNECTING:
            if session.quiet:
                return f"reconnecting… (no figures for {fmt.duration(now - session.last_event_at)})"
            return f"reconnecting… ({session.reason})"
        return "waiting for server…"


def run(endpoints: Endpoints, *, once: bool, duration: float | None, refresh: float,
        timeout: float, as_json: bool, out: TextIO = sys.stdout) -> int:
    """The watch loop; returns an exit code. Raises ServerUnavailable when `once` gets no snapshot."""
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
                lines = render(figures, str(endpoints), feed.state(now), time.time())
                drawn = _draw(out, lines, drawn if tty else 0, tty)
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
