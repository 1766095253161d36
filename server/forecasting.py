"""The server's forecasts: throughput history in, simulation jobs out, results and scores back.

Sans-I/O, like the service it belongs to: the service feeds it completions and
requests with `now`; it hands out `Job`s (a simulation to run, which may take
tens of milliseconds) for the loop to run off its thread (forecast_runner.py),
and takes them back finished. Nothing here waits, reads a clock, or starts a
thread, so tests drive it with a fake clock and run the jobs inline.

Every second (BACKLOG_EVERY_S) a backlog job asks "when will as many more be
done as are open now?"; its answer is published in `stats` until the next one.
Every RECORD_EVERY_S one of those answers is recorded and scored as it matures
(calibration.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from storypulse import protocol
from storypulse.protocol import ForecastResult

from . import montecarlo
from .calibration import Calibration
from .throughput import Throughput

MIN_SAMPLES = 10  # intervals of history before a forecast is made (10 s at one a second)
BACKLOG_EVERY_S = 1.0  # the backlog forecast in `stats` is at most this old
BACKLOG_TRIALS = protocol.FORECAST_TRIALS_DEFAULT
JOBS_MAX = 32  # forecast requests waiting or running at once; beyond, `busy`


@dataclass
class Job:
    """One simulation: `run()` is called in the forecast process (forecast_runner.py); all
    else stays on the loop's thread. The history's statistics (its block length takes an
    FFT of it) are worked out in `run()` too, off the loop."""

    counts: np.ndarray  # the history's interval counts, oldest first
    interval_s: float
    stories: int | None  # "when" if set,
    within_s: float | None  # else "how many"
    trials: int
    made_at: float
    done: int  # completions counted when it was made
    request: tuple[Any, Any] | None = None  # (envelope, request id) of a request; None: backlog
    outcome: montecarlo.When | montecarlo.HowMany | None = None
    error: BaseException | None = None
    rng: np.random.Generator | None = field(default=None, repr=False)

    def run(self) -> None:
        try:
            rng = self.rng if self.rng is not None else np.random.default_rng()
            sample = montecarlo.Sample.of(self.counts, self.interval_s)
            if self.stories is not None:
                self.outcome = montecarlo.when(sample, self.stories, self.trials, rng)
            else:
                self.outcome = montecarlo.within(sample, self.within_s, self.trials, rng)
        except Exception as exc:  # reported to the asker as `internal`; never kills the thread
            self.error = exc


@dataclass(frozen=True)
class Backlog:
    """The last backlog forecast: seconds from `at` (monotonic) at p50, p85, p95."""

    at: float
    seconds: tuple[float, float, float] | None


class Forecasts:
    def __init__(self, history_s: float, now: float, *, seed: int | None = None,
                 backlog_trials: int = BACKLOG_TRIALS):
        self.backlog_trials = backlog_trials
        self.throughput = Throughput(history_s, now)
        self.calibration = Calibration(now)
        self.backlog: Backlog | None = None
        self.next_backlog_at = now
        self._jobs: list[Job] = []  # made, not yet taken by the runner
        self.in_flight = 0  # request jobs taken and not yet finished
        self._seed = None if seed is None else np.random.SeedSequence(seed)

    # -- inputs ---------------------------------------------------------------------
    def completed(self, now: float, count: int) -> None:
        self.throughput.add(now, count)
        self.calibration.completed(now, self.throughput.completed)

    def restore(self, intervals: list[tuple[int, int]]) -> None:
        self.throughput.restore(intervals)

    # -- jobs -----------------------------------------------------------------------
    def take_jobs(self) -> list[Job]:
        jobs, self._jobs = self._jobs, []
        return jobs

    def _rng(self) -> np.random.Generator | None:
        return None if self._seed is None else np.random.default_rng(self._seed.spawn(1)[0])

    def _basis(self, now: float) -> tuple[np.ndarray | None, ForecastResult]:
        """The counts to resample (None if it cannot answer) and a result that says so."""
        counts = self.throughput.samples(now)
        completions = sum(counts)
        interval = self.throughput.interval
        result = ForecastResult(stories=None, within_s=None, history_s=len(counts) * interval,
                                samples=len(counts), interval_s=interval, completions=completions)
        if len(counts) < MIN_SAMPLES:
            result.reason = (f"{len(counts) * interval:g} s of throughput history; a forecast needs at "
                             f"least {MIN_SAMPLES * interval:g} s")
            return None, result
        if completions == 0:
            result.reason = (f"no story was completed in the {len(counts) * interval:g} s of "
                             "throughput history: nothing to resample")
            return None, result
        return np.asarray(counts, dtype=np.int64), result

    def ask(self, request: protocol.Forecast, envelope: Any, now: float) -> ForecastResult | str | None:
        """A `forecast` request: a result now (no history), a `busy` message, or None: a job
        was made, and its reply comes when it is finished."""
        counts, result = self._basis(now)
        if counts is None:
            result.stories, result.within_s = request.stories, request.within_s
            return result
        if self.in_flight + len(self._jobs) >= JOBS_MAX:
            return f"{JOBS_MAX} forecasts are already running or waiting; try again shortly"
        self._jobs.append(Job(counts, self.throughput.interval, request.stories, request.within_s, request.trials, now,
                              self.throughput.completed, (envelope, request.id), rng=self._rng()))
        return None

    def tick(self, now: float, open_stories: int) -> None:
        """Time for a backlog forecast? (The loop calls this every turn; it is cheap.)"""
        if now < self.next_backlog_at:
            return
        self.next_backlog_at = now + BACKLOG_EVERY_S
        self.calibration.expire(now)  # once a second: a late miss is still scored right
        if open_stories <= 0:
            self._backlog_done(now, (0.0, 0.0, 0.0), 0)
            return
        counts, _ = self._basis(now)
        if counts is None:
            self.backlog = Backlog(now, None)
            return
        self._jobs.append(Job(counts, self.throughput.interval, open_stories, None, self.backlog_trials, now,
                              self.throughput.completed, rng=self._rng()))

    def started(self, job: Job) -> None:
        """The runner took `job` to run it."""
        if job.request is not None:
            self.in_flight += 1

    def finished(self, job: Job, now: float) -> tuple[Any, Any, ForecastResult | BaseException] | None:
        """A job came back: (envelope, request id, result or the error) for a request; None
        for a backlog job (published and recorded here)."""
        if job.request is None:
            if self.backlog is not None and self.backlog.at > job.made_at:
                return None  # a newer one was published while it ran (nothing open, no history)
            if job.outcome is not None:
                self._backlog_done(job.made_at, job.outcome.seconds, job.stories, job.done)
            return None
        self.in_flight -= 1
        envelope, request_id = job.request
        if job.error is not None:
            return envelope, request_id, job.error
        return envelope, request_id, self._result(job)

    def _backlog_done(self, made_at: float, seconds: tuple[float, float, float], stories: int,
                      done: int | None = None) -> None:
        self.backlog = Backlog(made_at, seconds)
        if self.calibration.due(made_at):
            self.calibration.record(made_at, self.throughput.completed if done is None else done,
                                    stories, seconds)

    def _result(self, job: Job) -> ForecastResult:
        counts = job.counts
        result = ForecastResult(stories=job.stories, within_s=job.within_s,
                                method=job.outcome.method,
                                trials=job.trials if job.outcome.method == "simulated" else 0,
                                history_s=counts.size * job.interval_s,
                                samples=int(counts.size), interval_s=job.interval_s,
                                completions=int(counts.sum()))
        if isinstance(job.outcome, montecarlo.When):
            result.p50_s, result.p85_s, result.p95_s = job.outcome.seconds
        else:
            result.stories_p50, result.stories_p85, result.stories_p95 = job.outcome.stories
        return result

    # -- figures --------------------------------------------------------------------
    def figures(self, now: float) -> dict[str, Any]:
        """The `stats` fields, seconds counted from `now`."""
        calibration = self.calibration
        figures: dict[str, Any] = {
            "forecast_hit_rate_p50": calibration.hit_rate(50),
            "forecast_hit_rate_p85": calibration.hit_rate(85),
            "forecast_hit_rate_p95": calibration.hit_rate(95),
            "forecast_scored": calibration.scored[1],
        }
        backlog = self.backlog
        if backlog is not None and backlog.seconds is not None:
            age = max(0.0, now - backlog.at)
            p50, p85, p95 = (max(0.0, s - age) for s in backlog.seconds)
            figures.update(forecast_open_p50_s=p50, forecast_open_p85_s=p85, forecast_open_p95_s=p95)
        return figures
