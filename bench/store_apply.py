"""The write path alone: seconds for the store to apply the same turns, no server around it.

    .venv/bin/python bench/store_apply.py [--runs 7] [--turns 60] [--postgres URL] [--against DIR]

Each turn is what a busy loop turn writes: --stories new stories of --tasks queued
tasks each, and (from the third turn on) the stories of two turns before
started, their tasks completed and the stories done, all through `Store.apply`
on a fresh database (a SQLite file in a temporary folder; with --postgres, that
database too: its storypulse tables are DROPPED). A run is one process per
tree, so that `--against DIR` (another checkout, say the commit before a change
to the store) is measured with its own code, alternating with this tree's run
by run; the time covers the applies only (not opening, not start-up).

Without the server's processes and sockets this varies far less from run to run
than bench/throughput.py, so it shows whether a change to the store changed the
cost of a turn's writes.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tools")]

from support import HERE, empty_postgres, server_command  # noqa: E402

# Run in a process of the tree measured: prints the seconds of the applies.
CHILD = """
import sys, time
from storypulse.server.store import Batch, Store

spec, turns, per_turn, tasks = sys.argv[1], *map(int, sys.argv[2:5])
batches, waiting, story, task = [], [], 1, 1
for turn in range(turns):
    batch = Batch()
    for _ in range(per_turn):
        batch.stories.append((story, f"s{story}", "", "open", 1.0 + turn, tasks))
        ids = list(range(task, task + tasks))
        batch.tasks += [(i, story, "", 0, "queued", 0, 1.0 + turn) for i in ids]
        waiting.append((story, ids))
        story, task = story + 1, task + tasks
    if turn >= 2:
        done, waiting[:per_turn] = waiting[:per_turn], []
        batch.started_stories.append((2.0 + turn, [s for s, _ in done]))
        batch.completions.append((1, 2.0 + turn, 3.0 + turn, [i for _, ids in done for i in ids]))
        batch.done_stories.append((3.0 + turn, [s for s, _ in done]))
    batches.append(batch)
store = Store.open(spec)
start = time.perf_counter()
for batch in batches:
    store.apply(batch)
print(time.perf_counter() - start)
store.close()
"""


def one_run(tree: Path, spec: str, args: argparse.Namespace, tmp: Path) -> float:
    command, env = server_command(tree)  # [python, -m, ...]: this tree's interpreter and path
    if spec == "sqlite":
        spec = str(Path(tempfile.mkdtemp(dir=tmp)) / "apply.db")
    else:
        empty_postgres(spec)
    done = subprocess.run([command[0], "-c", CHILD, spec, str(args.turns), str(args.stories),
                           str(args.tasks)], env=env, cwd=tmp, capture_output=True, text=True,
                          check=True)
    return float(done.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--turns", type=int, default=60)
    parser.add_argument("--stories", type=int, default=100, help="new stories a turn")
    parser.add_argument("--tasks", type=int, default=10, help="tasks a story")
    parser.add_argument("--postgres", metavar="URL", help="a database of its own: its storypulse "
                        "tables are dropped")
    parser.add_argument("--against", type=Path, metavar="DIR", help="another checkout, measured "
                        "in the same runs")
    args = parser.parse_args()
    trees = [HERE] + ([args.against.resolve()] if args.against else [])
    tasks = args.turns * args.stories * args.tasks
    print(f"{args.turns} turns of {args.stories} stories x {args.tasks} tasks ({tasks} tasks "
          f"stored, {tasks - 2 * args.stories * args.tasks} completed); median of {args.runs} runs")
    with tempfile.TemporaryDirectory(prefix="storypulse-apply-") as name:
        for spec in ["sqlite"] + ([args.postgres] if args.postgres else []):
            seconds: dict[Path, list[float]] = {tree: [] for tree in trees}
            for run in range(args.runs):
                for tree in (trees if run % 2 == 0 else trees[::-1]):
                    seconds[tree].append(one_run(tree, spec, args, Path(name)))
            label = "SQLite" if spec == "sqlite" else "PostgreSQL"
            for tree in trees:
                med = statistics.median(seconds[tree])
                print(f"{label:10} {tree.name:24} {tasks / med:10,.0f} tasks/s  {med:.3f} s  "
                      f"(runs: {', '.join(f'{s:.3f}' for s in seconds[tree])})")
            if args.against:
                ratios = [a / h for h, a in zip(seconds[HERE], seconds[trees[1]])]
                print(f"{label:10} {HERE.name} / {trees[1].name}: {statistics.median(ratios):.2f}x "
                      f"throughput (runs: {', '.join(f'{r:.2f}' for r in ratios)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
