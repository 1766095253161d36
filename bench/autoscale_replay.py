"""Replay one load curve through three pool-scaling policies and compare them.

    .venv/bin/python bench/autoscale_replay.py [--curve main|light|all] [--seeds N] [--starts N]

The load curve is quiet -> burst -> steady -> quiet: stories arrive at random
(Poisson) at a different rate in each phase, each with 1-5 tasks whose
estimates are drawn as `storypulse load` draws them (common.loadgen). A small
discrete-event simulation plays the pool: a FIFO queue, workers that take one
task at a time and run it for its estimate, and worker processes that need a
start-up time before they can take work -- measured here, on this machine,
the way the server starts its workers (a forkserver with preloaded modules).

The policies:
- ours: server.autoscale.Autoscaler, asked every 0.2 s;
- seed: every 4 s, +1 worker when workers/pending < 0.33, -1 when > 0.77
  (pending = tasks not yet done: queued + running);
- celery: celery/worker/autoscale.py's rule, asked every 1 s: grow at once to
  the reserved tasks (queued + running) up to max; shrink to
  max(reserved, min) only once 30 s have passed since the last grow.
In every policy a worker is retired only when idle; a busy one finishes first.
"""

from __future__ import annotations

import argparse
import heapq
import math
import multiprocessing
import random
import statistics
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.loadgen import StoryGenerator  # noqa: E402
from server.autoscale import Autoscaler, Load  # noqa: E402

MIN_WORKERS, MAX_WORKERS = 1, 16
# (name, seconds, stories per second); a story has 3 tasks of 0.5 s on average.
# The burst is `storypulse load` with its defaults (10 stories/s for 10 s).
CURVES = {
    "main": (("quiet", 15.0, 0.5), ("burst", 10.0, 10.0), ("steady", 60.0, 4.0), ("quiet", 40.0, 0.5)),
    # A light, clumpy steady phase: ~4 workers' worth of work arriving in
    # stories of 1-5 tasks, so the busy count swings between 2 and 14.
    "light": (("quiet", 15.0, 0.3), ("burst", 10.0, 8.0), ("steady", 60.0, 2.5), ("quiet", 40.0, 0.3)),
}
RATE_WINDOW_S = 5.0  # the "recent" in the rates the pool reports (the server's --rate-window default)


# -- worker start-up, measured ----------------------------------------------
def _announce(conn) -> None:
    """Child side: the first thing a worker does is say it is ready."""
    conn.send(b"ready")
    conn.close()


def measure_worker_start(samples: int = 20) -> list[float]:
    """Seconds from Process.start() until the child's first message arrives, per start."""
    ctx = multiprocessing.get_context("forkserver")
    # What a worker imports; preloaded once into the fork server, as the server does.
    ctx.set_forkserver_preload(["zmq", "msgspec", "common.protocol"])
    times = []
    for i in range(samples + 1):
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_announce, args=(child,), daemon=True)
        t0 = time.perf_counter()
        proc.start()
        child.close()
        parent.recv()
        elapsed = time.perf_counter() - t0
        proc.join()
        parent.close()
        if i:  # the first start also launches the fork server itself
            times.append(elapsed)
    return times


# -- the load -----------------------------------------------------------------
@dataclass(frozen=True)
class Trace:
    arrivals: list[tuple[float, float]]  # (time, task seconds), sorted by time
    phases: list[tuple[str, float, float]]  # (name, start, end)

    def phase(self, name: str, nth: int = 0) -> tuple[float, float]:
        found = [(s, e) for n, s, e in self.phases if n == name]
        return found[nth]

    @property
    def end(self) -> float:
        return self.phases[-1][2]


