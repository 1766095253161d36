"""Server benchmarks: durable end-to-end throughput on SQLite and PostgreSQL, and pool efficiency.

    .venv/bin/python bench/throughput.py [--runs 3] [--stories 5000] [--tasks 10]
                                         [--postgres URL] [--against DIR]

(a) Throughput: a real server (`python -m storypulse.server`, 2 workers) gets stories of
    zero-estimate tasks from one client that pipelines its create_story
    requests; the clock runs from the first request to the `completed` event
    of the last story, so every task is stored, handed to a worker, reported
    and recorded durably in between. Measured on SQLite (a file in a temporary
    directory) and, side by side, on PostgreSQL: the database of --postgres
    URL, else of $STORYPULSE_BENCH_POSTGRES, else postgresql://127.0.0.1/storypulse_bench
    if a local server lets us in (libpq's PGUSER/PGPASSWORD apply). The
    benchmark DROPS the tables story, task, counter and tally of that database:
    give it one of its own. Each database is measured with each --durability level
    in every run, the order alternating from run to run so that drift in the
    machine's load does not favour one: power-loss (SQLite synchronous=FULL,
    PostgreSQL synchronous_commit=on; the default) and crash
    (synchronous=NORMAL, synchronous_commit=off).
    The baseline, measured in the same run on the same disk: the naive way to
    keep the same tasks durable at the default level -- one INSERT and one
    commit per task, then one UPDATE and one commit per task (on PostgreSQL on
    at most --naive-postgres-tasks tasks, since each commit waits for the disk).
    --against DIR also measures the server of another checkout (a git worktree
    of an earlier commit, say) at the default level, in the same runs.
    --scrape S serves /metrics from this tree's servers (--http-port) and GETs it
    every S seconds while they work, as a Prometheus would: the cost of the
    metrics, against the other checkout (which is not scraped).
(b) Pool efficiency: 200 tasks x 50 ms on 4 workers (time scale 1); ideal
    2.5 s; efficiency = ideal / measured, from the first request to the last
    story's `completed` event.

Every figure is the median of --runs runs; a ratio is the median of the per-run ratios.
"""

from __future__ import annotations

import argparse
import http.client
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from playhouse import db_url

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tools")]

from storypulse import protocol  # noqa: E402
from storypulse.client import Client  # noqa: E402
import support  # noqa: E402
from support import (ServerProcess, arrived_events, create_pipelined, empty_postgres,  # noqa: E402
                     subscribe_all, wait_for)

LOCAL_POSTGRES = "postgresql://127.0.0.1/storypulse_bench"


class Completions:
    """Counts `completed` story events (subscribed before any work starts)."""

    def __init__(self, server: ServerProcess):
        self.sock = subscribe_all(server.endpoints.events)
        self.done = 0
        self.last_stats: protocol.Stats | None = None
        wait_for(lambda: self.pump(0.05) or self.last_stats, 10, what="the first stats event")

    def pump(self, timeout: float = 0.0) -> int:
        got = 0
        for topic, event in arrived_events(self.sock, timeout):
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
    start = time.perf_counter()
    create_pipelined(client, stories, tasks, window, feed.pump)
    while feed.done < stories:
        feed.pump(1.0)
        if time.perf_counter() - start > 600:
            raise RuntimeError(f"only {feed.done} of {stories} stories completed")
    elapsed = time.perf_counter() - start
    client.close()
    feed.close()
    return elapsed


LEVELS = {"power-loss": ("FULL", "on"), "crash": ("NORMAL", "off")}  # SQLite, PostgreSQL setting


class Scraper(threading.Thread):
    """GETs /metrics every `every` seconds, as a Prometheus scrape job would."""

    def __init__(self, port: int, every: float):
        super().__init__(daemon=True)
        self.port, self.every = port, every
        self.halt = threading.Event()
        self.scrapes = self.failures = 0

    def run(self) -> None:
        while not self.halt.wait(self.every):
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                conn.request("GET", "/metrics")
                reply = conn.getresponse()
                reply.read()
                self.scrapes += 1
                self.failures += reply.status != 200
            except (OSError, http.client.HTTPException):
                self.failures += 1
            finally:
                conn.close()


SCRAPES = {"done": 0, "failed": 0}


