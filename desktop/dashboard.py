"""The dashboard: the four figures as big numbers, and live charts over a chosen time window.

Data arrives as FeedBatches (feed.py) into bounded SeriesBuffers; nothing is
drawn on arrival. One fast timer (25 Hz) scrolls all the charts with wall-clock
time while the dashboard is visible (nothing at all while hidden or paused) and
pushes new data into curves made once; a slow timer (4 Hz) sets the text and
the y ranges. Pause stops the fast timer and lets the mouse pan and zoom.
What makes a frame cheap is in chart_items.py.
"""

from __future__ import annotations

import csv
from collections import deque
from datetime import datetime

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import QGraphicsView, QHBoxLayout, QWidget

from . import theme
from .annotations import ChartNotes
from .cards import BigNumber
from .chart_axes import TimeAxis
from .chart_items import (
    ChartGrid, HoverLine, LiveCurve, ResizeMarks, add_time_plot, cache_drawing, fit_y, legend_title, name_chart,
    scroll_chart, share_title_row, theme_chart,
)
from .diagnostics import Diagnostics
from .live import live_layout, may_draw, readout_label, timer
from .ranges import time_span
from .series import FIELDS, SeriesBuffer, ServerClock, peak_decimate

WINDOWS = (("1 min", 60), ("5 min", 300), ("15 min", 900), ("1 h", 3600))
FIGURES = (
    # stats field, title, series role (theme.SERIES: its colour)
    ("stories_produced_per_s", "Stories produced / s", "produced"),
    ("stories_completed_per_s", "Stories completed / s", "completed"),
    ("open_stories", "Open stories", "open"),
    ("completed_stories", "Completed stories", "done"),
)
# The charts: title, curves (field, key label or "", series role), row. A chart of several curves
# has their keys in its title (legend_title), as the Flow tab's have: a legend inside the chart
# covered the workers' line, which runs at the top of its range whenever the pool is full.
# Produced and completed per second share a chart: whether completion keeps up is the point.
# Fewer charts, fewer axes: the axes, not the points, are what costs at every frame.
CHARTS = (
    ("Stories / s",
     (("stories_produced_per_s", "produced", "produced"), ("stories_completed_per_s", "completed", "completed")), 0),
    ("Open stories", (("open_stories", "", "open"),), 0),
    ("Completed stories", (("completed_stories", "", "done"),), 0),
    ("Tasks", (("tasks_queued", "queued", "queued"), ("tasks_running", "running", "running")), 1),
    ("Workers",
     (("workers", "workers", "workers"), ("workers_busy", "busy", "busy"), ("workers_target", "target", "target")),
     1),
)
READOUT_HINT = "Point at a chart to read its values; Space pauses, and while paused the mouse pans and zooms."
PLOT_HZ = 25
TEXT_HZ = 4
BUFFER_SECONDS = 3600 + 120  # the longest window plus a margin
BUFFER_RATE = 10.0  # points per second kept at most
MAX_POINTS = 1200  # per curve after decimation: about two per horizontal pixel


def format_figure(field: str, value: float) -> str:
    """How a figure is shown; tests compare the labels with this applied to the server's values."""
    if field.endswith("_per_s"):
        return f"{value:,.1f}"
    return f"{int(value):,}"


