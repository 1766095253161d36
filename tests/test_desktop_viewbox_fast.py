"""The contract of viewbox_fast.scroll_x on the installed pyqtgraph: the same view as setXRange, for less.

Two charts made as the app makes them, in two windows of one size: one is
scrolled through scroll_x, the other through pyqtgraph's setXRange with the
same range. After each step their ranges, pixel sizes and mappings from view
to scene and device must be equal. pyproject.toml allows the pyqtgraph
versions this has passed on; a new one that changes ViewBox's private state
fails here first.
"""

from __future__ import annotations

import pyqtgraph as pg
import pytest
from PySide6.QtCore import QPointF

from storypulse.desktop.chart_items import add_time_plot
from storypulse.desktop.viewbox_fast import scroll_x

NOW = 1_764_600_000.0


def transform_values(t) -> tuple[float, ...]:
    return (t.m11(), t.m12(), t.m13(), t.m21(), t.m22(), t.m23(), t.m31(), t.m32(), t.m33())


@pytest.fixture
def twin_charts(qtbot):
    """(fast view, stock view, their widgets): the same chart twice, shown at the same size."""
    made = []
    for _ in range(2):
        widget = pg.GraphicsLayoutWidget()
        qtbot.addWidget(widget)
        plot, _, _ = add_time_plot(widget.ci, "chart")
        plot.setYRange(0, 50, padding=0)
        widget.resize(640, 300)
        widget.show()
        qtbot.waitExposed(widget)
        made.append((plot.vb, widget))
    (fast, fast_widget), (stock, stock_widget) = made
    qtbot.waitUntil(lambda: fast.width() > 0 and fast.rect() == stock.rect(), timeout=5_000)
    return fast, stock, fast_widget, stock_widget


def assert_same_view(fast: pg.ViewBox, stock: pg.ViewBox, fast_widget, stock_widget) -> None:
    stock.prepareForPaint()  # pyqtgraph maps a new range to the transform when it paints
    assert fast.viewRange() == stock.viewRange()
    assert fast.targetRange() == stock.targetRange()
    assert fast.viewPixelSize() == stock.viewPixelSize()
    assert transform_values(fast.childTransform()) == transform_values(stock.childTransform())
    fast_device = fast.childGroup.deviceTransform(fast_widget.viewportTransform())
    stock_device = stock.childGroup.deviceTransform(stock_widget.viewportTransform())
    assert transform_values(fast_device) == transform_values(stock_device)
    (lo, hi), (ylo, yhi) = stock.viewRange()
    for x, y in ((lo, ylo), (hi, yhi), ((lo + hi) / 2, (ylo + yhi) / 3)):
        assert fast.mapViewToScene(QPointF(x, y)) == stock.mapViewToScene(QPointF(x, y))


def test_the_fast_scroll_shows_what_set_x_range_shows(qtbot, twin_charts):
    fast, stock, fast_widget, stock_widget = twin_charts
    for step in range(0, 40, 3):  # scrolling with time at 25 frames a second; a window of 60 s, then 300 s
        hi = NOW + step * 0.04
        lo = hi - (60 if step < 20 else 300)
        scroll_x(fast, lo, hi)
        stock.setXRange(lo, hi, padding=0)
        assert_same_view(fast, stock, fast_widget, stock_widget)

    # A new window, a new y range, a new size: pyqtgraph's own changes start from the same state.
    scroll_x(fast, NOW - 3600, NOW)
    stock.setXRange(NOW - 3600, NOW, padding=0)
    for view in (fast, stock):
        view.setYRange(0, 1234, padding=0)
    assert_same_view(fast, stock, fast_widget, stock_widget)
    for widget in (fast_widget, stock_widget):
        widget.resize(900, 420)
    qtbot.waitUntil(lambda: fast.rect() == stock.rect() and fast.width() > 700, timeout=5_000)
    scroll_x(fast, NOW - 300, NOW)
    stock.setXRange(NOW - 300, NOW, padding=0)
    assert_same_view(fast, stock, fast_widget, stock_widget)


def test_views_it_does_not_expect_go_through_set_x_range(qtbot, twin_charts):
    fast, stock, fast_widget, stock_widget = twin_charts
    for view in (fast, stock):
        view.invertX(True)
        view.setLimits(xMin=NOW - 100)
    scroll_x(fast, NOW - 300, NOW)  # past the limit: clamped, as setXRange clamps it
    stock.setXRange(NOW - 300, NOW, padding=0)
    assert_same_view(fast, stock, fast_widget, stock_widget)
    assert fast.viewRange()[0][0] >= NOW - 100
