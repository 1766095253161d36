"""The one poll loop: owns every socket, the timers, and the order of a turn.

A turn:
  1. poll (timeout: until the next timer) the request ROUTER, the worker
     ROUTER, the signal wake-up fd and every local worker's process sentinel;
  2. drain what is ready (bounded): each request and worker message goes to
     the service; a local worker's exit, or end of file on the parent pipe
     (the process that started us is gone: stop), is the loop's own;
  3. the service hands leases to idle workers, and the loop sends them;
  4. settle: commit the turn's writes in one transaction, then send the
     replies and publish the events that depend on them (group commit); a
     request that waited for this commit is served, and committed, next;
  5. timers: heartbeats and lost workers, autoscaling, stats.
Signal handlers only set a flag (and wake the poll through a socketpair).

The loop binds nothing: it serves the sockets it is given (`sockets.listen`
binds them as the command line says; a test binds them in-process), and reads
time from the clock it is given, so a test can drive it one `turn()` at a time.

The service (service.py) does no I/O and reads no clock: it gets each input
with the time and answers with effects (effects.py): messages to workers
(leases, Stop), replies, numbered events to publish, a resize. `_carry_out`
is the one place they become I/O, in the order the service gave them. What
stays the loop's own: the poller and its timers, the worker processes
(spawn, retire, reap, their sentinels), heartbeats, signals and the parent pipe.
"""

from __future__ import annotations

import logging
import os
import signal
from typing import Any, Callable

import zmq

from storypulse import protocol

from .clock import Clock
from .config import HEARTBEAT_LIVENESS, ServerConfig
from .daemon import Daemon
from .effects import Resize
from .faults import RateLimitedLog
from .forecast_runner import ForecastRunner
from .pool import Worker
from .pools import Pools
from .service import Service
from .sockets import ServerSockets
from .stats import Ticker
from .store import Store
from .wakeup import WakePair

log = logging.getLogger(__name__)

# Plain ints: pyzmq's enum flags cost more than the send itself on the hot path.
NOBLOCK = int(zmq.NOBLOCK)
MORE = int(zmq.SNDMORE) | NOBLOCK
DRAIN_MAX = 2000  # frames of one kind handled per turn, so no side starves the other


