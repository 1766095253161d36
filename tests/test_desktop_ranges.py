"""What a chart shows: the time-axis rule (full from the first sample) and the one y-range rule.

Pure functions with a fake clock, then the dashboard and the Flow tab driven
with an explicit `now`: a young chart spans its data, an old one its window.
"""

from __future__ import annotations

import math
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from desktop_support import shown_dashboard, snapshot_batch, stats_row
from storypulse.desktop.ranges import MIN_SPAN_S, nice_ceiling, time_span, y_range


# -- time ---------------------------------------------------------------------------
def test_a_young_chart_spans_from_its_first_sample_to_now():
    now = 1_000.0
    assert time_span(now, 300, first_ts=now - 40) == (now - 40, now)  # 40 s of data: 40 s shown
    assert time_span(now, 300, first_ts=now - 299) == (now - 299, now)


def test_an_old_chart_shows_its_window():
    now = 1_000.0
    assert time_span(now, 300, first_ts=now - 301) == (now - 300, now)
    assert time_span(now, 300, first_ts=now - 3_600) == (now - 300, now)
    assert time_span(now, 300, first_ts=None) == (now - 300, now)  # nothing yet: the window


def test_a_chart_never_shows_less_than_a_few_seconds():
    now = 1_000.0
    assert time_span(now, 300, first_ts=now) == (now - MIN_SPAN_S, now)
    assert time_span(now, 300, first_ts=now + 5) == (now - MIN_SPAN_S, now)  # a sample stamped ahead
    assert time_span(now, 5, first_ts=now - 1) == (now - 5, now)  # but never more than the window


def test_the_span_grows_with_the_clock_until_the_window_is_full():
    """A fake clock ticking from the first sample: the left edge stays on it, then follows now - window."""
    first, window = 5_000.0, 60
    lefts = [time_span(first + t, window, first)[0] for t in range(0, 121, 5)]
    for t, left in zip(range(0, 121, 5), lefts):
        assert left == (first if MIN_SPAN_S <= t <= window else first + t - MIN_SPAN_S if t < MIN_SPAN_S
                        else first + t - window)


# -- values -------------------------------------------------------------------------
def test_nice_ceiling_is_the_next_round_number():
    assert [nice_ceiling(v) for v in (0, 0.5, 1, 1.01, 2, 2.5, 7, 10, 11, 4_999, 50_001)] == \
        [1, 1, 1, 2, 2, 5, 10, 10, 20, 5_000, 100_000]
    assert nice_ceiling(math.nan) == 1


def test_zero_based_ranges_grow_at_once_and_shrink_only_past_a_third():
    assert y_range((0, 1), 0, 40) == (0, 50)  # 40 with headroom: 44, to 50
    assert y_range((0, 50), 0, 30) is None  # inside, over a third: kept
    assert y_range((0, 50), 0, 45.5) == (0, 100)  # 45.5 × 1.1 > 50
    assert y_range((0, 100), 0, 20) is None  # 22 is over a third of 100
    assert y_range((0, 100), 0, 10) == (0, 20)  # 11 is under a third
    assert y_range((5, 100), 0, 50) == (0, 100)  # not from zero: made so


def test_a_range_off_zero_keeps_the_data_with_a_margin():
    assert y_range((0, 1), 1_000, 1_100, zero_based=False) == pytest.approx((995, 1_105 + 11))
    assert y_range((995, 1_116), 1_010, 1_090, zero_based=False) is None
    assert y_range((995, 1_116), 1_010, 1_200, zero_based=False)[1] > 1_200
    assert y_range((995, 1_116), 1_080, 1_090, zero_based=False) == pytest.approx((1_079, 1_091 + 1.2))  # narrow
    assert y_range((0, 1), 0.5, 3, zero_based=False)[0] == 0  # counts never below zero
    assert y_range((0, 1), math.nan, 3, zero_based=False) is None


values = st.floats(min_value=0, max_value=1e9, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(current_top=st.floats(min_value=1, max_value=1e9), a=values, b=values, zero_based=st.booleans())
def test_the_range_always_holds_the_data_and_is_stable(current_top, a, b, zero_based):
    low, high = min(a, b), max(a, b)
    current = (0.0, current_top)
    picked = y_range(current, low, high, zero_based)
    shown = current if picked is None else picked
    assert shown[0] <= low and high <= shown[1]  # every value on the chart
    assert y_range(shown, low, high, zero_based) is None  # asked again with the same data: no change
    if zero_based and picked is not None:
        assert picked[0] == 0 and picked[1] == nice_ceiling(picked[1])


# -- the charts follow both rules ------------------------------------------------------------
def test_the_dashboard_spans_a_young_servers_data_and_an_old_ones_window(qtbot):
    dashboard = shown_dashboard(qtbot)
    dashboard.set_paused(True)  # the test's clock, not the timer, moves the charts
    now = time.time()
    dashboard.apply_batch(snapshot_batch([stats_row(now - 40 + k, k) for k in range(41)]))
    dashboard.set_window(300)
    dashboard._scroll(now)
    for plot in dashboard.plots:
        assert plot.viewRange()[0] == pytest.approx([now - 40, now])
    dashboard._scroll(now + 500)  # the same data, later: the window
    for plot in dashboard.plots:
        assert plot.viewRange()[0] == pytest.approx([now + 200, now + 500])
