"""Where the app's annotations come from: its own actions, and what the stream it receives shows.

- its own actions: the simulator started, stopped, changed rate or took a
  scenario's load; a WIP
  limit (the system's or a stage's) or pool bounds (a stage's) set from this
  app (once the server took them);
- the stream: the pool's resizes (the `pool` topic, with the autoscaler's
  reason, or new bounds set by any client) and the database turning
  unavailable and back (the `database`
  field of stats, from the snapshot's history on, so an outage of the last
  hour shows too).

Notes are stamped with the server's clock, the time the charts show. Notes
the server will publish itself go into the same NoteLog (annotations.py).
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QTimer, Slot

from .annotations import Note, NoteLog

RATE_SETTLES_MS = 1500  # a rate typed or spun is noted once it stops changing


class OutageWatch:
    """Stats in time order in, a Note out where the database turned unavailable or ok again."""

    def __init__(self) -> None:
        self._last_ts: float | None = None
        self._down: bool | None = None

    def feed(self, stats) -> Note | None:
        if self._last_ts is not None and stats.ts <= self._last_ts:
            return None  # seen already (a snapshot after a gap repeats some history)
        self._last_ts = stats.ts
        down = stats.database != "ok"
        was, self._down = self._down, down
        cause = stats.database_error or "no cause given"
        if was is None:
            return Note(stats.ts, "outage", f"unavailable when first seen: {cause}") if down else None
        if down and not was:
            return Note(stats.ts, "outage", f"outage began, writes refused: {cause}")
        if was and not down:
            return Note(stats.ts, "outage", "outage ended, writes accepted again")
        return None


class NoteSources(QObject):
    """Turns what the window hears about into notes in `log`; `now` is the server's clock (seconds)."""

    def __init__(self, log: NoteLog, now, parent: QObject | None = None):
        super().__init__(parent)
        self.log = log
        self.now = now
        self.outages = OutageWatch()
        self._rate_noted: float | None = None
        self._rate = 0.0
        self._running = False
        self._rate_timer = QTimer(self)
        self._rate_timer.setSingleShot(True)
        self._rate_timer.setInterval(RATE_SETTLES_MS)
        self._rate_timer.timeout.connect(self._note_rate)

    def _add(self, kind: str, text: str, ts: float | None = None) -> None:
        self.log.add(Note(self.now() if ts is None else ts, kind, text))

    # -- the stream ------------------------------------------------------------------
    @Slot(object)
    def take_batch(self, batch) -> None:
        rows = [*batch.snapshot.history, batch.snapshot.stats] if batch.snapshot is not None else []
        for stats in (*rows, *batch.stats):
            note = self.outages.feed(stats)
            if note is not None:
                self.log.add(note)
        for event in batch.pool_events:
            # A resize the autoscaler chose, or one that new bounds forced (set by any client).
            kind = "pool" if event.reason.startswith("bounds") else "autoscale"
            self._add(kind, f"{event.old_size} → {event.new_size} workers: {event.reason}", event.ts)

    # -- this app's actions -----------------------------------------------------------
    @Slot(bool)
    def simulator_toggled(self, running: bool) -> None:
        self._running = running
        self._rate_timer.stop()
        if running:
            self._rate_noted = self._rate
            self._add("simulator", f"started, {self._rate:g} stories/s")
        else:
            self._add("simulator", "stopped")

    @Slot(float)
    def simulator_rate(self, rate: float) -> None:
        self._rate = rate
        if self._running:
            self._rate_timer.start()  # again: the note waits until the value settles

    @Slot()
    def _note_rate(self) -> None:
        if self._running and self._rate != self._rate_noted:
            self._rate_noted = self._rate
            self._add("simulator", f"rate now {self._rate:g} stories/s")

    @Slot(str)
    def simulator_scenario(self, name: str) -> None:
        self._add("scenario", f"simulator load: scenario {name}" if name else "simulator load: one range, no stages")

    @Slot(int)
    def wip_limit_set(self, limit: int) -> None:
        self._add("limit", f"WIP limit set to {limit:,}" if limit else "WIP limit lifted")

    @Slot(str, int)
    def stage_limit_set(self, stage: str, limit: int) -> None:
        self._add("limit", f"WIP limit of {stage} set to {limit:,}" if limit else f"WIP limit of {stage} lifted")

    @Slot(int, int, str)
    def pool_bounds_set(self, low: int, high: int, stage: str = "") -> None:
        whose = f"pool of {stage}: " if stage else ""
        self._add("pool", f"{whose}bounds set to {low}–{high} workers")
