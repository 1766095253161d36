"""Annotations: what happened, as a thin vertical line on every time chart, and a tooltip over it.

A `Note` is a time, a kind, a text and where it came from. The `NoteLog` keeps
the recent ones in time order; a `NoteLayer` draws them on one chart; a
`NoteTips` shows the notes under the mouse. Where notes come from is not the
drawing's concern (note_sources.py): the server's `note` events (source
"server": a change made by any client, an outage, a start), and what only the
app knows (its simulator; its own settings, against a server older than notes).
A change this app made appears once: the server's note for it replaces the
app's own (`Note.key` says which change a note marks). A kind this app does
not know is drawn as a plain note.

Drawing costs nothing per frame: a layer is one Qt path per colour in data
coordinates, which scrolls with the chart for free, made anew only when the
notes or the chart's y range change.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import datetime

import pyqtgraph as pg
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QCursor, QPainterPath
from PySide6.QtWidgets import QToolTip

from . import theme
from .chart_items import HairlinePath

# kind -> (series role of its line, the word a tooltip starts with, whether it is drawn as a line).
# The autoscaler resizes the pool every few seconds under a changing load: a line for each would
# hide the charts, and the pool's chart marks them already (chart_items.ResizeMarks); they show in
# the tooltips over that chart only.
# The server's kinds are the protocol's (protocol.NOTE_KINDS).
KINDS = {
    "simulator": ("note", "Simulator", True),
    "scenario": ("note", "Scenario", True),
    "wip_limit": ("note", "Limit", True),
    "stage_wip_limit": ("note", "Limit", True),
    "flow_window": ("note", "Flow", True),
    "pool_bounds": ("note", "Pool", True),
    "started": ("note", "Server", True),
    "restored": ("note", "Server", True),
    "outage_began": ("alert", "Database", True),
    "outage_ended": ("alert", "Database", True),
    "autoscale": ("note", "Autoscaler", False),
}
NOTES_KEPT = 500
HOVER_PX = 5  # a note answers the mouse this many pixels either side of its line
# The app's own note and the server's for the same change are this close at most (the reply
# and the event come by different sockets, stamped by the server's clock within a turn).
SAME_CHANGE_S = 30.0


@dataclass(frozen=True)
class Note:
    ts: float  # server wall clock, the charts' time
    kind: str  # a key of KINDS, or one this app does not know yet
    text: str
    source: str = "app"  # "app": done or seen by this app; "server": published by the server
    key: tuple = ()  # the change it marks (kind, stage, value), for the app's own and the server's

    @property
    def role(self) -> str:
        return KINDS.get(self.kind, ("note",))[0]

    @property
    def drawn(self) -> bool:
        """Drawn as a line on every time chart (else only in the tooltips over the pool's chart)."""
        return KINDS.get(self.kind, ("", "", True))[2]

    def describe(self) -> str:
        word = KINDS.get(self.kind, ("", self.kind.capitalize()))[1]
        return f"{datetime.fromtimestamp(self.ts):%H:%M:%S}  {word}: {self.text}"


class NoteLog(QObject):
    """The newest NOTES_KEPT notes in time order; `changed` after every addition."""

    changed = Signal()

    def __init__(self, capacity: int = NOTES_KEPT, parent: QObject | None = None):
        super().__init__(parent)
        self.capacity = capacity
        self._notes: list[Note] = []
        self._times: list[float] = []

    def __len__(self) -> int:
        return len(self._notes)

    def add(self, note: Note) -> bool:
        """Keep `note`; False if it says again what the log holds: a server's note seen already
        (a snapshot repeats them), or the app's own for a change the server noted."""
        if note.source == "server":
            if note in self.near(note.ts, 0.0):
                return False
            if note.key:
                self._drop_own(note)
        elif note.key and any(n.source == "server" and n.key == note.key
                              for n in self.near(note.ts, SAME_CHANGE_S)):
            return False
        at = bisect.bisect_right(self._times, note.ts)  # notes may come late (a server's, a history's)
        self._notes.insert(at, note)
        self._times.insert(at, note.ts)
        if len(self._notes) > self.capacity:
            del self._notes[0], self._times[0]
        self.changed.emit()
        return True

    def _drop_own(self, server: Note) -> None:
        """The app's own notes of the change the server's note marks: it says it for them."""
        lo = bisect.bisect_left(self._times, server.ts - SAME_CHANGE_S)
        hi = bisect.bisect_right(self._times, server.ts + SAME_CHANGE_S)
        gone = [i for i in range(lo, hi)
                if self._notes[i].source == "app" and self._notes[i].key == server.key]
        for i in reversed(gone):
            del self._notes[i], self._times[i]

    def notes(self) -> list[Note]:
        return list(self._notes)

    def near(self, ts: float, tolerance: float) -> list[Note]:
        """The notes within `tolerance` seconds of `ts`, oldest first."""
        lo = bisect.bisect_left(self._times, ts - tolerance)
        hi = bisect.bisect_right(self._times, ts + tolerance)
        return self._notes[lo:hi]


class NoteLayer:
    """One chart's notes: a path of vertical lines per colour, as tall as the chart's y range."""

    def __init__(self, view: pg.ViewBox):
        self.view = view
        self.items: dict[str, HairlinePath] = {}
        self._notes: list[Note] = []
        self._visible = True
        self._colours = theme.current()
        view.sigYRangeChanged.connect(self._rebuild)

    def set_notes(self, notes: list[Note]) -> None:
        self._notes = [note for note in notes if note.drawn]
        self._rebuild()

    def set_visible(self, on: bool) -> None:
        self._visible = on
        for item in self.items.values():
            item.setVisible(on)

    def apply_theme(self, colours: theme.Theme) -> None:
        self._colours = colours
        for role, item in self.items.items():
            item.setPen(colours.pen(role))

    def _item(self, role: str) -> HairlinePath:
        item = self.items.get(role)
        if item is None:
            item = HairlinePath()
            item.setPen(self._colours.pen(role))
            item.setZValue(1)  # over the grid and bands, under the hover line
            item.setVisible(self._visible)
            self.view.addItem(item, ignoreBounds=True)
            self.items[role] = item
        return item

    def _rebuild(self, *_: object) -> None:
        low, high = self.view.viewRange()[1]
        paths: dict[str, QPainterPath] = {role: QPainterPath() for role in self.items}
        for note in self._notes:
            path = paths.setdefault(note.role, QPainterPath())
            path.moveTo(note.ts, low)
            path.lineTo(note.ts, high)
        for role, path in paths.items():
            self._item(role).setPath(path)


class NoteTips:
    """The notes under the mouse as a tooltip, over any of a scene's time charts."""

    def __init__(self, scene, plots: list[pg.PlotItem], log: NoteLog | None = None,
                 pool_plots: frozenset = frozenset()):
        self.plots = plots
        self.pool_plots = pool_plots  # where notes that are not drawn as lines show too
        self.log = log
        self.enabled = True
        self.shown = False
        self._proxy = pg.SignalProxy(scene.sigMouseMoved, rateLimit=30, slot=self._on_mouse)

    def notes_at(self, scene_pos) -> list[Note]:
        """The notes whose line is within HOVER_PX pixels of a point of the scene."""
        if self.log is None or not self.enabled:
            return []
        for plot in self.plots:
            if plot.isVisible() and plot.vb.sceneBoundingRect().contains(scene_pos):
                left, right = plot.vb.viewRange()[0]
                per_pixel = (right - left) / max(plot.vb.width(), 1.0)
                notes = self.log.near(plot.vb.mapSceneToView(scene_pos).x(), HOVER_PX * per_pixel)
                return notes if plot in self.pool_plots else [note for note in notes if note.drawn]
        return []

    def _on_mouse(self, event) -> None:
        notes = self.notes_at(event[0])
        if notes:
            QToolTip.showText(QCursor.pos(), "\n".join(note.describe() for note in notes[-8:]))
            self.shown = True
        elif self.shown:
            QToolTip.hideText()
            self.shown = False


class ChartNotes(QObject):
    """A tab's notes: a layer on each of its time charts and tooltips over them, drawn at the tab's next frame.

    `pool_plots`: the charts that show the pool, whose tooltips show every kind of note.
    """

    def __init__(self, plots: list[pg.PlotItem], parent: QObject | None = None, pool_plots=()):
        super().__init__(parent)
        self.layers = [NoteLayer(plot.vb) for plot in plots]
        by_scene: dict[int, list[pg.PlotItem]] = {}
        for plot in plots:
            by_scene.setdefault(id(plot.scene()), []).append(plot)
        self.tips = [NoteTips(group[0].scene(), group, pool_plots=frozenset(pool_plots))
                     for group in by_scene.values()]
        self.log: NoteLog | None = None
        self.visible = True
        self.dirty = False
        theme.follow(self, self.apply_theme)

    def set_log(self, log: NoteLog) -> None:
        self.log = log
        for tips in self.tips:
            tips.log = log
        log.changed.connect(self.mark)
        self.dirty = True

    def mark(self) -> None:
        self.dirty = True

    def draw(self) -> None:
        """At a frame of the tab: the notes anew if any came (a few hundred lines at most)."""
        if self.dirty and self.log is not None:
            notes = self.log.notes()
            for layer in self.layers:
                layer.set_notes(notes)
        self.dirty = False

    def set_visible(self, on: bool) -> None:
        self.visible = on
        for layer in self.layers:
            layer.set_visible(on)
        for tips in self.tips:
            tips.enabled = on

    def apply_theme(self, colours: theme.Theme) -> None:
        for layer in self.layers:
            layer.apply_theme(colours)
