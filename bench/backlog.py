"""A big backlog: fill N queued tasks, `kill -9`, restart; what the restart costs.

    .venv/bin/python bench/backlog.py [--tasks 100000 1000000] [--per-story 5]

For each N: a real server (SQLite in a temporary directory, 1 worker, time
scale 1e6, so that the one task it is given never ends and everything else
stays queued) gets N tasks as stories of --per-story tasks of 1 s each from
one client that pipelines its create_story requests; the fill rate is printed
per tenth of N, to show whether filling slows as the backlog grows. Then the
server's RSS is read (/proc, the server process only), its whole process
group gets SIGKILL, and it is started again on the same database with time
scale 0 (so tasks complete at once), and we measure:

- first answer: from the restart command to the first answered `ping`;
- first completion: from the restart command to the first `stats` event that
  counts a task completed after the restart (stats every 50 ms: an upper bound);
- RSS of the server before the kill and 2 s after the first completion.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tools")]

from storypulse.client import Client  # noqa: E402
from support import EventTap, ServerProcess  # noqa: E402


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def fill(server: ServerProcess, tasks: int, per_story: int, window: int = 500) -> list[float]:
    """Pipeline stories until `tasks` are queued; tasks/s for each tenth of them."""
    stories = tasks // per_story
    spec = [{"estimate_ms": 1000}] * per_story
    client = Client(server.endpoints, timeout=60)
    sent = answered = 0
    tenth = max(1, stories // 10)
    rates: list[float] = []
    mark = time.perf_counter()
    while answered < stories:
        while sent < stories and sent - answered < window:
            client.send("create_story", name=f"b{sent}", tasks=spec)
            sent += 1
        client.receive()  # raises RequestError if refused
        answered += 1
        if answered % tenth == 0:
            now = time.perf_counter()
            rates.append(tenth * per_story / (now - mark))
            mark = now
    client.close()
    return rates


def one(workdir: Path, tasks: int, per_story: int) -> dict:
    db = workdir / f"backlog{tasks}.db"
    server = ServerProcess(db, workers=1, time_scale=1e6, stats_interval=0.05)
    server.args[server.args.index("info")] = "warning"
    server.start()
    started = time.perf_counter()
    rates = fill(server, tasks, per_story)
    filled_s = time.perf_counter() - started
    with server.client() as client:
        before = client.snapshot().stats
    queued, done_before = before.tasks_queued, before.tasks_completed
    rss_before = rss_mib(server.proc.pid)
    server.kill9()

    scale = server.args.index("--time-scale") + 1
    server.args[scale] = "0"
    t0 = time.monotonic()
    server.start(wait=False)
    server.wait_ready(120)
    answer_s = time.monotonic() - t0
    tap = EventTap(server)
    # Against the count before the kill: a small backlog may be done before the tap's first stats.
    tap.wait_stats(lambda s: s.tasks_completed > done_before, 120, what="a task done")
    first_done_s = time.monotonic() - t0
    time.sleep(2.0)
    rss_after = rss_mib(server.proc.pid)
    tap.close()
    server.kill9()
    return {"tasks": tasks, "queued": queued, "fill_s": filled_s, "rates": rates,
            "answer_s": answer_s, "first_done_s": first_done_s,
            "rss_before": rss_before, "rss_after": rss_after,
            "db_mib": sum(p.stat().st_size for p in workdir.glob(f"backlog{tasks}.db*")) / 2**20}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--per-story", type=int, default=5)
    args = parser.parse_args()
    results = []
    for tasks in args.tasks:
        with tempfile.TemporaryDirectory(dir=REPO / ".bench-tmp" if (REPO / ".bench-tmp").is_dir()
                                         else None) as tmp:
            result = one(Path(tmp), tasks, args.per_story)
        results.append(result)
        rates = ", ".join(f"{r / 1000:.0f}k" for r in result["rates"])
        print(f"{tasks:,} tasks: filled in {result['fill_s']:.1f} s; tasks/s by tenth: {rates}",
              flush=True)

    print(f"\nbacklog of N queued tasks ({args.per_story} a story), kill -9, restart; SQLite\n")
    print(f"{'queued tasks':>14}{'fill tasks/s':>14}{'last/first tenth':>18}{'first answer s':>16}"
          f"{'first done s':>14}{'RSS before':>12}{'RSS after':>11}{'db MiB':>8}")
    for r in results:
        rate = r["tasks"] / r["fill_s"]
        trend = r["rates"][-1] / r["rates"][0] if r["rates"] else float("nan")
        print(f"{r['queued']:>14,}{rate:>14,.0f}{trend:>17.2f}x{r['answer_s']:>16.3f}"
              f"{r['first_done_s']:>14.3f}{r['rss_before']:>8.0f} MiB{r['rss_after']:>7.0f} MiB"
              f"{r['db_mib']:>8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
