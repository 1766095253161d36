"""Forecasts measured: how often they come true, how fast they answer, what they cost the others.

    .venv/bin/python bench/forecast.py [--part calibration|speed|all] [--seconds 200]
                                       [--forecast-history 60] [--workers 2]
                                       [--utilisation 0.75] [--seed 7]

Calibration. For each load — seeded Poisson arrivals (`storypulse load --arrivals
poisson`, as shipped) and a bursty one (on/off: 4 s at 2.5x the mean rate, 6 s
of nothing) — a fresh server (SQLite, min = max = --workers) runs --seconds of
it, with the --forecast-history given (60 by default here, so that a short run
scores hundreds; 600, the server's own default, needs --seconds of 1,000 or so).
From outside, a client asks `forecast` at random moments (every 0.5-1.5 s once
the history holds only the load, 10 s after a history's worth), half "when will
N more be done" (N worth 2-40 s of the load) and
half "how many within T" (T of 2-40 s), and watches the `completed` events: a
"when" answer is a hit at a level if the N-th completion came by its time, a
"how many" answer if at least that many came within T. Only answers that matured
before the run ended are scored (so the end of the run cannot censor misses).
The server's own figures (`forecast_hit_rate_p50/_p85/_p95`, `forecast_scored`:
its backlog forecasts, recorded every 5 s) are read at the end. Last, how far the
seconds were from independent: Var(completions in 20 s) / (20 x Var(in 1 s)), and
the block length the forecasts resampled in (the server's rule, server/dependence.py,
applied to the history as the client saw it when each question was asked).

Speed. A server with a history of ~30 stories/s answers `forecast` for 1 to
1,000,000 stories and 10 s to a year at 10,000 trials (round trip, median and p99
of --repeat each). Then ping, snapshot and create_story are timed (p50/p99 of 30 x
--repeat each) before, while another client asks forecasts at a steady 5 a second,
while it asks them back to back, and after, in the same run.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path


REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tools")]

from storypulse import protocol  # noqa: E402
from storypulse.cli.load import run as run_load  # noqa: E402
from storypulse.client import Client  # noqa: E402
from storypulse.loadgen import StoryGenerator  # noqa: E402
from storypulse.server.dependence import block_length  # noqa: E402
from storypulse.server.flow import nearest_rank  # noqa: E402
from support import ServerProcess, wait_for  # noqa: E402
from test_server_flow import CompletionClock  # noqa: E402

TASKS = (1, 3)
ESTIMATE_MS = (100, 2_000)
TIME_SCALE = 0.01
LEVELS = (50, 85, 95)


def table(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |")
    print("| " + " | ".join("-" * (w - 1) + ":" if i else "-" * w for i, w in enumerate(widths)) + " |")
    for row in rows:
        print("| " + " | ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))) + " |")


def mean_story_work_s(seed: int, samples: int = 20_000) -> float:
    gen = StoryGenerator(tasks=TASKS, estimate_ms=ESTIMATE_MS, estimates="lognormal", seed=seed + 1)
    total = sum(t["estimate_ms"] for _ in range(samples) for t in gen.story()["tasks"])
    return total / samples / 1000 * TIME_SCALE


class Completions(CompletionClock):
    """The `completed` events as this client sees them, stamped with its own (wall) clock."""

    @property
    def times(self) -> list[float]:
        return [arrived for arrived, _ in list(self.seen.values())]  # in arrival order

    def count(self) -> int:
        return len(self.seen)


class Asker(threading.Thread):
    """Asks `forecast` at random moments; keeps (asked at, completions then, question, answer)."""

    def __init__(self, server: ServerProcess, seen: Completions, rate: float, seed: int):
        super().__init__(daemon=True)
        self.client = Client(server.endpoints, timeout=10)
        self.seen, self.rate = seen, rate
        self.random = random.Random(seed)
        self.asked: list[tuple[float, int, dict, protocol.ForecastResult]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        r = self.random
        while not self.stop.wait(r.uniform(0.5, 1.5)):
            if r.random() < 0.5:
                question = {"stories": max(1, round(self.rate * r.uniform(2, 40)))}
            else:
                question = {"within_s": round(r.uniform(2, 40), 2)}
            at, done = time.time(), self.seen.count()
            answer = self.client.call("forecast", **question)
            if answer.reason is None:
                self.asked.append((at, done, question, answer))
        self.client.close()


def score(asked, times: list[float], ended: float) -> dict:
    """Hits per level of the answers that matured before `ended`, from the completions' times."""
    hits = {p: 0 for p in LEVELS}
    scored = 0
    for at, done, question, answer in asked:
        if "stories" in question:
            if at + answer.p95_s > ended:
                continue  # not matured: its outcome is unknown
            index = done + question["stories"] - 1
            reached = times[index] - at if index < len(times) else float("inf")
            for p, seconds in zip(LEVELS, (answer.p50_s, answer.p85_s, answer.p95_s)):
                hits[p] += reached <= seconds
        else:
            if at + question["within_s"] > ended:
                continue
            came = sum(1 for t in times[done:] if t <= at + question["within_s"])
            for p, least in zip(LEVELS, (answer.stories_p50, answer.stories_p85, answer.stories_p95)):
                hits[p] += came >= least
        scored += 1
    return {"scored": scored, **{p: hits[p] / scored if scored else None for p in LEVELS}}


