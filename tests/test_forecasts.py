"""Throughput history, calibration scoring and the service's forecasts, on a fake clock.

The jobs the forecasts hand out are run inline here (the server runs them on a
thread: test_server_forecast.py), so every step is deterministic.
"""

from __future__ import annotations

import numpy as np
import pytest

from storypulse import protocol
from storypulse.server.calibration import Calibration
from storypulse.server.forecasting import JOBS_MAX, MIN_SAMPLES, Forecasts
from storypulse.server.throughput import Throughput


# -- throughput history -----------------------------------------------------------------------
def test_an_interval_counts_once_it_has_closed():
    t = Throughput(10.0, now=100.0)
    t.add(100.2, 3)
    t.add(100.9)
    assert t.samples(100.95) == []  # still open
    assert t.samples(101.0) == [4]
    t.add(103.5, 2)  # 101 and 102 pass without completions
    assert t.samples(104.0) == [4, 0, 0, 2]
    assert t.completed == 6


def test_history_keeps_the_newest_window_only():
    t = Throughput(3.0, now=0.0)
    for second in range(6):
        t.add(second + 0.5, second)
    assert t.samples(6.0) == [3, 4, 5]
    assert t.span_s(6.0) == 3.0
    assert t.samples(1000.0) == [0, 0, 0]  # a long silence is all zeros, not a huge list


def test_restore_puts_the_databases_intervals_before_the_live_ones():
    t = Throughput(6.0, now=0.0)
    t.add(0.5, 7)
    # intervals 50..53 on the wall clock: two completed at 50, none at 51 and 52, one at 53
    t.restore([(50, 2), (53, 1)])
    assert t.samples(1.0) == [2, 0, 0, 1, 7]
    t = Throughput(6.0, now=0.0)
    t.restore([(i, i) for i in range(100)])  # more than the window: the newest are kept
    assert t.samples(0.5) == [94, 95, 96, 97, 98, 99]


def test_a_history_window_shorter_than_an_interval_is_refused():
    with pytest.raises(ValueError):
        Throughput(0.5, now=0.0)


# -- calibration --------------------------------------------------------------------------------
def test_a_forecast_is_a_hit_at_the_levels_whose_time_had_not_passed():
    c = Calibration(now=0.0)
    c.record(0.0, done=100, stories=10, seconds=(5.0, 8.0, 12.0))
    c.completed(6.0, 105)  # not there yet
    c.expire(6.0)  # p50's time passed: a miss
    c.completed(7.5, 110)  # there, before p85 and p95
    assert (c.hits, c.scored) == ([0, 1, 1], [1, 1, 1])
    assert c.hit_rate(85) == 1.0 and c.hit_rate(50) == 0.0
    assert c.pending == [] or not any(c.pending[0].open)


def test_a_forecast_reached_late_is_a_miss_even_before_expiry_runs():
    c = Calibration(now=0.0)
    c.record(0.0, done=0, stories=1, seconds=(1.0, 2.0, 3.0))
    c.completed(2.5, 1)
    assert (c.hits, c.scored) == ([0, 0, 1], [1, 1, 1])


def test_what_completed_while_a_forecast_was_computed_is_scored_at_its_own_time():
    c = Calibration(now=0.0)
    c.completed(10.2, 5)
    c.completed(10.4, 12)  # the target, 10 + 2, reached at 10.4
    c.record(10.0, done=10, stories=2, seconds=(0.3, 0.5, 0.9))  # made at 10.0, recorded later
    assert (c.hits, c.scored) == ([0, 1, 1], [1, 1, 1])


def test_forecasts_are_recorded_every_few_seconds_and_nothing_open_is_not_recorded():
    c = Calibration(now=0.0, every_s=5.0)
    assert c.due(0.0)
    c.record(0.0, 0, 3, (1.0, 2.0, 3.0))
    assert not c.due(4.9) and c.due(5.0)
    c.record(5.0, 0, 0, (0.0, 0.0, 0.0))
    assert len(c.pending) == 1
    assert c.hit_rate(85) is None


def test_pending_forecasts_are_bounded():
    c = Calibration(now=0.0, every_s=0.0, pending_max=3)
    for i in range(5):
        c.record(float(i), 0, 10, (1e6, 1e6, 1e6))
    assert len(c.pending) == 3 and c.dropped == 2


# -- the service's forecasts ----------------------------------------------------------------------
def run_jobs(f: Forecasts, now: float):
    """Run what the forecasts handed out, as the runner's thread does, and give it back."""
    replies = []
    for job in f.take_jobs():
        f.started(job)
        job.run()
        replies.append(f.finished(job, now))
    return replies


def ask(f: Forecasts, now: float, **fields):
    request = protocol.Forecast(**fields)
    answer = f.ask(request, envelope=[b"client"], now=now)
    if answer is None:
        (reply,) = run_jobs(f, now)
        return reply[2]
    return answer


def steady(f: Forecasts, start: float, seconds: int, per_second: int) -> float:
    for s in range(seconds):
        f.completed(start + s + 0.5, per_second)
    return start + seconds


