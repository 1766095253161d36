"""The Flow tab's workflow views: a band per stage in the cumulative flow diagram, and a card per stage.

Shown only with a workflow (more than one stage, stage_math.stage_names): with
one stage the tab looks as it always did. The strip above the charts holds the
flow efficiency with the bottleneck named, then one card per stage in workflow
order, its edge in the colour of its band: its pool (busy of workers, queued,
ready, blocked), its stories against its WIP limit, and a spin box to set that
limit (`set_flow {"stage_wip_limits": {...}}`). Text is set at the tab's text
rate and only when it changes.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QGridLayout, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QSpinBox, QWidget

from storypulse import protocol

from . import theme
from .cards import BigNumber, Card, LimitFollower
from .chart_items import Band
from .stage_math import (
    bottleneck_detail, bottleneck_text, format_efficiency, pool_detail, pool_text, stage_role, stages_of, stories_text,
)

CARDS_PER_ROW = 6  # stages beyond wrap to a second row


class StageBands:
    """One band per stage between the done band and the waiting one, bottom to top: last stage first.

    Made when the workflow is known; the single in-progress band hides meanwhile.
    """

    def __init__(self, view: pg.ViewBox, progress: Band):
        self.view = view
        self.progress = progress
        self.bands: list[Band] = []  # in workflow order

    def set_stages(self, names: tuple[str, ...], colours: theme.Theme) -> None:
        for band in self.bands:
            self.view.removeItem(band)
        self.bands = [Band(colours.colour(stage_role(i))) for i in range(len(names))]
        for band in self.bands:
            self.view.addItem(band)
        self.progress.setVisible(not names)

    def apply_theme(self, colours: theme.Theme) -> None:
        for i, band in enumerate(self.bands):
            band.set_colour(colours.colour(stage_role(i)))

    def set_data(self, ts: np.ndarray, edges: list[np.ndarray]) -> None:
        """`edges` from stage_math.stage_edges: done, the last stage's top, ..., the first's, arrived."""
        count = len(self.bands)
        for i, band in enumerate(self.bands):
            lower = count - 1 - i  # the last stage sits on done
            band.set_data(ts, edges[lower], edges[lower + 1])

    def stack(self) -> list:
        """The bands bottom to top (the last stage first)."""
        return self.bands[::-1]


class Elided(QLabel):
    """A label that never widens its card: a text too long for it is cut with an ellipsis (the whole of
    it in `full`, and in the tooltip its owner sets)."""

    def __init__(self, text: str = ""):
        super().__init__(text)
        self.full = text
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setMinimumWidth(20)

    def set_full(self, text: str) -> None:
        if text != self.full:
            self.full = text
            self._elide()

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        shown = self.fontMetrics().elidedText(self.full, Qt.TextElideMode.ElideRight, self.contentsRect().width())
        if shown != self.text():
            self.setText(shown)


class EfficiencyCard(BigNumber):
    """Flow efficiency in large type, the bottleneck named under it."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Flow efficiency", "efficiency", parent)
        # As wide as its title (never squeezed to nothing beside the stages' cards); the bottleneck's name
        # is cut with an ellipsis beyond that.
        self.setMinimumWidth(self.fontMetrics().horizontalAdvance("Flow efficiency") + 3 * self.edge)
        self.setToolTip("Of the stories completed in the flow window: the time they were worked on over their "
                        "cycle time. The rest they waited: in a queue, blocked, or done with a stage and waiting "
                        "for the next.")
        self.detail = Elided()
        self.layout_.addWidget(self.detail)
        self.apply_theme(theme.current())  # (BigNumber follows the theme, with this method, from its start)

    def apply_theme(self, colours: theme.Theme) -> None:
        super().apply_theme(colours)
        if hasattr(self, "detail"):
            theme.set_text_colour(self.detail, colours.text_colour("bottleneck"))

    def show_stats(self, stats) -> None:
        self.set_text(format_efficiency(getattr(stats, "flow_efficiency", None)))
        self.detail.set_full(bottleneck_text(stats))
        tip = bottleneck_detail(stats)
        if self.detail.toolTip() != tip:
            self.detail.setToolTip(tip)


