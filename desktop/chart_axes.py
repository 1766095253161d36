"""Chart axes that cost little to draw at every frame, and the arithmetic of their ticks.

Measured with the UI flood benchmark, pyqtgraph's stock axes spent most of each
frame in Python: they rebuild their tick layout and re-shape every label whenever
the range moves (which scrolling does at every frame) and draw the grid as part
of the axis. These draw only their line and labels, pick their ticks with a
little arithmetic (which the chart's grid, chart_items.ChartGrid, shares) and
keep each label's laid-out text; the value axis, which scrolling does not
change, is kept as a pixmap by Qt. Their sizes follow the font, not the values.
"""

from __future__ import annotations

import math
import time
from datetime import datetime

import pyqtgraph as pg
from PySide6.QtCore import QLineF, QPointF, QRectF, Qt
from PySide6.QtGui import QFont, QFontMetricsF, QPainter, QStaticText
from PySide6.QtWidgets import QApplication, QGraphicsItem

TEXT_GAP = 4  # pixels between a label and its axis line
LABEL_CACHE_MAX = 400  # laid-out labels kept; the set starts afresh past this

# Time steps a time axis may use, seconds; the smallest whose labels do not crowd wins.
TIME_STEPS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600,
              2 * 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400)


def nice_step(span: float, most: int) -> float:
    """The smallest 1, 2 or 5 × 10^n step that cuts `span` into at most `most` parts."""
    if not span > 0 or most < 1:
        return 1.0
    raw = span / most
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5):
        if factor * magnitude >= raw * (1 - 1e-9):
            return factor * magnitude
    return 10 * magnitude


def time_step(span: float, pixels: float, label_px: float) -> float:
    """The time step for `span` seconds over `pixels`, labels `label_px` wide with room between."""
    if not span > 0 or pixels <= 0:
        return TIME_STEPS[-1]
    fits = max(1.0, pixels / (label_px * 1.6))
    for step in TIME_STEPS:
        if span / step <= fits:
            return step
    return TIME_STEPS[-1] * math.ceil(span / fits / TIME_STEPS[-1])


def time_format(step: float) -> str:
    if step < 1:
        return "%H:%M:%S.%f"
    if step < 60:
        return "%H:%M:%S"
    if step < 86400:
        return "%H:%M"
    return "%d %b"


def ticks_between(lo: float, hi: float, step: float, offset: float = 0.0) -> list[float]:
    """The multiples of `step` (shifted by -`offset`) within [lo, hi]."""
    if not step > 0 or not hi >= lo:
        return []
    first = math.ceil((lo + offset) / step - 1e-9) * step - offset
    count = int((hi - first) / step + 1e-9) + 1
    return [first + i * step for i in range(min(max(0, count), 1000))]


def local_offset(step: float, at: float) -> float:
    """Shift for time ticks of `step`: an hour or more falls on local hours, not UTC ones."""
    return float(time.localtime(at).tm_gmtoff) if step >= 3600 else 0.0


def value_label(value: float, step: float) -> str:
    """A value axis label with the decimals its step needs. Round steps of large values in thousands (k)
    or millions (M): "140k", "1.04M"; a fine step shows every digit (a cumulative chart's narrow range)."""
    if abs(value) >= 1e6 and step >= 1e4:
        return _fixed(value / 1e6, step / 1e6) + "M"
    if abs(value) >= 1e5 and step >= 1e3:
        return _fixed(value / 1e3, step / 1e3) + "k"
    return _fixed(value, step)


def _fixed(value: float, step: float) -> str:
    if step >= 1:
        return f"{value:,.0f}"
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    return f"{value:,.{decimals}f}"


