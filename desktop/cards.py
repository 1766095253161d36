"""Cards above the charts: a big number with its title, or a small form, on a panel with a coloured edge.

Drawn from the theme (theme.py), not from style sheets: a card paints its own
panel, border and edge, and its labels take their colours from palettes set
in `apply_theme`, so a change of theme is a repaint, and a test can read the
colours a card shows. Sizes follow the application font, so that a larger
font or a scale factor never clips a number.
"""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QApplication, QFrame, QLabel, QSizePolicy, QVBoxLayout, QWidget

from . import theme

VALUE_SCALE = 2.2  # a big number's type against the application font


class LimitFollower:
    """Keeps a limit's spin box on the server's limit: at the first stats (or a snapshot), and whenever
    the server's limit changes (another client set it), unless the box holds an edit not applied yet."""

    def __init__(self, spin):
        self.spin = spin
        self.seen: int | None = None  # the server's limit in the last stats

    def show(self, limit: int, initial: bool = False) -> None:
        if initial or self.seen is None or (limit != self.seen and self.spin.value() == self.seen):
            self.spin.setValue(limit)
        self.seen = limit


class Card(QFrame):
    """A panel with a border and a coloured left edge in the colour of a series role.

    A subclass adds its widgets to `layout_`, then calls theme.follow(self, self.apply_theme).
    """

    def __init__(self, role: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.role = role
        self._colours = theme.current()
        self.layout_ = QVBoxLayout(self)
        height = self.fontMetrics().height()
        self.edge = max(4, round(0.3 * height))
        self.layout_.setContentsMargins(self.edge + round(0.5 * height), round(0.3 * height), round(0.7 * height),
                                        round(0.3 * height))
        self.layout_.setSpacing(0)

    def apply_theme(self, colours: theme.Theme) -> None:
        self._colours = colours
        self.update()

    def paintEvent(self, event) -> None:
        c = self._colours
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        rect = QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5)
        outline = QPainterPath()
        outline.addRoundedRect(rect, 4, 4)
        p.fillPath(outline, QColor(c.surface))
        p.setClipPath(outline)
        p.fillRect(QRectF(rect.left(), rect.top(), self.edge, rect.height()), c.colour(self.role))
        p.setClipping(False)
        p.strokePath(outline, QPen(QColor(c.border), 1))
        p.end()


class BigNumber(Card):
    """A figure in large type under its title; screen readers hear "title: value".

    Squeezed (a large font, a narrow window), the figure's type shrinks to fit,
    down to the size of the text around it, and the title is cut with an ellipsis.
    """

    def __init__(self, title: str, role: str, parent: QWidget | None = None, scale: float = VALUE_SCALE):
        super().__init__(role, parent)
        self.full_title = title
        self.title = QLabel(title)
        self.value = QLabel("–")
        self.value_font = QFont(QApplication.font())
        self.value_font.setPointSizeF(self.value_font.pointSizeF() * scale)
        self.value_font.setWeight(QFont.Weight.DemiBold)
        self.value.setFont(self.value_font)
        for label in (self.title, self.value):
            label.setTextInteractionFlags(Qt.TextInteractionFlag.NoTextInteraction)
            self.layout_.addWidget(label)
        self._announce()
        theme.follow(self, self.apply_theme)

    def apply_theme(self, colours: theme.Theme) -> None:
        theme.set_text_colour(self.title, colours.muted)
        theme.set_text_colour(self.value, colours.text_colour(self.role))
        super().apply_theme(colours)

    def set_text(self, text: str) -> None:
        if self.value.text() != text:
            self.value.setText(text)
            self._fit()
            self._announce()

    def set_title(self, title: str) -> None:
        if title != self.full_title:
            self.full_title = title
            self.title.setText(title)
            self._fit()
            self._announce()

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        width = self.value.contentsRect().width()
        if width <= 0:
            return
        needed = QFontMetricsF(self.value_font).horizontalAdvance(self.value.text())
        smallest = QApplication.font().pointSizeF()
        # (a little under: type sizes round to whole pixels)
        size = max(smallest, self.value_font.pointSizeF() * min(1.0, 0.95 * width / needed if needed else 1.0))
        if abs(self.value.font().pointSizeF() - size) > 0.05:
            font = QFont(self.value_font)
            font.setPointSizeF(size)
            self.value.setFont(font)
        title = self.title.fontMetrics().elidedText(self.full_title, Qt.TextElideMode.ElideRight,
                                                     self.title.contentsRect().width())
        if title != self.title.text():
            self.title.setText(title)

    def squeezable(self) -> None:
        """Shrink rather than widen the window (the labels clip instead)."""
        for label in (self.title, self.value):
            label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
            label.setMinimumWidth(20)

    def setToolTip(self, text: str) -> None:  # noqa: N802 (Qt's name)
        super().setToolTip(text)
        self.setAccessibleDescription(text)

    def _announce(self) -> None:
        name = f"{self.full_title}: {self.value.text()}"
        self.setAccessibleName(name)
        self.value.setAccessibleName(name)
