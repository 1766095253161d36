"""Python's cycle collector, run in the UI thread only.

Python collects reference cycles in whichever thread happens to allocate when a
generation's count passes its threshold: in this app most often the feed thread,
a request thread or the simulator's. Cyclic garbage often holds Qt objects — a
closed tab's pyqtgraph items and menus, timers, a stopped `Requests` with its
QThread — and a QObject destroyed in a thread it does not belong to races the UI
thread over its connections and timers: the process segfaults, or deadlocks
when the collecting thread waits for the GIL inside ~QObject while the UI thread
holds the GIL and waits for that QObject's lock (docs/pitfalls.md).

So `UiThreadCollector` turns automatic collection off and collects from a timer
of the UI thread instead, the generations whose counts passed their thresholds,
as Python itself would (pyqtgraph's GarbageCollector does the same). Objects
without cycles are freed by reference counting as ever, wherever they are dropped.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer, Slot

INTERVAL_MS = 500  # cyclic garbage lives this long at most (while the event loop runs)


class UiThreadCollector(QObject):
    """Make it in the UI thread; from then on only that thread collects cycles, until `stop()`."""

    def __init__(self, parent: QObject | None = None, interval_ms: int = INTERVAL_MS):
        super().__init__(parent)
        self.thresholds = gc.get_threshold()
        self._was_enabled = gc.isenabled()
        gc.disable()
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.collect_due)
        self.timer.start()

    @Slot()
    def collect_due(self) -> int:
        """Collect the oldest generation whose count, and every younger one's, passed its threshold; the
        number of unreachable objects found."""
        due = -1
        for generation, (count, threshold) in enumerate(zip(gc.get_count(), self.thresholds)):
            if count <= threshold:
                break
            due = generation
        return gc.collect(due) if due >= 0 else 0

    def stop(self) -> None:
        """One full collection here, then automatic collection as it was before."""
        self.timer.stop()
        gc.collect()
        if self._was_enabled:
            gc.enable()


def collect_in_ui_thread(app: QObject) -> UiThreadCollector:
    """A collector for the app's lifetime (a child of `app`); call it in the UI thread, before any worker thread
    starts."""
    return UiThreadCollector(app)
