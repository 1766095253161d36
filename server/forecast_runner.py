"""Runs the forecasts' simulations off the loop, in a process of their own.

A simulation takes up to ~25 ms of numpy (montecarlo.DRAWS_BUDGET); on the loop
it would hold every other request that long. The loop hands jobs over here each
turn and polls `fileno()`: a byte is written to it when a job is done, and the
loop takes the finished jobs back (`turn`), so the results are applied, and the
replies sent, on the loop's thread like everything else.

The numpy work runs in a child process, started at the first job, at a lower
CPU priority (nice 10): on a thread of the server, numpy's array loops release
the GIL but the steps between them do not, and the loop waited up to the
interpreter's 5 ms switch interval for it (ping p99 from 0.6 to 6.7 ms while
forecasts ran back to back, bench/forecast.py). A thread here only carries jobs
to the child and back, one at a time, blocked (GIL released) while it waits.
A child that dies fails its job (`internal` to the asker) and is started anew.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import signal
import threading
from collections import deque
from typing import TYPE_CHECKING

from storypulse import protocol

from .forecasting import Forecasts, Job
from .wakeup import WakePair

if TYPE_CHECKING:
    from .service import Service

log = logging.getLogger(__name__)


class ForecastRunner:
    def __init__(self, forecasts: Forecasts):
        self.forecasts = forecasts
        self._todo: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._done: deque[Job] = deque()
        # Wake-ups sent by the thread and seen by the loop: the socketpair is read only when
        # they differ (a recv that finds nothing costs more than the rest of a turn here).
        self._sent = self._seen = 0
        self._wake = WakePair()
        self.child: _Child | None = None  # started by the thread at the first job
        self._thread = threading.Thread(target=self._work, name="storypulse-forecasts", daemon=True)
        self._thread.start()

    def fileno(self) -> int:
        """Readable when a job is done."""
        return self._wake.fd

    @property
    def next_at(self) -> float:
        """When the loop must turn next for a backlog forecast."""
        return self.forecasts.next_backlog_at

    def turn(self, service: Service, now: float, open_stories: int) -> None:
        """Apply finished jobs (their replies join the turn's), start new ones. Every turn."""
        sent = self._sent
        if sent != self._seen:
            self._seen = sent
            self._wake.drain()
        while self._done:
            finished = self.forecasts.finished(self._done.popleft(), now)
            if finished is not None:
                envelope, request_id, result = finished
                if isinstance(result, BaseException):
                    service.faults.internal("a forecast", result, now=now)
                    service.reply_error(envelope, request_id, protocol.INTERNAL,
                                        f"the forecast failed ({type(result).__name__}); it was logged")
                else:
                    service.group.reply(envelope, request_id, result)
        self.forecasts.tick(now, open_stories)
        for job in self.forecasts.take_jobs():
            self.forecasts.started(job)
            self._todo.put(job)

    def close(self) -> None:
        self._todo.put(None)
        self._thread.join(timeout=5.0)
        self._wake.close()

    def _work(self) -> None:
        try:
            while True:
                job = self._todo.get()
                if job is None:
                    return
                if self.child is None or not self.child.alive():
                    if self.child is not None:
                        self.child.close()
                    try:
                        self.child = _Child()
                    except Exception as exc:  # no process to be had (fds, memory): this job fails
                        self.child, job.error = None, exc
                if self.child is not None:
                    self.child.run(job)  # never raises: an error is kept on the job
                self._finished(job)
        finally:
            if self.child is not None:
                self.child.close()

    def _finished(self, job: Job) -> None:
        self._done.append(job)
        try:
            self._wake.wake()
        except OSError:
            pass  # closed under us: the server is stopping
        # After the byte: a loop that sees this count reads the byte too, and none is left
        # behind to wake every poll.
        self._sent += 1


class _Child:
    """The process that runs the simulations; used by the runner's thread only."""

    def __init__(self) -> None:
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        self.conn, child_end = context.Pipe()
        self.process = context.Process(target=_child_main, args=(child_end,), name="storypulse-forecasts",
                                       daemon=True)
        self.process.start()
        child_end.close()
        self.broken = False

    def alive(self) -> bool:
        return not self.broken and self.process.is_alive()

    def run(self, job: Job) -> None:
        try:
            self.conn.send(job)
            job.outcome, error = self.conn.recv()
        except (EOFError, OSError) as exc:
            self.broken = True
            job.error = RuntimeError(f"the forecast process ended ({type(exc).__name__})")
            log.error("the forecast process ended (exit code %s); starting another for the next job",
                      self.process.exitcode)
            return
        if error is not None:
            job.error = RuntimeError(error)

    def close(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.process.join(timeout=2.0)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=2.0)
        self.conn.close()


def _child_main(conn) -> None:
    """The child: run each job that comes, send back (outcome, error text); stop at None or EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when it stops
    try:
        os.nice(10)  # the loop and the workers come first
    except (AttributeError, OSError):
        pass
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return  # the server is gone
        if job is None:
            return
        job.run()
        error = None if job.error is None else f"{type(job.error).__name__}: {job.error}"
        conn.send((job.outcome, error))