def throughput_run(tmp: Path, db: str, run: int, stories: int, tasks_per_story: int, window: int,
                   durability: str, tree: Path | None = None, scrape: float = 0.0) -> float:
    """Seconds for the stories on a fresh database: `db` is "sqlite" or a PostgreSQL URL."""
    name = f"tp{run}-{durability}-{'sqlite' if db == 'sqlite' else 'pg'}{'-against' if tree else ''}"
    http_port = support.free_port_block(1) if scrape and tree is None else 0
    server = ServerProcess(tmp / f"{name}.db", workers=2, time_scale=1.0, stats_interval=0.25,
                           extra=["--durability", durability]
                           + (["--http-port", str(http_port)] if http_port else []))
    if db != "sqlite":
        server.use_db(empty_postgres(db))
    server.args[server.args.index("info")] = "warning"
    ours, support.REPO = support.REPO, tree or support.REPO  # where `python -m storypulse.server` runs
    try:
        server.start()
    finally:
        support.REPO = ours
    scraper = Scraper(http_port, scrape) if http_port else None
    if scraper:
        scraper.start()
    try:
        return run_stories(server, stories, [{"estimate_ms": 0}] * tasks_per_story, window)
    finally:
        if scraper:
            scraper.halt.set()
            scraper.join(10)
            SCRAPES["done"] += scraper.scrapes
            SCRAPES["failed"] += scraper.failures
        server.stop()


def find_postgres(given: str | None) -> tuple[str | None, str]:
    """The URL to measure on, or None; and what to print about it."""
    url = given or os.environ.get("STORYPULSE_BENCH_POSTGRES") or LOCAL_POSTGRES
    try:
        db = db_url.connect(url, connect_timeout=2)
        version = db.execute_sql("SHOW server_version").fetchone()[0]
        setting = db.execute_sql("SHOW synchronous_commit").fetchone()[0]
        db.close()
    except Exception as exc:  # no driver, no server, no login: say so and measure SQLite alone
        if given:
            raise SystemExit(f"--postgres {given}: {str(exc).strip().splitlines()[0]}")
        return None, (f"PostgreSQL: not measured ({url}: {str(exc).strip().splitlines()[0]}; "
                      "give --postgres URL)")
    where = db_url.parse(url).get("host", "local socket")
    return url, (f"PostgreSQL {version} at {where}, synchronous_commit={setting} by default "
                 "(the server sets it per durability level)")


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


