"""server/stats.py with a fake clock: sliding rate and mean windows, the stats history, the ticker."""

from __future__ import annotations

import pytest

from storypulse.server.stats import History, MeanWindow, RateWindow, Ticker


# -- rate windows ----------------------------------------------------------------


def test_rate_window_counts_over_the_sliding_window():
    w = RateWindow(5.0, now=1000.0)
    for i in range(50):  # 10 events a second for 5 s
        w.add(1000.0 + i * 0.1)
    assert w.rate(1005.0) == pytest.approx(10.0, rel=0.05)
    # no more events: the rate falls as the window slides past them
    assert w.rate(1007.5) == pytest.approx(5.0, rel=0.1)
    assert w.rate(1010.1) == 0.0


def test_rate_window_at_start_uses_the_time_elapsed():
    w = RateWindow(5.0, now=0.0)
    w.add(0.5, 10)
    assert w.rate(1.0) == pytest.approx(10.0)  # 10 in the first second, not 10/5
    assert w.rate(0.0) == pytest.approx(10 / 0.1)  # never divides by less than a bucket


def test_rate_window_jumps_over_a_long_gap():
    w = RateWindow(1.0, now=0.0, buckets=10)
    w.add(0.05, 7)
    assert w.rate(100.0) == 0.0
    w.add(100.0, 3)
    assert w.rate(100.5) == pytest.approx(3.0)


def test_mean_window():
    m = MeanWindow(2.0, now=0.0)
    assert m.mean(0.0, default=-1) == -1
    m.add(0.1, 0.2, count=2)  # two samples summing to 0.2 s
    m.add(0.2, 0.4)
    assert m.mean(0.5) == pytest.approx(0.2)
    assert m.mean(5.0, default=0.0) == 0.0


def test_history_keeps_one_entry_a_second_up_to_capacity():
    h: History[int] = History(capacity=3)
    kept = [h.offer(t, i) for i, t in enumerate([0.0, 0.2, 0.9, 1.0, 1.5, 2.1, 3.0, 4.7])]
    assert kept == [True, False, False, True, False, True, True, True]
    assert h.last(10) == [5, 6, 7]
    assert h.last(2) == [6, 7]
    assert h.last(0) == []


def test_ticker_skips_missed_ticks_instead_of_bursting():
    t = Ticker(0.25, now=0.0)
    assert not t.due(0.1)
    assert t.due(0.25)
    assert not t.due(0.3)
    assert t.due(2.0)  # stalled for 1.75 s: one tick, not seven
    assert not t.due(2.05)
    assert t.next_at == pytest.approx(2.25)