def make_trace(seed: int, curve: str = "main") -> Trace:
    rng = random.Random(seed)
    stories = StoryGenerator(seed=seed)
    arrivals, phases, t0 = [], [], 0.0
    for name, length, rate in CURVES[curve]:
        t = t0 + rng.expovariate(rate)
        while t < t0 + length:
            for task in stories.story()["tasks"]:
                arrivals.append((t, task["estimate_ms"] / 1000.0))
            t += rng.expovariate(rate)
        phases.append((name, t0, t0 + length))
        t0 += length
    return Trace(arrivals, phases)


# -- the policies ---------------------------------------------------------------
@dataclass
class View:
    """What a policy may look at on its tick."""

    now: float
    queued: int
    queued_work_s: float
    busy: int
    idle: int
    starting: int
    arrival_rate: float
    completion_rate: float
    mean_task_s: float

    @property
    def workers(self) -> int:
        return self.busy + self.idle + self.starting


class OursPolicy:
    name, interval = "ours", 0.2

    def __init__(self, start_s: float):
        self.scaler = Autoscaler(MIN_WORKERS, MAX_WORKERS, quiet_window=5.0, worker_start_s=start_s)

    def target(self, v: View, current: int) -> int:
        return self.scaler.decide(Load(v.now, v.queued, v.queued_work_s, v.busy, v.idle, v.starting,
                                       v.arrival_rate, v.completion_rate, v.mean_task_s)).target


class SeedPolicy:
    name, interval = "seed rule", 4.0

    def __init__(self, start_s: float):
        pass

    def target(self, v: View, current: int) -> int:
        pending = v.queued + v.busy
        ratio = current / pending if pending else math.inf
        if ratio < 0.33:
            current += 1
        elif ratio > 0.77:
            current -= 1
        return min(max(current, MIN_WORKERS), MAX_WORKERS)


class CeleryPolicy:
    name, interval = "celery rule", 1.0
    keepalive = 30.0

    def __init__(self, start_s: float):
        self.last_scale_up: float | None = None

    def target(self, v: View, current: int) -> int:
        reserved = v.queued + v.busy
        up = min(reserved, MAX_WORKERS)
        if up > current:
            self.last_scale_up = v.now
            return up
        down = max(reserved, MIN_WORKERS)
        if down < current and self.last_scale_up is not None \
                and v.now - self.last_scale_up > self.keepalive:
            return down
        return current


# -- the simulation -------------------------------------------------------------
@dataclass
class Result:
    policy: str
    time_to_capacity: float  # seconds after the burst began; inf if never
    queue_wait_s: float  # sum over tasks of (start - arrival)
    worker_s: float  # sum over workers of (retired - spawned)
    steady_resizes: int
    tasks: int
    sizes: list[tuple[float, int]] = field(default_factory=list)  # (time, target) on each change


