"""The forecast on the Flow tab: a burn-up of completed stories with the backlog forecast as a cone.

Left of the "now" line, the stories completed (from the stats history the tab
already keeps); right of it, the server's backlog forecast (`forecast_open_…`
in stats): three lines from the completed count now up to the count at which
everything open now is done, reached at the p50, p85 and p95 times, the band
between p50 and p95 shaded. Beside the chart, the figures and how often the
server's own past forecasts came true (`forecast_hit_rate_…`).

Cheap by design: the cone changes once a second, so the chart is redrawn at
REDRAW_HZ (not the 25 Hz of the scrolling charts), only while it is visible;
x is in seconds from now, so nothing scrolls between redraws.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QBoxLayout, QLabel, QSizePolicy, QWidget

from storypulse.format import duration

from . import theme
from .chart_items import TITLE_SIZE, theme_chart, wrapping_title
from .live import may_draw, timer
from .ranges import time_span
from .series import SeriesBuffer, ServerClock

REDRAW_HZ = 2
MAX_POINTS = 600  # of the completed curve
LEVEL_ROLES = {50: "p50", 85: "p85", 95: "p95"}  # theme.SERIES roles, as the lead-time percentiles
AHEAD_MIN_S = 10.0  # the chart looks at least this far ahead
TITLES = {False: "Burn-up: stories completed, and the backlog forecast ahead",  # the figures beside the chart
          True: "Burn-up and forecast"}  # the figures under it: a narrow column


def cone(done: float, open_stories: int, seconds: tuple[float, float, float]) -> dict[int, tuple[list, list]]:
    """The forecast lines, per level: from (0, done) to (p seconds, done + open_stories)."""
    target = done + open_stories
    return {level: ([0.0, s], [done, target]) for level, s in zip((50, 85, 95), seconds)}


class _Forecast:
    """The forecast fields of a stats message; None (0 scored) for one that lacks them."""

    def __init__(self, stats) -> None:
        self.stats = stats

    def __getattr__(self, name: str):
        return getattr(self.stats, name, 0 if name == "forecast_scored" else None)


def side_text(stats, colours: theme.Theme | None = None) -> str:
    """The figures beside the chart (rich text), keyed in the theme's colours."""
    colours = colours or theme.current()
    if stats is None:
        return "Waiting for stats…"
    stats = _Forecast(stats)
    lines = ["<b>Backlog forecast</b>"]
    seconds = (stats.forecast_open_p50_s, stats.forecast_open_p85_s, stats.forecast_open_p95_s)
    if seconds[1] is None:
        lines.append("needs 10 s of throughput<br>with completions")
    else:
        lines.append(f"{stats.open_stories:,} open, all done")
        for level, s in zip((50, 85, 95), seconds):
            key = colours.text_colour(LEVEL_ROLES[level]).name()
            lines.append(f"<span style='color:{key}'>■</span> {level} % within {duration(s)}")
    lines.append("")
    lines.append("<b>Forecasts that came true</b>")
    rate = stats.forecast_hit_rate_p85
    if rate is None:
        lines.append("none scored yet")
    else:
        lines.append(f"p85: <b>{rate:.0%}</b> of {stats.forecast_scored:,}")
        others = [f"p{level}: {value:.0%}" for level, value in
                  ((50, stats.forecast_hit_rate_p50), (95, stats.forecast_hit_rate_p95)) if value is not None]
        if others:
            lines.append(" · ".join(others))
        lines.append(f"<span style='color:{colours.muted}'>(well calibrated: about<br>50 % · 85 % · 95 %)</span>")
    return "<br>".join(lines)


