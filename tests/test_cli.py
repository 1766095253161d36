"""The `storypulse` command and its headless clients, driven as users drive them: in a subprocess,
against a real server process (real workers, real sockets, a temporary database)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

from storypulse import protocol
from storypulse.cli.figures import Figures, render
from storypulse.cli.watch import Feed, show
from storypulse.feed_session import AskSnapshot, FeedSession
from support import REPO, StandInServer, free_port_block, wait_for


def storypulse(*args: str, timeout: float = 60, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "storypulse", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env=env)


def at(server) -> list[str]:
    return ["--server", f"127.0.0.1:{server.port}"]


def ok_json(*args: str, timeout: float = 60):
    done = storypulse(*args, "--json", timeout=timeout)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


# -- the dispatcher ----------------------------------------------------------------
def test_help_lists_every_command_without_importing_qt():
    code = textwrap.dedent("""
        import contextlib, io, sys
        from storypulse.cli import main
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = main(["--help"])
        qt = sorted(m for m in sys.modules if m.split(".")[0] in ("PySide6", "shiboken6", "pyqtgraph"))
        print(rc, qt)
        print(out.getvalue())
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    first, _, listing = done.stdout.partition("\n")
    assert first == "0 []"
    for name in ("server", "worker", "desktop", "demo", "add", "list", "show", "delete", "pool", "load",
                 "watch", "ping"):
        assert re.search(rf"^  {name} +\S", listing, re.M), f"{name} missing from --help"