def simulate(trace: Trace, policy, start_s: float) -> Result:
    # Event kinds, in the order they are handled at equal times.
    ARRIVE, DONE, READY, TICK = 0, 1, 2, 3
    events: list[tuple[float, int, int, object]] = []
    seq = 0

    def push(t: float, kind: int, data: object = None) -> None:
        nonlocal seq
        heapq.heappush(events, (t, kind, seq, data))
        seq += 1

    for t, dur in trace.arrivals:
        push(t, ARRIVE, dur)
    push(0.0, TICK)

    queue: deque[tuple[float, float]] = deque()  # (arrival, duration)
    queued_work = 0.0
    idle: list[int] = []  # worker ids, ready and free
    starting: set[int] = set()
    busy: set[int] = set()
    spawned_at: dict[int, float] = {}
    next_id = 0
    target = MIN_WORKERS
    worker_s = 0.0
    wait_s = 0.0
    recent_arrivals: deque[tuple[float, float]] = deque()
    recent_done: deque[tuple[float, float]] = deque()  # (time, duration)
    remaining = len(trace.arrivals)
    sizes = [(0.0, target)]
    burst_start, burst_end = trace.phase("burst")
    burst_tasks = [d for t, d in trace.arrivals if burst_start <= t < burst_end]
    needed = min(MAX_WORKERS, math.ceil(sum(burst_tasks) / (burst_end - burst_start)))
    reached_at = math.inf

    def spawn(now: float) -> None:
        nonlocal next_id
        wid = next_id
        next_id += 1
        spawned_at[wid] = now
        starting.add(wid)
        push(now + start_s, READY, wid)

    def retire(wid: int, now: float) -> None:
        nonlocal worker_s
        worker_s += now - spawned_at.pop(wid)

    def workers() -> int:
        return len(idle) + len(starting) + len(busy)

    def dispatch(now: float) -> None:
        nonlocal queued_work, wait_s
        while idle and queue:
            arrived, dur = queue.popleft()
            queued_work -= dur
            wait_s += now - arrived
            wid = idle.pop()
            busy.add(wid)
            push(now + dur, DONE, (wid, dur))

    def resize(now: float) -> None:
        while workers() < target:
            spawn(now)
        while workers() > target and idle:
            retire(idle.pop(0), now)
        while workers() > target and starting:
            wid = max(starting)
            starting.discard(wid)
            retire(wid, now)

    for _ in range(MIN_WORKERS):
        spawn(0.0)

    now = 0.0
    while events:
        now, kind, _, data = heapq.heappop(events)
        if kind == ARRIVE:
            queue.append((now, data))
            queued_work += data
            recent_arrivals.append((now, data))
        elif kind == DONE:
            wid, dur = data
            busy.discard(wid)
            remaining -= 1
            recent_done.append((now, dur))
            if workers() > target:
                retire(wid, now)  # surplus: retired once its task is done
            else:
                idle.append(wid)
        elif kind == READY:
            if data in starting:  # not cancelled while starting
                starting.discard(data)
                idle.append(data)
        elif kind == TICK:
            while recent_arrivals and recent_arrivals[0][0] < now - RATE_WINDOW_S:
                recent_arrivals.popleft()
            while recent_done and recent_done[0][0] < now - RATE_WINDOW_S:
                recent_done.popleft()
            span = min(RATE_WINDOW_S, max(now, 1e-9))
            # As the server does: the mean duration of the tasks completed lately.
            mean_task = (sum(d for _, d in recent_done) / len(recent_done)) if recent_done else 0.0
            view = View(now, len(queue), max(queued_work, 0.0), len(busy), len(idle), len(starting),
                        len(recent_arrivals) / span, len(recent_done) / span, mean_task)
            new = policy.target(view, target)
            if new != target:
                target = new
                sizes.append((now, target))
                resize(now)
            if remaining or now < trace.end:
                push(now + policy.interval, TICK)
        dispatch(now)
        if reached_at == math.inf and now >= burst_start and len(idle) + len(busy) >= needed:
            reached_at = now
    for wid in list(spawned_at):
        retire(wid, now)

    steady_start, steady_end = trace.phase("steady")
    steady_resizes = sum(1 for t, _ in sizes if steady_start <= t < steady_end)
    return Result(policy.name, reached_at - burst_start, wait_s, worker_s, steady_resizes,
                  len(trace.arrivals), sizes)


# -- the report -------------------------------------------------------------------
def run(curve: str, seeds: int, start_s: float) -> list[dict]:
    rows = []
    for cls in (OursPolicy, SeedPolicy, CeleryPolicy):
        results = [simulate(make_trace(seed, curve), cls(start_s), start_s) for seed in range(1, seeds + 1)]
        rows.append({
            "policy": cls.name,
            "capacity_s": statistics.mean(r.time_to_capacity for r in results),
            "wait_s": statistics.mean(r.queue_wait_s for r in results),
            "worker_s": statistics.mean(r.worker_s for r in results),
            "resizes": statistics.mean(r.steady_resizes for r in results),
            "mean_wait_s": statistics.mean(r.queue_wait_s / r.tasks for r in results),
            "work_s": statistics.mean(sum(d for _, d in make_trace(seed, curve).arrivals)
                                      for seed in range(1, seeds + 1)),
        })
    return rows