class StageCard(Card):
    """One stage: its name (and whether it is the bottleneck), its pool, its stories and WIP limit."""

    limit_requested = Signal(str, int)  # stage, limit (0: none)

    def __init__(self, index: int, name: str, parent: QWidget | None = None):
        super().__init__(stage_role(index), parent)
        self.name = name
        self.title = Elided(name)
        font = QFont(self.title.font())
        font.setWeight(QFont.Weight.DemiBold)
        self.title.setFont(font)
        self.badge = QLabel("◆ bottleneck")
        self.badge.setVisible(False)
        self.pool = Elided("–")
        self.stories = QLabel("–")
        self.spin = QSpinBox()
        self.spin.setRange(0, protocol.WIP_LIMIT_MAX)
        self.spin.setSpecialValueText("no limit")
        self.spin.setAccessibleName(f"WIP limit of stage {name}")
        self.spin.setToolTip(f"Stories in {name} at once: a story counts in it from its start there until it "
                             "starts its next stage, so a full stage stops the one before it from pulling. 0: none.")
        self.apply = QPushButton("Set")
        self.apply.setAccessibleName(f"Set the WIP limit of stage {name}")
        self.apply.clicked.connect(lambda: self.limit_requested.emit(self.name, self.spin.value()))
        head = QHBoxLayout()
        head.addWidget(self.title, 1)
        head.addWidget(self.badge)
        limit = QHBoxLayout()
        limit.addWidget(self.stories, 1)
        limit.addWidget(self.spin)
        limit.addWidget(self.apply)
        self.layout_.addLayout(head)
        self.layout_.addWidget(self.pool)
        self.layout_.addLayout(limit)
        self.follower = LimitFollower(self.spin)
        theme.follow(self, self.apply_theme)

    def apply_theme(self, colours: theme.Theme) -> None:
        theme.set_text_colour(self.pool, colours.muted)
        theme.set_text_colour(self.badge, colours.text_colour("bottleneck"))
        super().apply_theme(colours)

    def show_stage(self, stage, bottleneck: bool, initial: bool = False) -> None:
        self.pool.set_full(pool_text(stage))
        text = stories_text(stage)
        if self.stories.text() != text:
            self.stories.setText(text)
        detail = pool_detail(stage)
        if self.pool.toolTip() != detail:
            self.pool.setToolTip(detail)
        self.badge.setVisible(bottleneck)
        self.follower.show(stage.wip_limit, initial)
        name = f"Stage {self.name}: {detail}; {self.stories.text()}" + ("; the bottleneck" if bottleneck else "")
        if self.accessibleName() != name:
            self.setAccessibleName(name)


class StageStrip(QWidget):
    """The efficiency card and a card per stage; hidden without a workflow."""

    limit_requested = Signal(str, int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.efficiency = EfficiencyCard()
        self.cards: list[StageCard] = []
        self.names: tuple[str, ...] = ()
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setSpacing(8)
        self.grid.addWidget(self.efficiency, 0, 0)
        self.setVisible(False)

    def set_stages(self, names: tuple[str, ...]) -> None:
        """A card per stage (none: hidden)."""
        for card in self.cards:
            self.grid.removeWidget(card)
            card.deleteLater()
        self.cards = []
        for i, name in enumerate(names):
            card = StageCard(i, name)
            card.limit_requested.connect(self.limit_requested)
            self.grid.addWidget(card, i // CARDS_PER_ROW, 1 + i % CARDS_PER_ROW)
            self.cards.append(card)
        rows = max(1, -(-len(names) // CARDS_PER_ROW))
        self.grid.addWidget(self.efficiency, 0, 0, rows, 1)
        for column in range(1 + CARDS_PER_ROW):
            self.grid.setColumnStretch(column, 0)
        for column in range(1 + min(len(names), CARDS_PER_ROW)):
            self.grid.setColumnStretch(column, 2 if column == 0 else 3)
        self.names = names
        self.setVisible(bool(names))

    def show_stats(self, stats, initial: bool = False) -> None:
        stages = stages_of(stats)
        if not self.names or tuple(s.name for s in stages) != self.names:
            return
        self.efficiency.show_stats(stats)
        bottleneck = getattr(stats, "bottleneck", None)
        for card, stage in zip(self.cards, stages):
            card.show_stage(stage, stage.name == bottleneck, initial)

    def card(self, name: str) -> StageCard:
        return next(c for c in self.cards if c.name == name)
