"""Crash recovery: `kill -9` of the server (and its workers) mid-run, then a restart.

    .venv/bin/python bench/recovery.py [--runs 3] [--stories 400]

Each run: a real server (SQLite in a temporary directory, 2 workers) gets
stories of 3 tasks (100-300 ms each, time scale 0.1); once about a third are
done, the whole process group gets SIGKILL, mid-task. Then the server is
started again on the same database and we measure:

- answering: from the restart command to the first answered `ping`;
- resumed: from the restart command to the first task completed after it;
- drained: from the restart command to the last story done;

and check what the guarantees promise: every acknowledged story completes,
no story is counted twice (completed_stories == stories, tasks_completed ==
tasks, one `completed` event per story across both lives of the server), and
`PRAGMA integrity_check` is ok. The baseline in the same run is the plain
start of a server on an empty database (first ping), i.e. the part of the
recovery time that is only process start-up.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tools")]

from support import EventTap, ServerProcess  # noqa: E402


def first_ping(server: ServerProcess, started: float) -> float:
    server.wait_ready(30)  # polls ping every 20 ms
    return time.monotonic() - started


def one_run(workdir: Path, stories: int) -> dict[str, float]:
    db = workdir / "recovery.db"
    server = ServerProcess(db, workers=2, time_scale=0.1, stats_interval=0.05).start()
    tap = EventTap(server)
    with server.client() as client:
        ids = [client.create_story(f"r{i}", [{"estimate_ms": 100 + (i * 37) % 200}] * 3).story_id
               for i in range(stories)]
    tap.wait_stats(lambda s: s.completed_stories >= stories // 3, 60, what="a third done")
    tap.pump()
    before = {e.story_id for e in tap.story_events("completed")}
    server.kill9()
    tap.close()

    started = time.monotonic()
    server.start(wait=False)
    answering = first_ping(server, started)
    tap = EventTap(server)
    base = tap.last_stats().tasks_completed
    tap.wait_stats(lambda s: s.tasks_completed > base, 30, what="a task done")
    resumed = time.monotonic() - started  # an upper bound: stats come every 50 ms
    final = tap.wait_stats(lambda s: s.open_stories == 0, 120, what="every story done")
    drained = time.monotonic() - started
    tap.pump()
    after = [e.story_id for e in tap.story_events("completed")]
    server.stop()
    tap.close()

    assert final.completed_stories == stories, (final.completed_stories, stories)
    assert final.tasks_completed == 3 * stories
    assert len(after) == len(set(after)) and not before & set(after), "a story completed twice"
    assert set(ids) <= before | set(after), "a story never completed"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    return {"answering": answering, "resumed": resumed, "drained": drained,
            "at_kill_done": len(before)}


def cold_start(workdir: Path) -> float:
    server = ServerProcess(workdir / "cold.db", workers=2)
    started = time.monotonic()
    server.start(wait=False)
    took = first_ping(server, started)
    server.stop()
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--stories", type=int, default=400)
    args = parser.parse_args()
    results, colds = [], []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            colds.append(cold_start(Path(tmp)))
            result = one_run(Path(tmp), args.stories)
        results.append(result)
        print(f"run {run + 1}: answering {result['answering']:.3f} s, resumed "
              f"{result['resumed']:.3f} s, drained {result['drained']:.2f} s, "
              f"{result['at_kill_done']} stories done before the kill", flush=True)

    def med(key: str) -> float:
        return statistics.median(r[key] for r in results)

    cold = statistics.median(colds)
    print(f"\nkill -9 mid-run, restart: {args.stories} stories x 3 tasks, 2 workers; "
          f"median of {args.runs} runs\n")
    print(f"{'':44}{'seconds':>9}")
    print(f"{'baseline: cold start, empty db, first ping':44}{cold:9.3f}")
    print(f"{'restart after kill -9: first ping':44}{med('answering'):9.3f}")
    print(f"{'restart after kill -9: first task completed':44}{med('resumed'):9.3f}")
    print(f"{'restart after kill -9: every story done':44}{med('drained'):9.3f}")
    print("\nlost stories: 0, stories counted twice: 0, integrity_check: ok (asserted in every run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