def test_a_client_command_does_not_import_qt_or_the_server(server):
    code = textwrap.dedent(f"""
        import sys
        from storypulse.cli import main
        rc = main(["list", "--server", "127.0.0.1:{server.port}"])
        bad = sorted(m for m in sys.modules if m.split(".")[0] in ("PySide6", "pyqtgraph")
                     or m.startswith(("storypulse.server", "storypulse.desktop")))
        print("RESULT", rc, bad)
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert "RESULT 0 []" in done.stdout, done.stdout + done.stderr


def test_version_and_usage_errors():
    version = storypulse("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"storypulse {__import__('storypulse').__version__}"
    unknown = storypulse("lsit")
    assert unknown.returncode == 2
    assert "unknown command 'lsit'" in unknown.stderr and "did you mean 'list'" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    bare = storypulse()
    assert bare.returncode == 2 and "usage: storypulse COMMAND" in bare.stderr
    bad_option = storypulse("list", "--server", "host:99999")
    assert bad_option.returncode == 2 and "1-65533" in bad_option.stderr
    helped = storypulse("help", "add")
    assert helped.returncode == 0 and "ESTIMATE_MS[:NAME]" in helped.stdout


def test_a_command_whose_qt_is_missing_gets_a_clear_message(tmp_path):
    """An entry point that imports PySide6 on a host without it: a hint, exit 1, no traceback."""
    (tmp_path / "fake_desktop.py").write_text("import PySide6\n\ndef command(argv):\n    return 0\n")
    info = tmp_path / "fake_desktop-0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-desktop\nVersion: 0\n")
    (info / "entry_points.txt").write_text("[storypulse.commands]\nfakeqt = fake_desktop:command\n")
    code = textwrap.dedent("""
        import sys
        sys.modules["PySide6"] = None  # as if it were not installed
        from storypulse.cli import main
        sys.exit(main(sys.argv[1:]))
    """)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}
    done = subprocess.run([sys.executable, "-c", code, "fakeqt"], cwd=REPO, capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.returncode == 1
    assert "pip install 'storypulse[desktop]'" in done.stderr
    assert "Traceback" not in done.stderr
    # The real desktop commands on such a host: one clear line too.
    for command in ("desktop", "demo"):
        real = subprocess.run([sys.executable, "-c", code, command, "--quit-after", "0.1"], cwd=REPO,
                              capture_output=True, text=True, timeout=60, env=env)
        assert real.returncode != 0 and "storypulse[desktop]" in real.stderr, real.stderr
        assert "Traceback" not in real.stderr
    listed = subprocess.run([sys.executable, "-c", code, "--help"], cwd=REPO, capture_output=True, text=True,
                            timeout=60, env=env)
    assert re.search(r"^  fakeqt$", listed.stdout, re.M)  # a plug-in's command is listed too


# -- one request each ----------------------------------------------------------------
def test_add_list_show_delete(server):
    added = ok_json("add", "Checkout: pay by invoice", "--description", "for business customers",
                    "--task", "100:API endpoint", "--task", "50", *at(server))
    story_id, task_ids = added["story_id"], added["task_ids"]
    assert len(task_ids) == 2

    human = storypulse("add", "Search", "--tasks", "3", "--estimate-ms", "10-20", "--seed", "4", *at(server))
    assert human.returncode == 0, human.stderr
    second = int(re.match(r"story (\d+) created with 3 task\(s\): \d+, \d+, \d+$", human.stdout.strip()).group(1))

    def both_done():
        page = ok_json("list", "--status", "done", *at(server))
        return {s["story_id"] for s in page["stories"]} >= {story_id, second} and page

    page = wait_for(both_done, 30, 0.2, "both stories done")
    assert page["total"] == 2
    listing = storypulse("list", *at(server))
    assert listing.returncode == 0
    assert "Checkout: pay by invoice" in listing.stdout and "stories 1-2 of 2" in listing.stdout
    assert re.search(rf"^\s*{second}\s+done\s+3/3 ", listing.stdout, re.M)

    shown = ok_json("show", str(story_id), *at(server))
    assert shown["status"] == "done" and shown["description"] == "for business customers"
    assert [(t["name"], t["estimate_ms"], t["state"]) for t in shown["tasks"]] == [
        ("API endpoint", 100, "done"), ("", 50, "done")]
    table = storypulse("show", str(story_id), *at(server))
    assert table.returncode == 0
    assert f"story {story_id}: Checkout: pay by invoice  [done]" in table.stdout
    assert re.search(rf"^\s*{task_ids[0]}\s+API endpoint\s+100 ms\s+done\s+1 ", table.stdout, re.M)

    deleted = storypulse("delete", str(story_id), "999999", *at(server))
    assert deleted.returncode == 1
    assert f"story {story_id} deleted" in deleted.stdout
    assert "story 999999: not_found" in deleted.stderr
    gone = storypulse("show", str(story_id), *at(server))
    assert gone.returncode == 1 and "not_found" in gone.stderr and "Traceback" not in gone.stderr
    assert ok_json("list", *at(server))["total"] == 1


def test_add_rejects_bad_input_clearly(server):
    none = storypulse("add", "No tasks", *at(server))
    assert none.returncode == 2 and "--task" in none.stderr
    bad = storypulse("add", "Too long", "--task", "abc", *at(server))
    assert bad.returncode == 2 and "ESTIMATE_MS[:NAME]" in bad.stderr
    # The server's own validation, passed on with the field it names.
    out_of_range = storypulse("add", "x", "--task", str(protocol.ESTIMATE_MS_MAX + 1), *at(server))
    assert out_of_range.returncode == 1
    assert "invalid_request" in out_of_range.stderr and "$.tasks[0].estimate_ms" in out_of_range.stderr


def test_add_wait_returns_when_the_story_is_done(server):
    done = storypulse("add", "Wait for me", "--task", "3000", "--task", "2000", "--wait", *at(server))
    assert done.returncode == 0, done.stderr
    story_id = re.search(r"story (\d+) created", done.stdout).group(1)
    assert re.search(rf"story {story_id} done in [\d.]+ m?s", done.stdout)
    # Estimates 3 s + 2 s at time scale 0.01: at least 30 ms of work before done.
    report = ok_json("show", story_id, *at(server))
    assert report["status"] == "done" and report["completed_at"] - report["created_at"] >= 0.02

    waited = ok_json("add", "Again", "--task", "100", "--wait", *at(server))
    assert waited["status"] == "done" and waited["elapsed_s"] >= waited["server_elapsed_s"] >= 0


def test_ping_reports_the_versions(server):
    reply = ok_json("ping", *at(server))
    assert reply["protocol_version"] == protocol.PROTOCOL_VERSION and reply["round_trip_ms"] > 0
    human = storypulse("ping", *at(server))
    assert human.returncode == 0 and f"protocol {protocol.PROTOCOL_VERSION}" in human.stdout


def test_pool_shows_and_sets_the_bounds(server_factory):
    srv = server_factory(workers=1, max_workers=3, time_scale=0.01).start()
    shown = ok_json("pool", *at(srv))
    assert (shown["min_workers"], shown["max_workers"]) == (1, 3)
    changed = ok_json("pool", "--min", "2", "--max", "4", *at(srv))
    assert (changed["min_workers"], changed["max_workers"]) == (2, 4)
    assert wait_for(lambda: ok_json("pool", *at(srv))["workers"] >= 2, 30, 0.2, "the pool to reach 2")
    human = storypulse("pool", "--max", "1", *at(srv))
    assert human.returncode == 1 and "min_workers 2 is above max_workers 1" in human.stderr
    text = storypulse("pool", *at(srv))
    assert text.returncode == 0 and "bounds 2-4" in text.stdout


def test_unreachable_server_gives_a_clear_error():
    port = free_port_block()
    for args in (["list"], ["add", "x", "--task", "1"], ["show", "1"], ["delete", "1"], ["pool"], ["ping"],
                 ["watch", "--once"], ["load", "--duration", "1"]):
        done = storypulse(*args, "--server", f"127.0.0.1:{port}", "--timeout", "0.3")
        assert done.returncode == 1, (args, done.stderr)
        assert f"no reply from tcp://127.0.0.1:{port}: is the server running?" in done.stderr, args
        assert "Traceback" not in done.stderr


# -- load and watch ----------------------------------------------------------------------
def test_load_produces_stories_at_the_rate_and_reports_a_summary(server):
    done = storypulse("load", "--rate", "40", "--duration", "2", "--tasks", "1-3", "--estimate-ms", "0-100",
                      "--seed", "7", "--json", *at(server))
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    created = summary["stories_created"]
    # 40/s for 2 s: 80 due (the first at t=0); a slow shared machine may skip a few ticks.
    assert 60 <= created <= 81, summary
    assert summary["errors"] == 0 and summary["unanswered"] == 0
    assert summary["stories_sent"] == created
    assert summary["tasks_created"] >= created
    assert "load " in done.stderr and "acked" in done.stderr  # the progress line
    # Every acknowledged story is stored, and they all get done.
    assert wait_for(lambda: ok_json("list", "--status", "done", "--limit", "1", *at(server))["total"] == created,
                    60, 0.2, "every loaded story done")
    human = storypulse("load", "--rate", "20", "--duration", "1", *at(server))
    assert human.returncode == 0, human.stderr
    assert "load ended (duration reached)" in human.stdout and "stories created" in human.stdout


def test_load_counts_busy_replies_and_retries_them(server_factory):
    """A small queue limit and slow tasks: the server pushes back with `busy`; load keeps going."""
    srv = server_factory(workers=1, time_scale=1.0, extra=["--queue-max", "500"]).start()
    done = storypulse("load", "--rate", "100", "--duration", "2", "--tasks", "5", "--estimate-ms", "60000",
                      "--json", *at(srv))
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["busy_replies"] > 0 and summary["errors"] == 0
    assert summary["resent"] > 0
    assert summary["stories_created"] <= 500 // 5 + 1  # the limit held
    stored = ok_json("list", "--limit", "1", *at(srv))["total"]
    assert stored == summary["stories_created"]


def test_watch_once_prints_the_figures(server):
    ok_json("add", "Seen", "--task", "10", "--wait", *at(server))
    done = storypulse("watch", "--once", *at(server))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for label in ("stories produced", "stories completed", "open stories", "completed stories", "tasks",
                  "workers", "last resize"):
        assert label in out, label
    assert re.search(r"completed stories\s+1$", out, re.M), out
    assert re.search(r"busy \d+ / 2", out)
    stats = ok_json("watch", "--once", *at(server))
    assert stats["completed_stories"] == 1 and stats["workers"] == 2


def test_watch_follows_live_events(server, tmp_path):
    """JSON lines, one per stats event: seq rising without repeats, the counts following the work."""
    out_path = tmp_path / "watch.jsonl"
    with open(out_path, "w") as out:
        # Ctrl-C as a terminal sends it: a test run started in the background (`cmd &` in a script) ignores
        # SIGINT, its children inherit that, and Python then installs no KeyboardInterrupt handler.
        watcher = subprocess.Popen([sys.executable, "-m", "storypulse", "watch", "--json", "--duration", "60",
                                    *at(server)], cwd=REPO, stdout=out, stderr=subprocess.PIPE, text=True,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        def lines() -> list[dict]:
            return [json.loads(line) for line in out_path.read_text().splitlines() if line.endswith("}")]

        wait_for(lines, 30, 0.05, "the first stats line")
        with server.client() as client:
            for i in range(5):
                client.create_story(f"live {i}", [{"estimate_ms": 10}])
        wait_for(lambda: lines()[-1]["completed_stories"] == 5, 30, 0.05, "watch to see 5 completed")
    finally:
        watcher.send_signal(signal.SIGINT)
        watcher.wait(10)
    seen = lines()
    seqs = [line["seq"] for line in seen]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert seen[-1]["open_stories"] == 0
    assert watcher.returncode == 0, watcher.stderr.read()


# -- the Clone logic of watch, with made-up events -----------------------------------------
def stats(seq: int, ts: float = 100.0, completed: int = 0) -> protocol.Stats:
    return protocol.Stats(seq=seq, ts=ts, stories_produced_per_s=1.5, stories_completed_per_s=1.0,
                          open_stories=3, completed_stories=completed, tasks_produced_per_s=4.0,
                          tasks_completed_per_s=3.0, tasks_queued=7, tasks_running=2, tasks_completed=40,
                          queued_work_s=1.25, workers=2, workers_busy=2, workers_target=3, min_workers=1,
                          max_workers=4, rate_window_s=5.0)


def story(seq: int) -> protocol.StoryEvent:
    return protocol.StoryEvent(seq=seq, ts=100.0, event="created", story_id=seq)


def test_watch_shows_only_events_after_the_snapshot():
    figures, session = Figures(), FeedSession(history_seconds=120, now=0.0)
    assert show(figures, session.tick(0.0)) == [AskSnapshot(120)]
    # Before the snapshot nothing is shown; what came meanwhile waits for it.
    assert show(figures, session.event(stats(8), 0.1)) == [] and figures.stats is None
    assert show(figures, session.event(story(10), 0.1)) == []
    show(figures, session.event(story(11), 0.1))
    show(figures, session.snapshot_reply(protocol.SnapshotResult(seq=10, stats=stats(9, completed=5), history=[]),
                                         0.2))
    assert figures.seq == 11 and figures.stats.completed_stories == 5  # 8 and 10 were in the snapshot
    show(figures, session.event(stats(12, 101.0, completed=6), 0.3))
    assert figures.seq == 12 and figures.stats.completed_stories == 6
    # 13 went missing: 14 is shown all the same (a stats message is whole), and a snapshot is due.
    show(figures, session.event(stats(14, 101.5, completed=8), 0.4))
    assert figures.stats.completed_stories == 8 and session.wanted


def test_watch_sees_a_restarted_server():
    figures, session = Figures(), FeedSession(history_seconds=120, now=0.0)
    show(figures, session.tick(0.0))
    show(figures, session.snapshot_reply(protocol.SnapshotResult(seq=500, stats=stats(500), history=[]), 0.1))
    show(figures, session.event(stats(501, 100.5), 0.2))
    asks = show(figures, session.event(stats(1, 102.0), 1.5))  # numbering started again
    assert asks == [AskSnapshot(7)] and figures.seq == 501  # 1.3 s without figures, and a margin
    show(figures, session.snapshot_reply(protocol.SnapshotResult(seq=3, stats=stats(3, 102.1), history=[]), 1.6))
    show(figures, session.event(stats(4, 102.2), 1.7))
    assert figures.seq == 4 and figures.stats.ts == 102.2


class QuietServer:
    """A stand-in server's behaviour (support.StandInServer): stats every turn, until told to be quiet."""

    def __init__(self):
        self.seq = 0
        self.quiet = threading.Event()

    def answer(self, request: protocol.Request) -> list[bytes]:
        return [protocol.ok(request.id, protocol.SnapshotResult(self.seq, stats(self.seq, time.time()), []))]

    def cycle(self) -> list[list[bytes]]:
        if self.quiet.is_set():
            return []
        self.seq += 1
        return [[protocol.TOPIC_STATS, protocol.encode(stats(self.seq, time.time(), completed=self.seq))]]


def test_watch_says_reconnecting_while_the_stream_is_quiet_and_goes_on_after():
    behaviour = QuietServer()
    with StandInServer(behaviour.answer, behaviour.cycle) as stand_in:
        figures = Figures()
        feed = Feed(stand_in.endpoints, figures, timeout=2)
        shown: list[str] = []

        def pumped_and_shows(state: str) -> bool:
            feed.pump(time.monotonic() + 0.05)
            shown.append(feed.state(time.monotonic()))
            return shown[-1].startswith(state)

        try:
            wait_for(lambda: pumped_and_shows("live") and figures.seq > 5, 10, 0, "live figures")
            behaviour.quiet.set()
            quiet_at = time.monotonic()
            wait_for(lambda: pumped_and_shows("reconnecting… (no figures for"), 10, 0, "reconnecting")
            assert time.monotonic() - quiet_at >= 2.0  # the floor of the silence rule
            # The stand-in still answers snapshots: they are taken, and the state does not flap.
            since, taken = len(shown), feed.session.snapshots
            wait_for(lambda: pumped_and_shows("reconnecting") and feed.session.snapshots >= taken + 2, 10, 0,
                     "snapshots while quiet")
            assert all(state.startswith("reconnecting… (no figures for") for state in shown[since:])
            seen = figures.seq
            behaviour.quiet.clear()
            wait_for(lambda: pumped_and_shows("live") and figures.seq > seen, 10, 0, "live again")
            assert feed.failed_snapshots == 0
        finally:
            feed.close()


def test_a_snapshot_older_than_the_figures_fills_in_history_and_moves_nothing_back():
    figures = Figures()
    figures.load_snapshot(protocol.SnapshotResult(seq=1, stats=stats(1, 100.0), history=[stats(1, 100.0)]))
    figures.apply(stats(5, 103.0, completed=5))
    repair = protocol.SnapshotResult(seq=3, stats=stats(3, 102.0, completed=3),
                                      history=[stats(1, 100.0), stats(2, 101.0), stats(3, 102.0)])
    figures.load_snapshot(repair)
    assert figures.seq == 5 and figures.stats.completed_stories == 5
    assert [h.ts for h in figures.history] == [100.0, 101.0, 102.0, 103.0]


def test_figures_keep_history_at_one_point_a_second_and_the_last_pool_event():
    figures = Figures()
    figures.load_snapshot(protocol.SnapshotResult(seq=1, stats=stats(1, 100.0), history=[stats(1, 100.0)]))
    for seq, ts in ((2, 100.25), (3, 100.5), (4, 101.0), (5, 101.5), (6, 102.1)):
        figures.apply(stats(seq, ts))
    assert [h.ts for h in figures.history] == [100.0, 101.0, 102.1]
    figures.apply(protocol.PoolEvent(seq=7, ts=102.2, old_size=2, new_size=3, reason="queue grew"))
    lines = "\n".join(render(figures, "127.0.0.1:5555", "live", now=104.2))
    assert "2 -> 3: queue grew (2.00 s ago)" in lines
    assert "busy 2 / 2 · target 3 · bounds 1-4" in lines
    assert re.search(r"open stories\s+3$", lines, re.M)
    assert "127.0.0.1:5555 · live · seq 7" in lines


def test_watch_says_when_the_database_refuses_writes():
    figures = Figures()
    down = stats(1)
    down.database, down.database_error = "unavailable", "database is full: /srv/s.db"
    figures.load_snapshot(protocol.SnapshotResult(seq=1, stats=down, history=[]))
    lines = "\n".join(render(figures, "127.0.0.1:5555", "live", now=101.0))
    assert "DATABASE UNAVAILABLE" in lines and "database is full: /srv/s.db" in lines
    figures.apply(stats(2, 100.5))
    assert "DATABASE" not in "\n".join(render(figures, "127.0.0.1:5555", "live", now=101.0))


# -- flow --------------------------------------------------------------------------------
def test_flow_shows_and_sets_the_wip_limit_and_the_window(server):
    ok_json("add", "Timed", "--task", "20", "--wait", *at(server))
    shown = ok_json("flow", *at(server))
    assert (shown["wip_limit"], shown["flow_window_s"]) == (0, 60.0)
    assert shown["stories_completed_in_window"] == 1 and shown["lead_time_p50_s"] > 0
    assert shown["stories_in_progress"] == shown["stories_waiting"] == 0
    changed = ok_json("flow", "--wip-limit", "3", "--window", "30", *at(server))
    assert (changed["wip_limit"], changed["flow_window_s"]) == (3, 30.0)
    text = storypulse("flow", *at(server))
    assert text.returncode == 0, text.stderr
    assert "WIP limit 3" in text.stdout and "window 30.00 s" in text.stdout
    assert re.search(r"lead\s+p50 \d+ ms · p85 \d+ ms · p95 \d+ ms", text.stdout), text.stdout
    watched = storypulse("watch", "--once", *at(server))
    assert "in progress 0 (limit 3) · waiting 0 · 1 done in the last 30.00 s" in watched.stdout
    for bad, words in ((["--wip-limit", "-1"], "--wip-limit: '-1': must be at least 0"),
                       (["--window", "0"], "--window: '0': must be above 0"),
                       (["--window", "86401"], "at most 86400")):
        done = storypulse("flow", *bad, *at(server))
        assert done.returncode == 2 and words in done.stderr, done.stderr


def test_load_with_poisson_arrivals_and_lognormal_estimates(server):
    summary = ok_json("load", "--rate", "40", "--duration", "2", "--arrivals", "poisson",
                      "--estimates", "lognormal", "--estimate-ms", "10-1000", "--seed", "3", *at(server))
    assert 40 <= summary["stories_created"] <= 120 and summary["errors"] == 0  # ~80, Poisson
    assert (summary["arrivals"], summary["estimates"]) == ("poisson", "lognormal")
    page = ok_json("list", "--limit", "5", *at(server))
    story = ok_json("show", str(page["stories"][0]["story_id"]), *at(server))
    assert all(10 <= t["estimate_ms"] <= 1000 for t in story["tasks"])
    bad = storypulse("load", "--arrivals", "bursty", *at(server))
    assert bad.returncode == 2 and "invalid choice: 'bursty'" in bad.stderr


def test_load_with_a_scenario_by_name_or_file(server, tmp_path):
    summary = ok_json("load", "--scenario", "single", "--rate", "20", "--duration", "1", "--seed", "2",
                      *at(server))
    assert summary["scenario"] == "single" and summary["arrivals"] == "poisson"  # the scenario's
    assert summary["stories_created"] > 5 and summary["errors"] == 0 and summary["estimates"] == "per stage"
    story = ok_json("show", str(ok_json("list", "--limit", "1", *at(server))["stories"][0]["story_id"]),
                    *at(server))
    assert 1 <= story["tasks_total"] <= 6 and all(100 <= t["estimate_ms"] <= 5000 for t in story["tasks"])
    broken = tmp_path / "broken.toml"
    broken.write_text('name = "x"\n[load]\nrate = 1\n[[stage]]\nname = "a"\ntasks = "3-1"\n')
    done = storypulse("load", "--scenario", str(broken), *at(server))
    assert done.returncode == 2 and f"{broken}, line 6: stage 'a': tasks '3-1'" in done.stderr, done.stderr
    done = storypulse("load", "--scenario", "bottleneck", "--estimates", "uniform", *at(server))
    assert done.returncode == 2 and "--estimates: the scenario sets each stage's tasks" in done.stderr


def test_pool_and_flow_of_a_stage_on_a_server_with_stages(server_factory):
    server = server_factory(time_scale=0.01, extra=["--stages", "analysis:1,build:1-2,test:1"]).start()
    summary = ok_json("load", "--scenario", "bottleneck", "--rate", "30", "--duration", "1",
                      "--seed", "4", *at(server))
    assert summary["stories_created"] > 5 and summary["errors"] == 0
    pool = ok_json("pool", "--stage", "build", "--max", "3", *at(server))
    assert (pool["stage"], pool["max_workers"]) == ("build", 3)
    text = storypulse("pool", "--stage", "test", *at(server))
    assert text.returncode == 0 and "pool of stage 'test' is:" in text.stdout, text.stderr
    changed = ok_json("flow", "--stage-wip", "build=2,test=1", *at(server))
    assert changed["stage_wip_limits"] == {"analysis": 0, "build": 2, "test": 1}
    text = storypulse("flow", *at(server))
    assert re.search(r"build\s+\d+ stories \(limit 2\) · workers \d/\d busy \(1-3\)", text.stdout), text.stdout
    assert "flow efficiency" in text.stdout and "bottleneck" in text.stdout
    for args, words in ((["flow", "--stage-wip", "build"], "expected NAME=N"),
                        (["flow", "--stage-wip", "9x=1"], "a letter, then letters"),
                        (["flow", "--stage-wip", "deploy=1"], "'deploy': not a stage of this server"),
                        (["pool", "--stage", "deploy"], "stage 'deploy': not a stage of this server")):
        done = storypulse(*args, *at(server))
        assert done.returncode != 0 and words in done.stderr, (args, done.stderr)
