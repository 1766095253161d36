"""The pools of a workflow: one `Pool` (and autoscaler) per stage, seen as one by the loop.

Each stage's pool keeps the books of its own workers, within its own bounds, and
its workers lease only that stage's tasks. A worker belongs to the pool that
spawned it (a local one) or to the stage its Ready names (a worker host's
`--stage`; none: the first stage). What is about any worker, whichever its stage
(heartbeats, expiry, a process that ended, shutdown), the loop asks of `Pools`
as it asked of the one pool; what is about one stage (idle workers, prefetch,
bounds, the autoscaler, resizing) it asks of `stages[i]`.

With one stage the per-worker calls are the pool's own methods, bound at build
time: nothing is added on the way of a lease or a Done.
"""

from __future__ import annotations

import logging
from collections import ChainMap
from typing import Iterator

from storypulse import protocol
from storypulse.security import ClientSecurity
from storypulse.workflow import Workflow

from .pool import Lease, Pool, Send, Worker

log = logging.getLogger(__name__)


def _total(name: str) -> property:
    """A figure of every stage's pool, summed."""
    return property(lambda self: sum(getattr(pool, name) for pool in self.stages),
                    doc=f"the stages' pools' {name}, summed")


class Pools:
    def __init__(self, stages: list[Pool]):
        assert stages, "a workflow has at least one stage"
        self.stages = stages
        self.by_name = {pool.stage: pool for pool in stages}
        # Every worker and process sentinel, whichever its pool (read-only views).
        self.workers: ChainMap[bytes, Worker] = ChainMap(*(p.workers for p in stages))
        self.by_sentinel: ChainMap[int, Worker] = ChainMap(*(p.by_sentinel for p in stages))
        if len(stages) == 1:  # no routing: the one pool's own methods
            first = stages[0]
            self.on_heard = first.on_heard  # type: ignore[method-assign]
            self.give_lease = first.give_lease  # type: ignore[method-assign]
            self.finish_lease = first.finish_lease  # type: ignore[method-assign]

    @classmethod
    def of(cls, workflow: Workflow, endpoint: str, heartbeat: float, quiet_window: float,
           security: ClientSecurity | None = None) -> Pools:
        """A pool per stage of `workflow`, within its bounds."""
        named = len(workflow) > 1
        return cls([Pool(endpoint, heartbeat, stage.min_workers, stage.max_workers, quiet_window,
                         security, stage=stage.name, index=i, named=named)
                    for i, stage in enumerate(workflow.stages)])

    def __iter__(self) -> Iterator[Pool]:
        return iter(self.stages)

    def __len__(self) -> int:
        return len(self.stages)

    # -- what workers say ----------------------------------------------------------------
    def on_ready(self, identity: bytes, message: protocol.Ready, now: float,
                 send: Send) -> Worker | None:
        """A Ready: to the pool of the worker (a local one), or of the stage it names (a
        worker host). A stage this server lacks: the worker is refused (Stop with the reason)."""
        for pool in self.stages:
            if identity in pool.workers:
                return pool.on_ready(identity, message, now, send)
        if message.stage is None:
            return self.stages[0].on_ready(identity, message, now, send)
        pool = self.by_name.get(message.stage)
        if pool is None:
            reason = (f"stage {message.stage!r} is not a stage of this server; the stages are "
                      f"{', '.join(self.by_name)}")
            log.warning("refused worker %s on %s: %s", message.pid, message.host or "a remote host",
                        reason)
            send(identity, protocol.encode(protocol.Stop(reason=reason)))
            return None
        return pool.on_ready(identity, message, now, send)

    def on_heard(self, identity: bytes, now: float) -> Worker | None:
        for pool in self.stages:
            worker = pool.on_heard(identity, now)
            if worker is not None:
                return worker
        return None

    def give_lease(self, worker: Worker, task_ids: list[int], work_s: float, now: float,
                   wall: float) -> Lease:
        return self.stages[worker.stage].give_lease(worker, task_ids, work_s, now, wall)

    def finish_lease(self, worker: Worker, task_ids: list[int], now: float,
                     wall: float) -> Lease | None:
        return self.stages[worker.stage].finish_lease(worker, task_ids, now, wall)

    @staticmethod
    def next_start(worker: Worker, now: float) -> float:
        return Pool.next_start(worker, now)

    # -- every worker --------------------------------------------------------------------
    def expired(self, now: float) -> list[Worker]:
        return [worker for pool in self.stages for worker in pool.expired(now)]

    def remove(self, worker: Worker) -> list[Lease]:
        return self.stages[worker.stage].remove(worker)

    def stop_all(self, now: float, send: Send) -> None:
        for pool in self.stages:
            pool.stop_all(now, send)

    def terminate_all(self) -> None:
        for pool in self.stages:
            pool.terminate_all()

    # -- figures: the sums (the stats' totals) --------------------------------------------
    size = _total("size")
    busy = _total("busy")
    connected = _total("connected")
    target = _total("target")
    min_workers = _total("min_workers")
    max_workers = _total("max_workers")
