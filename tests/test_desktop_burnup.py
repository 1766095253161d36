"""The burn-up with the forecast cone (desktop/burnup.py): what it draws equals the stats it was fed."""

from __future__ import annotations

import random

import numpy as np
import pytest

from storypulse.desktop.burnup import BurnUp, cone, side_text
from storypulse.desktop.flow_math import FLOW_FIELDS
from storypulse.desktop.series import SeriesBuffer, ServerClock
from fuzzing import stats as random_stats


def stats_at(ts: float, done: int, open_: int, seconds=(None, None, None), rates=(None, None, None), scored=0):
    s = random_stats(random.Random(1))
    s.seq, s.ts, s.completed_stories, s.open_stories = int(ts * 10), ts, done, open_
    s.stories_in_progress = s.stories_completed_in_window = 0
    s.flow_window_s, s.lead_time_mean_s, s.wip_limit = 60.0, None, 0
    s.forecast_open_p50_s, s.forecast_open_p85_s, s.forecast_open_p95_s = seconds
    s.forecast_hit_rate_p50, s.forecast_hit_rate_p85, s.forecast_hit_rate_p95 = rates
    s.forecast_scored = scored
    return s


@pytest.fixture
def burnup(qtbot):
    buffer, clock = SeriesBuffer(1000, fields=FLOW_FIELDS), ServerClock(max_ahead_s=0.0)
    widget = BurnUp(buffer, clock, window=lambda: 60.0, paused=lambda: False)
    qtbot.addWidget(widget)
    widget.resize(900, 250)
    widget.show()
    qtbot.waitExposed(widget)

    def feed(*rows):
        for row in rows:
            buffer.append(row)
            clock.update(row)
        widget.redraw()
        return widget

    return feed


def test_the_cone_runs_from_done_now_to_done_plus_open_at_each_level():
    assert cone(100.0, 20, (4.0, 6.0, 9.0)) == {
        50: ([0.0, 4.0], [100.0, 120.0]), 85: ([0.0, 6.0], [100.0, 120.0]), 95: ([0.0, 9.0], [100.0, 120.0])}


def test_the_chart_draws_history_left_of_now_and_the_forecast_right_of_it(burnup):
    rows = [stats_at(1000.0 + i, 10 * i, 30) for i in range(30)]
    rows.append(stats_at(1030.0, 300, 30, seconds=(4.0, 6.0, 9.0), rates=(0.5, 0.87, 0.96), scored=212))
    widget = burnup(*rows)
    x, y = widget.done_curve.getData()
    assert np.allclose(x, np.arange(-30.0, 1.0)) and np.allclose(y, np.arange(0, 310, 10))
    for level, seconds in ((50, 4.0), (85, 6.0), (95, 9.0)):
        x, y = widget.lines[level].getData()
        assert list(x) == [0.0, seconds] and list(y) == [300.0, 330.0]
    assert list(widget.target.getData()[1]) == [330.0, 330.0]
    left, right = widget.plot.viewRange()[0]
    # the past from the first sample (30 s ago: the 60 s window is not full yet), the whole cone in view
    assert left == pytest.approx(-30.0) and right >= 9.0
    text = widget.side.text()
    assert "30 open, all done" in text and "85 % within 6.00 s" in text
    assert "p85: <b>87%</b> of 212" in text and "p50: 50% · p95: 96%" in text


def test_a_full_window_of_history_shows_the_whole_window(burnup):
    widget = burnup(*(stats_at(1000.0 + i, i, 5) for i in range(91)))
    left, _ = widget.plot.viewRange()[0]
    assert left == pytest.approx(-60.0)


def test_without_history_the_chart_says_so_and_draws_no_cone(burnup):
    widget = burnup(stats_at(1000.0, 5, 3), stats_at(1001.0, 6, 3))
    assert widget.lines[85].getData()[0] is None or len(widget.lines[85].getData()[0]) == 0
    assert "needs 10 s of throughput" in widget.side.text() and "none scored yet" in widget.side.text()


def test_side_text_before_any_stats():
    assert side_text(None) == "Waiting for stats…"


def test_a_hidden_or_paused_chart_does_not_redraw(qtbot):
    buffer, clock = SeriesBuffer(100, fields=FLOW_FIELDS), ServerClock()
    paused = [True]
    widget = BurnUp(buffer, clock, window=lambda: 60.0, paused=lambda: paused[0])
    qtbot.addWidget(widget)
    row = stats_at(1000.0, 1, 1, seconds=(1.0, 2.0, 3.0))
    buffer.append(row)
    clock.update(row)
    widget.redraw()  # hidden
    widget.show()
    qtbot.waitExposed(widget)
    widget.redraw()  # paused
    assert widget.redraws == 0
    paused[0] = False
    widget.redraw()
    assert widget.redraws == 1