def dispersion(times: list[float], start: float, end: float, span: int = 20) -> float | None:
    """Var(completions in `span` s) / (span x Var(completions in 1 s)) over [start, end): 1 when
    seconds are independent, as the forecasts assume; above 1 they vary together (slow
    spells), below 1 they even out (a regular rhythm)."""
    seconds = int(end - start)
    if seconds < 3 * span:
        return None
    counts = [0] * seconds
    for t in times:
        if start <= t < start + seconds:
            counts[int(t - start)] += 1
    sums = [sum(counts[i:i + span]) for i in range(seconds - span + 1)]
    one = statistics.pvariance(counts)
    return statistics.pvariance(sums) / (span * one) if one else None


def bursty_load(client: Client, generator: StoryGenerator, rate: float, seconds: float, seed: int) -> int:
    """On/off arrivals with mean `rate`: 4 s of Poisson at 2.5x, then 6 s of none."""
    r = random.Random(seed)
    start = time.monotonic()
    sent = 0
    at = 0.0
    while at < seconds:
        phase = at % 10.0
        if phase >= 4.0:
            at += 10.0 - phase  # the quiet part
            continue
        at += r.expovariate(rate * 2.5)
        if at % 10.0 < phase:  # crossed into the next period's quiet part
            continue
        delay = start + at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        client.call("create_story", **generator.story())
        sent += 1
    return sent


def blocks(times: list[float], asked, history: float) -> float | None:
    """The median block length of the questions: the server's rule on the seconds before each."""
    if not asked:
        return None
    start = times[0] if times else 0.0
    counts = [0] * (int(asked[-1][0] - start) + 1)
    for t in times:
        if t < start + len(counts):
            counts[int(t - start)] += 1
    lengths = []
    for at, *_ in asked:
        end = int(at - start)
        lengths.append(block_length(counts[max(0, end - int(history)):end]))
    return statistics.median(lengths)


