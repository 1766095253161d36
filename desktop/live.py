"""What the live chart tabs (dashboard, flow) share: their timers, their layout, when they may draw."""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtGui import QFontDatabase, QPalette
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget


def timer(parent: QObject, interval_ms: int, slot) -> QTimer:
    """A started timer owned by `parent` (so it lives, and fires, in the UI thread)."""
    t = QTimer(parent)
    t.setInterval(interval_ms)
    t.timeout.connect(slot)
    t.start()
    return t


def muted(label: QLabel) -> QLabel:
    """Secondary text: the palette's muted colour (theme.py), which follows a change of theme by itself."""
    label.setForegroundRole(QPalette.ColorRole.PlaceholderText)
    return label


def readout_label(text: str) -> QLabel:
    label = QLabel(text)
    label.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    # A long line is cut at the edge instead of widening the window.
    label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    label.setMinimumWidth(50)
    return label


def live_layout(tab: QWidget, numbers: QHBoxLayout, charts: QWidget, readout: QLabel) -> QVBoxLayout:
    """Big numbers on top, the charts taking the room, one line of text under them."""
    layout = QVBoxLayout(tab)
    layout.setContentsMargins(6, 6, 6, 6)
    layout.addLayout(numbers)
    layout.addWidget(charts, 1)
    layout.addWidget(readout)
    return layout


def may_draw(tab: QWidget, paused: bool) -> bool:
    """A hidden tab, a paused one or a minimised window draws nothing."""
    return tab.isVisible() and not paused and not tab.window().isMinimized()
