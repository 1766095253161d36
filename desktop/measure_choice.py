"""The choice of what the Flow tab's time-per-story chart plots, lead time or cycle time, in its title row.

A small combo box laid over the top right corner of the chart's view (the
chart's title is a pyqtgraph item, with no room for a widget in its layout);
the title keeps clear of the corner (ChartTitle.reserve). The lesson it is
there for: a WIP limit on a workflow with a bottleneck cuts the cycle time
while the lead time, which counts the queue before the start, may grow.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Signal, Slot
from PySide6.QtWidgets import QComboBox, QWidget

from .flow_math import MEASURES, Measure

MARGIN = 2  # px from the view's top and right edges


class MeasureChoice(QComboBox):
    """"Lead time" or "Cycle time", pinned to the top right corner of `view`; `changed` gives the Measure."""

    changed = Signal(object)

    def __init__(self, view: QWidget):
        super().__init__(view)
        for key, measure in MEASURES.items():
            self.addItem(measure.name, key)
        self.setAccessibleName("Time per story shown: lead time or cycle time")
        self.setToolTip("Lead time: from a story's creation to done, its wait before the start included. "
                        "Cycle time: from its start to done, which a WIP limit on a bottleneck cuts.")
        self.adjustSize()
        self.currentIndexChanged.connect(self._on_index)
        view.installEventFilter(self)
        self._pin(view)

    def measure(self) -> Measure:
        return MEASURES[self.currentData()]

    def choose(self, key: str) -> None:
        """Show `key`'s measure ("lead" or "cycle"); anything else (an old or edited setting): lead time."""
        self.setCurrentIndex(max(0, self.findData(key if key in MEASURES else "lead")))

    @Slot(int)
    def _on_index(self, _index: int) -> None:
        self.changed.emit(self.measure())

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        if event.type() == QEvent.Type.Resize:
            self._pin(watched)
        return False

    def _pin(self, view: QWidget) -> None:
        self.move(view.width() - self.width() - MARGIN, MARGIN)
        self.raise_()