def calibration(load: str, args: argparse.Namespace, rate: float, folder: Path) -> dict:
    history = args.forecast_history
    server = ServerProcess(folder / f"{load}.db", workers=args.workers, time_scale=TIME_SCALE,
                           stats_interval=0.25,
                           extra=["--log-level", "warning", "--forecast-history", f"{history:g}"])
    server.start()
    seen = Completions(server)
    try:
        generator = StoryGenerator(tasks=TASKS, estimate_ms=ESTIMATE_MS, estimates="lognormal", seed=args.seed)
        client = Client(server.endpoints, timeout=10)
        asker = Asker(server, seen, rate, args.seed + 1)
        # questions start once the history holds only the load (not the idle start)
        threading.Timer(history + 10.0, asker.start).start()
        if load == "poisson":
            tally, _, ended = run_load(client, generator, rate=rate, duration=args.seconds, max_in_flight=1_000,
                                       arrivals="poisson", progress=io.StringIO())
            sent = tally.acked
        else:
            sent = bursty_load(client, generator, rate, args.seconds, args.seed)
        finished = time.time()
        asker.stop.set()
        asker.join(15)
        client.close()
        outside = score(asker.asked, list(seen.times), finished)
        horizons = [a.p50_s if "stories" in q else q["within_s"] for _, _, q, a in asker.asked]
        outside["horizon"] = statistics.median(horizons) if horizons else None
        first_asked = asker.asked[0][0] if asker.asked else finished
        spread = dispersion(list(seen.times), first_asked, finished)
        block = blocks(list(seen.times), asker.asked, history)
        stats = seen.stats[-1]
        own = {"scored": stats.forecast_scored, "horizon": None, 50: stats.forecast_hit_rate_p50,
               85: stats.forecast_hit_rate_p85, 95: stats.forecast_hit_rate_p95}
        return {"load": load, "sent": sent, "outside": outside, "own": own, "dispersion": spread,
                "block": block}
    finally:
        seen.close()
        server.stop()


