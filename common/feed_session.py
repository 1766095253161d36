"""The live-feed session of every client, sans-I/O: what to apply, when to ask for a snapshot.

The Clone pattern (protocol.md, "Joining late") as a state machine in h11's
shape. The caller owns the SUB socket, the request socket and the clock; it
feeds the session what arrives, with the monotonic time:

- `event(ev, now)`: a decoded event (malformed ones are the caller's to count);
- `snapshot_reply(snap, now)` / `snapshot_failed(reason, now)`: the outcome of
  the snapshot it was asked for (exactly one of the two per `AskSnapshot`; the
  request's deadline is the caller's PendingRequest, the one place a client
  gives up on a reply);
- `tick(now)`: the timer, due by `next_tick()`.

Each returns the decisions, in order: `Load(snapshot)` (take it as the base, or
merge it: see the gap rule), `Apply(event)`, `AskSnapshot(history_seconds)`
(send one now) and `StateChanged(state, reason)` (connecting, connected,
reconnecting, disconnected). `storypulse watch` and the desktop's feed thread
both run one; they keep only their sockets and what they draw.

The rules, one each:

- **Joining.** Until a snapshot is the base, events are held (at most
  HOLD_MAX, the oldest dropped first), not dropped: subscribe first, then ask,
  and the events that arrive before the reply are applied after it, those with
  a seq above the snapshot's, in order. Without holding, a client that drains
  its SUB socket while waiting would throw away what was published after the
  snapshot was taken, see a gap at once and ask again.
- **Gap** (a seq above the next one): carry on applying from the new seq, and
  ask for a snapshot to repair what was lost. A `stats` message is complete in
  itself (absolute counts, rates, flow figures; nothing in it is a delta), so
  the figures after a gap are as true as before it; what a gap loses is `story`
  and `pool` events (table rows, completion dots, resize marks), which only a
  snapshot brings back. Stopping until the snapshot comes would freeze the
  charts for a round trip, or for a whole timeout and back-off when the request
  path is slow, and gain nothing. So the repair may come back older than the
  events applied meanwhile: the session then keeps its seq (nothing is applied
  twice) and hands the snapshot out to be merged — a client must not let a
  snapshot move its figures back in time.
- **Restart** (a seq at or below the tracked one that cannot be a message from
  before the snapshot: clone.SeqTracker's rule): the server numbers from 1
  again, so the session joins afresh — reconnecting, events held, a snapshot.
- **Silence**: no event at all for `silence_limit()` = SILENCE_INTERVALS stats
  intervals, at least SILENCE_FLOOR_S. The interval is learned from the
  server's own stamps — the median gap between the `ts` of successive `stats`
  messages applied (the last INTERVAL_SAMPLES; DEFAULT_INTERVAL_S, the
  server's default, until there are any) — since stats come every interval
  even when nothing happens, a median ignores a late tick, and the floor
  rides over a busy client's pauses. A silent session is reconnecting and
  joins afresh (the server may come back as a new one); it is connected again
  once messages come back. A snapshot answered meanwhile is loaded, but says
  only that the request path is alive: while the stream stays quiet the
  session stays reconnecting (rather than flapping) and asks again after each
  silence limit, so the figures are never older than that.
- **Snapshot retry**: one request at a time; asks are at least SPACING_S apart
  (a lossy stream cannot make a storm of snapshots), and each failure in a row
  doubles that spacing up to SPACING_MAX_S; a reply brings it back. Events
  arriving after a silence mean the server is back: the next ask goes at once.
  A snapshot asks only for the history the client lacks: all of
  `history_seconds` at first, afterwards the seconds since the last figures
  (plus HISTORY_MARGIN_S).
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass

from . import protocol
from .clone import APPLY, GAP, RESTARTED, SeqTracker
from .events import Event

CONNECTING, CONNECTED, RECONNECTING, DISCONNECTED = "connecting", "connected", "reconnecting", "disconnected"

DEFAULT_INTERVAL_S = 0.25  # the server's default stats interval: assumed until learned
INTERVAL_SAMPLES = 8
INTERVAL_MAX_S = 3600.0  # the longest stats interval a server takes (--stats-interval)
SILENCE_INTERVALS = 3
SILENCE_FLOOR_S = 2.0
SPACING_S = 1.0
SPACING_MAX_S = 8.0
HOLD_MAX = 50_000  # events held while joining (a flood during a slow snapshot)
HISTORY_MARGIN_S = 5


@dataclass(frozen=True, slots=True)
class Apply:
    event: Event


@dataclass(frozen=True, slots=True)
class Load:
    snapshot: protocol.SnapshotResult


@dataclass(frozen=True, slots=True)
class AskSnapshot:
    history_seconds: int


@dataclass(frozen=True, slots=True)
class StateChanged:
    state: str
    reason: str


Decision = Apply | Load | AskSnapshot | StateChanged


class FeedSession:
    def __init__(self, *, history_seconds: int, now: float):
        self.history_seconds = history_seconds
        self.tracker = SeqTracker()
        self.state, self.reason = CONNECTING, ""
        self.joined = False  # a snapshot is the base of what is applied
        self.held: deque[Event] = deque(maxlen=HOLD_MAX)
        self.wanted = True  # a snapshot is needed
        self.asking = False  # one is in flight
        self.next_ask_at = -math.inf
        self.last_ask_at = -math.inf
        self.failures = 0  # asks in a row without a reply
        self.ever_connected = False
        self.last_heard = now  # monotonic time of the last event or snapshot: the silence timer's start
        self.last_event_at = now  # of the last event
        self.quiet = False  # silent since the last event: a snapshot alone does not make it connected
        self.last_data_at: float | None = None  # of the last stats applied or snapshot loaded
        self._intervals: deque[float] = deque(maxlen=INTERVAL_SAMPLES)
        self._last_stats_ts: float | None = None
        self._silence_limit = max(SILENCE_FLOOR_S, SILENCE_INTERVALS * DEFAULT_INTERVAL_S)
        self.snapshots = self.restarts = self.silences = self.dropped_held = 0

    @property
    def seq(self) -> int | None:
        """The seq everything applied is good to; None before the first snapshot."""
        return self.tracker.seq

    @property
    def gaps(self) -> int:
        return self.tracker.gaps

    def interval(self) -> float:
        """The server's stats interval, as learned from its stamps."""
        return statistics.median(self._intervals) if self._intervals else DEFAULT_INTERVAL_S

    def silence_limit(self) -> float:
        return self._silence_limit  # kept as the interval is learned: every event reads it

    def next_tick(self) -> float:
        """The monotonic time by which `tick` is due (inf: nothing is timed)."""
        due = self.next_ask_at if self.wanted and not self.asking else math.inf
        if self.joined:
            due = min(due, self.last_heard + self.silence_limit())
        return due

    # -- inputs ----------------------------------------------------------------
    def tick(self, now: float) -> list[Decision]:
        out: list[Decision] = []
        self._check_silence(out, now)
        self._ask_if_due(out, now)
        return out

    def event(self, event: Event, now: float) -> list[Decision]:
        out: list[Decision] = []
        if self._check_silence(out, now) and self.wanted and not self.asking:
            self.next_ask_at = now  # heard again after a silence: the server is back, ask at once
        self.last_heard = self.last_event_at = now
        if self.quiet:
            self.quiet = False
            if self.joined:
                self._set_state(out, CONNECTED, "messages again")
        if self.joined:
            self._take(event, now, out)
        else:
            self._hold(event)
        self._ask_if_due(out, now)
        return out

    def snapshot_reply(self, snap: protocol.SnapshotResult, now: float) -> list[Decision]:
        if not self.asking:
            return []  # nothing was asked: not ours
        out: list[Decision] = []
        self.asking = self.wanted = False
        self.failures = 0
        self.snapshots += 1
        self.last_heard = max(self.last_heard, now)  # the server answered: not silent
        self.last_data_at = now
        if not (self.joined and snap.seq <= (self.tracker.seq or 0)):
            self.tracker.reset(snap.seq, snap.stats.ts)
        # else: a repair older than the events applied since the gap: keep their seq
        if not self.joined:
            self._last_stats_ts = None
        self.joined = True
        out.append(Load(snap))
        if not self.quiet:  # else the request path answers but no message comes: still reconnecting
            self._set_state(out, CONNECTED, f"snapshot at seq {snap.seq}")
        held, self.held = self.held, deque(maxlen=HOLD_MAX)
        for event in held:  # the late joiner's events, in order: those after the snapshot apply
            if self.joined:
                self._take(event, now, out)
            else:  # a restart among them: hold the rest for the next snapshot
                self._hold(event)
        self._ask_if_due(out, now)
        return out

    def snapshot_failed(self, reason: str, now: float) -> list[Decision]:
        if not self.asking:
            return []
        out: list[Decision] = []
        self.asking = False
        self.failures += 1
        spacing = min(SPACING_MAX_S, SPACING_S * 2 ** self.failures)
        self.next_ask_at = max(now, self.last_ask_at + spacing)
        self._set_state(out, RECONNECTING if self.ever_connected else DISCONNECTED, reason)
        return out

    # -- the rules ---------------------------------------------------------------
    def _check_silence(self, out: list[Decision], now: float) -> bool:
        """True if nothing was heard for the silence limit; a joined session then joins afresh."""
        silent = now - self.last_heard
        if silent <= self._silence_limit:
            return False
        if self.joined:
            self.silences += 1
            self.quiet = True
            self._join_afresh(out, f"no messages for {silent:.1f} s")
        return True

    def _take(self, event: Event, now: float, out: list[Decision]) -> None:
        verdict = self.tracker.classify(event.seq, event.ts)
        if verdict == GAP:
            self.tracker.skip_to(event.seq)  # carry on; a snapshot repairs what was lost
            self.wanted = True
            verdict = APPLY
        elif verdict == RESTARTED:
            self.restarts += 1
            self._join_afresh(out, "the server restarted")
            self._hold(event)
            return
        if verdict != APPLY:
            return  # stale: the snapshot has it
        if isinstance(event, protocol.Stats):
            self._learn_interval(event.ts)
            self.last_data_at = now
        out.append(Apply(event))

    def _hold(self, event: Event) -> None:
        if len(self.held) == HOLD_MAX:
            self.dropped_held += 1  # the oldest goes; a gap after the snapshot says so
        self.held.append(event)

    def _join_afresh(self, out: list[Decision], reason: str) -> None:
        self.joined = False
        self.held.clear()
        self._last_stats_ts = None
        self.wanted = True
        self._set_state(out, RECONNECTING, reason)

    def _learn_interval(self, ts: float) -> None:
        last, self._last_stats_ts = self._last_stats_ts, ts
        if last is not None and ts > last:
            self._intervals.append(min(ts - last, INTERVAL_MAX_S))
            self._silence_limit = max(SILENCE_FLOOR_S, SILENCE_INTERVALS * self.interval())

    def _ask_if_due(self, out: list[Decision], now: float) -> None:
        if not self.wanted or self.asking or now < self.next_ask_at:
            return
        self.asking = True
        self.last_ask_at = now
        self.next_ask_at = now + SPACING_S  # the earliest next ask; a failure pushes it on
        history = self.history_seconds
        if self.last_data_at is not None:
            history = min(history, math.ceil(now - self.last_data_at) + HISTORY_MARGIN_S)
        out.append(AskSnapshot(history))

    def _set_state(self, out: list[Decision], state: str, reason: str) -> None:
        self.reason = reason
        if state == CONNECTED:
            self.ever_connected = True
        if state != self.state:
            self.state = state
            out.append(StateChanged(state, reason))
