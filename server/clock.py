"""The server's two clocks in one object, so that a test can drive the loop on a clock of its own.

`monotonic()` times everything the loop schedules (timers, rates, leases);
`wall()` is what is stored and shown (created_at, event timestamps).
"""

from __future__ import annotations

import time


class Clock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()
