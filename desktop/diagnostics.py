"""Probes for tests and the benchmark: counts of what a tab did, and the benchmark's scroll modes.

The app adds to the counts and never reads them. The scroll mode is the one
switch: the benchmark sets it to compare the app as it ships ("smooth") with
a baseline; nothing else changes it.
"""

from __future__ import annotations

from collections import Counter

SCROLL_MODES = {
    "smooth": "at every tick, as the app ships",
    "stock": "at every tick, scrolled through pyqtgraph's setXRange (naive baseline)",
    "skip": "only when the scroll moved a pixel or new data came",
}


class Diagnostics:
    """One tab's counters ("ticks", "frames", "grid builds", ...) and its scroll mode."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.scroll_mode = "smooth"

    def count(self, what: str) -> None:
        self.counts[what] += 1

    def __getitem__(self, what: str) -> int:
        return self.counts[what]
