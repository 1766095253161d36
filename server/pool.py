"""The worker pool: spawns and retires worker processes and tracks every worker's state.

The pool never touches a socket: the loop owns the worker ROUTER and passes
`send(identity, message)` in. A worker is

  starting  spawned, no Ready yet
  idle      Ready, no lease
  busy      holding a lease (at most two: see "just in time" below)
  stopping  sent Stop (retired or shutting down)

Just in time: a busy worker whose lease is due to end within PREFETCH_S gets
its next lease before it reports, so the round trip Done -> Work (a few
thread wake-ups, milliseconds on a loaded machine) is off the critical path.
The worker still runs one lease at a time; the next one waits at most about
PREFETCH_S on it, and goes back to the queue with the first if the worker dies.

Local workers are processes started through a forkserver (never fork a
process that runs ZeroMQ); their `sentinel` fds go into the loop's poller so a
dead process is noticed at once. Remote workers (`storypulse worker` on
another host) have no process here; they are extra capacity outside the
pool's bounds and are lost only by missing heartbeats.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import signal
from dataclasses import dataclass, field
from typing import Callable

from storypulse import protocol
from storypulse.security import ClientSecurity
from storypulse.workflow import DEFAULT_STAGE

from . import worker as worker_main

from .autoscale import Autoscaler, Load


log = logging.getLogger(__name__)

PREFETCH_S = 0.02  # send the next lease this long before the current one is due to end
START_TIMEOUT = 15.0  # seconds a spawned worker may take to say Ready (slow CI machines)
STOP_TIMEOUT = 5.0  # seconds a stopping idle worker may take to exit before SIGKILL

Send = Callable[[bytes, bytes], None]


@dataclass(eq=False)
class Lease:
    task_ids: list[int]
    started: float  # monotonic: when the worker starts it (expected, for a prefetched one)
    wall: float  # the same on the wall clock, written as the tasks' started_at
    ends: float  # monotonic: when it is due to end
    stories: list = field(default_factory=list)  # their stories, for their work time (WorkState.leased)


@dataclass(eq=False)
class Worker:
    identity: bytes
    process: multiprocessing.process.BaseProcess | None  # None: a remote worker
    state: str = "starting"
    pid: int = 0
    host: str = ""
    leases: list[Lease] = field(default_factory=list)  # oldest (running) first
    since: float = 0.0  # monotonic time of the last state change
    last_heard: float = 0.0
    last_sent: float = 0.0
    stage: int = 0  # the index of the stage whose pool it is in (pools.py)

    @property
    def local(self) -> bool:
        return self.process is not None

    def describe(self) -> str:
        where = f"pid {self.pid}" if self.pid else self.identity.decode(errors="replace")
        return where if self.local else f"{where} on {self.host or 'a remote host'}"


class Pool:
    def __init__(self, endpoint: str, heartbeat: float, min_workers: int, max_workers: int,
                 quiet_window: float, security: ClientSecurity | None = None, *,
                 stage: str = DEFAULT_STAGE, index: int = 0, named: bool = False):
        """The pool of one stage of the workflow (pools.py): `stage` its name, `index` its
        place; `named`: there are several, so its workers say which they serve."""
        self.stage, self.index, self.named = stage, index, named
        self.endpoint = endpoint
        self.security = security  # the CURVE pair of local workers, when the server needs one
        self.heartbeat = heartbeat
        self.patience = heartbeat * worker_main.HEARTBEAT_LIVENESS
        # The policy owns the target and the bounds: it decides from them (its hysteresis
        # and patience are about the size it last chose), so the pool only reads them.
        self.autoscaler = Autoscaler(min_workers, max_workers, quiet_window=quiet_window)
        self.workers: dict[bytes, Worker] = {}
        self.idle: dict[bytes, Worker] = {}  # insertion ordered: longest idle first
        self.by_sentinel: dict[int, Worker] = {}
        self._ids = itertools.count(1)
        self._prefix = f"w{os.getpid()}-{stage}-" if named else f"w{os.getpid()}-"
        self._context = worker_main.process_context(["storypulse.server.worker", "storypulse.protocol", "zmq"])

    # -- figures ------------------------------------------------------------------
    @property
    def target(self) -> int:
        """The size the pool grows or shrinks to (the policy's last decision)."""
        return self.autoscaler.target

    @property
    def min_workers(self) -> int:
        return self.autoscaler.min_workers

    @property
    def max_workers(self) -> int:
        return self.autoscaler.max_workers

    def count(self, state: str) -> int:
        return sum(1 for w in self.workers.values() if w.state == state)

    @property
    def size(self) -> int:
        """Local workers that count towards the target (not the ones on their way out)."""
        return sum(1 for w in self.workers.values() if w.local and w.state != "stopping")

    @property
    def busy(self) -> int:
        """Workers holding a lease (a stopping one may still be finishing its lease)."""
        return sum(1 for w in self.workers.values() if w.leases)

    @property
    def connected(self) -> int:
        return sum(1 for w in self.workers.values() if w.state in ("idle", "busy"))

    # -- spawning and retiring ----------------------------------------------------------
    def spawn(self, now: float) -> Worker:
        identity = f"{self._prefix}{next(self._ids)}".encode()
        process = self._context.Process(
            target=worker_main.run_local,
            args=(self.endpoint, identity, self.heartbeat, self.security,
                  self.stage if self.named else None),
            name=f"storypulse-worker-{identity.decode()}",
            daemon=True,
        )
        process.start()
        worker = Worker(identity, process, pid=process.pid or 0, since=now, last_heard=now,
                        stage=self.index)
        self.workers[identity] = worker
        self.by_sentinel[process.sentinel] = worker
        log.debug("spawned worker %s (pid %s)", identity.decode(), process.pid)
        return worker

    def resize(self, now: float, send: Send) -> list[Worker]:
        """Spawn up to the target at once; above it, retire idle workers only. Returns spawned."""
        spawned = []
        while self.size < self.target:
            try:
                spawned.append(self.spawn(now))
            except OSError as exc:  # e.g. out of processes: try again at the next decision
                log.error("cannot start a worker process: %s", exc)
                break
        excess = self.size - self.target
        if excess > 0:
            for worker in list(self.idle.values())[:excess]:
                if worker.local:
                    self.retire(worker, now, send)
            # still above target: starting workers are retired when they say Ready
        return spawned

    def retire(self, worker: Worker, now: float, send: Send) -> None:
        self._set_state(worker, "stopping", now)
        send(worker.identity, protocol.encode(protocol.Stop()))
        worker.last_sent = now

    def stop_all(self, now: float, send: Send) -> None:
        """Shutdown: every worker gets Stop; a busy one finishes its lease, reports, then exits."""
        for worker in list(self.workers.values()):
            if worker.state != "stopping":
                self._set_state(worker, "stopping", now)
                send(worker.identity, protocol.encode(protocol.Stop()))

    # -- what workers say ----------------------------------------------------------------
    def on_ready(self, identity: bytes, message: protocol.Ready, now: float, send: Send) -> Worker | None:
        worker = self.workers.get(identity)
        if worker is None:
            worker = Worker(identity, None, since=now, stage=self.index)  # a remote worker host
            self.workers[identity] = worker
            log.info("remote worker %s joined%s", identity.hex(),
                     f" stage {self.stage!r}" if self.named else "")
        worker.pid, worker.host = message.pid, message.host
        worker.last_heard = now
        if worker.state == "starting":
            if worker.local and self.size > self.target:
                self.retire(worker, now, send)  # the target fell while it started
                return None
            self._set_state(worker, "idle", now)
            log.debug("worker %s ready", worker.describe())
        return worker

    def on_heard(self, identity: bytes, now: float) -> Worker | None:
        worker = self.workers.get(identity)
        if worker is not None:
            worker.last_heard = now
        return worker

    @staticmethod
    def next_start(worker: Worker, now: float) -> float:
        """When a new lease for `worker` would start: now if idle, else after its current one."""
        return max(now, worker.leases[-1].ends) if worker.leases else now

    def give_lease(self, worker: Worker, task_ids: list[int], work_s: float, now: float,
                   wall: float) -> Lease:
        start = self.next_start(worker, now)
        lease = Lease(task_ids, start, wall + (start - now), start + work_s)
        worker.leases.append(lease)
        if worker.state == "idle":
            self._set_state(worker, "busy", now)
        worker.last_sent = now
        return lease

    def prefetch_candidates(self, now: float) -> list[Worker]:
        """Busy workers whose only lease is due to end within PREFETCH_S."""
        return [w for w in self.workers.values()
                if w.state == "busy" and len(w.leases) == 1
                and w.leases[0].ends - now <= PREFETCH_S]

    def next_prefetch_at(self) -> float:
        """The earliest time a busy worker becomes a prefetch candidate (inf if none)."""
        return min((w.leases[0].ends - PREFETCH_S for w in self.workers.values()
                    if w.state == "busy" and len(w.leases) == 1), default=float("inf"))

    def finish_lease(self, worker: Worker, task_ids: list[int], now: float,
                     wall: float) -> Lease | None:
        """The lease that a Done reports (matched by its first task), or None."""
        found = None
        if task_ids:
            for i, lease in enumerate(worker.leases):
                if lease.task_ids and lease.task_ids[0] == task_ids[0]:
                    found = worker.leases.pop(i)
                    break
        if found is not None and worker.leases:
            # the worker starts its prefetched lease as it reports: now, not when we guessed
            nxt = worker.leases[0]
            nxt.ends += now - nxt.started
            nxt.started, nxt.wall = now, wall
        if not worker.leases and worker.state == "busy":
            self._set_state(worker, "idle", now)
        return found

    # -- losing workers ------------------------------------------------------------------------
    def expired(self, now: float) -> list[Worker]:
        """Workers silent past the heartbeat timeout, or that never said Ready in time."""
        lost = []
        for worker in self.workers.values():
            if worker.state == "starting":
                if now - worker.since > START_TIMEOUT:
                    lost.append(worker)
            elif worker.state == "stopping" and not worker.leases:
                if now - worker.since > STOP_TIMEOUT:
                    lost.append(worker)
            elif now - worker.last_heard > self.patience:
                lost.append(worker)
        return lost

    def remove(self, worker: Worker) -> list[Lease]:
        """Forget a worker (dead, hung or gone); kill and reap its process. Returns its leases."""
        self.workers.pop(worker.identity, None)
        self.idle.pop(worker.identity, None)
        leases, worker.leases = worker.leases, []
        process = worker.process
        if process is not None:
            self.by_sentinel.pop(process.sentinel, None)
            if process.exitcode is None:
                try:
                    os.kill(process.pid, signal.SIGKILL)  # hung (e.g. SIGSTOP): no waiting on it
                except ProcessLookupError:
                    pass
            process.join(1.0)
            if process.exitcode is None:
                log.error("worker pid %s did not go away after SIGKILL", process.pid)
            else:
                process.close()
        return leases

    def terminate_all(self) -> None:
        for worker in list(self.workers.values()):
            self.remove(worker)

    def _set_state(self, worker: Worker, state: str, now: float) -> None:
        if worker.state == "idle":
            self.idle.pop(worker.identity, None)
        worker.state = state
        worker.since = now
        if state == "idle":
            self.idle[worker.identity] = worker

    # -- policy ---------------------------------------------------------------------------
    def set_bounds(self, min_workers: int, max_workers: int) -> None:
        self.autoscaler.set_bounds(min_workers, max_workers)

    def decide(self, load: Load) -> tuple[int, int, str] | None:
        """Ask the policy; returns (old, new, reason) when the target changes."""
        old = self.autoscaler.target
        decision = self.autoscaler.decide(load)  # always within the bounds
        if decision.target == old:
            return None
        return old, decision.target, decision.reason
