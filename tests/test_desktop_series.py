"""desktop/series.py tested directly: the bounded time series buffer the charts draw from, and peak decimation."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from storypulse.desktop.series import FIELDS, SeriesBuffer, peak_decimate


def row(ts: float, value: float = 0.0) -> SimpleNamespace:
    return SimpleNamespace(**{**{name: value for name in FIELDS}, "ts": ts})


def test_series_buffer_keeps_the_newest_rows_in_order_and_stays_bounded():
    buf = SeriesBuffer(capacity=100, max_rate=10)
    for i in range(1_000):
        buf.append(row(i * 0.1, i))
    assert len(buf) == 100
    ts = buf.column("ts")
    assert ts[0] == pytest.approx(90.0) and ts[-1] == pytest.approx(99.9)
    assert np.all(np.diff(ts) > 0)
    assert buf.column("open_stories")[-1] == 999
    assert buf._data.shape[0] == 200  # the memory never grows
    assert buf.appended == 1_000


def test_series_buffer_drops_rows_too_close_or_going_back_in_time():
    buf = SeriesBuffer(capacity=10, max_rate=10)
    assert buf.append(row(100.0))
    assert not buf.append(row(100.05))  # closer than 1/max_rate
    assert not buf.append(row(99.0))  # older
    assert buf.append(row(100.1))
    assert len(buf) == 2


def test_series_buffer_nearest_index_and_window():
    buf = SeriesBuffer(capacity=1_000, max_rate=10)
    buf.extend(row(float(t)) for t in range(100))
    assert buf.index_at(41.4) == 41 and buf.index_at(41.6) == 42
    assert buf.index_at(-5) == 0 and buf.index_at(500) == 99
    first, last, step = buf.window(since=90.0, max_points=1_000)
    assert (first, last, step) == (89, 100, 1)
    first, last, step = buf.window(since=0.0, max_points=10)
    assert step == 10 and first % step == 0 and last == 100


def test_peak_decimation_keeps_spikes():
    x = np.arange(1_000, dtype=float)
    y = np.zeros(1_000)
    y[517] = 50.0
    y[818] = -7.0
    xs, ys = peak_decimate(x, y, 10)
    assert len(xs) == 200
    assert ys.max() == 50.0 and xs[ys.argmax()] == 517
    assert ys.min() == -7.0
    assert np.all(np.diff(xs) >= 0)
