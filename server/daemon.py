"""What the server shows the people and programs that run it: health, metrics, systemd.

One object, built before the loop (it binds the HTTP port, so a port that is taken
stops the start like a ZeroMQ port would), that the loop calls at a few marked
points and that reads nothing of the loop's on its own:

  ready(service)     after the state is restored: READY=1 and a STATUS line
  turned()           every turn: the liveness heartbeat, and the systemd watchdog's
                     WATCHDOG=1 when half its period has passed
  publish(stats, service)
                     every stats tick: a new immutable snapshot for /metrics and
                     /readyz, and now and then a STATUS line
  stopping()         STOPPING=1 when the shutdown begins
  close()            the HTTP thread and the notify socket

The HTTP thread (http.py) answers from the newest snapshot and the heartbeat only.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from typing import Mapping

from .config import ServerConfig
from .health import Answer, Heartbeat, readiness, stale_after
from .metrics import Snapshot
from .notify import Notifier

log = logging.getLogger(__name__)

STATUS_EVERY_S = 5.0  # a STATUS= line at most this often (sooner when the database's state changes)
RENDER_MAX_AGE_S = 1.0  # a /metrics body is reused for the same snapshot at most this long


class Daemon:
    def __init__(self, config: ServerConfig, *, notifier: Notifier | None = None,
                 http_listener=None):
        self.config = config
        self.heartbeat = Heartbeat(stale_after(config))
        self.notifier = notifier
        self.snapshot: Snapshot | None = None  # replaced whole, never changed
        self.started_at = time.time()
        self._status_at = 0.0
        self._database = "ok"
        self._rendered: tuple[Snapshot | None, float, bytes] = (None, 0.0, b"")
        self.http = None
        if http_listener is not None:
            from .exposition import Exposition  # prometheus_client: only when metrics are served
            from .http import HttpEndpoint, Response

            self._exposition = Exposition(lambda: self.snapshot)
            self._response = Response
            self.http = HttpEndpoint(http_listener, {
                "/metrics": self._metrics, "/livez": self._livez, "/readyz": self._readyz})

    @classmethod
    def open(cls, config: ServerConfig, environ: Mapping[str, str] | None = None) -> Daemon:
        """Bind the HTTP port (OSError if it cannot be) and serve it at once (`/livez` says
        "starting" until the loop turns), and find systemd's notify socket."""
        listener = None
        if config.http_port:
            from .http import listen

            listener = listen(config.http_bind, config.http_port)
            if not _loopback(config.http_bind):
                log.warning("HTTP endpoint on %s:%d beyond loopback: /metrics, /livez and /readyz "
                            "need no key, so anyone who reaches the port can read them",
                            config.http_bind, config.http_port)
        daemon = cls(config, notifier=Notifier.from_environ(environ), http_listener=listener)
        if daemon.http is not None:
            daemon.http.start()
            host, port = daemon.http.address[:2]
            log.info("serving /metrics, /livez and /readyz on http://%s/",
                     f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
                     extra={"event": "http.listening", "http_port": port})
        return daemon

    # -- the loop's hooks ----------------------------------------------------------------
    def ready(self, service) -> None:
        if self.notifier is not None:
            self.notifier.ready(f"serving: {service.state.open_stories} open stories, "
                                f"{service.figures.completed_stories} completed (restored)")
            if self.notifier.watchdog_s:
                log.info("systemd watchdog: %g s; kicked from the loop every %g s",
                         self.notifier.watchdog_s, self.notifier.kick_every)

    def turned(self) -> None:
        now = time.monotonic()
        self.heartbeat.beat(now)
        if self.notifier is not None:
            self.notifier.kick(now)

    def publish(self, stats, service) -> None:
        if self.http is not None:
            self.snapshot = Snapshot.take(stats, service.meters, service.state, self.started_at)
        if self.notifier is not None:
            now = time.monotonic()
            if now - self._status_at >= STATUS_EVERY_S or stats.database != self._database:
                self._status_at, self._database = now, stats.database
                self.notifier.status(status_line(stats))

    def stopping(self) -> None:
        if self.notifier is not None:
            self.notifier.stopping("stopping: waiting for busy workers, then closing")

    def close(self) -> None:
        if self.http is not None:
            self.http.close()
        if self.notifier is not None:
            self.notifier.close()

    # -- what the HTTP thread answers ----------------------------------------------------
    def liveness(self) -> Answer:
        return self.heartbeat.liveness(time.monotonic())

    def readiness(self) -> Answer:
        return readiness(self.liveness(), self.snapshot)

    def _metrics(self):
        snapshot = self.snapshot
        made_for, made_at, body = self._rendered
        now = time.monotonic()
        if made_for is not snapshot or now - made_at > RENDER_MAX_AGE_S or not body:
            body = self._exposition.render()
            self._rendered = (snapshot, now, body)
        return self._response(200, self._exposition.content_type, body)

    def _livez(self):
        return self._health(self.liveness())

    def _readyz(self):
        return self._health(self.readiness())

    def _health(self, answer: Answer):
        return self._response(200 if answer.ok else 503, "text/plain; charset=utf-8",
                              (answer.text + "\n").encode())


def status_line(stats) -> str:
    """One line for `systemctl status`."""
    line = (f"{stats.open_stories} open ({stats.stories_in_progress} in progress), "
            f"{stats.completed_stories} completed; {stats.tasks_queued} tasks queued; "
            f"{stats.workers_busy}/{stats.workers} workers busy")
    if stats.database != "ok":
        line += f"; database refuses writes: {stats.database_error}"
    return line


def _loopback(bind: str) -> bool:
    if bind == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind).is_loopback
    except ValueError:
        return False

