"""Replay one load curve through three pool-scaling policies and compare them.

    .venv/bin/python bench/autoscale_replay.py [--curve main|light|all] [--seeds N] [--starts N]

The load curve is quiet -> burst -> steady -> quiet: stories arrive at random
(Poisson) at a different rate in each phase, each with 1-5 tasks whose
estimates are drawn as `storypulse load` draws them (storypulse.loadgen). A small
discrete-event simulation plays the pool: a FIFO queue, workers that take one
task at a time and run it for its estimate, and worker processes that need a
start-up time before they can take work -- measured here, on this machine,
the way the server starts its workers (a forkserver with preloaded modules).

The policies:
- ours: storypulse.server.autoscale.Autoscaler, asked every 0.2 s;
- seed: every 4 s, +1 worker when workers/pending < 0.33, -1 when > 0.77
  (pending = tasks not yet done: queued + running);
- celery: celery/worker/autoscale.py's rule, asked every 1 s: grow at once to
  the reserved tasks (queued + running) up to max; shrink to
  max(reserved, min) only once 30 s have passed since the last grow.
In every policy a worker is retired only when idle; a busy one finishes first.

Each replay runs until the last task is done and every policy's pool is back
at min_workers; a policy that got there sooner is charged min_workers until
the last one does, so all are counted over the same span. Besides the totals
it prints where the worker-seconds go (spent, idle, and the task-seconds
waited, per phase and for the tail after the curve), and, when the seed rule
is the cheaper, what that costs in waiting and how many worker-seconds even
the best fixed steady-phase pool with Celery's wait would spend.
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

from storypulse.loadgen import StoryGenerator  # noqa: E402
from storypulse.server.autoscale import Autoscaler, Load  # noqa: E402

MIN_WORKERS, MAX_WORKERS = 1, 16
# (name, seconds, stories per second); a story has 3 tasks of 0.5 s on average.
# The burst is `storypulse load` with its defaults (10 stories/s for 10 s).
CURVES = {
    "main": (("quiet", 15.0, 0.5), ("burst", 10.0, 10.0), ("steady", 60.0, 4.0), ("quiet", 40.0, 0.5)),
    # A light, clumpy steady phase: ~4 workers' worth of work arriving in
    # stories of 1-5 tasks, so the busy count swings between 2 and 14.
    "light": (("quiet", 15.0, 0.3), ("burst", 10.0, 8.0), ("steady", 60.0, 2.5), ("quiet", 40.0, 0.3)),
}
MAX_TAIL_S = 600.0  # a policy that has not shrunk back to min by then is cut off
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
    ctx.set_forkserver_preload(["zmq", "msgspec", "storypulse.protocol"])
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


def phase_labels(trace: Trace) -> list[str]:
    """Phase names made unique: the second "quiet" is the "final quiet"."""
    labels: list[str] = []
    for name, _, _ in trace.phases:
        labels.append(f"final {name}" if name in labels else name)
    return labels


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
    end: float  # when the last task was done and the pool was back at min_workers
    phase_worker_s: dict[str, float] = field(default_factory=dict)  # worker-seconds per phase
    phase_busy_s: dict[str, float] = field(default_factory=dict)  # of which running tasks
    phase_wait_s: dict[str, float] = field(default_factory=dict)  # task-s waited, by arrival phase
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
            phase_wait_s[label_of(arrived)] += now - arrived
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

    # Worker-seconds and busy seconds per phase; "tail" is after the curve ends.
    bounds = [(label, start, end) for label, (_, start, end) in zip(phase_labels(trace), trace.phases)]
    bounds.append(("tail", trace.end, math.inf))
    phase_worker_s = {label: 0.0 for label, _, _ in bounds}
    phase_busy_s = dict(phase_worker_s)
    phase_wait_s = dict(phase_worker_s)  # task-seconds waited, by the phase the task arrived in

    def label_of(t: float) -> str:
        return next(label for label, start, end in bounds if start <= t < end)

    def account(t0: float, t1: float) -> None:
        for label, start, end in bounds:
            span = min(t1, end) - max(t0, start)
            if span > 0:
                phase_worker_s[label] += span * workers()
                phase_busy_s[label] += span * len(busy)

    now = last = 0.0
    while events:
        now, kind, _, data = heapq.heappop(events)
        account(last, now)
        last = now
        if kind == ARRIVE:
            queue.append((now, data))
            queued_work += data
            recent_arrivals.append((now, data))
        elif kind == DONE:
            wid, dur = data
            busy.discard(wid)
            remaining -= 1
            recent_done.append((now, dur))
            if workers() + 1 > target:  # workers() no longer counts this one
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
            # Model the whole tail: tick until the work is done and the pool is back at min.
            back_at_min = target == MIN_WORKERS and workers() == MIN_WORKERS
            if (remaining or now < trace.end or not back_at_min) and now < trace.end + MAX_TAIL_S:
                push(now + policy.interval, TICK)
        dispatch(now)
        if reached_at == math.inf and now >= burst_start and len(idle) + len(busy) >= needed:
            reached_at = now
    for wid in list(spawned_at):
        retire(wid, now)

    steady_start, steady_end = trace.phase("steady")
    steady_resizes = sum(1 for t, _ in sizes if steady_start <= t < steady_end)
    return Result(policy.name, reached_at - burst_start, wait_s, worker_s, steady_resizes,
                  len(trace.arrivals), now, phase_worker_s, phase_busy_s, phase_wait_s, sizes)


# -- the report -------------------------------------------------------------------
def replay(curve: str, seeds: int, start_s: float) -> dict[str, list[Result]]:
    """Every policy over the same traces. Each replay of a trace runs until every
    policy is back at min_workers; one that got there sooner is charged
    min_workers for the rest, so that all are counted over the same span."""
    out: dict[str, list[Result]] = {cls.name: [] for cls in (OursPolicy, SeedPolicy, CeleryPolicy)}
    for seed in range(1, seeds + 1):
        trace = make_trace(seed, curve)
        results = [simulate(trace, cls(start_s), start_s) for cls in (OursPolicy, SeedPolicy, CeleryPolicy)]
        horizon = max(r.end for r in results)
        for r in results:
            pad = MIN_WORKERS * (horizon - r.end)
            r.worker_s += pad
            r.phase_worker_s["tail"] += pad
            r.end = horizon
            out[r.policy].append(r)
    return out


def summarise(results: list[Result], trace_work: float) -> dict:
    return {
        "policy": results[0].policy,
        "capacity_s": statistics.mean(r.time_to_capacity for r in results),
        "wait_s": statistics.mean(r.queue_wait_s for r in results),
        "worker_s": statistics.mean(r.worker_s for r in results),
        "resizes": statistics.mean(r.steady_resizes for r in results),
        "mean_wait_s": statistics.mean(r.queue_wait_s / r.tasks for r in results),
        "span_s": statistics.mean(r.end for r in results),
        "work_s": trace_work,
        "phase_worker_s": {k: statistics.mean(r.phase_worker_s[k] for r in results)
                           for k in results[0].phase_worker_s},
        "phase_busy_s": {k: statistics.mean(r.phase_busy_s[k] for r in results)
                         for k in results[0].phase_busy_s},
        "phase_wait_s": {k: statistics.mean(r.phase_wait_s[k] for r in results)
                         for k in results[0].phase_wait_s},
    }


def run(curve: str, seeds: int, start_s: float) -> list[dict]:
    work = statistics.mean(sum(d for _, d in make_trace(seed, curve).arrivals) for seed in range(1, seeds + 1))
    return [summarise(results, work) for results in replay(curve, seeds, start_s).values()]


def phase_table(rows: list[dict]) -> str:
    """Per phase: worker-seconds spent, of them idle, and task-seconds waited."""
    labels = list(rows[0]["phase_worker_s"])
    lines = ["| policy | " + " | ".join(labels) + " |", "| --- |" + " ---: |" * len(labels)]
    for r in rows:
        cells = [f"{r['phase_worker_s'][k]:.0f} / {r['phase_worker_s'][k] - r['phase_busy_s'][k]:.0f} / "
                 f"{r['phase_wait_s'][k]:.0f}" for k in labels]
        lines.append(f"| {r['policy']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
                     f"| {r['resizes']:.2f} |")
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
    if not failed:
        return True, (f"PASS: ours waits {ours['wait_s'] / seed['wait_s']:.0%} of the seed rule's queue time "
                      f"for {ours['worker_s'] / seed['worker_s']:.0%} of its worker-seconds, and "
                      f"{ours['wait_s'] / celery['wait_s']:.0%} of Celery's queue time for "
                      f"{ours['worker_s'] / celery['worker_s']:.0%} of its worker-seconds, "
                      f"with {ours['resizes']:.1f} steady-phase resizes against {celery['resizes']:.1f}")
    line = f"FAIL on {len(failed)} of {len(checks)}: ours does not meet: " + "; ".join(failed)
    if not checks["beats the seed rule on worker-seconds"]:
        saved = ours["worker_s"] - seed["worker_s"]
        waited = seed["wait_s"] - ours["wait_s"]
        line += (f".\nThe seed rule spends {saved:.0f} worker-seconds less than ours and makes tasks wait "
                 f"{waited:.0f} task-seconds more: {waited / saved:.1f} task-seconds waited per worker-second "
                 f"saved (a task waits {seed['mean_wait_s']:.2f} s on average, against {ours['mean_wait_s']:.2f} s)")
    return False, line


# -- what the steady phase alone costs at a given wait ------------------------------
class SteadyFixedPolicy:
    """max_workers until the steady phase, then a fixed size: no policy at all,
    just the price of a given queue wait in the steady phase."""

    interval = 0.2

    def __init__(self, size: int, steady_start: float):
        self.size, self.steady_start = size, steady_start
        self.name = f"fixed {size}"

    def target(self, v: View, current: int) -> int:
        return MAX_WORKERS if v.now < self.steady_start else self.size


def cheapest_steady_pool(curve: str, seeds: int, start_s: float, max_wait_s: float):
    """The smallest fixed steady-phase pool whose arrivals there wait at most
    max_wait_s task-seconds: (size, task-s waited, steady worker-s), or None."""
    traces = [make_trace(seed, curve) for seed in range(1, seeds + 1)]
    busy = statistics.mean(sum(d for a, d in t.arrivals if s <= a < e) / (e - s)
                           for t in traces for s, e in [t.phase("steady")])
    for size in range(max(MIN_WORKERS, math.ceil(busy)), MAX_WORKERS + 1):  # fewer cannot keep up
        results = [simulate(t, SteadyFixedPolicy(size, t.phase("steady")[0]), start_s) for t in traces]
        wait = statistics.mean(r.phase_wait_s["steady"] for r in results)
        if wait <= max_wait_s:
            return size, wait, statistics.mean(r.phase_worker_s["steady"] for r in results)
    return None


def frontier_note(rows: list[dict], curve: str, seeds: int, start_s: float) -> str:
    ours, seed, celery = rows
    limit = celery["phase_wait_s"]["steady"] * 1.05
    found = cheapest_steady_pool(curve, seeds, start_s, limit)
    if found is None:
        return f"no fixed pool up to {MAX_WORKERS} keeps the steady phase's wait within 5% of Celery's"
    size, wait, cost = found
    return (f"For scale: the smallest fixed pool that keeps the steady phase's wait within 5% of Celery's "
            f"({limit:.0f} task-s) has {size} workers and spends {cost:.0f} worker-seconds in that phase "
            f"alone; with the burst as ours serves it ({ours['phase_worker_s']['burst']:.0f}) that is "
            f"{cost + ours['phase_worker_s']['burst']:.0f} worker-seconds before the final quiet begins, "
            f"against {seed['worker_s']:.0f} for the seed rule's whole run.")


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
        print(f"\nper phase: worker-seconds spent / of them idle / task-seconds waited (by the phase "
              f"the task arrived in); the tail runs until every pool is back at min, "
              f"{rows[0]['span_s'] - sum(l for _, l, _ in CURVES[curve]):.0f} s on average:\n")
        print(phase_table(rows))
        print(f"\n{line}")
        if rows[1]["worker_s"] <= rows[0]["worker_s"]:  # the seed rule is cheaper: put that in scale
            print(frontier_note(rows, curve, args.seeds, start_s))
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
