"""The load loop that `storypulse load` and the desktop simulator both run.

Stories come from a StoryGenerator at the pace of a Pacer (steady or Poisson),
pipelined on one Client (many in flight, matched by id) up to a bound; due
stories beyond it are skipped, not queued, so a slow server slows the load down
instead of piling up requests. A `busy` or `unavailable` reply is back-pressure,
not an error: the story is sent again later, backing off while the server stays
busy. Time is passed in, so the cadence is the Pacer's alone; the callers own
the clock, the printing and when to stop.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from . import protocol
from .client import Client, RequestError
from .loadgen import Pacer, StageLoad, StoryGenerator
from .percentiles import nearest_rank

BACKOFF_FIRST, BACKOFF_MAX = 0.05, 1.0  # seconds before a story refused as busy is sent again


@dataclass(frozen=True)
class LoadSettings:
    """What a running load may change between two stories."""

    rate: float = 10.0  # stories per second
    tasks: tuple[int, int] = (1, 5)  # tasks per story, a range
    estimate_ms: tuple[int, int] = (0, 1000)  # each task's estimate, a range
    arrivals: str = "steady"  # or "poisson"
    estimates: str = "uniform"  # or "lognormal"
    # A per-stage load (a scenario's): then tasks, estimate_ms and estimates are not used.
    stages: tuple[StageLoad, ...] | None = None

    @classmethod
    def of_scenario(cls, scenario: Any) -> LoadSettings:
        """A scenario's load (storypulse.scenario.Scenario)."""
        return cls(rate=scenario.rate, arrivals=scenario.arrivals, stages=scenario.stages)


@dataclass
class Tally:
    sent: int = 0  # new stories sent
    resent: int = 0  # stories sent again after `busy`
    acked: int = 0  # stories the server stored
    tasks_acked: int = 0
    busy: int = 0  # refused for now (busy, or the database unavailable): sent again
    errors: int = 0
    skipped: int = 0  # ticks dropped because the in-flight bound was reached
    gave_up: int = 0  # busy stories still waiting to be resent at the end
    unanswered: int = 0  # requests without a reply at the end
    first_error: str | None = None  # "code: message"
    last_error: str = ""  # the latest error's message
    latencies: list[float] | None = field(default_factory=list)  # send -> ack, seconds; None: not kept

    def latency_percentile(self, p: float) -> float | None:
        """The p-th percentile (0 < p <= 100) of the latencies kept, by nearest rank; None without any."""
        return nearest_rank(sorted(self.latencies or ()), p)


class LoadRun:
    """One run of the load: send what is due, take the replies, resend what was refused."""

    def __init__(self, client: Client, generator: StoryGenerator, *, rate: float,
                 max_in_flight: int, start: float, arrivals: str = "steady",
                 keep_latencies: bool = True):
        self.client = client
        self.generator = generator
        self.max_in_flight = max_in_flight
        self.pacer = Pacer(rate, start, arrivals, seed=generator.seed)
        # A run of hours (the desktop simulator) keeps no latencies: they would only grow.
        self.tally = Tally(latencies=[] if keep_latencies else None)
        self.pending: dict[int, tuple[dict[str, Any], float]] = {}  # id -> (story, sent at)
        self.retry: deque[tuple[float, dict[str, Any]]] = deque()  # (due, story), in due order
        self.backoff = BACKOFF_FIRST
        self.last_reply = start  # monotonic: the last reply, or the last send into an idle pipeline

    def retune(self, settings: LoadSettings, now: float) -> None:
        """New settings for the stories from `now` on; those in flight or waiting keep theirs."""
        if settings.stages is not None:
            self.generator.retune_stages(settings.stages)
        else:
            self.generator.retune(settings.tasks, settings.estimate_ms, settings.estimates)
        if settings.arrivals != self.pacer.arrivals:
            self.pacer = Pacer(settings.rate, now, settings.arrivals)
        else:
            self.pacer.set_rate(settings.rate, now)

    def send_due(self, now: float) -> None:
        while self.retry and self.retry[0][0] <= now and len(self.pending) < self.max_in_flight:
            self._send(self.retry.popleft()[1], now)
            self.tally.resent += 1
        for _ in range(self.pacer.due(now)):
            if len(self.pending) >= self.max_in_flight:
                self.tally.skipped += 1
                continue
            self._send(self.generator.story(), now)
            self.tally.sent += 1

    def _send(self, story: dict[str, Any], now: float) -> None:
        if not self.pending:
            self.last_reply = now  # silence counts only while something is owed
        request_id = self.client.send("create_story", **story)
        self.pending[request_id] = (story, now)

    def next_wakeup(self, now: float) -> float:
        due = now + self.pacer.wait(now)
        if self.retry:
            due = min(due, self.retry[0][0])
        return due

    def receive(self, until: float) -> None:
        """Take replies until `until` (monotonic), returning early once nothing is in flight."""
        while self.pending:
            wait = until - time.monotonic()
            if wait <= 0 or not self.client.socket.poll(wait * 1000):
                return
            self._take_one()

    def _take_one(self) -> None:
        now = self.last_reply = time.monotonic()
        try:
            request_id, result = self.client.receive(timeout=0)
        except RequestError as exc:
            entry = self.pending.pop(exc.request_id, None) if isinstance(exc.request_id, int) else None
            if exc.code in protocol.TRY_AGAIN and entry is not None:
                self.tally.busy += 1
                self.retry.append((now + self.backoff, entry[0]))
                self.backoff = min(BACKOFF_MAX, self.backoff * 2)
            else:
                self._error(exc.code, exc.message)
            return
        entry = self.pending.pop(request_id, None)
        if entry is None or not isinstance(result, protocol.CreateStoryResult):
            return
        self.tally.acked += 1
        self.tally.tasks_acked += len(result.task_ids)
        if self.tally.latencies is not None:
            self.tally.latencies.append(now - entry[1])
        self.backoff = BACKOFF_FIRST

    def _error(self, code: str, message: str) -> None:
        self.tally.errors += 1
        self.tally.first_error = self.tally.first_error or f"{code}: {message}"
        self.tally.last_error = message

    def silent_for(self, now: float) -> float:
        """Seconds without any reply while requests are in flight (0 when none are): the one
        sign that the server went away (a slow one still answers, a busy one says so)."""
        return now - self.last_reply if self.pending else 0.0

    def abandon(self, message: str) -> None:
        """Give up on every request in flight (counted as errors) and start afresh on a new socket."""
        for _ in self.pending:
            self._error("unanswered", message)
        self.pending.clear()
        self.client.close()

    def finish(self) -> Tally:
        """The tally at the end of the run: what is still owed counted as such."""
        self.tally.unanswered = len(self.pending)
        self.tally.gave_up = len(self.retry)
        return self.tally
