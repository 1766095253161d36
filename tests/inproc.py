"""The real server loop in the test's own process, on sockets the test binds: fast and steerable.

`InprocServer` builds the real `Server` (loop, service, pool, store on SQLite in
a temporary folder) over sockets bound in this process's shared zmq.Context:
requests and events on `inproc://` endpoints, so the real `Client` and
`EventTap` (same context) reach them with no port and no server process to
start; the worker socket on loopback TCP (an ephemeral port), because the
pool's workers are real worker processes, as in production.

Two ways to drive it:
- `start()` runs the loop in a thread until `stop()` (or the end of the test),
  so a test makes blocking calls against it as against a server process;
- `turn_until(condition)` turns the loop in the test's own thread; with a
  `FakeClock` time moves only when the test moves it (`clock.advance`).
What the loop logs is kept for `log()`, as a server process's log file is.

What only a process shows (kill -9, signals, ports, restarts on disk, the
guarantees) stays with `support.ServerProcess`.
"""

from __future__ import annotations

import itertools
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

import zmq

from storypulse.client import Client
from storypulse.endpoints import Endpoints
from storypulse.server.clock import Clock
from storypulse.server.config import ServerConfig
from storypulse.server.loop import Server
from storypulse.server.daemon import Daemon
from storypulse.server.sockets import ServerSockets
from storypulse.server.store import Store
from support import wait_for

T = TypeVar("T")
_names = itertools.count(1)


@dataclass(frozen=True)
class InprocEndpoints(Endpoints):
    """Endpoints as clients see them, for a server in this process (a loopback host: no CURVE)."""

    name: str = ""
    worker_endpoint: str = ""

    @property
    def requests(self) -> str:
        return f"inproc://{self.name}-requests"

    @property
    def events(self) -> str:
        return f"inproc://{self.name}-events"

    @property
    def workers(self) -> str:
        return self.worker_endpoint

    def __str__(self) -> str:
        return f"inproc://{self.name}"


class FakeClock(Clock):
    """Both clocks stand still until the test moves them; the wall clock runs `offset` ahead."""

    def __init__(self, now: float = 0.0, offset: float = 1000.0):
        self.now, self.offset = now, offset

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now + self.offset

    def advance(self, seconds: float) -> None:
        self.now += seconds


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


class InprocServer:
    """The server in this process; the options are a `ServerProcess`'s (settings by name)."""

    def __init__(self, db: Path, *, workers: int = 2, max_workers: int | None = None,
                 time_scale: float = 1.0, stats_interval: float = 0.1, clock: Clock | None = None,
                 **settings: Any):
        bounds = {} if "stages" in settings or "scenario" in settings else {
            "min_workers": workers, "max_workers": max_workers or workers}  # else per stage
        self.config = ServerConfig.from_options({
            **bounds, "time_scale": time_scale, "stats_interval": stats_interval, **settings})
        self.context = zmq.Context.instance()  # the one the real Client and EventTap use
        self.clock = clock or Clock()
        sockets = ServerSockets.make(self.context, owns_context=False)
        name = f"storypulse-test-{next(_names)}"
        self.endpoints = InprocEndpoints(name=name)
        sockets.requests.bind(self.endpoints.requests)
        sockets.events.bind(self.endpoints.events)
        sockets.workers.bind("tcp://127.0.0.1:*")
        sockets.worker_endpoint = sockets.workers.LAST_ENDPOINT.decode()
        self.endpoints = InprocEndpoints(name=name, worker_endpoint=sockets.worker_endpoint)
        self._records = _Records()
        logger = logging.getLogger("storypulse.server")
        self._level = logger.level
        logger.setLevel(logging.INFO)  # as a server process logs at --log-level info
        logger.addHandler(self._records)
        # http_port in the settings serves /metrics, /livez, /readyz from this process too
        daemon = Daemon.open(self.config, environ={})
        self.server = Server(self.config, Store.open(str(db)), sockets, clock=self.clock,
                             daemon=daemon)
        self.server.restore()
        daemon.ready(self.server.service)
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self.closed = False

    # -- the parts, for tests that look inside ------------------------------------------
    @property
    def service(self):
        return self.server.service

    @property
    def pool(self):
        return self.server.pool

    # -- driving it in the test's thread -------------------------------------------------
    def turn(self, timeout: float = 0.0) -> None:
        assert self._thread is None, "the loop runs in its thread: stop() it first"
        self.server.turn(timeout)

    def turn_until(self, condition: Callable[[], T], timeout: float = 10.0, what: str = "") -> T:
        """Turn (each poll waits at most 10 ms) until `condition()` is truthy; returns it."""
        def step() -> T:
            self.turn(0.01)
            return condition()
        return wait_for(step, timeout, interval=0, what=what)

    # -- driving it in a thread ------------------------------------------------------------
    def start(self) -> InprocServer:
        assert self._thread is None
        self.server.stopping = False
        self._thread = threading.Thread(target=self._run, name="storypulse-loop", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self.server.stopping:
                self.server.turn()
        except BaseException as exc:  # the loop must never end this way: the test says so
            self._failure = exc

    def pause(self) -> None:
        """Stop the loop's thread (the server keeps its state); `start()` runs it again."""
        if self._thread is not None:
            self.server.request_stop()
            self._thread.join(10)
            assert not self._thread.is_alive(), "the loop did not stop"
            self._thread = None
        if self._failure is not None:
            raise AssertionError("the loop raised") from self._failure

    def alive(self) -> bool:
        """The loop serves: not closed, and (if it runs in a thread) it has not raised."""
        return not self.closed and self._failure is None and (
            self._thread is None or self._thread.is_alive())

    def stop(self) -> int:
        """Shut down as on SIGTERM (the grace for busy workers, then close); returns 0."""
        self.pause()
        self.server.shutdown()
        self.close()
        return 0

    def close(self) -> None:
        if self.closed:
            return
        try:
            self.pause()
        finally:
            self.closed = True
            self.server.close()
            logger = logging.getLogger("storypulse.server")
            logger.removeHandler(self._records)
            logger.setLevel(self._level)

    # -- what a ServerProcess offers ------------------------------------------------------
    def client(self, timeout: float = 5.0) -> Client:
        return Client(self.endpoints, timeout=timeout, context=self.context)

    def log(self) -> str:
        return "\n".join(self._records.lines)
