"""Runs the forecasts' simulations off the loop, on one thread of their own.

A simulation takes up to ~25 ms of numpy (montecarlo.DRAWS_BUDGET); on the loop
it would hold every other request that long. The loop hands jobs over here each
turn and polls `fileno()`: the thread writes a byte to it when a job is done,
and the loop takes the finished jobs back (`turn`), so the results are applied,
and the replies sent, on the loop's thread like everything else. numpy releases
the GIL in its array loops, so the loop keeps turning meanwhile (bench/forecast.py
measures the other ops' latency with and without forecasts running).
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
from collections import deque
from typing import TYPE_CHECKING

from storypulse import protocol

from .forecasting import Forecasts, Job

if TYPE_CHECKING:
    from .service import Service

log = logging.getLogger(__name__)


class ForecastRunner:
    def __init__(self, forecasts: Forecasts):
        self.forecasts = forecasts
        self._todo: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._done: deque[Job] = deque()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread = threading.Thread(target=self._work, name="storypulse-forecasts", daemon=True)
        self._thread.start()

    def fileno(self) -> int:
        """Readable when a job is done."""
        return self._wake_r.fileno()

    @property
    def next_at(self) -> float:
        """When the loop must turn next for a backlog forecast."""
        return self.forecasts.next_backlog_at

    def turn(self, service: Service, now: float, open_stories: int) -> None:
        """Apply finished jobs (their replies join the turn's), start new ones. Every turn."""
        self._drain_wake()
        while self._done:
            finished = self.forecasts.finished(self._done.popleft(), now)
            if finished is not None:
                envelope, request_id, result = finished
                if isinstance(result, BaseException):
                    service.faults.internal("a forecast", result)
                    service.reply_error(envelope, request_id, protocol.INTERNAL,
                                        f"the forecast failed ({type(result).__name__}); it was logged")
                else:
                    service.reply(envelope, request_id, result)
        self.forecasts.tick(now, open_stories)
        for job in self.forecasts.take_jobs():
            self.forecasts.started(job)
            self._todo.put(job)

    def close(self) -> None:
        self._todo.put(None)
        self._thread.join(timeout=5.0)
        self._wake_r.close()
        self._wake_w.close()

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(512):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def _work(self) -> None:
        while True:
            job = self._todo.get()
            if job is None:
                return
            job.run()  # never raises: an error is kept on the job
            self._done.append(job)
            try:
                self._wake_w.send(b"\0")
            except (BlockingIOError, InterruptedError):
                pass  # the pair is full: the loop is woken anyway
            except OSError:
                return  # closed under us: the server is stopping
