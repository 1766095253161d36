"""Plain-text formatting for the terminal clients: tables, times, durations, sparklines."""

from __future__ import annotations

import time
from typing import Sequence

SPARK = "▁▂▃▄▅▆▇█"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], right: Sequence[int] = ()) -> str:
    """A fixed-width table; columns whose index is in `right` are right-aligned (numbers)."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        parts = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def clock(ts: float | None, now: float | None = None) -> str:
    """Local time of an epoch timestamp; the date is added when it is not today."""
    if ts is None:
        return "-"
    local = time.localtime(ts)
    millis = int((ts % 1) * 1000)
    today = time.localtime(now if now is not None else time.time())
    if local[:3] == today[:3]:
        return time.strftime("%H:%M:%S", local) + f".{millis:03d}"
    return time.strftime("%Y-%m-%d %H:%M:%S", local)


def duration(seconds: float | None) -> str:
    """A short human duration: 850 ms, 3.20 s, 4 m 12 s, 2 h 05 m."""
    if seconds is None:
        return "-"
    if seconds < 0:
        seconds = 0.0
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} m {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} m"


def count(n: int) -> str:
    return f"{n:,}"


def rate(per_s: float) -> str:
    return f"{per_s:,.1f}/s"


def sparkline(values: Sequence[float], width: int) -> str:
    """The last `width` values as block characters, scaled to their own maximum."""
    tail = list(values)[-width:]
    if not tail:
        return ""
    top = max(tail)
    if top <= 0:
        return SPARK[0] * len(tail)
    return "".join(SPARK[min(len(SPARK) - 1, int(v / top * (len(SPARK) - 1) + 0.5))] for v in tail)