class ChartAxis(pg.AxisItem):
    """An axis line and its labels, drawn straight from a short list of ticks.

    Tick choice is `tick_values` (the chart's grid uses the same), label text is
    laid out once per distinct label and kept.
    """

    def __init__(self, orientation: str):
        super().__init__(orientation)
        self.enableAutoSIPrefix(False)  # else every range change rewrites the axis label
        self._statics: dict[str, tuple[QStaticText, float]] = {}
        self._metrics: QFontMetricsF | None = None
        self._overhang: float | None = None
        self._line_pen = None
        self._text_pen = None
        self._bounds: QRectF | None = None
        self.geometryChanged.connect(self._forget_bounds)

    def _forget_bounds(self) -> None:
        self._bounds = None

    def setPen(self, *args, **kwargs) -> None:
        super().setPen(*args, **kwargs)
        self._line_pen = None  # taken afresh at the next paint

    def setTextPen(self, *args, **kwargs) -> None:
        super().setTextPen(*args, **kwargs)
        self._line_pen = None

    def boundingRect(self) -> QRectF:
        # Qt asks several times a frame; the base class maps the geometry anew each time.
        if self._bounds is None:
            self._bounds = QRectF(super().boundingRect())
        return self._bounds

    # -- what to draw: subclasses -------------------------------------------------------
    def tick_values_for(self, lo: float, hi: float, span: float, pixels: float) -> list[float]:
        """Ticks within [lo, hi] for an axis that shows `span` over `pixels`."""
        raise NotImplementedError

    def tick_values(self, lo: float, hi: float, pixels: float) -> list[float]:
        return self.tick_values_for(lo, hi, hi - lo, pixels)

    def tick_text(self, value: float, span: float, pixels: float) -> str:
        raise NotImplementedError

    # -- shared -------------------------------------------------------------------------
    def tick_font(self) -> QFont:
        return self.style["tickFont"] or QApplication.font()

    def metrics(self) -> QFontMetricsF:
        if self._metrics is None:
            self._metrics = QFontMetricsF(self.tick_font())
        return self._metrics

    def setTickFont(self, font) -> None:
        super().setTickFont(font)
        self._metrics = None
        self._overhang = None
        self._statics.clear()

    def setRange(self, mn: float, mx: float) -> None:
        # pyqtgraph re-sets a y axis's range whenever its view changes, x included:
        # the same range is no change, and no repaint (nor a new cached pixmap).
        current = getattr(self, "range", None)  # not there yet while the base class sets up
        if current is not None and current[0] == mn and current[1] == mx:
            return
        self.range = [mn, mx]
        self.update()

    def generateDrawSpecs(self, p):  # pyqtgraph's own tick layout: never wanted here
        return None

    def paint(self, p, opt, widget) -> None:
        lo, hi = min(self.range), max(self.range)
        rect = self.mapRectFromParent(self.geometry())
        length = rect.height() if self.orientation in ("left", "right") else rect.width()
        if not (hi > lo) or length <= 0 or not math.isfinite(hi - lo):
            return
        self.draw(p, rect, lo, hi, length)

    def draw(self, p: QPainter, rect: QRectF, lo: float, hi: float, length: float) -> None:
        """The axis line along `rect` and the labels of the ticks in [lo, hi]."""
        vertical = self.orientation in ("left", "right")
        if self._line_pen is None:
            self._line_pen, self._text_pen = self.pen(), self.textPen()
        p.setRenderHint(p.RenderHint.Antialiasing, False)
        p.setRenderHint(p.RenderHint.TextAntialiasing, True)
        p.setPen(self._line_pen)
        if self.orientation == "left":
            p.drawLine(QLineF(rect.right(), rect.top(), rect.right(), rect.bottom()))
        elif self.orientation == "right":
            p.drawLine(QLineF(rect.left(), rect.top(), rect.left(), rect.bottom()))
        elif self.orientation == "bottom":
            p.drawLine(QLineF(rect.left(), rect.top(), rect.right(), rect.top()))
        else:
            p.drawLine(QLineF(rect.left(), rect.bottom(), rect.right(), rect.bottom()))

        p.setFont(self.tick_font())
        p.setPen(self._text_pen)
        height = self.metrics().height()
        scale = length / (hi - lo)
        span = hi - lo
        overhang = self.overhang()
        for value in self.tick_values(lo, hi, length):
            static, width = self._static(self.tick_text(value, span, length))
            # Only labels that fit wholly on the axis (give or take its overhang): none cut in half.
            if vertical:
                top = rect.bottom() - (value - lo) * scale - height / 2
                if top < rect.top() or top + height > rect.bottom():
                    continue
                x = rect.right() - TEXT_GAP - width if self.orientation == "left" else rect.left() + TEXT_GAP
                p.drawStaticText(QPointF(x, top), static)
            else:
                left = rect.left() + (value - lo) * scale - width / 2
                if left < rect.left() - overhang or left + width > rect.right() + overhang:
                    continue
                y = rect.top() + TEXT_GAP - 2 if self.orientation == "bottom" else rect.bottom() - TEXT_GAP - height
                p.drawStaticText(QPointF(left, y), static)

    def overhang(self) -> float:
        """How far labels may reach past the ends of the axis, in pixels."""
        return 0.0

    def _static(self, text: str) -> tuple[QStaticText, float]:
        found = self._statics.get(text)
        if found is None:
            if len(self._statics) >= LABEL_CACHE_MAX:
                self._statics.clear()
            static = QStaticText(text)
            static.setTextFormat(Qt.TextFormat.PlainText)
            static.prepare(font=self.tick_font())
            found = (static, self.metrics().horizontalAdvance(text))
            self._statics[text] = found
        return found


