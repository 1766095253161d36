"""The `forecast` op and the forecast figures on the real server (loop, workers, database).

The loop runs in this process on a fake clock (tests/inproc.py): the test makes
the throughput history it wants, a steady 4 stories a second, by moving time one
second at a time, so the answers are known exactly (a constant throughput gives
one answer at every level, to the second). The simulations run in the server's
forecast process.
"""

from __future__ import annotations

import numpy as np
import pytest

from storypulse.client import RequestError
from storypulse.server.forecast_runner import _Child
from storypulse.server.forecasting import Job
from inproc import FakeClock, InprocServer
from support import wait_for

PER_SECOND = 4
SECONDS = 12


def steady_history(server: InprocServer, clock: FakeClock, seconds: int = SECONDS) -> None:
    client = server.client()
    done = client.snapshot(history_seconds=0).stats.completed_stories
    for _ in range(seconds):
        for i in range(PER_SECOND):
            client.call("create_story", name=f"s{i}", tasks=[{"estimate_ms": 0}])
        done += PER_SECOND
        wait_for(lambda: client.snapshot(history_seconds=0).stats.completed_stories == done,
                 what=f"{done} stories completed")
        clock.advance(1.0)
    client.close()


@pytest.fixture
def clock():
    return FakeClock(now=100.0)


@pytest.fixture
def server(inproc_factory, clock):
    return inproc_factory(clock=clock, time_scale=0.0).start()


def test_forecast_answers_from_the_history_it_names(server, clock):
    client = server.client()
    early = client.call("forecast", stories=10)
    assert early.p50_s is None and early.reason and "needs at least 10 s" in early.reason
    steady_history(server, clock)
    when = client.call("forecast", stories=40, trials=1000)
    # a steady 4 a second: the 40th completion comes in the 10th second from now, at every level
    assert 9.0 < when.p50_s <= when.p85_s <= when.p95_s <= 10.0
    assert (when.samples, when.completions, when.trials, when.method) == (
        SECONDS, SECONDS * PER_SECOND, 1000, "simulated")
    assert when.history_s == SECONDS and when.stories == 40 and when.reason is None
    many = client.call("forecast", within_s=3.0)
    assert (many.stories_p50, many.stories_p85, many.stories_p95) == (12, 12, 12)
    assert many.trials == 10_000 and many.p50_s is None
    huge = client.call("forecast", stories=1_000_000)
    assert huge.method == "normal" and huge.p95_s == pytest.approx((1_000_000 - 0.5) / 4)


def test_stats_carry_the_backlog_forecast_and_the_scores(server, clock):
    steady_history(server, clock)
    client = server.client()
    # nothing open: nothing to wait for (once a backlog forecast still running has come back)
    stats = wait_for(lambda: (s := client.snapshot(history_seconds=0).stats).forecast_open_p85_s == 0.0 and s,
                     what="the backlog forecast of nothing open")
    # Forecasts recorded while stories were open came true at once (the clock stood still
    # while they completed): any that was scored is a hit.
    if stats.forecast_scored:
        assert stats.forecast_hit_rate_p50 == stats.forecast_hit_rate_p85 == 1.0
    else:
        assert stats.forecast_hit_rate_p85 is None


@pytest.mark.parametrize("fields,named", [
    ({}, "exactly one"),
    ({"stories": 3, "within_s": 2.0}, "exactly one"),
    ({"stories": 0}, "$.stories"),
    ({"stories": 10**10}, "$.stories"),
    ({"within_s": -1.0}, "$.within_s"),
    ({"within_s": 1e9}, "$.within_s"),
    ({"stories": 5, "trials": 99}, "$.trials"),
    ({"stories": 5, "trials": 100_001}, "$.trials"),
    ({"stories": 5, "seed": 1}, "seed"),
])
def test_bad_forecast_requests_are_refused_naming_the_field(server, fields, named):
    client = server.client()
    with pytest.raises(RequestError) as caught:
        client.call("forecast", **fields)
    assert caught.value.code == "invalid_request"
    assert named in caught.value.message
    assert client.ping()  # still serving


def test_a_forecast_process_that_died_is_replaced(server, clock):
    steady_history(server, clock)
    client = server.client()
    assert client.call("forecast", stories=8).reason is None  # the child process is running
    child = server.server.forecast_runner.child
    child.process.kill()
    child.process.join(5)
    again = client.call("forecast", stories=8)
    assert 1.0 < again.p50_s <= 2.0
    assert server.server.forecast_runner.child.process.pid != child.process.pid
    assert client.ping()


def test_a_job_whose_process_dies_under_it_fails_and_says_so():
    child = _Child()
    try:
        child.process.kill()
        child.process.join(5)
        job = Job(np.full(20, 4), 1.0, 8, None, 100, made_at=0.0, done=0)
        child.run(job)
        assert isinstance(job.error, RuntimeError) and "forecast process ended" in str(job.error)
        assert not child.alive()
    finally:
        child.close()


def test_the_history_survives_a_restart(tmp_path):
    """Completions are read back from the database: the new server forecasts at once."""
    clock = FakeClock(now=100.0)
    first = InprocServer(tmp_path / "restart.db", clock=clock, time_scale=0.0).start()
    try:
        steady_history(first, clock)
    finally:
        first.stop()
    clock.advance(30.0)  # down for half a minute: that is not counted as time without completions
    again = InprocServer(tmp_path / "restart.db", clock=clock, time_scale=0.0).start()
    try:
        when = again.client().call("forecast", stories=40)
        assert when.reason is None and when.samples == SECONDS
        assert 9.0 < when.p85_s <= 10.0
    finally:
        again.close()