class BurnUp(QWidget):
    def __init__(self, buffer: SeriesBuffer, clock: ServerClock, *, window: Callable[[], float],
                 paused: Callable[[], bool], parent: QWidget | None = None):
        """`buffer` and `clock`: the Flow tab's own (its stats history and server time);
        `window` and `paused`: the tab's settings, read at each redraw."""
        super().__init__(parent)
        self.buffer, self.clock = buffer, clock
        self._window_s, self._paused = window, paused
        self.redraws = 0
        self.view = pg.GraphicsLayoutWidget()
        self.view.setMinimumWidth(100)
        self.plot = self.view.ci.addPlot()
        wrapping_title(self.plot, TITLES[False])
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        self.plot.getAxis("bottom").setLabel("seconds from now")
        self.plot.getAxis("left").setWidth(52)
        self.done_curve = pg.PlotDataItem()
        self.band_low = pg.PlotDataItem(pen=None)
        self.band_high = pg.PlotDataItem(pen=None)
        self.band = pg.FillBetweenItem(self.band_low, self.band_high)
        self.lines = {level: pg.PlotDataItem() for level in LEVEL_ROLES}
        self.target = pg.PlotDataItem()
        self.now_line = pg.InfiniteLine(0.0, angle=90, label="now", labelOpts={"position": 0.95})
        for item in (self.band, self.band_low, self.band_high, self.done_curve, self.target,
                     *self.lines.values(), self.now_line):
            self.plot.addItem(item)
        self.side = QLabel(side_text(None))
        self.side.setTextFormat(Qt.TextFormat.RichText)
        self.side.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.side.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        self.side.setMargin(6)
        self.side.setAutoFillBackground(True)
        self.row = QBoxLayout(QBoxLayout.Direction.LeftToRight, self)
        self.row.setContentsMargins(0, 0, 0, 0)
        self.row.addWidget(self.view, 1)
        self.row.addWidget(self.side)
        self.timer = timer(self, 1000 // REDRAW_HZ, self.redraw)
        theme.follow(self, self.apply_theme)

    def apply_theme(self, colours: theme.Theme) -> None:
        self.colours = colours
        self.view.setBackground(colours.surface)
        theme_chart(self.plot, colours)
        self.done_curve.setPen(colours.pen("done", 2))
        for level, role in LEVEL_ROLES.items():
            pen = colours.pen(role)
            pen.setStyle(theme.DASH)  # ahead of now: a forecast, not a measure
            self.lines[level].setPen(pen)
        band = colours.colour("p85")
        band.setAlpha(45)
        self.band.setBrush(pg.mkBrush(band))
        self.target.setPen(colours.pen("target"))
        self.now_line.setPen(pg.mkPen(colours.text, width=1))
        self.now_line.label.setColor(colours.text)
        theme.set_text_colour(self.side, colours.text)
        # the figures on the chart's background: chart and figures read as one panel
        palette = self.side.palette()
        palette.setColor(QPalette.ColorRole.Window, QColor(colours.surface))
        self.side.setPalette(palette)
        self.side.setText(side_text(self.clock.latest, colours))

    def set_stacked(self, stacked: bool) -> None:
        """The figures under the chart (a column of its own beside the Flow tab's charts) or beside it (a row)."""
        direction = QBoxLayout.Direction.TopToBottom if stacked else QBoxLayout.Direction.LeftToRight
        if self.row.direction() != direction:
            self.row.setDirection(direction)
            self.plot.setTitle(TITLES[stacked], size=TITLE_SIZE, color=self.colours.text)

    @Slot()
    def redraw(self) -> None:
        if not may_draw(self, self._paused()) or self.clock.latest is None or not len(self.buffer):
            return
        self.redraws += 1
        stats = self.clock.latest
        now = self.clock.now()
        # (the past shown: the window, or from the first sample while the data is younger, as every time chart)
        window = now - time_span(now, float(self._window_s()), self.buffer.first_ts)[0]
        first, last, step = self.buffer.window(now - window, MAX_POINTS)
        ts = self.buffer.column("ts")[first:last:step] - now
        done = self.buffer.column("completed_stories")[first:last:step]
        self.done_curve.setData(ts, done)
        done_now = float(stats.completed_stories)
        seconds = tuple(getattr(stats, f"forecast_open_p{level}_s", None) for level in LEVEL_ROLES)
        ahead = AHEAD_MIN_S
        if seconds[2] is not None and all(math.isfinite(s) for s in seconds):
            lines = cone(done_now, stats.open_stories, seconds)
            for level, (x, y) in lines.items():
                self.lines[level].setData(x, y)
            (_, x50), (_, target) = lines[50]
            x95 = lines[95][0][1]
            # the band between the p50 line (flat at the target after it) and the p95 line
            self.band_high.setData([0.0, x50, x95], [done_now, target, target])
            self.band_low.setData([0.0, x95], [done_now, target])
            self.target.setData([0.0, x95], [target, target])
            ahead = max(ahead, x95 * 1.05)
            top = target
        else:
            for item in (*self.lines.values(), self.band_low, self.band_high, self.target):
                item.setData([], [])
            top = done_now
        low = float(np.min(done)) if done.size else done_now
        self.plot.setXRange(-window, ahead, padding=0)
        self.plot.setYRange(low, max(top, low + 1.0) + max(1.0, 0.05 * (top - low)), padding=0)
        text = side_text(stats, self.colours)
        if self.side.text() != text:
            self.side.setText(text)