class TimeAxis(ChartAxis):
    """Wall-clock labels at round local times (every 10 s, every minute, ...).

    A label shows while its tick is on the axis, hanging over an end by up to
    half its width (into the empty corner under a value axis), so labels scroll
    out with their grid line instead of vanishing early.
    """

    def __init__(self, orientation: str = "bottom"):
        super().__init__(orientation)
        self._texts: dict[tuple[float, str], str] = {}
        self._steps: dict[tuple[float, float], float] = {}
        self._overhang: float | None = None

    def overhang(self) -> float:
        if self._overhang is None:
            self._overhang = math.ceil(self.metrics().horizontalAdvance("00:00:00.0") / 2) + 2
        return self._overhang

    def boundingRect(self) -> QRectF:
        if self._bounds is None:
            rect = self.mapRectFromParent(self.geometry())
            self._bounds = rect.adjusted(-self.overhang(), 0, self.overhang(), 0)
        return self._bounds

    def step(self, span: float, pixels: float) -> float:
        key = (span, pixels)
        step = self._steps.get(key)
        if step is None:
            if len(self._steps) >= LABEL_CACHE_MAX:
                self._steps.clear()
            step = self._steps[key] = time_step(span, pixels, self.metrics().horizontalAdvance("00:00:00"))
        return step

    def tick_values_for(self, lo, hi, span, pixels):
        step = self.step(span, pixels)
        return ticks_between(lo, hi, step, local_offset(step, lo))

    def tick_text(self, value, span, pixels):
        fmt = time_format(self.step(span, pixels))
        key = (value, fmt)
        text = self._texts.get(key)
        if text is None:
            if len(self._texts) >= LABEL_CACHE_MAX:
                self._texts.clear()
            text = datetime.fromtimestamp(value).strftime(fmt)
            text = self._texts[key] = text[:-5] if fmt.endswith("%f") else text
        return text


class ValueAxis(ChartAxis):
    """Round values, 1, 2 or 5 × 10^n apart and at least ~32 pixels apart.

    Scrolling in time never changes it: Qt keeps its drawing as a pixmap.
    """

    def __init__(self, orientation: str = "left"):
        super().__init__(orientation)
        self.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)

    def step(self, span: float, pixels: float) -> float:
        return nice_step(span, max(1, int(pixels / max(32.0, 2.2 * self.metrics().height()))))

    def tick_values_for(self, lo, hi, span, pixels):
        return ticks_between(lo, hi, self.step(span, pixels))

    def tick_text(self, value, span, pixels):
        return value_label(value, self.step(span, pixels))


def value_axis_width(axis: ChartAxis) -> int:
    """Room for labels up to "0,000,000" in the axis's font: it grows with the font, not with the values."""
    return math.ceil(axis.metrics().horizontalAdvance("0,000,000") + 2 * TEXT_GAP)