class Server:
    def __init__(self, config: ServerConfig, store: Store, sockets: ServerSockets,
                 parent_pipe: int | None = None, clock: Clock | None = None,
                 daemon: Daemon | None = None):
        """Serve on `sockets` (bound already; closed with the server). `daemon`: health,
        metrics and systemd (server/daemon.py), called at the lines marked `daemon:`."""
        self.config = config
        self.daemon = daemon or Daemon(config)
        self.store = store
        self.stopping = False
        self.clock = clock or Clock()
        self.sockets = sockets
        self.warn = RateLimitedLog()
        self.requests, self.events, self.workers = sockets.requests, sockets.events, sockets.workers
        self.security = sockets.security

        now = self.clock.monotonic()
        # A pool per stage of the workflow (one, `work`, without stages).
        self.pool = Pools.of(config.workflow, sockets.worker_endpoint, config.heartbeat,
                             config.quiet_window,
                             self.security.local_worker if self.security else None)
        self.service = Service(config, store, self.pool, now)
        self.stats_tick = Ticker(config.stats_interval, now)
        self.scale_tick = Ticker(config.scale_interval, now, start_now=True)
        self.beat_tick = Ticker(config.heartbeat, now)
        self.forecast_runner = ForecastRunner(self.service.forecasts)

        # Signals wake the poll through this pair; the handler itself only sets a flag.
        self._wake = WakePair()

        self.poller = zmq.Poller()
        self.poller.register(self.requests, zmq.POLLIN)
        self.poller.register(self.workers, zmq.POLLIN)
        self.poller.register(self._wake.fd, zmq.POLLIN)
        self.poller.register(self.forecast_runner.fileno(), zmq.POLLIN)
        self._sentinels: set[int] = set()
        self._started = False  # the pool has been sized once
        self._signals = False  # install_signal_handlers was called
        # End of file on this pipe: the process that started us is gone (see --parent-pipe).
        self.parent_pipe = parent_pipe
        if parent_pipe is not None:
            self.poller.register(parent_pipe, zmq.POLLIN)

    # -- lifecycle -------------------------------------------------------------------
    def request_stop(self) -> None:
        """From any thread: stop at the end of the current turn (as SIGTERM does)."""
        self.stopping = True
        self._wake.wake()  # a poll that waits

    def install_signal_handlers(self) -> None:
        def on_signal(signum: int, frame: Any) -> None:
            self.stopping = True

        self._signals = True
        signal.set_wakeup_fd(self._wake.write_fd, warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    def restore(self) -> None:
        now, wall = self.clock.monotonic(), self.clock.wall()
        service = self.service
        service.restore(now, wall)
        self._settle(now, wall)  # a repair of the stored state, if it needed one
        figures = service.figures
        log.info(
            "restored: %d open stories (%d in progress), %d completed (%d in the flow window), "
            "%d tasks queued, %d tasks completed",
            service.state.open_stories, service.state.in_progress,
            figures.completed_stories, len(figures.flow),
            service.state.queued, figures.tasks_completed,
        )

    def run(self) -> int:
        try:
            self.restore()
            self.daemon.ready(self.service)  # daemon: READY=1 (sockets bound, database open, restored)
            log.info("serving requests on %s, events on %s, workers on %s",
                     self.requests.LAST_ENDPOINT.decode(), self.events.LAST_ENDPOINT.decode(),
                     self.workers.LAST_ENDPOINT.decode())
            while not self.stopping:
                self.turn()
            self.shutdown()
        finally:
            self.close()
        return 0

    def close(self) -> None:
        self.daemon.close()  # daemon
        self.forecast_runner.close()
        self.pool.terminate_all()
        self.sockets.close()
        self.store.close()
        if self._signals:
            signal.set_wakeup_fd(-1)
        self._wake.close()

    # -- one turn ----------------------------------------------------------------------
    def turn(self, timeout: float | None = None) -> None:
        """One turn; the poll waits until the next timer is due, or at most `timeout` seconds."""
        wait = max(0.0, self._next_timer() - self.clock.monotonic())
        if timeout is not None:
            wait = min(wait, timeout)
        ready = dict(self.poller.poll(wait * 1000))
        now, wall = self.clock.monotonic(), self.clock.wall()
        if ready.get(self._wake.fd):
            self._wake.drain()
        if self.parent_pipe is not None and ready.get(self.parent_pipe):
            self._check_parent()
        if ready.get(self.requests):
            self._read_requests(now, wall)
        if ready.get(self.workers):
            self._read_workers(now, wall)
        for fd in self._sentinels.intersection(ready):
            self._sentinel_ready(fd, wall)
        # Leases go out before the commit: a Done for them can only be handled in a
        # later turn, after this turn's writes are durable, and the workers start sooner.
        self.service.dispatch(now, wall)
        self.forecast_runner.turn(self.service, now, self.service.state.open_stories)
        self._carry_out()
        self._settle(now, wall)
        self._timers(now, wall)
        self._carry_out()
        self.daemon.turned()  # daemon: liveness heartbeat and systemd watchdog

    def _next_timer(self) -> float:
        soonest = min(self.stats_tick.next_at, self.scale_tick.next_at, self.beat_tick.next_at,
                      self.forecast_runner.next_at)
        # a worker idle while work may start, a lease to prefetch, a block that ends
        soonest = min(soonest, self.service.next_due(self.clock.monotonic(), self.clock.wall()))
        if self.service.outage is not None:
            soonest = min(soonest, self.service.outage.retry_at)
        return soonest

    def _check_parent(self) -> None:
        if os.read(self.parent_pipe, 512):
            return  # the parent wrote something: it is alive, and nothing is said that way
        log.info("the process that started the server is gone: stopping")
        self.poller.unregister(self.parent_pipe)
        self.parent_pipe = None
        self.stopping = True  # the same clean way out as SIGTERM

    # Each message is handled inside its own guard: whatever it raises is logged
    # (rate-limited), counted and answered `internal` where a reply is possible, and
    # the loop goes on. (A database that refuses is no exception here: see commit.py.)
    def _drain(self, sock: zmq.Socket, handle: Callable[[list[bytes], float, float], None],
               failed: Callable[[list[bytes], Exception, float], None], now: float,
               wall: float) -> None:
        recv = sock.recv_multipart
        for _ in range(DRAIN_MAX):
            try:
                frames = recv(NOBLOCK)
            except zmq.Again:
                break
            try:
                handle(frames, now, wall)
            except Exception as exc:
                failed(frames, exc, now)

    def _read_requests(self, now: float, wall: float) -> None:
        self._drain(self.requests, self._request, self._request_failed, now, wall)

    def _request(self, frames: list[bytes], now: float, wall: float) -> None:
        envelope, payload = _split_request(frames)
        if envelope is None:
            self.service.faults.dropped(
                "bad-envelope", "dropped a request of %d frames (expected [payload] from a "
                "DEALER or ['', payload] from a REQ)", len(frames) - 1, now=now)
            return
        self.service.handle_request(envelope, payload, now, wall)

    def _request_failed(self, frames: list[bytes], exc: Exception, now: float) -> None:
        self.service.faults.internal("a request", exc, now=now)
        envelope, payload = _split_request(frames)
        if envelope is not None:
            self.service.reply_error(envelope, protocol.correlation_id(payload), protocol.INTERNAL,
                                     f"the server failed on this request ({type(exc).__name__}); "
                                     "it was logged")

    def _read_workers(self, now: float, wall: float) -> None:
        self._drain(self.workers, self._worker_message, self._worker_message_failed, now, wall)

    def _worker_message(self, frames: list[bytes], now: float, wall: float) -> None:
        if len(frames) != 2:
            self.service.faults.dropped("worker-envelope", "dropped a worker message of %d "
                                        "frames", len(frames) - 1, now=now)
            return
        self.service.worker_message(frames[0], frames[1], now, wall)

    def _worker_message_failed(self, frames: list[bytes], exc: Exception, now: float) -> None:
        self.service.faults.internal("a worker message", exc, now=now)

    def _sentinel_ready(self, fd: int, wall: float) -> None:
        """A local worker process ended."""
        worker = self.pool.by_sentinel.get(fd)
        try:
            if worker is not None:
                self._lose(worker, f"exited (code {worker.process.exitcode})", wall)
        except Exception as exc:
            self.service.faults.internal("a worker's exit", exc, now=self.clock.monotonic())
        # Whatever happened, a sentinel that stays registered would wake every poll.
        if fd in self._sentinels:
            self._sentinels.discard(fd)
            try:
                self.poller.unregister(fd)
            except KeyError:
                pass

    def _watch(self, worker: Worker) -> None:
        fd = worker.process.sentinel
        if fd not in self._sentinels:
            self._sentinels.add(fd)
            self.poller.register(fd, zmq.POLLIN)

    def _unwatch(self, worker: Worker) -> None:
        if worker.process is not None:
            fd = worker.process.sentinel
            if fd in self._sentinels:
                self._sentinels.discard(fd)
                self.poller.unregister(fd)

    def _lose(self, worker: Worker, why: str, wall: float) -> None:
        """A worker died, hung or went away: its lease goes back to the front of the queue."""
        self._unwatch(worker)
        expected = worker.state == "stopping" and not worker.leases
        pool = self.pool.stages[worker.stage]
        before = pool.size
        leases = self.pool.remove(worker)
        if expected:
            log.debug("worker %s stopped", worker.describe())
            return
        self.service.lost(worker, leases, why, wall)
        if worker.local and worker.state != "stopping":
            self.service.pool_changed(before, pool.size, f"worker {worker.describe()} {why}",
                                      wall, worker.stage)

    def _send_worker(self, identity: bytes, payload: bytes) -> None:
        try:
            self.workers.send(identity, MORE)
            self.workers.send(payload, NOBLOCK)
        except zmq.ZMQError as exc:  # EHOSTUNREACH/EAGAIN: the worker is gone; expiry will tell
            log.debug("could not send to worker %r: %s", identity, exc)

    # -- group commit and effects ----------------------------------------------------------
    def _settle(self, now: float, wall: float, force: bool = False) -> None:
        """Commit the turn's writes, then send the replies and events that depend on them.

        While the database refuses writes, the replies that do not wait on the
        pending batch still go out; events wait (they announce its writes).
        Requests that had to read committed data waited for this commit
        (`service.deferred`): they are served now, and what they wrote is
        committed in turn, until none waits.
        """
        service, clock = self.service, self.clock
        while True:
            service.commit(clock.monotonic(), clock.wall(), force=force)
            self._carry_out()
            if not service.deferred:
                return
            service.resume(now, wall)

    def _carry_out(self) -> None:
        """The one place where the service's effects become I/O, each list in the order the
        service gave it: messages to workers, replies, then the events it numbered."""
        out = self.service.effects
        if out.to_workers:
            send_worker = self._send_worker
            for identity, payload in out.to_workers:
                send_worker(identity, payload)
            out.to_workers.clear()
        if out.replies:
            send = self.requests.send
            for envelope, payload in out.replies:
                try:
                    for frame in envelope:
                        send(frame, MORE)
                    send(payload, NOBLOCK)
                except zmq.ZMQError as exc:  # the client went away or is not reading
                    self.warn.warning("reply", "could not send a reply: %s", exc)
            out.replies.clear()
        if out.published:
            publish = self.events.send
            for topic, payload in out.published:
                try:
                    publish(topic, MORE)
                    publish(payload, NOBLOCK)
                except zmq.Again:
                    pass  # PUB never blocks; a slow subscriber loses messages and sees a seq gap
            out.published.clear()

    # -- timers ---------------------------------------------------------------------------
    def _timers(self, now: float, wall: float) -> None:
        if self.beat_tick.due(now):
            self._heartbeats(now, wall)
        resize = self.service.take_resize()
        if self.scale_tick.due(now) or resize is not None:
            self._scale(now, wall, resize)
        if self.stats_tick.due(now):
            stats = self.service.publish_stats(now, wall)
            self.daemon.publish(stats, self.service)  # daemon: the snapshot /metrics and /readyz read

    def _heartbeats(self, now: float, wall: float) -> None:
        for worker in self.pool.expired(now):
            if worker.state == "starting":
                why = "never said Ready"
            elif worker.state == "stopping" and not worker.leases:
                why = "did not stop"
            else:
                why = f"missed {HEARTBEAT_LIVENESS} heartbeats"
            self._lose(worker, why, wall)
        beat = protocol.encode(protocol.Heartbeat())
        for worker in self.pool.workers.values():
            if worker.state != "starting" and now - worker.last_sent >= self.config.heartbeat * 0.9:
                self._send_worker(worker.identity, beat)
                worker.last_sent = now

    def _scale(self, now: float, wall: float, resize: Resize | None = None) -> None:
        """Each stage's pool to its autoscaler's target (set_pool's decision for its stage)."""
        for index, pool in enumerate(self.pool.stages):
            change = resize.change if resize is not None and resize.stage == index else None
            if change is None:
                change = pool.decide(self.service.load(now, index))
            whose = f"stage {pool.stage!r} " if pool.named else ""
            stage = {"stage": pool.stage} if pool.named else {}
            if change is not None:
                old, new, reason = change
                log.info("%spool target %d -> %d: %s", whose, old, new, reason,
                         extra={"event": "pool.target", "old": old, "new": new, "reason": reason,
                                **stage})
                self.service.pool_changed(old, new, reason, wall, index)
            before = pool.size
            for worker in pool.resize(now, self._send_worker):
                self._watch(worker)  # a worker that dies before Ready is noticed at once too
            after = pool.size
            if change is None and after != before:  # the first start, or a lost worker replaced
                reason = (f"start at the target of {pool.target}" if not self._started
                          else f"back to the target of {pool.target}")
                log.info("%spool size %d -> %d: %s", whose, before, after, reason,
                         extra={"event": "pool.size", "old": before, "new": after,
                                "reason": reason, **stage})
                self.service.pool_changed(before, after, reason, wall, index)
        self._started = True

    # -- shutdown -------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop taking requests; let busy workers report within the grace; keep the rest queued."""
        self.daemon.stopping()  # daemon: STOPPING=1
        log.info("stopping: no new requests; waiting up to %.1f s for busy workers",
                 self.config.shutdown_grace)
        self.poller.unregister(self.requests)
        clock = self.clock
        now = clock.monotonic()
        self.pool.stop_all(now, self._send_worker)
        self.service.stop_handing_out()
        deadline = now + self.config.shutdown_grace
        while self.pool.busy and clock.monotonic() < deadline:
            remaining = deadline - clock.monotonic()
            ready = dict(self.poller.poll(max(0.0, min(remaining, 0.1)) * 1000))
            now, wall = clock.monotonic(), clock.wall()
            if ready.get(self.workers):
                self._read_workers(now, wall)
            for fd in self._sentinels.intersection(ready):
                worker = self.pool.by_sentinel.get(fd)
                if worker is not None:
                    self._unwatch(worker)
                    self.pool.remove(worker)
            self._settle(now, wall)
        unfinished = self.pool.busy
        if unfinished:
            log.info("%d worker(s) still busy after the grace: their tasks stay queued", unfinished)
        self._settle(clock.monotonic(), clock.wall(), force=True)
        if self.service.outage is not None:
            log.error("stopping with writes the database still refuses (%s): none of them was "
                      "acknowledged; tasks completed meanwhile run again after a restart",
                      self.service.outage.cause)
        log.info("stopped: %d stories open, %d completed", self.service.state.open_stories,
                 self.service.figures.completed_stories)


def _split_request(frames: list[bytes]) -> tuple[list[bytes] | None, bytes]:
    """(routing envelope, payload); envelope None when the frames are not a request."""
    # DEALER: [identity, payload]; REQ: [identity, b"", payload]
    if len(frames) == 2:
        return frames[:1], frames[1]
    if len(frames) == 3 and not frames[1]:
        return frames[:2], frames[2]
    return None, b""
