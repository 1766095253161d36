"""`storypulse load`: the shared load loop (storypulse.loadrun) in a terminal.

The loop paces, pipelines and resends refused stories; this module runs it for
a duration, prints a progress line on stderr, stops on Ctrl-C (twice: without
waiting for the replies still owed) and sums the run up, for people or as JSON.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from typing import Any, TextIO

from storypulse import format as fmt
from storypulse import protocol
from storypulse.client import Client
from storypulse.loadgen import ARRIVALS, ESTIMATES, StoryGenerator, parse_range
from storypulse.loadrun import LoadRun, Tally
from storypulse.scenario import ScenarioError, builtin_names
from storypulse.scenario import load as load_scenario

from .options import client_parser, no_reply, positive_float, print_json, talk

NO_REPLY = "the server stopped answering"


def load(argv: list[str]) -> int:
    """The simulator: random stories at a rate, with a progress line."""
    parser = client_parser("load", "The simulator: random stories at a rate, steady or Poisson (pipelined), "
                                   "a progress line on stderr, a summary at the end.")
    parser.add_argument("--scenario", metavar="NAME-or-FILE",
                        help="a scenario's load: its rate, arrivals and per-stage tasks, estimates and "
                             f"blocks (one that comes with storypulse: {', '.join(builtin_names())}; or a "
                             "TOML file, see docs/flow.md); --rate and --arrivals still override it")
    parser.add_argument("--rate", type=positive_float,
                        help="stories per second (default 10, or the scenario's)")
    parser.add_argument("--duration", type=positive_float, default=10.0, metavar="S",
                        help="seconds to run (default 10; Ctrl-C stops early)")
    parser.add_argument("--tasks", metavar="A-B", help="tasks per story (default 1-5)")
    parser.add_argument("--estimate-ms", metavar="A-B",
                        help="estimate of each task in ms (default 0-1000)")
    parser.add_argument("--arrivals", choices=ARRIVALS,
                        help="steady: one story every 1/rate s; poisson: independent arrivals at that "
                             "mean rate, with the bursts and lulls of real demand (default steady, or "
                             "the scenario's)")
    parser.add_argument("--estimates", choices=ESTIMATES,
                        help="uniform within --estimate-ms, or lognormal: the median at the geometric "
                             "middle of the range, which holds the middle 90 %%, drawn again outside it "
                             "(most tasks short, a few long; default uniform)")
    parser.add_argument("--seed", type=int, help="seed, for a repeatable run")
    parser.add_argument("--max-in-flight", type=int, default=100, metavar="N",
                        help="requests awaiting a reply at most (default 100)")
    args = parser.parse_args(argv)
    try:
        if args.max_in_flight < 1:
            raise ValueError("--max-in-flight: must be at least 1")
        if args.scenario is not None:
            scenario = load_scenario(args.scenario)
            for option in ("tasks", "estimate_ms", "estimates"):
                if getattr(args, option) is not None:
                    raise ValueError(f"--{option.replace('_', '-')}: the scenario sets each stage's "
                                     "tasks; leave it out, or leave out --scenario")
            generator = scenario.generator(args.seed)
            rate, arrivals, spread = scenario.rate, scenario.arrivals, "per stage"
        else:
            scenario = None
            tasks = parse_range(args.tasks or "1-5", name="--tasks", low=1, high=protocol.TASKS_MAX)
            estimates = parse_range(args.estimate_ms or "0-1000", name="--estimate-ms", low=0,
                                    high=protocol.ESTIMATE_MS_MAX)
            spread = args.estimates or "uniform"
            generator = StoryGenerator(tasks=tasks, estimate_ms=estimates, seed=args.seed, estimates=spread)
            rate, arrivals = 10.0, "steady"
    except (ValueError, ScenarioError) as exc:
        parser.error(str(exc))
    rate = args.rate if args.rate is not None else rate
    arrivals = args.arrivals or arrivals

    def body(client: Client) -> int:
        client.ping()  # fail fast and clearly when nobody is there
        tally, sending, ended = run(client, generator, rate=rate, duration=args.duration,
                                    max_in_flight=args.max_in_flight, arrivals=arrivals)
        result = summary(tally, sending, ended, rate, args.max_in_flight, arrivals, spread)
        if scenario is not None:
            result["scenario"] = scenario.name
        if args.json:
            print_json(result)
        else:
            print(summary_text(result))
        if ended == NO_REPLY:
            return no_reply("load", args.server)
        return 1 if tally.errors else 0

    return talk("load", args, body)


def run(client: Client, generator: StoryGenerator, *, rate: float, duration: float,
        max_in_flight: int, arrivals: str = "steady",
        progress: TextIO = sys.stderr) -> tuple[Tally, float, str]:
    """Run until `duration` passes or SIGINT; returns (tally, seconds sending, how it ended).

    Ends early with NO_REPLY when requests are in flight and no reply came for the client's timeout.
    """
    clock = time.monotonic
    stop = _StopFlag()
    start = clock()
    end = start + duration
    loop = LoadRun(client, generator, rate=rate, max_in_flight=max_in_flight, start=start,
                   arrivals=arrivals)
    tty = progress.isatty()
    progress_every = 0.5 if tty else 1.0
    next_progress = start + progress_every
    ended = "duration reached"
    with stop:
        while True:
            now = clock()
            if stop.set:
                ended = "interrupted"
                break
            if now >= end:
                break
            if loop.silent_for(now) > client.timeout:
                ended = NO_REPLY
                break
            loop.send_due(now)
            if now >= next_progress:
                _progress(progress, loop, now - start, duration, rate, tty)
                next_progress = now + progress_every
            wake = min(loop.next_wakeup(now), next_progress, end)
            if loop.pending:
                loop.receive(wake)
            else:
                time.sleep(max(0.0, min(wake - clock(), 0.2)))
        sending = clock() - start
        # Collect the replies still owed (a second Ctrl-C gives up on them).
        drain_until = clock() + (0 if ended == NO_REPLY else client.timeout)
        while loop.pending and clock() < drain_until and not stop.twice:
            loop.receive(min(drain_until, clock() + 0.2))
    if tty:
        progress.write("\r\x1b[K")
    _progress(progress, loop, sending, duration, rate, False)
    return loop.finish(), sending, ended


def _progress(out: TextIO, loop: LoadRun, elapsed: float, duration: float, rate: float, tty: bool) -> None:
    t = loop.tally
    actual = t.acked / elapsed if elapsed > 0 else 0.0
    line = (f"load {elapsed:5.1f}/{duration:g} s  sent {t.sent + t.resent}  acked {t.acked}"
            f"  busy {t.busy}  errors {t.errors}  in flight {len(loop.pending)}"
            f"  rate {actual:.1f}/s of {rate:g}/s")
    out.write(("\r" + line + "\x1b[K") if tty else line + "\n")
    out.flush()


def summary(tally: Tally, sending: float, ended: str, rate: float, max_in_flight: int,
            arrivals: str = "steady", estimates: str = "uniform") -> dict[str, Any]:
    return {
        "ended": ended,
        "seconds": round(sending, 3),
        "target_rate": rate,
        "arrivals": arrivals,
        "estimates": estimates,
        "stories_sent": tally.sent,
        "stories_created": tally.acked,
        "tasks_created": tally.tasks_acked,
        "created_per_s": round(tally.acked / sending, 2) if sending > 0 else 0.0,
        "busy_replies": tally.busy,
        "resent": tally.resent,
        "gave_up": tally.gave_up,
        "errors": tally.errors,
        "first_error": tally.first_error,
        "skipped_ticks": tally.skipped,
        "unanswered": tally.unanswered,
        "max_in_flight": max_in_flight,
        "ack_latency_ms": {
            name: (None if v is None else round(v * 1000, 2))
            for name, v in (("p50", tally.latency_percentile(50)), ("p95", tally.latency_percentile(95)),
                            ("max", max(tally.latencies) if tally.latencies else None))
        },
    }


def summary_text(s: dict[str, Any]) -> str:
    lat = s["ack_latency_ms"]

    def ms(v: float | None) -> str:
        return "-" if v is None else fmt.duration(v / 1000)

    return "\n".join([
        f"load ended ({s['ended']}) after {fmt.duration(s['seconds'])}"
        + (f", scenario {s['scenario']}" if s.get("scenario") else ""),
        f"  stories created  {s['stories_created']:>8}   {s['created_per_s']:.1f}/s (target {s['target_rate']:g}/s, {s.get('arrivals', 'steady')})",
        f"  tasks created    {s['tasks_created']:>8}",
        f"  busy replies     {s['busy_replies']:>8}   resent {s['resent']}, still waiting at the end {s['gave_up']}",
        f"  errors           {s['errors']:>8}" + (f"   first: {s['first_error']}" if s["first_error"] else ""),
        f"  skipped ticks    {s['skipped_ticks']:>8}   (at most {s['max_in_flight']} requests in flight)",
        f"  unanswered       {s['unanswered']:>8}",
        f"  ack latency      p50 {ms(lat['p50'])} · p95 {ms(lat['p95'])} · max {ms(lat['max'])}",
    ])


class _StopFlag:
    """SIGINT sets a flag (the loop acts on it); a second one also abandons the drain."""

    def __init__(self) -> None:
        self.set = False
        self.twice = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        self.twice = self.set
        self.set = True

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
