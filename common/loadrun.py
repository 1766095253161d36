"""`storypulse load`: random stories at a rate (steady or Poisson), pipelined, with back-pressure handled.

Requests are pipelined (many in flight on one DEALER socket, matched by id) up
to a bound; a `busy` or `unavailable` reply puts the story back to be sent again a little later
(backing off while the server stays busy); anything else is counted as an error.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, TextIO

from . import format as fmt
from . import protocol
from .client import Client, RequestError
from .loadgen import Pacer, StoryGenerator

NO_REPLY = "the server stopped answering"
BACKOFF_FIRST, BACKOFF_MAX = 0.05, 1.0  # seconds before a story refused as busy is sent again


@dataclass
class Tally:
    sent: int = 0  # new stories sent
    resent: int = 0  # stories sent again after `busy`
    acked: int = 0  # stories the server stored
    tasks_acked: int = 0
    busy: int = 0  # refused for now (busy, or the database unavailable): sent again
    errors: int = 0
    skipped: int = 0  # ticks dropped because the in-flight bound was reached
    gave_up: int = 0  # busy stories still waiting to be resent at the end
    unanswered: int = 0  # requests without a reply at the end
    first_error: str | None = None
    latencies: list[float] = field(default_factory=list)  # send -> ack, seconds

    def percentile(self, q: float) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class LoadRun:
    """One run of the simulator; time is passed in so the cadence is the Pacer's alone."""

    def __init__(self, client: Client, generator: StoryGenerator, *, rate: float,
                 max_in_flight: int, start: float, arrivals: str = "steady"):
        self.client = client
        self.generator = generator
        self.rate = rate
        self.max_in_flight = max_in_flight
        self.pacer = Pacer(rate, start, arrivals, seed=generator.seed)
        self.tally = Tally()
        self.pending: dict[int, tuple[dict[str, Any], float]] = {}  # id -> (story, sent at)
        self.retry: deque[tuple[float, dict[str, Any]]] = deque()  # (due, story), in due order
        self.backoff = BACKOFF_FIRST

    def send_due(self, now: float) -> None:
        while self.retry and self.retry[0][0] <= now and len(self.pending) < self.max_in_flight:
            self._send(self.retry.popleft()[1], now)
            self.tally.resent += 1
        for _ in range(self.pacer.due(now)):
            if len(self.pending) >= self.max_in_flight:
                self.tally.skipped += 1
                continue
            self._send(self.generator.story(), now)
            self.tally.sent += 1

    def _send(self, story: dict[str, Any], now: float) -> None:
        request_id = self.client.send("create_story", **story)
        self.pending[request_id] = (story, now)

    def next_wakeup(self, now: float) -> float:
        due = now + self.pacer.wait(now)
        if self.retry:
            due = min(due, self.retry[0][0])
        return due

    def receive(self, until: float) -> None:
        """Take replies until `until` (monotonic), returning early once nothing is in flight."""
        while self.pending:
            wait = until - time.monotonic()
            if wait <= 0 or not self.client.socket.poll(wait * 1000):
                return
            self._take_one()

    def _take_one(self) -> None:
        now = time.monotonic()
        try:
            request_id, result = self.client.receive(timeout=0)
        except RequestError as exc:
            entry = self.pending.pop(exc.request_id, None) if isinstance(exc.request_id, int) else None
            if exc.code in protocol.TRY_AGAIN and entry is not None:
                self.tally.busy += 1
                self.retry.append((now + self.backoff, entry[0]))
                self.backoff = min(BACKOFF_MAX, self.backoff * 2)
            else:
                self.tally.errors += 1
                self.tally.first_error = self.tally.first_error or f"{exc.code}: {exc.message}"
            return
        entry = self.pending.pop(request_id, None)
        if entry is None or not isinstance(result, protocol.CreateStoryResult):
            return
        self.tally.acked += 1
        self.tally.tasks_acked += len(result.task_ids)
        self.tally.latencies.append(now - entry[1])
        self.backoff = BACKOFF_FIRST

    def oldest_pending(self) -> float | None:
        return min((sent for _, sent in self.pending.values()), default=None)


