"""Chart pieces that cost little to draw at every frame: the dashboard scrolls 25 times a second.

Measured with the UI flood benchmark, pyqtgraph's stock pieces spent most of
each frame in Python: its axes (see chart_axes.py) and its curves, which compute
bounds and paint in Python. These keep pyqtgraph's layout, views and mouse
handling, but:

- the grid of a chart is one Qt path in data coordinates, under the curves: it
  scrolls with them through the view's transform and is rebuilt only when a
  new tick comes into view or the y range changes;
- the curves, hover lines and resize marks are plain Qt items, and scrolling
  sets the view's transform without pyqtgraph's signals (viewbox_fast.py): no
  Python runs for anything inside a chart while it scrolls.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import (
    QBrush, QColor, QFontMetricsF, QPainter, QPainterPath, QPen, QPolygonF, QTextOption, QTransform,
)
from PySide6.QtWidgets import QApplication, QGraphicsItem, QGraphicsLineItem, QGraphicsPathItem, QGraphicsView

from . import ranges, theme
from .chart_axes import TimeAxis, ValueAxis, local_offset, ticks_between, value_axis_width
from .diagnostics import Diagnostics
from .viewbox_fast import scroll_x

TITLE_SIZE = "9pt"
TITLE_ROW = 30  # px: the height pyqtgraph gives a chart's title row


class ChartGrid(QGraphicsPathItem):
    """A chart's grid lines as one path in data coordinates, drawn under its curves.

    It scrolls with the data for free; `follow` rebuilds it only when the visible
    range leaves what it covers, the time or value step changes, or the y range
    moves. Horizontal lines reach half a window beyond each side, so a scroll
    rebuilds it about every half window.
    """

    def __init__(self, time_axis: TimeAxis, value_axis: ValueAxis, diagnostics: Diagnostics | None = None):
        super().__init__()
        self.diagnostics = diagnostics
        self.time_axis = time_axis
        self.value_axis = value_axis
        self.set_colour(theme.current().grid)
        self._key = None
        self._covers = (0.0, -1.0)

    def set_colour(self, colour: str) -> None:
        # Opaque, and under the curves, so that it never hides one running along a line.
        pen = QPen(QColor(colour), 1)
        pen.setCosmetic(True)
        self.setPen(pen)

    def follow(self, x_range, y_range, width: float, height: float) -> None:
        lo, hi = x_range
        ylo, yhi = y_range
        if not (hi > lo and yhi > ylo and width > 0 and height > 0):
            return
        key = (round(hi - lo, 6), width, height, ylo, yhi)
        if key == self._key and self._covers[0] <= lo and hi <= self._covers[1]:
            return
        span = hi - lo
        start, end = lo - span / 2, hi + span / 2
        step = self.time_axis.step(span, width)
        path = QPainterPath()
        for x in ticks_between(start, end, step, local_offset(step, lo)):
            path.moveTo(x, ylo)
            path.lineTo(x, yhi)
        for y in self.value_axis.tick_values(ylo, yhi, height):
            path.moveTo(start, y)
            path.lineTo(end, y)
        self.setPath(path)
        self._key, self._covers = key, (start, end)
        if self.diagnostics is not None:
            self.diagnostics.count("grid builds")

    def covers(self, lo: float, hi: float) -> bool:
        """Whether scrolling to [lo, hi] (same span) needs no rebuild: the common case, checked cheaply."""
        return self._key is not None and self._covers[0] <= lo and hi <= self._covers[1] \
            and self._key[0] == round(hi - lo, 6)


class HairlinePath(QGraphicsPathItem):
    """A path drawn with a cosmetic pen n device pixels wide as n one-pixel lines a device pixel apart.

    Qt draws a one-pixel line on its fast path and a wider one through its
    stroker, at several times the cost: at 200 % the wide lines of the charts
    and their dotted annotations took a third of a frame. Diagonally offset
    passes thicken a line in every direction but the one diagonal.
    """

    def __init__(self) -> None:
        super().__init__()
        self._passes = 1
        self._hairline = QPen()

    def setPen(self, pen: QPen) -> None:  # noqa: N802 (Qt's name)
        pen = QPen(pen)
        pen.setCosmetic(True)  # as many device pixels wide whatever the view's scale
        super().setPen(pen)
        self._passes = max(1, round(pen.widthF()))
        hairline = QPen(pen)
        hairline.setWidthF(1)
        if pen.style() not in (Qt.PenStyle.SolidLine, Qt.PenStyle.NoPen):
            hairline.setDashPattern([d * self._passes for d in pen.dashPattern()])  # dashes as long as the wide pen's
        self._hairline = hairline

    def paint(self, p: QPainter, option, widget=None) -> None:
        if self._passes == 1:
            super().paint(p, option, widget)
            return
        step = 1.0 / p.device().devicePixelRatioF()  # a device pixel, in the painter's logical pixels
        p.setPen(self._hairline)
        path = self.path()
        base = p.transform()
        for i in range(self._passes):
            p.setTransform(base * QTransform.fromTranslate(i * step, i * step))
            p.drawPath(path)
        p.setTransform(base)


class LiveCurve(HairlinePath):
    """A curve drawn by Qt alone: no Python runs for it while scrolling (and, at 100 %, while painting).

    Decimation and clipping are done once per new data (series.py), so all a frame
    needs is the path, mapped by the view's transform. Its key is in its chart's
    title (legend_title).
    """

    def __init__(self, pen: QPen):
        super().__init__()
        self.set_pen(pen)

    def set_pen(self, pen: QPen) -> None:
        self.setPen(pen)

    def set_data(self, x: np.ndarray, y: np.ndarray, gaps: bool = False) -> None:
        """`gaps`: y may hold NaN (a figure the server had none of), drawn as a break in the line."""
        if len(x) < 2:
            self.setPath(QPainterPath())
            return
        self.setPath(pg.arrayToQPath(np.ascontiguousarray(x, dtype=float), np.ascontiguousarray(y, dtype=float),
                                     connect="finite" if gaps else "all", finiteCheck=gaps))


class Band(QGraphicsPathItem):
    """A filled band between two curves over the same times (a cumulative flow diagram's layer)."""

    def __init__(self, colour: QColor | str, alpha: int = 150):
        super().__init__()
        self.alpha = alpha
        self.set_colour(colour)

    def set_colour(self, colour: QColor | str) -> None:
        """The edge in `colour`, the fill in `colour` at the band's alpha."""
        fill = QColor(colour)
        fill.setAlpha(self.alpha)
        self.setBrush(QBrush(fill))
        pen = QPen(QColor(colour), theme.line_width())
        pen.setCosmetic(True)
        self.setPen(pen)

    def set_data(self, x: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> None:
        if len(x) < 2:
            self.setPath(QPainterPath())
            return
        # Along the upper edge, back along the lower one: one closed polygon.
        xs = np.concatenate([x, x[::-1]]).astype(float)
        ys = np.concatenate([upper, lower[::-1]]).astype(float)
        path = pg.arrayToQPath(xs, ys, connect="all", finiteCheck=False)
        path.closeSubpath()
        self.setPath(path)


class Dots(QGraphicsItem):
    """Points as dots of a fixed pixel size, drawn by Qt in one call whatever the view's scale.

    A wide pen makes each point a square, or with round caps a disc. The points
    are mapped to the device here (numpy, once per paint) and drawn without a
    transform: under a view's unequal x and y scales Qt would stretch them.
    Discs cost some 30 times as much as squares (3,500 points: 27 ms against
    0.8 ms, antialiased), so many dots are squares. (No item cache: Qt would
    cut the dots at the edges of a bounding rect that is in data units.)
    """

    def __init__(self, colour: QColor | str, size: float = 5.0, round_: bool = False,
                 diagnostics: Diagnostics | None = None):
        super().__init__()
        self.diagnostics = diagnostics  # counts "dot paints"
        self.size, self.round = size, round_
        self.set_colour(colour)
        self._antialias = round_  # squares at whole pixels stay crisp without it
        self._bounds = QRectF()
        self._device = pg.functions.create_qpolygonf(0)
        self._device_xy = np.empty((0, 2))
        self.count = 0
        self.x = np.empty(0)
        self.y = np.empty(0)

    def set_data(self, x: np.ndarray, y: np.ndarray) -> None:
        self.prepareGeometryChange()
        self.x, self.y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        self.count = len(self.x)
        self._device = pg.functions.create_qpolygonf(self.count)
        self._device_xy = pg.functions.ndarray_from_qpolygonf(self._device) if self.count else np.empty((0, 2))
        if self.count:
            # Never empty, or Qt would skip it: one dot, or dots in a row, have no area.
            w, h = max(np.ptp(self.x), 1e-6), max(np.ptp(self.y), 1e-6)
            self._bounds = QRectF(self.x.min() - w / 100, self.y.min() - h / 100, w * 1.02, h * 1.02)
        else:
            self._bounds = QRectF()
        self.update()

    def set_colour(self, colour: QColor | str) -> None:
        pen = QPen(QColor(colour), self.size)
        pen.setCapStyle(Qt.PenCapStyle.RoundCap if self.round else Qt.PenCapStyle.SquareCap)
        self._pen = pen
        self.update()

    def colour(self) -> QColor:
        return self._pen.color()

    def boundingRect(self) -> QRectF:
        return self._bounds

    def paint(self, p: QPainter, *_: object) -> None:
        if not self.count:
            return
        if self.diagnostics is not None:
            self.diagnostics.count("dot paints")
        t = p.transform()
        self._device_xy[:, 0] = t.m11() * self.x + t.m21() * self.y + t.dx()
        self._device_xy[:, 1] = t.m12() * self.x + t.m22() * self.y + t.dy()
        if not self._antialias:
            np.rint(self._device_xy, out=self._device_xy)
        p.save()
        p.resetTransform()
        p.setRenderHint(QPainter.RenderHint.Antialiasing, self._antialias)
        p.setPen(self._pen)
        p.drawPoints(self._device)
        p.restore()


class ChartTitle(pg.LabelItem):
    """A chart's title that breaks into centred lines where the chart is narrower than it.

    pyqtgraph's title makes the width of its text its minimum width at every
    change, so a long title (one with keys) widens its chart beyond the view,
    which then shows only part of the chart. This one keeps a small minimum
    width, wraps its text to the width it is given (between words: keys are
    kept whole by legend_title), and gives its row the height its lines need,
    or that of the tallest title beside it (share_title_row): charts side by
    side keep their tops level.
    """

    MIN_WIDTH = 10
    _busy = False  # in updateMin, whose size changes call resizeEvent, which calls updateMin
    reserve = 0.0  # px kept clear at each end of the row: a control laid over a corner of it

    def __init__(self, plot: pg.PlotItem):
        self.row_mates: list[ChartTitle] = []  # (set before the label's first text, which asks for it)
        super().__init__(" ", parent=plot)
        self.item.document().setDefaultTextOption(QTextOption(Qt.AlignmentFlag.AlignHCenter))

    def resizeEvent(self, ev) -> None:  # noqa: N802 (pyqtgraph's name)
        if self._busy:
            return
        self.item.setTextWidth(-1)
        width = self.rect().width()
        width = max(width - 2 * self.reserve, self.MIN_WIDTH) if width > 0 else width
        # As wide as the text needs, at most the width it has: lines centred, and broken if need be.
        self.item.setTextWidth(min(self.item.document().idealWidth(), width) if width > 0 else -1)
        super().resizeEvent(ev)

    def updateMin(self) -> None:  # noqa: N802 (pyqtgraph's name)
        if self._busy:
            return
        self._busy = True
        try:
            bounds = self.itemRect()
            self.setMinimumWidth(self.MIN_WIDTH)
            self.setMinimumHeight(bounds.height())
            self._sizeHint = {Qt.SizeHint.MinimumSize: (self.MIN_WIDTH, bounds.height()),
                              Qt.SizeHint.PreferredSize: (bounds.width(), bounds.height()),
                              Qt.SizeHint.MaximumSize: (-1, -1), Qt.SizeHint.MinimumDescent: (0, 0)}
            # pyqtgraph gives a shown title a row 30 px high (setTitle): more if the lines need it.
            row = max(TITLE_ROW, *(math.ceil(t.itemRect().height()) for t in (self, *self.row_mates)))
            for title in (self, *self.row_mates):
                title.take_row_height(row)
            self.updateGeometry()
        finally:
            self._busy = False

    def take_row_height(self, row: int) -> None:
        plot = self.parentItem()
        if self.isVisible() and plot is not None and plot.layout.rowMinimumHeight(0) != row:
            self.setMaximumHeight(row)
            plot.layout.setRowFixedHeight(0, row)


def wrapping_title(plot: pg.PlotItem, title: str) -> None:
    """Give `plot` a ChartTitle in place of pyqtgraph's title, showing `title`."""
    plot.layout.removeItem(plot.titleLabel)
    plot.titleLabel.setParentItem(None)
    if plot.titleLabel.scene() is not None:
        plot.titleLabel.scene().removeItem(plot.titleLabel)
    plot.titleLabel = ChartTitle(plot)
    plot.layout.addItem(plot.titleLabel, 0, 1)
    plot.setTitle(title, size=TITLE_SIZE)


def share_title_row(*plots: pg.PlotItem) -> None:
    """Charts side by side (made with wrapping titles): their title rows as high as the tallest title's."""
    for plot in plots:
        plot.titleLabel.row_mates = [p.titleLabel for p in plots if p is not plot]


def add_time_plot(layout: pg.GraphicsLayout, title: str, show_time_axis: bool = True,
                  diagnostics: Diagnostics | None = None) -> tuple[pg.PlotItem, TimeAxis, ChartGrid]:
    """A chart over time, set up to scroll cheaply: fixed-width value axis, grid path, no auto-range."""
    axis = TimeAxis(orientation="bottom")
    plot = layout.addPlot(axisItems={"bottom": axis, "left": ValueAxis(orientation="left")})
    wrapping_title(plot, title)
    left = plot.getAxis("left")
    left.setWidth(value_axis_width(left))  # a fixed width: no relayout when labels grow
    grid = ChartGrid(axis, left, diagnostics)
    plot.vb.addItem(grid, ignoreBounds=True)
    grid.setZValue(-1)  # under the curves
    # Scrolling moves the grid itself (scroll_chart); a pan or zoom while paused, a new
    # y range or a new size rebuild it here.
    follow = lambda *_: follow_range(plot, grid)  # noqa: E731
    plot.vb.sigRangeChanged.connect(follow)
    plot.vb.sigResized.connect(follow)
    for side in ("top", "right"):
        # Never shown: do not let every scroll re-lay their labels out.
        plot.getAxis(side).unlinkFromView()
    if not show_time_axis:
        plot.hideAxis("bottom")
    plot.setMenuEnabled(False)
    plot.hideButtons()
    plot.disableAutoRange()  # (enableAutoRange(False) would read False as "the x axis" and turn it on)
    plot.setMouseEnabled(x=False, y=False)
    plot.setYRange(0, 1, padding=0)
    return plot, axis, grid


def fit_y(plot: pg.PlotItem, low: float, high: float, zero_based: bool = True) -> None:
    """Give `plot` the y range that ranges.y_range picks for data from `low` to `high` (if it picks a new one)."""
    wanted = ranges.y_range(tuple(plot.viewRange()[1]), low, high, zero_based)
    if wanted is not None:
        plot.setYRange(*wanted, padding=0)


def theme_chart(plot: pg.PlotItem, colours: theme.Theme, grid: ChartGrid | None = None,
                title: str | None = None) -> None:
    """A chart's axes, title, legend and grid in a theme's colours; its series are its owner's to colour.

    `title`: a new title (one with colours of its own); else the one it has, in the theme's text colour.
    """
    for name in ("left", "bottom"):
        axis = plot.getAxis(name)
        axis.setPen(QColor(colours.axis))
        axis.setTextPen(QColor(colours.muted))
    plot.setTitle(plot.titleLabel.text if title is None else title, size=TITLE_SIZE, color=colours.text)
    legend = plot.legend
    if legend is not None:
        backdrop = QColor(colours.surface)
        backdrop.setAlpha(150)  # lines running under it stay visible, its text readable
        legend.setBrush(backdrop)
        for sample, label in legend.items:
            label.setText(label.text, color=colours.text)
            sample.update()
    if grid is not None:
        grid.set_colour(colours.grid)


KEY_GLYPHS = {"band": "■", "dots": "●", theme.SOLID: "━", theme.DASH: "╍", theme.DASH_DOT: "╍"}


def legend_title(title: str, entries, colours: theme.Theme) -> str:
    """A chart title with keys in the series' colours (a band, dots, a line or a dashed one): cheaper than
    a legend item, and cached as a pixmap. `entries`: (label, role, "band" / "dots" / "line").
    In a ChartTitle too narrow for it, it breaks between keys, never inside one."""
    keys = "&nbsp; ".join(
        f"<span style='color:{colours.colour(role).name()}'>"
        f"{KEY_GLYPHS[kind if kind != 'line' else theme.SERIES[role][1]]}</span>&nbsp;{label.replace(' ', '&nbsp;')}"
        for label, role, kind in entries)
    return f"{title}&nbsp;&nbsp; <span style='font-size:8pt'>{keys}</span>"


def name_chart(view: QGraphicsView, name: str, description: str) -> None:
    """What a chart view is called for screen readers; it takes no keyboard focus (it has no keys)."""
    view.setAccessibleName(name)
    view.setAccessibleDescription(description)
    view.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    view.viewport().setFocusPolicy(Qt.FocusPolicy.NoFocus)


def follow_range(plot: pg.PlotItem, grid: ChartGrid) -> None:
    x_range, y_range = plot.vb.viewRange()
    grid.follow(x_range, y_range, plot.vb.width(), plot.vb.height())


def scroll_chart(plot: pg.PlotItem, axis: TimeAxis, grid: ChartGrid, lo: float, hi: float,
                 stock: bool = False) -> None:
    """Show [lo, hi] on a chart made by add_time_plot; `stock` goes through pyqtgraph's setXRange."""
    if stock:
        plot.setXRange(lo, hi, padding=0)
        plot.vb.prepareForPaint()
    else:
        scroll_x(plot.vb, lo, hi)
    axis.setRange(lo, hi)
    if not grid.covers(lo, hi):
        follow_range(plot, grid)


def cache_drawing(item: QGraphicsItem) -> None:
    """Let Qt keep `item` and everything in it as pixmaps (for parts that never move or change)."""
    item.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
    for child in item.childItems():
        cache_drawing(child)


class HoverLine(QGraphicsLineItem):
    """The dotted line at the time under the mouse, in data coordinates: it scrolls with the data."""

    def __init__(self):
        super().__init__()
        self.set_colour(theme.current().muted)
        self.setVisible(False)
        self.setZValue(5)

    def set_colour(self, colour: str) -> None:
        pen = QPen(QColor(colour), theme.line_width(), Qt.PenStyle.DotLine)
        pen.setCosmetic(True)
        self.setPen(pen)

    def place(self, at: float, y_range) -> None:
        ylo, yhi = y_range
        self.setLine(at, ylo, at, yhi)
        self.setVisible(True)


def mark_size() -> float:
    """Marks as big as about two thirds of a line of text: they grow with the font."""
    return max(7.0, round(0.6 * QFontMetricsF(QApplication.font()).height()))


class ResizeMarks:
    """The worker pool's resizes as triangles (up: grown, down: shrunk) at (time, new size).

    Plain Qt items that keep their pixel size however the view scales, made anew
    only when the marks change.
    """

    def __init__(self, view: pg.ViewBox):
        self.view = view
        self.items: list[QGraphicsPathItem] = []
        half = mark_size() / 2
        self._up, self._down = QPainterPath(), QPainterPath()
        self._up.addPolygon(QPolygonF([QPointF(-half, half), QPointF(half, half), QPointF(0, -half)]))
        self._down.addPolygon(QPolygonF([QPointF(-half, -half), QPointF(half, -half), QPointF(0, half)]))
        self._up.closeSubpath()
        self._down.closeSubpath()
        self._marks: list = []
        self.set_colours(theme.current())

    def set_colours(self, colours: theme.Theme) -> None:
        self._brushes = {True: QBrush(colours.colour("grown")), False: QBrush(colours.colour("shrunk"))}
        self.set_marks(self._marks)

    def set_marks(self, marks) -> None:
        """`marks`: (ts, old size, new size) tuples."""
        self._marks = list(marks)
        for item in self.items:
            self.view.removeItem(item)
        self.items = []
        for ts, old, new, *_ in self._marks:
            grown = new > old
            item = QGraphicsPathItem(self._up if grown else self._down)
            item.setBrush(self._brushes[grown])
            item.setPen(QPen(Qt.PenStyle.NoPen))
            item.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
            item.setPos(ts, new)
            item.setZValue(10)
            self.view.addItem(item, ignoreBounds=True)
            self.items.append(item)