def test_without_enough_history_the_answer_is_null_with_a_reason():
    f = Forecasts(600.0, now=0.0, seed=1)
    result = ask(f, 3.0, stories=5)
    assert result.p85_s is None and result.stories == 5 and "needs at least" in result.reason
    now = steady(f, 0.0, MIN_SAMPLES, 0)
    result = ask(f, now, within_s=10.0)
    assert result.stories_p85 is None and "no story was completed" in result.reason
    assert result.samples == MIN_SAMPLES and result.completions == 0


def test_an_answer_says_what_it_was_based_on():
    f = Forecasts(600.0, now=0.0, seed=1)
    now = steady(f, 0.0, 30, 4)
    result = ask(f, now, stories=40, trials=1000)
    # a steady 4 a second: the 40th is in the 10th second from now, at every level
    assert 9.0 < result.p50_s <= result.p85_s <= result.p95_s <= 10.0
    assert (result.method, result.trials, result.samples, result.completions) == ("simulated", 1000, 30, 120)
    assert result.history_s == 30.0 and result.reason is None
    result = ask(f, now, within_s=5.0)
    assert (result.stories_p50, result.stories_p85, result.stories_p95) == (20, 20, 20)
    assert result.p50_s is None
    big = ask(f, now, stories=10**9)
    assert big.method == "normal" and big.trials == 0 and big.p50_s == pytest.approx((10**9 - 0.5) / 4)


def test_too_many_requests_at_once_are_told_busy():
    f = Forecasts(600.0, now=0.0, seed=1)
    now = steady(f, 0.0, 20, 2)
    answers = [f.ask(protocol.Forecast(stories=3), [b"c"], now) for _ in range(JOBS_MAX + 1)]
    assert answers[:JOBS_MAX] == [None] * JOBS_MAX
    assert "already running" in answers[-1]


def test_the_backlog_forecast_is_published_counted_down_and_recomputed_each_second():
    f = Forecasts(600.0, now=0.0, seed=1)
    assert "forecast_open_p85_s" not in f.figures(0.0)
    now = steady(f, 0.0, 20, 2)
    f.tick(now, open_stories=10)
    run_jobs(f, now)
    figures = f.figures(now + 0.25)
    # 10 at a steady 2 a second: within the 5th second, counted down by the 0.25 s since
    assert 4.0 - 0.25 < figures["forecast_open_p85_s"] <= 5.0 - 0.25
    f.tick(now + 0.5, open_stories=10)
    assert f.take_jobs() == []  # not a second yet
    f.tick(now + 1.0, open_stories=0)
    assert f.figures(now + 1.0)["forecast_open_p50_s"] == 0.0


@pytest.mark.parametrize("open_stories", [40, 2])
def test_calibration_under_poisson_throughput_lands_near_each_level(open_stories):
    """A fast calibration run: 1 hour of fake time, completions Poisson at 5 a second (at
    uniform moments), a backlog kept open: 40 (forecasts ~8 s ahead) or 2 (under a second:
    where within a second the completions fall decides). One forecast is recorded every 5 s
    and they overlap, so the ~700 scores are not independent: +-0.06 is about 3 standard errors."""
    r = np.random.default_rng(3)
    f = Forecasts(600.0, now=0.0, seed=2, backlog_trials=1000)
    now = 0.0
    for second in range(3600):
        for at in np.sort(r.random(r.poisson(5))):
            f.completed(second + at, 1)
        now = second + 1.0
        f.tick(now, open_stories=open_stories)
        run_jobs(f, now)
    figures = f.figures(now)
    assert figures["forecast_scored"] > 600
    for level in (50, 85, 95):
        assert abs(figures[f"forecast_hit_rate_p{level}"] - level / 100) <= 0.06, figures


def test_calibration_under_an_on_off_rate_lands_near_each_level():
    """Two hours of fake time of an on/off rate (spells of 5 s on average, 10 a second when on,
    at uniform moments; test_forecast_math.on_off), a backlog of 150 kept open (some 30 s of
    it). Seconds of a spell go together: the server's own scoring sees its forecasts come true
    near each level, not the 70 % at p85 that independent draws give (the test of the
    simulation shows both). Forecasts overlap (30 s ahead, one every 5 s): the ~1,400 scores
    are worth a few hundred independent ones, so +-0.06 is about 2.5 standard errors."""
    from test_forecast_math import on_off

    counts = on_off(7200, seed=8)
    r = np.random.default_rng(9)
    f = Forecasts(600.0, now=0.0, seed=3, backlog_trials=1000)
    now = 0.0
    for second, count in enumerate(counts):
        for at in np.sort(r.random(count)):
            f.completed(second + at, 1)
        now = second + 1.0
        if second % 5 == 4:
            f.tick(now, open_stories=150)
            run_jobs(f, now)
    figures = f.figures(now)
    assert figures["forecast_scored"] > 1000
    for level in (50, 85, 95):
        assert abs(figures[f"forecast_hit_rate_p{level}"] - level / 100) <= 0.06, figures