def table(rows: list[dict]) -> str:
    def secs(x: float) -> str:
        return "never" if math.isinf(x) else f"{x:.2f} s"
    lines = [
        "| policy | time to needed capacity after the burst | total queue wait (task-s) "
        "| mean wait per task | worker-seconds (work: {work:.0f}) | worker-s + task-s waited "
        "| resizes in the steady phase |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines[0] = lines[0].format(work=rows[0]["work_s"])
    for r in rows:
        lines.append(f"| {r['policy']} | {secs(r['capacity_s'])} | {r['wait_s']:.1f} "
                     f"| {r['mean_wait_s']:.2f} s | {r['worker_s']:.0f} | {r['worker_s'] + r['wait_s']:.0f} "
                     f"| {r['resizes']:.1f} |")
    return "\n".join(lines)


def verdict(rows: list[dict]) -> tuple[bool, str]:
    ours, seed, celery = rows
    checks = {
        "beats the seed rule on queue wait": ours["wait_s"] < seed["wait_s"],
        "beats the seed rule on worker-seconds": ours["worker_s"] < seed["worker_s"],
        "queue wait within 5% of Celery's": ours["wait_s"] <= celery["wait_s"] * 1.05,
        "fewer worker-seconds than Celery": ours["worker_s"] < celery["worker_s"],
        "fewer steady-phase resizes than Celery": ours["resizes"] < celery["resizes"],
    }
    failed = [k for k, ok in checks.items() if not ok]
    if failed:
        line = f"FAIL on {len(failed)} of {len(checks)}: ours does not meet: " + "; ".join(failed)
        if "beats the seed rule on worker-seconds" in failed:
            line += (f" (the seed rule saves worker-seconds by keeping a queue: its tasks wait "
                     f"{seed['mean_wait_s']:.2f} s on average, ours {ours['mean_wait_s']:.2f} s)")
        return False, line
    return True, (f"PASS: ours waits {ours['wait_s'] / seed['wait_s']:.0%} of the seed rule's queue time "
                  f"for {ours['worker_s'] / seed['worker_s']:.0%} of its worker-seconds, and "
                  f"{ours['wait_s'] / celery['wait_s']:.0%} of Celery's queue time for "
                  f"{ours['worker_s'] / celery['worker_s']:.0%} of its worker-seconds, "
                  f"with {ours['resizes']:.1f} steady-phase resizes against {celery['resizes']:.1f}")


def describe(curve: str) -> str:
    return ", ".join(f"{n} {length:g} s at {rate:g} stories/s" for n, length, rate in CURVES[curve])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=20, help="load curves to replay (results are means)")
    parser.add_argument("--starts", type=int, default=20, help="worker starts to measure")
    parser.add_argument("--curve", choices=[*CURVES, "all"], default="all")
    args = parser.parse_args(argv)

    starts = sorted(measure_worker_start(args.starts))
    start_s = statistics.median(starts)
    print(f"worker start-up (forkserver, preloaded, until the first message over a pipe): "
          f"median {start_s * 1000:.1f} ms of {len(starts)} starts "
          f"(fastest {starts[0] * 1000:.1f} ms, slowest {starts[-1] * 1000:.1f} ms); the replay uses the median")
    print(f"stories of 1-5 tasks of 0-1 s each; pool {MIN_WORKERS}..{MAX_WORKERS}; "
          f"means over {args.seeds} random replays of each curve")
    ok_all = True
    for curve in (CURVES if args.curve == "all" else [args.curve]):
        rows = run(curve, args.seeds, start_s)
        ok, line = verdict(rows)
        ok_all &= ok
        print(f"\n{curve} curve: {describe(curve)}\n")
        print(table(rows))
        print(f"\n{line}")
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