class Dashboard(QWidget):
    paused_changed = Signal(bool)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        pg.setConfigOptions(antialias=False)
        self.buffer = SeriesBuffer(int(BUFFER_SECONDS * BUFFER_RATE), max_rate=BUFFER_RATE)
        self.clock = ServerClock()  # server time, from the newest stats, to scroll smoothly between them
        self.window_s = 300
        self.paused = False
        # "ticks" of the fast timer, "frames" drawn, "grid builds"; the benchmark's scroll mode
        self.diagnostics = Diagnostics()
        self._drawn_at: float | None = None  # the right edge of the last drawn frame
        self._dirty = False
        self._pool_marks: deque[tuple[float, int, int, str]] = deque(maxlen=500)
        self._marks_dirty = False
        self._syncing = False

        self.numbers = {name: BigNumber(title, role) for name, title, role in FIGURES}
        numbers_row = QHBoxLayout()
        numbers_row.setSpacing(8)
        for box in self.numbers.values():
            numbers_row.addWidget(box)

        self.readout = readout_label(READOUT_HINT)

        self.charts = pg.GraphicsLayoutWidget()
        self.charts.ci.setSpacing(4)
        self.plots: list[pg.PlotItem] = []
        self.grids: list[ChartGrid] = []
        self.time_axes: list[TimeAxis] = []
        self.hover_lines: list[HoverLine] = []
        self.curves: dict[str, LiveCurve] = {}
        self.roles: dict[str, str] = {}  # curve -> series role
        self.groups: list[list[str]] = []
        self._keys: dict[pg.PlotItem, tuple[str, tuple]] = {}  # title and keys, coloured by apply_theme
        rows = [self.charts.ci.addLayout(row=0, col=0), self.charts.ci.addLayout(row=1, col=0)]
        for title, curves, row in CHARTS:
            plot = self._add_plot(rows[row], title, bottom_row=row == 1)
            column = len(rows[row].items) - 1
            rows[row].layout.setColumnStretchFactor(column, 1)  # equal widths, whatever the titles
            keys = tuple((label, role, "line") for _, label, role in curves if label)
            if keys:
                self._keys[plot] = (title, keys)
            cache_drawing(plot.titleLabel)
            for name, label, role in curves:
                curve = LiveCurve(theme.current().pen(role))
                plot.vb.addItem(curve)
                self.curves[name] = curve
                self.roles[name] = role
            self.groups.append([name for name, _, _ in curves])
        for row in rows:  # charts side by side keep their tops level, whatever their titles' lines
            share_title_row(*row.items)
        pool = self.plots[-1]
        self.resize_marks = ResizeMarks(pool.vb)
        self.notes = ChartNotes(self.plots, self, pool_plots=[pool])
        self.charts.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.FullViewportUpdate)
        name_chart(self.charts, "Dashboard charts", "; ".join(
            f"{title}: {', '.join(label for _, label, _ in curves)}" if len(curves) > 1 else title
            for title, curves, _ in CHARTS))
        self._mouse_proxy = pg.SignalProxy(self.charts.scene().sigMouseMoved, rateLimit=30, slot=self._on_mouse)

        live_layout(self, numbers_row, self.charts, self.readout)
        self.plot_timer = timer(self, 1000 // PLOT_HZ, self._plot_tick)
        self.text_timer = timer(self, 1000 // TEXT_HZ, self._text_tick)
        self.set_window(self.window_s)
        theme.follow(self, self.apply_theme)

    def apply_theme(self, colours: theme.Theme) -> None:
        """Every pen and brush of the charts anew (the text outside them follows the app's palette)."""
        self.charts.setBackground(colours.surface)
        for plot, grid in zip(self.plots, self.grids):
            keys = self._keys.get(plot)
            theme_chart(plot, colours, grid, title=legend_title(*keys, colours) if keys else None)
        for name, curve in self.curves.items():
            curve.set_pen(colours.pen(self.roles[name]))
        for line in self.hover_lines:
            line.set_colour(colours.muted)
        self.resize_marks.set_colours(colours)  # (the notes follow the theme themselves)

    def _add_plot(self, layout: pg.GraphicsLayout, title: str, bottom_row: bool) -> pg.PlotItem:
        plot, axis, grid = add_time_plot(layout, title, show_time_axis=bottom_row, diagnostics=self.diagnostics)
        self.time_axes.append(axis)
        self.grids.append(grid)
        line = HoverLine()
        plot.vb.addItem(line, ignoreBounds=True)
        self.hover_lines.append(line)
        follow = lambda *_, plot=plot, line=line: self._follow_line(plot, line)  # noqa: E731
        plot.vb.sigRangeChanged.connect(follow)
        plot.vb.sigResized.connect(follow)
        plot.sigXRangeChanged.connect(self._on_range_changed)
        # No setXLink: it aligns linked views by screen position, wrong for side-by-side
        # charts of different widths. Every chart gets the same range instead (_scroll).
        self.plots.append(plot)
        return plot

    # -- data in -----------------------------------------------------------
    @Slot(object)
    def apply_batch(self, batch) -> None:
        if batch.snapshot is not None:
            # History first (one row a second), so the charts are full on connect.
            self.buffer.extend(batch.snapshot.history)
            self.buffer.append(batch.snapshot.stats)
            self.clock.update(batch.snapshot.stats)
            self._dirty = True
        if batch.stats:
            self.buffer.extend(batch.stats)
            self.clock.update(batch.stats[-1])
            self._dirty = True
        for event in batch.pool_events:
            self._pool_marks.append((event.ts, event.old_size, event.new_size, event.reason))
            self._marks_dirty = True

    # -- controls ----------------------------------------------------------
    def set_window(self, seconds: int) -> None:
        self.window_s = seconds
        self._dirty = True
        self._scroll()
        self._update_y_ranges()

    def set_paused(self, paused: bool) -> None:
        if paused == self.paused:
            return
        self.paused = paused
        for plot in self.plots:
            plot.setMouseEnabled(x=paused, y=False)
        if paused:
            self.plot_timer.stop()
        else:
            self._dirty = True
            self.plot_timer.start()
        self.paused_changed.emit(paused)

    def toggle_pause(self) -> None:
        self.set_paused(not self.paused)

    def _on_range_changed(self, view, x_range) -> None:
        # While paused the mouse pans and zooms one chart: the others follow it.
        if not self.paused or self._syncing:
            return
        self._syncing = True
        try:
            for plot in self.plots:
                if plot.vb is not view:
                    plot.setXRange(*x_range, padding=0)
        finally:
            self._syncing = False

    # -- drawing -----------------------------------------------------------
    def _now(self) -> float:
        return self.clock.now()

    def _scroll(self, now: float | None = None) -> None:
        now = self._now() if now is None else now
        self._drawn_at = now
        first = self.buffer.first_ts
        lo, now = time_span(now, self.window_s, first)
        for plot, grid, axis in zip(self.plots, self.grids, self.time_axes):
            scroll_chart(plot, axis, grid, lo, now, stock=self.diagnostics.scroll_mode == "stock")

    @staticmethod
    def _follow_line(plot: pg.PlotItem, line: HoverLine) -> None:
        if line.isVisible():
            line.place(line.line().x1(), plot.viewRange()[1])  # as tall as the new y range

    @Slot()
    def _plot_tick(self) -> None:
        if not may_draw(self, self.paused):
            return
        self.diagnostics.count("ticks")
        now = self._now()
        # The benchmark's "skip" mode: no frame when the scroll would move less than a pixel and
        # no data came; cheaper, but the time axis then moves in jumps.
        if self.diagnostics.scroll_mode == "skip" and not (self._dirty or self._marks_dirty or self.notes.dirty) \
                and self._drawn_at is not None:
            # Scrolling by less than a pixel changes nothing on screen: skip the frame.
            left, right = self.plots[0].viewRange()[0]
            pixels_per_s = max(self.plots[0].vb.width(), 1.0) / max(right - left, 1e-9)
            if abs(now - self._drawn_at) * pixels_per_s < 1.0:
                return
        if self._dirty:
            self._push_data()
        if self._marks_dirty:
            self._draw_marks()
        self.notes.draw()
        self._scroll(now)
        self.diagnostics.count("frames")

    def _push_data(self) -> None:
        # A little more than the window, so that scrolling until the next update shows data.
        since = self._now() - self.window_s * 1.05 - 5
        first, last, step = self.buffer.window(since, MAX_POINTS)
        ts = self.buffer.column("ts")[first:last]
        for name, curve in self.curves.items():
            x, y = peak_decimate(ts, self.buffer.column(name)[first:last], step)
            curve.set_data(x, y)
        self._dirty = False

    def _draw_marks(self) -> None:
        self.resize_marks.set_marks(list(self._pool_marks))
        self._marks_dirty = False

    @Slot()
    def _text_tick(self) -> None:
        latest = self.clock.latest
        if latest is not None:
            for name, box in self.numbers.items():
                box.set_text(format_figure(name, getattr(latest, name)))
        if self.isVisible():
            self._update_y_ranges()

    def _update_y_ranges(self) -> None:
        if not len(self.buffer):
            return
        ts = self.buffer.column("ts")
        left, right = self.plots[0].viewRange()[0]
        start, end = np.searchsorted(ts, left), np.searchsorted(ts, right, side="right")
        for plot, names in zip(self.plots, self.groups):
            top = max((float(self.buffer.column(n)[start:end].max(initial=0)) for n in names), default=0.0)
            fit_y(plot, 0.0, top)

    # -- values under the mouse -----------------------------------------------
    def _on_mouse(self, event) -> None:
        pos = event[0]
        for plot, line in zip(self.plots, self.hover_lines):
            if plot.sceneBoundingRect().contains(pos):
                ts = plot.vb.mapSceneToView(pos).x()
                break
        else:
            for line in self.hover_lines:
                line.setVisible(False)
            self.readout.setText(READOUT_HINT)
            return
        index = self.buffer.index_at(ts)
        if index is None:
            return
        row = self.buffer.rows()[index]
        at = row[0]
        for plot, line in zip(self.plots, self.hover_lines):
            line.place(at, plot.viewRange()[1])
        value = {name: row[i] for i, name in enumerate(FIELDS)}
        text = (
            f"{datetime.fromtimestamp(at):%H:%M:%S}  produced {value['stories_produced_per_s']:.1f}/s"
            f"  completed {value['stories_completed_per_s']:.1f}/s  open {int(value['open_stories']):,}"
            f"  done {int(value['completed_stories']):,}  tasks queued {int(value['tasks_queued']):,}"
            f" running {int(value['tasks_running'])}  workers {int(value['workers_busy'])}/{int(value['workers'])}"
            f" (target {int(value['workers_target'])})"
        )
        left, right = self.plots[0].viewRange()[0]
        near = [m for m in self._pool_marks if abs(m[0] - at) < (right - left) / 100]
        if near:
            _, old, new, reason = near[-1]
            text += f"  · pool {old}→{new}: {reason}"
        self.readout.setText(text)

    # -- export ------------------------------------------------------------
    def export_png(self, path: str) -> bool:
        return self.grab().save(path, "PNG")

    def export_csv(self, path: str) -> int:
        """The buffered stats history, one row per point; returns the row count."""
        rows = self.buffer.rows()
        with open(path, "w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(["time", *FIELDS])
            for row in rows:
                stamp = datetime.fromtimestamp(row[0]).isoformat(timespec="milliseconds")
                writer.writerow([stamp, f"{row[0]:.3f}", *(_csv_number(v) for v in row[1:])])
        return len(rows)


def _csv_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"

