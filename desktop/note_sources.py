"""Where the app's annotations come from: the server's notes, the app's own actions, and the stream.

- the server's `note` events (and the snapshot's recent notes, so markers from
  before this app joined show too): limits, the flow window and pool bounds
  set by any client, the database refusing writes and accepting them again,
  the server starting or restarting; source "server";
- the app's own actions: the simulator started, stopped, changed rate or took
  a scenario's load (the server does not know the simulator); a WIP limit or pool bounds set from
  this app, once the server took them — until the server's note for the same
  change comes, which takes its place (annotations.NoteLog), so it appears once;
- the stream: the pool's resizes (the `pool` topic; in the tooltips of the
  workers chart only) and, from a server older than notes, the database
  turning unavailable and back (the `database` field of stats, from the
  snapshot's history on, so an outage of the last hour shows too).

Notes are stamped with the server's clock, the time the charts show.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QTimer, Slot

from .annotations import Note, NoteLog

RATE_SETTLES_MS = 1500  # a rate typed or spun is noted once it stops changing


def change_key(kind: str, stage: str | None, value) -> tuple:
    """What change a note marks, the same for the app's own note and the server's. Pool bounds
    go without their stage: this app's pool panel may leave it to the server (the first)."""
    if kind == "pool_bounds":
        return (kind, tuple(value))
    return (kind, stage, value)


def server_note(event) -> Note:
    """A `note` event as a Note; the kinds whose change the app also notes carry its key."""
    key = change_key(event.kind, event.stage, event.new) \
        if event.kind in ("wip_limit", "stage_wip_limit", "pool_bounds") and event.new is not None else ()
    return Note(event.ts, event.kind, event.text, "server", key)


class OutageWatch:
    """Stats in time order in, a Note out where the database turned unavailable or ok again
    (for a server older than notes: a newer one says so itself)."""

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
            return Note(stats.ts, "outage_began", f"unavailable when first seen: {cause}") if down else None
        if down and not was:
            return Note(stats.ts, "outage_began", f"outage began, writes refused: {cause}")
        if was and not down:
            return Note(stats.ts, "outage_ended", "outage ended, writes accepted again")
        return None


class NoteSources(QObject):
    """Turns what the window hears about into notes in `log`; `now` is the server's clock (seconds)."""

    def __init__(self, log: NoteLog, now, parent: QObject | None = None):
        super().__init__(parent)
        self.log = log
        self.now = now
        self.outages = OutageWatch()
        self.server_notes = False  # the server publishes notes (its snapshot carries them)
        self._rate_noted: float | None = None
        self._rate = 0.0
        self._running = False
        self._rate_timer = QTimer(self)
        self._rate_timer.setSingleShot(True)
        self._rate_timer.setInterval(RATE_SETTLES_MS)
        self._rate_timer.timeout.connect(self._note_rate)

    def _add(self, kind: str, text: str, ts: float | None = None, key: tuple = ()) -> None:
        self.log.add(Note(self.now() if ts is None else ts, kind, text, key=key))

    # -- the stream ------------------------------------------------------------------
    @Slot(object)
    def take_batch(self, batch) -> None:
        snapshot = batch.snapshot
        rows = []
        if snapshot is not None:
            rows = [*snapshot.history, snapshot.stats]
            self.server_notes = snapshot.notes is not None  # null: a server older than notes
            for event in snapshot.notes or ():
                self.log.add(server_note(event))  # those seen already are dropped by the log
        for event in batch.notes:
            self.log.add(server_note(event))
        if not self.server_notes:  # else the server's notes say when an outage began and ended
            for stats in (*rows, *batch.stats):
                note = self.outages.feed(stats)
                if note is not None:
                    self.log.add(note)
        for event in batch.pool_events:
            # A resize; new bounds (set by any client) are the server's pool_bounds note.
            self._add("autoscale", f"{event.old_size} → {event.new_size} workers: {event.reason}", event.ts)

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
        self._add("wip_limit", f"WIP limit set to {limit:,}" if limit else "WIP limit lifted",
                  key=change_key("wip_limit", None, limit))

    @Slot(str, int)
    def stage_limit_set(self, stage: str, limit: int) -> None:
        self._add("stage_wip_limit", f"WIP limit of {stage} set to {limit:,}" if limit
                  else f"WIP limit of {stage} lifted", key=change_key("stage_wip_limit", stage, limit))

    @Slot(int, int, str)
    def pool_bounds_set(self, low: int, high: int, stage: str = "") -> None:
        whose = f"pool of {stage}: " if stage else ""
        # The key leaves the stage out: the server's note for the change carries the bounds.
        self._add("pool_bounds", f"{whose}bounds set to {low}–{high} workers",
                  key=change_key("pool_bounds", None, (low, high)))