def naive_postgres(url: str, tasks: int) -> float:
    """The same naive loop on PostgreSQL (synchronous_commit=on): seconds for `tasks` tasks."""
    db = db_url.connect(url, options="-c synchronous_commit=on")
    sql = db.execute_sql
    sql("DROP TABLE IF EXISTS naive_task")
    sql("CREATE TABLE naive_task (id BIGINT PRIMARY KEY, story_id BIGINT, name TEXT, "
        "estimate_ms INTEGER, status TEXT, attempts INTEGER, created_at DOUBLE PRECISION, "
        "started_at DOUBLE PRECISION, finished_at DOUBLE PRECISION)")
    sql("CREATE INDEX naive_task_status ON naive_task (status)")
    start = time.perf_counter()
    for i in range(1, tasks + 1):  # autocommit: one commit per statement
        sql("INSERT INTO naive_task VALUES (%s, %s, '', 0, 'queued', 0, %s, NULL, NULL)",
            (i, i // 10, time.time()))
    for i in range(1, tasks + 1):
        now = time.time()
        sql("UPDATE naive_task SET status = 'done', attempts = 1, started_at = %s, "
            "finished_at = %s WHERE id = %s", (now, now, i))
    elapsed = time.perf_counter() - start
    sql("DROP TABLE naive_task")
    db.close()
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
    parser.add_argument("--postgres", metavar="URL", help="a database of its own: its storypulse "
                        f"tables are dropped (default: $STORYPULSE_BENCH_POSTGRES or {LOCAL_POSTGRES})")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--naive-postgres-tasks", type=int, default=2000)
    parser.add_argument("--against", type=Path, metavar="DIR",
                        help="also measure the server of this checkout (power-loss)")
    parser.add_argument("--skip-pool", action="store_true")
    parser.add_argument("--scrape", type=float, default=0.0, metavar="S",
                        help="serve /metrics from this tree's servers and GET it every S seconds")
    args = parser.parse_args()
    pg_url, pg_note = (None, "PostgreSQL: not measured (--no-postgres)") if args.no_postgres \
        else find_postgres(args.postgres)
    dbs = ["sqlite"] + ([pg_url] if pg_url else [])
    tasks_total = args.stories * args.tasks
    # (database, level) -> seconds per run; level "against" is the other checkout
    server_s: dict[tuple[str, str], list[float]] = {}
    naive_s: dict[str, list[float]] = {db: [] for db in dbs}
    pool_s: list[float] = []
    naive_pg_tasks = min(tasks_total, args.naive_postgres_tasks)
    with tempfile.TemporaryDirectory(prefix="storypulse-bench-") as name:
        tmp = Path(name)
        for run in range(args.runs):
            flip = run % 2 == 1
            for db in (reversed(dbs) if flip else dbs):
                cases = [(level, None) for level in (reversed(LEVELS) if flip else LEVELS)]
                if args.against:
                    cases.insert(1, ("against", args.against))
                for level, tree in cases:
                    server_s.setdefault((db, level), []).append(throughput_run(
                        tmp, db, run, args.stories, args.tasks, args.window,
                        "power-loss" if tree else level, tree, args.scrape))
            naive_s["sqlite"].append(naive_sqlite(tmp, run, tasks_total))
            if pg_url:
                naive_s[pg_url].append(naive_postgres(pg_url, naive_pg_tasks))
            if not args.skip_pool:
                pool_s.append(pool_run(tmp, run))
            print(f"run {run + 1}: " + "; ".join(
                ("SQLite" if db == "sqlite" else "PostgreSQL") + " " + ", ".join(
                    f"{level} {tasks_total / times[-1]:,.0f}"
                    for (where, level), times in server_s.items() if where == db)
                + f", naive {(tasks_total if db == 'sqlite' else naive_pg_tasks) / naive_s[db][-1]:,.0f}"
                for db in dbs) + " tasks/s" + (f"; pool {pool_s[-1]:.3f} s" if pool_s else ""),
                file=sys.stderr)
    print()
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
          f"SQLite {sqlite3.sqlite_version}; median of {args.runs} runs")
    print(pg_note)
    if args.scrape:
        print(f"/metrics scraped every {args.scrape:g} s from this tree's servers: "
              f"{SCRAPES['done']} scrapes, {SCRAPES['failed']} failed")
    print()
    print(f"(a) durable end-to-end throughput: {args.stories} stories x {args.tasks} "
          f"zero-estimate tasks, 2 workers, {args.window} requests in flight")
    names = {"sqlite": "SQLite", pg_url: "PostgreSQL"}
    print(f"{'':46}" + "".join(f"{names[db]:>30}" for db in dbs))
    print(f"{'':46}" + f"{'stories/s':>12} {'tasks/s':>9} {'seconds':>7}" * len(dbs))

    def cells(seconds: list[float] | None, tasks: int = tasks_total) -> str:
        if not seconds:
            return f"{'':>30}"
        med = statistics.median(seconds)
        return f"{tasks / args.tasks / med:12,.0f} {tasks / med:9,.0f} {med:7.2f}"

    for level, (pragma, setting) in LEVELS.items():
        print(f"{f'storypulse --durability {level}':46}" + "".join(
            cells(server_s[(db, level)]) for db in dbs)
            + f"   ({pragma}; synchronous_commit={setting})")
    if args.against:
        print(f"{f'{args.against.name}: --durability power-loss':46}" + "".join(
            cells(server_s[(db, 'against')]) for db in dbs))
    print(f"{'naive: one commit per statement':46}" + cells(naive_s["sqlite"])
          + (cells(naive_s[pg_url], naive_pg_tasks) if pg_url else "")
          + (f"   (PostgreSQL: {naive_pg_tasks} tasks)" if pg_url else ""))
    for db in dbs:
        label = names[db]
        power, crash = server_s[(db, "power-loss")], server_s[(db, "crash")]
        # A throughput ratio is a ratio of times, inverted.
        print(ratio_line(f"{label}: power-loss / crash", crash, power))
        per_task = [n / (tasks_total if db == "sqlite" else naive_pg_tasks) * tasks_total
                    for n in naive_s[db]]
        print(ratio_line(f"{label}: power-loss / naive", per_task, power))
        if args.against:
            print(ratio_line(f"{label}: power-loss / {args.against.name}",
                             server_s[(db, "against")], power))
    if pg_url:
        print(ratio_line("power-loss: PostgreSQL / SQLite", server_s[("sqlite", "power-loss")],
                         server_s[(pg_url, "power-loss")]))
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
