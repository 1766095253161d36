"""Server benchmarks: durable end-to-end throughput at each durability level, and pool efficiency.

    .venv/bin/python bench/throughput.py [--runs 3] [--stories 5000] [--tasks 10]

(a) Throughput: a real server (`python -m server`, SQLite in a temporary
    directory, 2 workers) gets stories of zero-estimate tasks from one client
    that pipelines its create_story requests; the clock runs from the first
    request to the `completed` event of the last story, so every task is
    stored, handed to a worker, reported and recorded durably in between.
    Measured with each --durability level in every run, the order alternating
    from run to run so that drift in the machine's load does not favour one:
    power-loss (synchronous=FULL, the default) and crash (synchronous=NORMAL).
    The baseline, measured in the same run on the same disk: the naive way to
    keep the same tasks durable in SQLite at the default level (WAL,
    synchronous=FULL) -- one INSERT and one commit per task, then one UPDATE
    and one commit per task.
(b) Pool efficiency: 200 tasks x 50 ms on 4 workers (time scale 1); ideal
    2.5 s; efficiency = ideal / measured, from the first request to the last
    story's `completed` event.

Every figure is the median of --runs runs; a ratio is the median of the per-run ratios.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import zmq

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from common import protocol  # noqa: E402
from common.client import Client  # noqa: E402
from support import ServerProcess, wait_for  # noqa: E402


class Completions:
    """Counts `completed` story events (subscribed before any work starts)."""

    def __init__(self, server: ServerProcess):
        self.sock = zmq.Context.instance().socket(zmq.SUB)
        self.sock.setsockopt(zmq.RCVHWM, 0)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.sock.connect(server.endpoints.events)
        self.done = 0
        self.last_stats: protocol.Stats | None = None
        wait_for(lambda: self.pump(0.05) or self.last_stats, 10, what="the first stats event")

    def pump(self, timeout: float = 0.0) -> int:
        got = 0
        while self.sock.poll(timeout * 1000 if got == 0 else 0):
            topic, payload = self.sock.recv_multipart()
            event = protocol.decode_event(topic, payload)
            if topic == protocol.TOPIC_STORY and event.event == "completed":
                self.done += 1
            elif topic == protocol.TOPIC_STATS:
                self.last_stats = event
            got += 1
        return got

    def close(self) -> None:
        self.sock.close(linger=0)


def run_stories(server: ServerProcess, stories: int, tasks: list[dict], window: int) -> float:
    """Pipeline `stories` create_story requests (at most `window` in flight); seconds to all done."""
    feed = Completions(server)
    client = Client(server.endpoints, timeout=30)
    sent = answered = 0
    start = time.perf_counter()
    while answered < stories:
        while sent < stories and sent - answered < window:
            client.send("create_story", name=f"bench {sent}", tasks=tasks)
            sent += 1
        client.receive()
        answered += 1
        feed.pump()
    while feed.done < stories:
        feed.pump(1.0)
        if time.perf_counter() - start > 600:
            raise RuntimeError(f"only {feed.done} of {stories} stories completed")
    elapsed = time.perf_counter() - start
    client.close()
    feed.close()
    return elapsed


LEVELS = {"power-loss": "FULL", "crash": "NORMAL"}  # --durability -> SQLite synchronous


def throughput_run(tmp: Path, run: int, stories: int, tasks_per_story: int, window: int,
                   durability: str) -> float:
    server = ServerProcess(tmp / f"tp{run}-{durability}.db", workers=2, time_scale=1.0,
                           stats_interval=0.25, extra=["--durability", durability])
    server.args[server.args.index("info")] = "warning"
    server.start()
    try:
        return run_stories(server, stories, [{"estimate_ms": 0}] * tasks_per_story, window)
    finally:
        server.stop()


def naive_sqlite(tmp: Path, run: int, tasks: int) -> float:
    """Seconds to store `tasks` tasks and mark them done with one commit per statement."""
    path = tmp / f"naive{run}.db"
    con = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=wal", "synchronous=full", "foreign_keys=1", "cache_size=-64000"):
        con.execute(f"PRAGMA {pragma}")
    con.execute("CREATE TABLE task (id INTEGER PRIMARY KEY, story_id INTEGER, name TEXT, "
                "estimate_ms INTEGER, status TEXT, attempts INTEGER, created_at REAL, "
                "started_at REAL, finished_at REAL)")
    con.execute("CREATE INDEX task_status ON task (status)")
    start = time.perf_counter()
    for i in range(1, tasks + 1):
        con.execute("BEGIN")
        con.execute("INSERT INTO task VALUES (?, ?, '', 0, 'queued', 0, ?, NULL, NULL)",
                    (i, i // 10, time.time()))
        con.execute("COMMIT")
    for i in range(1, tasks + 1):
        con.execute("BEGIN")
        now = time.time()
        con.execute("UPDATE task SET status = 'done', attempts = 1, started_at = ?, "
                    "finished_at = ? WHERE id = ?", (now, now, i))
        con.execute("COMMIT")
    elapsed = time.perf_counter() - start
    con.close()
    return elapsed


def pool_run(tmp: Path, run: int) -> float:
    server = ServerProcess(tmp / f"pool{run}.db", workers=4, time_scale=1.0, stats_interval=0.25)
    server.start()
    try:
        with server.client() as client:
            wait_for(lambda: client.snapshot().stats.workers == 4, 20, what="4 workers ready")
        return run_stories(server, 20, [{"estimate_ms": 50}] * 10, window=20)
    finally:
        server.stop()


def ratio_line(label: str, numerators: list[float], denominators: list[float]) -> str:
    ratios = [n / d for n, d in zip(numerators, denominators)]
    return (f"{label:44} {statistics.median(ratios):10.2f}x   "
            f"(runs: {', '.join(f'{r:.2f}' for r in ratios)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--stories", type=int, default=5000)
    parser.add_argument("--tasks", type=int, default=10, help="tasks per story")
    parser.add_argument("--window", type=int, default=500, help="requests in flight")
    parser.add_argument("--skip-pool", action="store_true")
    args = parser.parse_args()
    tasks_total = args.stories * args.tasks
    server_s: dict[str, list[float]] = {level: [] for level in LEVELS}
    naive_s, pool_s = [], []
    with tempfile.TemporaryDirectory(prefix="storypulse-bench-") as name:
        tmp = Path(name)
        for run in range(args.runs):
            order = list(LEVELS) if run % 2 == 0 else list(reversed(LEVELS))
            for level in order:
                server_s[level].append(
                    throughput_run(tmp, run, args.stories, args.tasks, args.window, level))
            naive_s.append(naive_sqlite(tmp, run, tasks_total))
            if not args.skip_pool:
                pool_s.append(pool_run(tmp, run))
            print(f"run {run + 1}: "
                  + ", ".join(f"{level} {tasks_total / server_s[level][-1]:,.0f}" for level in LEVELS)
                  + f", naive {tasks_total / naive_s[-1]:,.0f} tasks/s"
                  + (f", pool {pool_s[-1]:.3f} s" if pool_s else ""), file=sys.stderr)
    print()
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
          f"SQLite {sqlite3.sqlite_version}; median of {args.runs} runs")
    print()
    print(f"(a) durable end-to-end throughput: {args.stories} stories x {args.tasks} "
          f"zero-estimate tasks, 2 workers, {args.window} requests in flight")
    print(f"{'':44} {'stories/s':>10} {'tasks/s':>10} {'seconds':>8}")

    def row(label: str, seconds: list[float]) -> None:
        med = statistics.median(seconds)
        print(f"{label:44} {args.stories / med:10,.0f} {tasks_total / med:10,.0f} {med:8.2f}")

    for level, pragma in LEVELS.items():
        row(f"storypulse --durability {level} ({pragma})", server_s[level])
    # Throughput ratio power-loss / crash: the time of crash over the time of power-loss.
    print(ratio_line("throughput ratio, power-loss / crash", server_s["crash"], server_s["power-loss"]))
    row("baseline: commit per task, SQLite FULL", naive_s)
    print(ratio_line("throughput ratio, power-loss / baseline", naive_s, server_s["power-loss"]))
    if pool_s:
        pool_med = statistics.median(pool_s)
        print()
        print("(b) pool efficiency: 200 tasks x 50 ms on 4 workers")
        print(f"{'ideal':10} {'measured':>9} {'efficiency':>11}   runs")
        print(f"{2.5:9.3f}s {pool_med:8.3f}s {2.5 / pool_med:10.1%}   "
              + ", ".join(f"{s:.3f}" for s in pool_s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
