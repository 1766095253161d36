"""The server's scheduling core (server/state.py) run as a discrete-event simulation, on a fake clock.

    .venv/bin/python tools/flowsim.py [--scenario bottleneck] [--limits 0,4,6,8]
                                      [--stage-wip NAME=N,...] [--seconds 600] [--seed 7]
                                      [--time-scale 1] [--rate-factor 1.0]

What bench/flow.py measures on a real server in minutes, in seconds of CPU: the
scenario's stories (common/loadgen.py) arrive at the moments its Pacer gives
them (the same seed, the same stories, the same arrivals as the bench); each
stage has its pool at its maximum size (fixed, as the bench sets min = max);
a lease works exactly its scaled estimates; blocks end on time (with --time-scale
the arrivals come that much faster too, as they must on a real server, and the
times are the clock's: divide by the scale to compare). Everything
between is the real work state: stage order, WIP limits, blocks, leases of tiny
tasks. So it shows what the rules do to cycle time and throughput, not what a
real server adds to them (its latency, a worker's start-up, the prefetch).

Per limit it prints throughput (stories completed / time from the first arrival
to the last completion), cycle time p50/p85 (nearest rank, all stories), lead
time p85, mean stories in progress, flow efficiency, and each stage's busy share.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import statistics
import sys
from dataclasses import dataclass, field

from storypulse.loadgen import Pacer
from storypulse.scenario import Scenario, load as load_scenario
from storypulse.server.flow import nearest_rank
from storypulse.server.state import WorkState
from storypulse.workflow import parse_stage_wip

LEASE_MAX_TASKS, LEASE_MAX_S = 256, 0.005  # the server's defaults (server/config.py)


@dataclass
class Result:
    limit: int
    stage_wip: dict[str, int]
    stories: int = 0
    done: int = 0
    span_s: float = 0.0
    cycle: list[float] = field(default_factory=list)
    lead: list[float] = field(default_factory=list)
    work_s: float = 0.0
    wip_area: float = 0.0  # stories in progress integrated over time, while stories arrive
    arrival_s: float = 0.0
    busy_s: dict[str, float] = field(default_factory=dict)
    workers: dict[str, int] = field(default_factory=dict)

    @property
    def throughput(self) -> float:
        return self.done / self.span_s if self.span_s else 0.0

    def p(self, values: list[float], q: float) -> float | None:
        return nearest_rank(sorted(values), q)

    @property
    def flow_efficiency(self) -> float:
        return self.work_s / sum(self.cycle) if self.cycle else 0.0


def simulate(scenario: Scenario, *, wip_limit: int = 0, stage_wip: dict[str, int] | None = None,
             seconds: float = 600.0, seed: int = 7, time_scale: float = 1.0,
             rate_factor: float = 1.0, drain_s: float = 100_000.0) -> Result:
    names = scenario.workflow.names
    state = WorkState(stages=names)
    state.set_wip_limit(wip_limit)
    limits = dict(stage_wip or {})
    for i, name in enumerate(names):
        state.set_stage_wip_limit(i, limits.get(name, 0))
    index = {name: i for i, name in enumerate(names)}
    workers = [stage.max_workers for stage in scenario.workflow.stages]
    idle = list(workers)
    result = Result(wip_limit, limits, busy_s={n: 0.0 for n in names},
                    workers=dict(zip(names, workers)))
    generator = scenario.generator(seed)
    # A time scale runs every estimate (and block) that much faster: the arrivals too, so
    # that the load is the same share of the pools' capacity (as bench/flow.py must do).
    pacer = Pacer(scenario.rate * rate_factor / time_scale, 0.0, scenario.arrivals, seed=seed)
    events: list[tuple[float, int, str, object]] = []
    order = itertools.count()
    next_story = next_task = 1
    first_arrival = last_done = None
    now = 0.0
    heapq.heappush(events, (pacer.next_due, next(order), "arrive", None))

    def dispatch(t: float) -> None:
        state.release_blocks(t)
        for i in range(len(names)):
            while idle[i] and state.dispatchable_in(i):
                lease = state.take_lease(time_scale, LEASE_MAX_TASKS, LEASE_MAX_S, t, i)
                if not lease:
                    break
                run = sum(estimate for _, estimate in lease) * time_scale / 1000.0
                idle[i] -= 1
                result.busy_s[names[i]] += run
                heapq.heappush(events, (t + run, next(order), "done", (i, lease, state.leased)))
        state.started.clear(), state.entered.clear(), state.blocks_started.clear()
        unblock = state.next_unblock()
        if unblock is not None:
            heapq.heappush(events, (unblock, next(order), "unblock", None))

    while events:
        t, _, kind, payload = heapq.heappop(events)
        if t > seconds + drain_s:
            break
        if t < seconds:
            result.wip_area += state.in_progress * (min(t, seconds) - now)
        now = t
        if kind == "arrive":
            if t >= seconds:
                continue
            for _ in range(pacer.due(t, max_burst=10_000)):
                body = generator.story()
                tasks = body["tasks"]
                stages = [index[task["stage"]] if "stage" in task else 0 for task in tasks]
                blocks = [task.get("blocked_ms", 0) for task in tasks]
                state.add_story(next_story, next_task, [task["estimate_ms"] for task in tasks], t,
                                stages, blocks)
                next_story += 1
                next_task += len(tasks)
                first_arrival = t if first_arrival is None else first_arrival
            heapq.heappush(events, (pacer.next_due, next(order), "arrive", None))
        elif kind == "done":
            stage, lease, leased = payload
            idle[stage] += 1
            state.lease_ended(leased, t)
            for task_id, _ in lease:
                task, story = state.complete(task_id)
                if story is not None:
                    result.cycle.append(t - story.started_at)
                    result.lead.append(t - story.created_at)
                    result.work_s += story.work_s
                    last_done = t
        dispatch(t)
    result.stories = next_story - 1
    result.done = len(result.cycle)
    result.arrival_s = min(now, seconds)
    result.span_s = (last_done or 0.0) - (first_arrival or 0.0)
    return result


def table(rows: list[Result], scenario: Scenario) -> str:
    names = scenario.workflow.names
    head = ["WIP limit", "stories", "throughput", "cycle p50", "cycle p85", "lead p85",
            "in progress", "flow eff.", *[f"{n} busy" for n in names]]

    def s(v: float | None) -> str:
        return "-" if v is None else f"{v:,.1f} s"

    body = []
    for r in rows:
        limit = ", ".join(filter(None, [f"system {r.limit}" if r.limit else "",
                                        *(f"{k} {v}" for k, v in r.stage_wip.items() if v)])) or "none"
        body.append([limit, f"{r.done:,}" + ("" if r.done == r.stories else f" of {r.stories:,}"),
                     f"{r.throughput:.3f}/s", s(r.p(r.cycle, 50)), s(r.p(r.cycle, 85)), s(r.p(r.lead, 85)),
                     f"{r.wip_area / r.arrival_s:.1f}" if r.arrival_s else "-", f"{r.flow_efficiency:.0%}",
                     *(f"{r.busy_s[n] / (r.span_s * r.workers[n]):.0%}" if r.span_s else "-" for n in names)])
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |",
             "| " + " | ".join("-" * (w - 1) + ":" if i else "-" * w for i, w in enumerate(widths)) + " |"]
    lines += ["| " + " | ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
              + " |" for row in body]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="bottleneck", help="a scenario's name or file (default bottleneck)")
    parser.add_argument("--limits", default="0,4,6,8,12", help="system WIP limits to compare; 0: none")
    parser.add_argument("--stage-wip", action="append", default=[], metavar="NAME=N,...",
                        help="per-stage limits, as the server's --stage-wip: one row each (repeatable)")
    parser.add_argument("--seconds", type=float, default=600.0,
                        help="seconds of arrivals on the clock (default 600)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--seeds", type=int, default=1, help="runs per row, seeds seed.., medians shown")
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--rate-factor", type=float, default=1.0, help="arrivals at this times the scenario's rate")
    args = parser.parse_args(argv)
    scenario = load_scenario(args.scenario)
    settings = [(int(x), {}) for x in args.limits.split(",")]
    settings += [(0, parse_stage_wip(text, scenario.workflow)) for text in args.stage_wip]
    print(f"{scenario.name}: {scenario.workflow.describe()}, {scenario.rate * args.rate_factor:g} stories/s "
          f"({scenario.arrivals}), {args.seconds:g} s of arrivals, seed {args.seed}"
          + (f" (+{args.seeds - 1} more)" if args.seeds > 1 else ""))
    rows = []
    for limit, stage_wip in settings:
        runs = [simulate(scenario, wip_limit=limit, stage_wip=stage_wip, seconds=args.seconds,
                         seed=args.seed + k, time_scale=args.time_scale, rate_factor=args.rate_factor)
                for k in range(args.seeds)]
        runs.sort(key=lambda r: r.p(r.cycle, 85) or 0.0)
        rows.append(runs[len(runs) // 2])
        if args.seeds > 1:
            p85 = [r.p(r.cycle, 85) or 0.0 for r in runs]
            tput = [r.throughput for r in runs]
            print(f"  {limit} {stage_wip}: cycle p85 {min(p85):.1f}-{max(p85):.1f} s, throughput "
                  f"{min(tput):.3f}-{max(tput):.3f}/s (median {statistics.median(tput):.3f})", file=sys.stderr)
    print(table(rows, scenario))
    return 0


if __name__ == "__main__":
    sys.exit(main())