def run(client: Client, generator: StoryGenerator, *, rate: float, duration: float,
        max_in_flight: int, arrivals: str = "steady",
        progress: TextIO = sys.stderr) -> tuple[Tally, float, str]:
    """Run until `duration` passes or SIGINT; returns (tally, seconds sending, how it ended).

    Ends early with NO_REPLY when a request stays unanswered for the client's timeout.
    """
    clock = time.monotonic
    stop = _StopFlag()
    start = clock()
    end = start + duration
    loop = LoadRun(client, generator, rate=rate, max_in_flight=max_in_flight, start=start,
                   arrivals=arrivals)
    tty = progress.isatty()
    progress_every = 0.5 if tty else 1.0
    next_progress = start + progress_every
    ended = "duration reached"
    with stop:
        while True:
            now = clock()
            if stop.set:
                ended = "interrupted"
                break
            if now >= end:
                break
            oldest = loop.oldest_pending()
            if oldest is not None and now - oldest > client.timeout:
                ended = NO_REPLY
                break
            loop.send_due(now)
            if now >= next_progress:
                _progress(progress, loop, now - start, duration, rate, tty)
                next_progress = now + progress_every
            wake = min(loop.next_wakeup(now), next_progress, end)
            if loop.pending:
                loop.receive(wake)
            else:
                time.sleep(max(0.0, min(wake - clock(), 0.2)))
        sending = clock() - start
        # Collect the replies still owed (a second Ctrl-C gives up on them).
        drain_until = clock() + (0 if ended == NO_REPLY else client.timeout)
        while loop.pending and clock() < drain_until and not stop.twice:
            loop.receive(min(drain_until, clock() + 0.2))
    if tty:
        progress.write("\r\x1b[K")
    _progress(progress, loop, sending, duration, rate, False)
    loop.tally.unanswered = len(loop.pending)
    loop.tally.gave_up = len(loop.retry)
    return loop.tally, sending, ended


def _progress(out: TextIO, loop: LoadRun, elapsed: float, duration: float, rate: float, tty: bool) -> None:
    t = loop.tally
    actual = t.acked / elapsed if elapsed > 0 else 0.0
    line = (f"load {elapsed:5.1f}/{duration:g} s  sent {t.sent + t.resent}  acked {t.acked}"
            f"  busy {t.busy}  errors {t.errors}  in flight {len(loop.pending)}"
            f"  rate {actual:.1f}/s of {rate:g}/s")
    out.write(("\r" + line + "\x1b[K") if tty else line + "\n")
    out.flush()


def summary(tally: Tally, sending: float, ended: str, rate: float, max_in_flight: int,
            arrivals: str = "steady", estimates: str = "uniform") -> dict[str, Any]:
    return {
        "ended": ended,
        "seconds": round(sending, 3),
        "target_rate": rate,
        "arrivals": arrivals,
        "estimates": estimates,
        "stories_sent": tally.sent,
        "stories_created": tally.acked,
        "tasks_created": tally.tasks_acked,
        "created_per_s": round(tally.acked / sending, 2) if sending > 0 else 0.0,
        "busy_replies": tally.busy,
        "resent": tally.resent,
        "gave_up": tally.gave_up,
        "errors": tally.errors,
        "first_error": tally.first_error,
        "skipped_ticks": tally.skipped,
        "unanswered": tally.unanswered,
        "max_in_flight": max_in_flight,
        "ack_latency_ms": {
            name: (None if v is None else round(v * 1000, 2))
            for name, v in (("p50", tally.percentile(0.5)), ("p95", tally.percentile(0.95)),
                            ("max", max(tally.latencies) if tally.latencies else None))
        },
    }


def summary_text(s: dict[str, Any]) -> str:
    lat = s["ack_latency_ms"]

    def ms(v: float | None) -> str:
        return "-" if v is None else fmt.duration(v / 1000)

    return "\n".join([
        f"load ended ({s['ended']}) after {fmt.duration(s['seconds'])}",
        f"  stories created  {s['stories_created']:>8}   {s['created_per_s']:.1f}/s (target {s['target_rate']:g}/s, {s.get('arrivals', 'steady')})",
        f"  tasks created    {s['tasks_created']:>8}",
        f"  busy replies     {s['busy_replies']:>8}   resent {s['resent']}, still waiting at the end {s['gave_up']}",
        f"  errors           {s['errors']:>8}" + (f"   first: {s['first_error']}" if s["first_error"] else ""),
        f"  skipped ticks    {s['skipped_ticks']:>8}   (at most {s['max_in_flight']} requests in flight)",
        f"  unanswered       {s['unanswered']:>8}",
        f"  ack latency      p50 {ms(lat['p50'])} · p95 {ms(lat['p95'])} · max {ms(lat['max'])}",
    ])


class _StopFlag:
    """SIGINT sets a flag (the loop acts on it); a second one also abandons the drain."""

    def __init__(self) -> None:
        self.set = False
        self.twice = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        self.twice = self.set
        self.set = True

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
