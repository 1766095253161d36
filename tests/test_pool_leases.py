"""server/pool.py's lease bookkeeping: the next lease just in time, a lost worker's tasks."""

from __future__ import annotations

import pytest


# -- the pool's lease bookkeeping ---------------------------------------------------


def test_pool_gives_the_next_lease_just_in_time():
    from storypulse.server.pool import PREFETCH_S, Pool, Worker

    pool = Pool("tcp://127.0.0.1:1", heartbeat=0.5, min_workers=1, max_workers=1, quiet_window=5)
    worker = Worker(b"w1", None, state="idle")
    pool.workers[b"w1"] = worker
    pool.idle[b"w1"] = worker
    first = pool.give_lease(worker, [1], work_s=0.05, now=10.0, wall=1000.0)
    assert worker.state == "busy" and not pool.idle and pool.busy == 1
    assert (first.started, first.ends) == (10.0, pytest.approx(10.05))
    assert pool.prefetch_candidates(10.0) == []
    assert pool.next_prefetch_at() == pytest.approx(10.05 - PREFETCH_S)
    assert pool.prefetch_candidates(10.04) == [worker]
    second = pool.give_lease(worker, [2], work_s=0.05, now=10.04, wall=1000.04)
    assert second.started == pytest.approx(10.05) and second.wall == pytest.approx(1000.05)
    assert pool.prefetch_candidates(10.049) == []  # two at most
    # the first reports late: the second starts now
    assert pool.finish_lease(worker, [1], now=10.06, wall=1000.06) is first
    assert worker.state == "busy" and second.started == pytest.approx(10.06)
    assert second.wall == pytest.approx(1000.06)
    assert pool.finish_lease(worker, [99], now=10.07, wall=1000.07) is None  # not one of its leases
    assert pool.finish_lease(worker, [2], now=10.11, wall=1000.11) is second
    assert worker.state == "idle" and pool.idle == {b"w1": worker}
    pool.give_lease(worker, [3, 4], 0.0, 11.0, 1001.0)
    pool.give_lease(worker, [5], 0.0, 11.0, 1001.0)
    lost = pool.remove(worker)  # a lost worker's leases, their tasks in order
    assert [task_id for lease in lost for task_id in lease.task_ids] == [3, 4, 5]
