"""Bounded time series for the charts: memory stays flat however long the app runs.

Rows live in a numpy array twice the capacity; appends go to the end and, when
it is full, the newest `capacity` rows move to the front. Every read is then a
contiguous view (what pyqtgraph's setData wants) and an append costs O(1)
amortised, with no per-frame concatenation.
"""

from __future__ import annotations

import time

import numpy as np

# Every Stats field the charts, the hover readout and the CSV export use.
FIELDS = (
    "ts",
    "stories_produced_per_s",
    "stories_completed_per_s",
    "open_stories",
    "completed_stories",
    "tasks_produced_per_s",
    "tasks_completed_per_s",
    "tasks_queued",
    "tasks_running",
    "tasks_completed",
    "queued_work_s",
    "workers",
    "workers_busy",
    "workers_target",
    "min_workers",
    "max_workers",
)


class SeriesBuffer:
    """The last `capacity` stats rows, oldest first, at most `max_rate` rows a second.

    `fields` are the Stats attributes kept, "ts" first; a null field is kept as NaN.
    """

    def __init__(self, capacity: int, max_rate: float = 10.0, fields: tuple[str, ...] = FIELDS):
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        if fields[0] != "ts":
            raise ValueError("the first field must be ts")
        self.capacity = capacity
        self.fields = fields
        self._column = {name: i for i, name in enumerate(fields)}
        self.min_step = 1.0 / max_rate if max_rate > 0 else 0.0
        self._data = np.zeros((2 * capacity, len(fields)), dtype=np.float64)
        self._start = 0
        self._end = 0
        self.appended = 0  # rows ever appended: gives every row a stable absolute number

    def __len__(self) -> int:
        return self._end - self._start

    @property
    def first_ts(self) -> float | None:
        return float(self._data[self._start, 0]) if len(self) else None

    @property
    def last_ts(self) -> float | None:
        return float(self._data[self._end - 1, 0]) if len(self) else None

    def append(self, stats) -> bool:
        """Add one Stats (any object with the FIELDS as attributes); False if skipped.

        A row not newer than the last one is dropped (time only moves forward on a
        chart), and so is one much closer than `min_step` to the last, which bounds
        the points per second whatever the server's stats interval.
        """
        last = self.last_ts
        # 3/4 of the step: a server ticking at exactly max_rate, with jitter, keeps every tick.
        if last is not None and (stats.ts <= last or stats.ts - last < 0.75 * self.min_step):
            return False
        if self._end == len(self._data):
            keep = self._end - self._start
            self._data[:keep] = self._data[self._start : self._end]
            self._start, self._end = 0, keep
        # numpy stores None (a null figure) as NaN, which curves leave as a gap
        self._data[self._end] = [getattr(stats, name) for name in self.fields]
        self._end += 1
        self.appended += 1
        if self._end - self._start > self.capacity:
            self._start += 1
        return True

    def extend(self, rows) -> int:
        return sum(self.append(row) for row in rows)

    def column(self, name: str) -> np.ndarray:
        """A read-only contiguous view of one field, oldest first."""
        view = self._data[self._start : self._end, self._column[name]]
        view.flags.writeable = False
        return view

    def rows(self) -> np.ndarray:
        return self._data[self._start : self._end]

    def index_at(self, ts: float) -> int | None:
        """Index of the row nearest to `ts`, or None when empty."""
        n = len(self)
        if n == 0:
            return None
        times = self._data[self._start : self._end, 0]
        i = int(np.searchsorted(times, ts))
        if i >= n:
            return n - 1
        if i > 0 and ts - times[i - 1] < times[i] - ts:
            return i - 1
        return i

    def window(self, since: float, max_points: int) -> tuple[int, int, int]:
        """(first, last, step): the rows at or after `since`, and a decimation step
        that keeps about `max_points` of them.

        `first` is aligned to a multiple of `step` in absolute row numbers, so
        that the buckets of a decimated curve do not shift as rows arrive (a
        shifting bucket makes the whole curve shimmer).
        """
        n = len(self)
        if n == 0:
            return 0, 0, 1
        times = self._data[self._start : self._end, 0]
        first = int(np.searchsorted(times, since))
        first = max(0, first - 1)  # one row before, so the curve enters from the left edge
        count = n - first
        step = max(1, -(-count // max(max_points, 1)))
        absolute = self.appended - n + first
        first = max(0, first - absolute % step)
        return first, n, step


class ServerClock:
    """The server's time from its stats: advanced smoothly between them, never far past the last one."""

    def __init__(self, max_ahead_s: float = 2.0):
        self.latest = None  # the newest Stats
        self.max_ahead_s = max_ahead_s
        self._at = time.monotonic()  # when it arrived

    def update(self, stats) -> None:
        # A higher seq is newer even when the server's wall clock stepped back.
        if self.latest is None or stats.ts >= self.latest.ts or stats.seq > self.latest.seq:
            self.latest = stats
            self._at = time.monotonic()

    def now(self) -> float:
        if self.latest is None:
            return time.time()
        return self.latest.ts + min(time.monotonic() - self._at, self.max_ahead_s)


def peak_decimate(x: np.ndarray, y: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep the minimum and the maximum of each bucket of `step` points.

    Peaks survive (a spike is never averaged away); the result has about
    2 * len / step points. The last, partial bucket is kept as it is.
    """
    if step <= 1 or len(y) < 2 * step:
        return x, y
    whole = (len(y) // step) * step
    buckets = y[:whole].reshape(-1, step)
    times = x[:whole].reshape(-1, step)
    low, high = buckets.argmin(axis=1), buckets.argmax(axis=1)
    rows = np.arange(len(buckets))
    first = np.minimum(low, high)
    second = np.maximum(low, high)
    xs = np.empty(2 * len(buckets)); ys = np.empty(2 * len(buckets))
    xs[0::2], xs[1::2] = times[rows, first], times[rows, second]
    ys[0::2], ys[1::2] = buckets[rows, first], buckets[rows, second]
    return np.concatenate([xs, x[whole:]]), np.concatenate([ys, y[whole:]])
