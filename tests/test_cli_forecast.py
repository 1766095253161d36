"""`storypulse forecast` and the forecast line of `storypulse watch`, as users run them."""

from __future__ import annotations

import argparse
import json
import random

import pytest

from storypulse import protocol
from storypulse.cli.figures import forecast_lines
from storypulse.cli.forecast import describe, duration
from fuzzing import stats as random_stats
from test_cli import at, storypulse


@pytest.mark.parametrize("text,seconds", [("90", 90), ("90s", 90), ("5m", 300), ("1h30m", 5400),
                                          ("2d", 172_800), ("0.5", 0.5), ("1H 30M", 5400)])
def test_durations_read_as_people_write_them(text, seconds):
    assert duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "-5", "1x", "h", "m5", "2y", "366d"])
def test_bad_durations_say_what_is_expected(text):
    with pytest.raises(argparse.ArgumentTypeError):
        duration(text)


def answer(**fields) -> protocol.ForecastResult:
    base = dict(stories=None, within_s=None, method="simulated", trials=10_000, history_s=600.0,
                samples=600, interval_s=1.0, completions=7214)
    return protocol.ForecastResult(**{**base, **fields})


def test_the_answer_reads_as_three_levels_and_what_it_rests_on():
    when = describe(answer(stories=500, p50_s=41.3, p85_s=44.9, p95_s=3700.0), now=0.0)
    assert "500 more stories" in when[0]
    assert "50 % sure within    41.30 s" in when[1] and "95 % sure within   1 h 01 m" in when[3]
    assert "7,214 completed in 600 intervals" in when[4] and "10,000 trials" in when[4]
    many = describe(answer(within_s=60.0, stories_p50=721, stories_p85=689, stories_p95=668,
                           method="normal", trials=0), now=0.0)
    assert "within 1 m 00 s" in many[0] and "85 % sure: at least 689" in many[2]
    assert "normal approximation" in many[4]


def test_watch_shows_the_backlog_forecast_and_the_hit_rate_on_one_line():
    s = random_stats(random.Random(5))
    s.forecast_open_p85_s = s.forecast_hit_rate_p85 = None
    assert forecast_lines(s) == []  # nothing to say yet (or an older server)
    s.open_stories, s.forecast_scored = 120, 212
    s.forecast_open_p50_s, s.forecast_open_p85_s, s.forecast_open_p95_s = 41.3, 44.9, 47.2
    s.forecast_hit_rate_p85 = 0.87
    (line,) = forecast_lines(s)
    assert "backlog of 120 done within p50 41.30 s · p85 44.90 s · p95 47.20 s" in line
    assert "p85 came true 87% of 212" in line
    s.forecast_hit_rate_p85 = None
    assert "no forecast scored yet" in forecast_lines(s)[0]


def test_forecast_against_a_live_server(server):
    early = storypulse("forecast", "--stories", "10", *at(server))
    assert early.returncode == 1 and "no forecast yet" in early.stderr and "needs at least 10 s" in early.stderr
    # 12 s of a steady load makes the history (each second a sample)
    load = storypulse("load", "--rate", "20", "--duration", "12", "--estimate-ms", "0-20", *at(server))
    assert load.returncode == 0, load.stderr
    done = storypulse("forecast", "--stories", "100", "--json", *at(server))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["samples"] >= 10 and result["method"] == "simulated" and result["trials"] == 10_000
    # about 20 a second: 100 more take about 5 s
    assert 2.0 < result["p50_s"] <= result["p85_s"] <= result["p95_s"] < 15.0, result
    human = storypulse("forecast", "--within", "1m", "--trials", "1000", *at(server))
    assert human.returncode == 0, human.stderr
    assert "stories done within 1 m 00 s" in human.stdout and "1,000 trials" in human.stdout
    watch = storypulse("watch", "--once", *at(server))
    assert "forecast backlog of" in watch.stdout, watch.stdout
