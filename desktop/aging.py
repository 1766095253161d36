"""The aging work-in-progress chart: open stories by age, in a column per place, against the p85 lead time.

The columns are "waiting" and "in progress", or with a workflow "waiting" and
each stage in order (ActionableAgile's shape: how long a story has been open
against where it stands). A story older than the p85 lead time is at risk and
drawn in the risk colour; a blocked story (a block of its tasks ends later) has
a square behind its dot, so blocked work shows whatever the colours. The Flow
tab asks for the page of stories (flow.py); this draws it (flow_math.aging).
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import QLineF
from PySide6.QtWidgets import QGraphicsLineItem

from . import theme
from .chart_axes import ValueAxis, value_axis_width
from .chart_items import Dots, cache_drawing, fit_y, legend_title, theme_chart, wrapping_title
from .flow_math import Aging

TITLE = "Aging WIP, age in s"
KEYS = (("open", "calm", "dots"), ("older than p85", "risk", "dots"), ("p85 lead time", "p85", "line"))
BLOCKED_KEY = ("blocked", "blocked", "band")  # drawn as a square
SINGLE = ("waiting", "in progress")
MARGIN = 0.6  # x beyond the first and last column


class AgingChart:
    """The chart's items, made once; `show` draws a page, `set_stages` sets the columns."""

    def __init__(self, layout: pg.GraphicsLayout):
        self.bottom = pg.AxisItem("bottom")
        self.plot = layout.addPlot(axisItems={"bottom": self.bottom, "left": ValueAxis(orientation="left")})
        wrapping_title(self.plot, TITLE)  # shares the width with its neighbour, whatever the title
        cache_drawing(self.plot.titleLabel)
        left = self.plot.getAxis("left")
        left.setWidth(value_axis_width(left))
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        self.plot.disableAutoRange()
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.setYRange(0, 10, padding=0)
        colours = theme.current()
        # Squares behind the dots of blocked stories: a shape, not only a colour, marks them.
        self.blocked_marks = Dots(colours.colour("blocked"), size=11)
        self.calm = Dots(colours.colour("calm"), size=6, round_=True)  # a few hundred at most: round
        self.risk = Dots(colours.colour("risk"), size=7, round_=True)
        self.p85_line = QGraphicsLineItem()
        self.p85_line.setVisible(False)
        for item in (self.blocked_marks, self.calm, self.risk, self.p85_line):
            self.plot.vb.addItem(item)
        self.columns: tuple[str, ...] = ()
        self.staged = False
        self.seen_blocked = False  # a blocked story shown (one stage has blocks too)
        self._colours = colours
        self.set_stages(())

    def keys(self) -> tuple:
        """The title's keys: blocked ones only once there can be some (a workflow, or a block seen), in a
        title that still fits half the tab."""
        if self.staged or self.seen_blocked:
            return (*KEYS[:2], ("p85", "p85", "line"), BLOCKED_KEY)
        return KEYS

    def set_stages(self, names: tuple[str, ...]) -> None:
        """The columns: waiting and each stage of a workflow, or waiting and in progress."""
        columns = ("waiting", *names) if names else SINGLE
        if columns == self.columns:
            return
        self.columns, self.staged = columns, bool(names)
        self.apply_theme(self._colours)  # the keys
        self.bottom.setTicks([list(enumerate(columns))])
        self.plot.setXRange(-MARGIN, len(columns) - 1 + MARGIN, padding=0)
        self._p85_across(self.p85_line.line().y1())

    def _p85_across(self, p85: float) -> None:
        self.p85_line.setLine(QLineF(-MARGIN, p85, len(self.columns) - 1 + MARGIN, p85))

    def apply_theme(self, colours: theme.Theme) -> None:
        self._colours = colours
        theme_chart(self.plot, colours, title=legend_title(TITLE, self.keys(), colours))
        self.blocked_marks.set_colour(colours.colour("blocked"))
        self.calm.set_colour(colours.colour("calm"))
        self.risk.set_colour(colours.colour("risk"))
        pen = colours.pen("p85")
        pen.setStyle(theme.DASH)  # a threshold, not a series
        self.p85_line.setPen(pen)

    def show(self, state: Aging) -> None:
        calm = ~state.at_risk
        self.calm.set_data(state.x[calm], state.age_s[calm])
        self.risk.set_data(state.x[state.at_risk], state.age_s[state.at_risk])
        blocked = state.blocked if state.blocked is not None else calm & False
        self.blocked_marks.set_data(state.x[blocked], state.age_s[blocked])
        if blocked.any() and not self.seen_blocked:
            self.seen_blocked = True
            self.apply_theme(self._colours)  # the key for them
        p85 = state.p85_s
        fit_y(self.plot, 0.0, max(float(state.age_s.max(initial=0.0)), p85 or 0.0))
        if p85 is not None:
            self._p85_across(p85)
        self.p85_line.setVisible(p85 is not None)


def aging_text(state: Aging | None, total: int, format_seconds) -> str:
    """The readout's line about the aging chart: what it shows, what is at risk, what is blocked."""
    if state is None:
        return ""
    shown = len(state.story_ids)
    risky = state.risky_ids
    where = f"the oldest {shown:,} of {total:,} open stories shown"
    blocked = state.blocked_ids
    if blocked:
        where += f", {len(blocked):,} blocked"
    if state.p85_s is None:
        return f"Aging: {where}; no p85 lead time yet (no story completed in the flow window)."
    if not risky:
        return f"Aging: {where}; none older than the p85 lead time ({format_seconds(state.p85_s)})."
    ids = ", ".join(f"#{i}" for i in risky[:8]) + (" …" if len(risky) > 8 else "")
    return (f"Aging: {where}; {len(risky):,} older than the p85 lead time ({format_seconds(state.p85_s)}), "
            f"at risk: {ids}")
