"""The one place that reaches into pyqtgraph's private ViewBox state: a cheap x scroll.

ViewBox.setXRange runs limit, padding and aspect checks, re-disables
auto-range and fires range signals to every listener, then pyqtgraph maps the
range to a transform while painting (which asks for a second paint); five
charts, 25 frames a second. Scrolling needs none of it: `scroll_x` sets the
range and the view's transform as ViewBox.updateMatrix would, in the same
order of operations, with geometry notifications off for the view's item group
(pyqtgraph uses them for auto-range, which is off here).

What it writes is private to pyqtgraph (`state`, `_viewPixelSizeCache`,
`_matrixNeedsUpdate`, the child group's transform), so the versions allowed in
pyproject.toml are those tests/test_desktop_viewbox_fast.py has passed on: after
`scroll_x` and after `setXRange` with the same range, the view's range and its
mapping to the device are the same.

No range signal is sent: the views this is for hold plain Qt items only, and
the caller moves the time axis itself. Views it does not expect (inverted,
aspect-locked, auto-ranging, with limits, not laid out yet) go through
setXRange.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import QRectF
from PySide6.QtGui import QTransform
from PySide6.QtWidgets import QGraphicsItem

SENDS_GEOMETRY = QGraphicsItem.GraphicsItemFlag.ItemSendsGeometryChanges


def scroll_x(view: pg.ViewBox, lo: float, hi: float) -> None:
    """Show [lo, hi] on `view`'s x axis: the same view as setXRange(lo, hi, padding=0), for less."""
    if not _plain(view, lo, hi):
        view.setXRange(lo, hi, padding=0)
        view.prepareForPaint()
        return
    state = view.state
    group = view.childGroup
    if group.flags() & SENDS_GEOMETRY:
        group.setFlag(SENDS_GEOMETRY, False)
    state["targetRange"][0] = [lo, hi]
    state["viewRange"][0] = [lo, hi]
    view._viewPixelSizeCache = None
    # ViewBox.updateMatrix's arithmetic, step for step, so that the transform is the same to the bit.
    bounds = view.rect()
    ylo, yhi = state["viewRange"][1]
    shown = QRectF(lo, ylo, hi - lo, yhi - ylo)
    centre, middle = bounds.center(), shown.center()
    transform = QTransform()
    transform.translate(centre.x(), centre.y())
    transform.scale(bounds.width() / shown.width(), -(bounds.height() / shown.height()))
    transform.translate(-middle.x(), -middle.y())
    group.setTransform(transform)
    view._matrixNeedsUpdate = False


def _plain(view: pg.ViewBox, lo: float, hi: float) -> bool:
    """Whether setXRange(lo, hi) on `view` would just set the range: nothing clamped, inverted or locked."""
    state = getattr(view, "state", None)
    if state is None or getattr(view, "childGroup", None) is None or "viewRange" not in state:
        return False
    if state.get("xInverted") or state.get("yInverted") or state.get("aspectLocked") \
            or any(state.get("autoRange", ())):
        return False
    # Limits would clamp the range: none set (pyqtgraph's defaults) is plain.
    limits = state.get("limits", {})
    x_limits = limits.get("xLimits", [None, None])
    if any(v is not None for v in limits.get("xRange", [None, None])) \
            or (x_limits[0] is not None and lo < x_limits[0]) or (x_limits[1] is not None and hi > x_limits[1]):
        return False
    ylo, yhi = state["viewRange"][1]
    bounds = view.rect()
    return hi > lo and yhi > ylo and bounds.width() > 0 and bounds.height() > 0