def timed(call, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        call()
        out.append(time.perf_counter() - t)
    return sorted(out)


def ms(values: list[float], p: int) -> str:
    return f"{nearest_rank(values, p) * 1000:.2f}"


def speed(args: argparse.Namespace, folder: Path) -> None:
    server = ServerProcess(folder / "speed.db", workers=args.workers, time_scale=TIME_SCALE,
                           stats_interval=0.25, extra=["--log-level", "warning"])
    server.start()
    try:
        client = Client(server.endpoints, timeout=30)
        generator = StoryGenerator(tasks=TASKS, estimate_ms=ESTIMATE_MS, estimates="lognormal", seed=args.seed)
        run_load(client, generator, rate=30, duration=15, max_in_flight=1_000, arrivals="poisson",
                 progress=io.StringIO())
        wait_for(lambda: client.call("forecast", stories=1).reason is None, 30, 0.5, "a forecast")
        print(f"\nforecast round trips, 10,000 trials, median and p99 of {args.repeat} "
              "(a server with 15 s of ~30 stories/s of history):")
        rows = []
        for question in ({"stories": 1}, {"stories": 50}, {"stories": 150}, {"stories": 400}, {"stories": 10_000},
                         {"stories": 1_000_000}, {"within_s": 10.0}, {"within_s": 3600.0},
                         {"within_s": protocol.FORECAST_WITHIN_MAX_S}):
            method = client.call("forecast", **question).method
            times = timed(lambda: client.call("forecast", **question), args.repeat)
            what = f"stories={question['stories']:,}" if "stories" in question else f"within_s={question['within_s']:,g}"
            rows.append((what, method, ms(times, 50), ms(times, 99)))
        table(("question", "method", "p50 ms", "p99 ms"), rows)

        # The other ops before, while forecasts run (at a steady 5/s, then back to back), and after.
        # The forecasts come from another process, so that its client shares no GIL with the timing.
        heavy = 150  # stories: among the costliest simulated ones (see the table above)
        story_id = client.call("create_story", name="read back", tasks=[{"estimate_ms": 0}]).story_id
        ops = {
            "ping": lambda: client.ping(),
            "get_story": lambda: client.call("get_story", story_id=story_id),
            "create_story": lambda: client.call("create_story", name="timed", tasks=[{"estimate_ms": 0}]),
        }
        spawn = multiprocessing.get_context("spawn")
        phases, rates = {}, {}
        for phase, gap in (("before", None), ("5 forecasts/s", 0.2), ("back to back", 0.0), ("after", None)):
            asker = counted = None
            if gap is not None:
                counted = spawn.Value("i", 0)
                stop = spawn.Event()
                asker = spawn.Process(target=ask_forecasts, args=(server.port, heavy, gap, stop, counted))
                asker.start()
                wait_for(lambda: counted.value > 0, 30, 0.05, "the first forecast")
            started, count = time.monotonic(), counted.value if counted else 0
            phases[phase] = {name: timed(op, args.repeat * 30) for name, op in ops.items()}
            if asker is not None:
                rates[phase] = (counted.value - count) / (time.monotonic() - started)
                stop.set()
                asker.join(10)
        client.close()
        print(f"\nother ops' round trips, ms (p50 / p99 of {args.repeat * 30} each), before, while another "
              f"process asks forecasts of {heavy} stories (simulated) at a steady 5/s ({rates['5 forecasts/s']:.1f}/s),"
              f" then back to back ({rates['back to back']:.0f}/s), and after:")
        rows = [(name, *(f"{ms(phases[p][name], 50)} / {ms(phases[p][name], 99)}" for p in phases)) for name in ops]
        table(("op", *phases), rows)
    finally:
        server.stop()


def ask_forecasts(port: int, stories: int, gap: float, stop, counted) -> None:
    """In a process of its own: forecasts, one every `gap` seconds (0: back to back), until `stop`."""
    from storypulse.endpoints import Endpoints

    client = Client(Endpoints("127.0.0.1", port), timeout=30)
    while not stop.is_set():
        started = time.monotonic()
        client.call("forecast", stories=stories)
        with counted.get_lock():
            counted.value += 1
        stop.wait(max(0.0, gap - (time.monotonic() - started)))
    client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("calibration", "speed", "all"), default="all")
    parser.add_argument("--seconds", type=float, default=200.0, help="seconds of each load (default 200)")
    parser.add_argument("--forecast-history", type=float, default=60.0,
                        help="the servers' --forecast-history (default 60 here; the server's own is 600)")
    parser.add_argument("--workers", type=int, default=2, help="the pool (default 2)")
    parser.add_argument("--utilisation", type=float, default=0.75,
                        help="the share of the pool the mean arrival rate keeps busy (default 0.75)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=30, help="forecasts timed per question (default 30)")
    args = parser.parse_args()
    if args.part != "speed" and args.seconds < args.forecast_history + 70:
        parser.error(f"--seconds must be at least --forecast-history + 70 ({args.forecast_history + 70:g}): "
                     "questions start 10 s after a history's worth of the load")
    with tempfile.TemporaryDirectory(prefix="storypulse-forecast-") as folder:
        if args.part in ("calibration", "all"):
            rate = args.utilisation * args.workers / mean_story_work_s(args.seed)
            print(f"mean arrival rate {rate:.1f} stories/s ({args.utilisation:.0%} of {args.workers} workers), "
                  f"{TASKS[0]}-{TASKS[1]} tasks of {ESTIMATE_MS[0]}-{ESTIMATE_MS[1]} ms log-normal at time scale "
                  f"{TIME_SCALE:g}, {args.seconds:g} s per load, --forecast-history {args.forecast_history:g}, "
                  f"seed {args.seed}")
            rows, spreads = [], []
            for load in ("poisson", "bursty"):
                result = calibration(load, args, rate, Path(folder))
                print(f"  {load}: {result['sent']} stories sent", file=sys.stderr)
                spreads.append((load, result["dispersion"], result["block"]))

                def pct(v):
                    return "-" if v is None else f"{v:.0%}"

                for who in ("outside", "own"):
                    figures = result[who]
                    horizon = "-" if figures["horizon"] is None else f"{figures['horizon']:.1f} s"
                    rows.append((load, "asked from outside" if who == "outside" else "server's own (backlog)",
                                 f"{figures['scored']:,}", horizon, *(pct(figures[p]) for p in LEVELS)))
            print("\nhit rates (nominal: p50 50 %, p85 85 %, p95 95 %):")
            table(("load", "forecasts", "scored", "median horizon", "p50", "p85", "p95"), rows)
            print("\nVar(completions in 20 s) / (20 x Var(completions in 1 s)) while forecasts were asked "
                  "(1: independent seconds), and the median block length resampled (seconds):")
            for load, spread, block in spreads:
                print(f"  {load}: {'-' if spread is None else f'{spread:.2f}'}, "
                      f"blocks of {'-' if block is None else f'{block:g}'}")
        if args.part in ("speed", "all"):
            speed(args, Path(folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
