"""Flood the desktop app with events and measure its UI thread and chart frame rate.

A stand-in publisher in another process speaks the protocol on free local
ports: the team model of tools/standin.py behind a ROUTER (ping, snapshot,
list_stories, set_flow) and a PUB that sends stats with the flow figures at
10 Hz and story events at the chosen rate (1,000/s by default: stories created
and completed, with their lead and cycle times). The team works in three
stages by default (`--stages 3`: analysis, build with blocks, test), so the
Flow tab draws a band, an aging column and a card per stage; `--stages 1` is
the team without a workflow. The app runs in this process, offscreen unless a
display is set. The figures:

- UI thread busy share: the share of wall time the UI thread spent handling
  events, measured by timing every QApplication.notify call on that thread
  (time the event loop spent waiting for events is idle).
- Frames per second: repaints of the chart view of the tab in front (`--tab`;
  for the Flow tab, its cumulative flow diagram), counted with an event filter.

By default it runs each mode --runs times (3), each in a fresh process for
--seconds (10), and prints the medians in a table: `smooth` is the app as it
ships (the charts scroll with wall-clock time at every 25 Hz tick); `stock`
is the same at every tick but scrolling through pyqtgraph's setXRange, the
naive redraw, as the in-run baseline (dashboard and stories tabs only).
`--mode` runs one mode once, in detail.

The app runs in the theme asked for (`--theme`, light by default) and with
annotations on every time chart (`--annotations on`): `--notes` of them over
the window at the start, and one more every two seconds while it runs.

    python bench/ui_flood.py [--rate 1000] [--stats-hz 10] [--seconds 10] [--runs 3] [--tab flow]
                             [--theme light|dark] [--annotations on|off] [--notes 30] [--stages 3|1]
    python bench/ui_flood.py --mode smooth --profile FILE
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tools")]
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from storypulse import protocol  # noqa: E402
from storypulse.client import Client  # noqa: E402
from storypulse.desktop.diagnostics import SCROLL_MODES as MODES  # noqa: E402  (the dashboard's, for the baseline)
from storypulse.endpoints import Endpoints  # noqa: E402
from standin import FlowModel, Stage, StandIn  # noqa: E402


class FloodServer(StandIn):
    """Just enough of a server to feed the app: the stand-in team model (tools/standin.py) at the
    flood's rate, plus a long story list to page through for the stories tab.

    Stories arrive at half the event rate, evenly spaced, on enough workers to keep up, so
    that created and completed events together make the rate asked for; completed events
    carry lead and cycle times and the stats carry the flow figures, for the Flow tab.
    With three stages each has enough workers to keep up too, and one build in ten blocks.
    """

    def __init__(self, port: int, story_rate: float, stats_hz: float, stories: int = 0, stages: int = 3):
        arrivals = story_rate / 2

        def workers(median_s: float) -> int:
            mean_s = median_s * math.exp(0.6 ** 2 / 2)  # of the log-normal service time
            return max(1, math.ceil(arrivals * mean_s / 0.9))  # 90 % busy: a steady queue

        workflow = [Stage("analysis", workers(0.4), 0.4), Stage("build", workers(1.0), 1.0, block_chance=0.1,
                                                                block_s=(0.5, 2.0)),
                    Stage("test", workers(0.6), 0.6)] if stages == 3 else [Stage("work", workers(2.0), 2.0)]
        model = FlowModel(rate=arrivals, sigma=0.6, poisson=False, stages=workflow)
        super().__init__(model, stats_hz=stats_hz, port=port, start_on_snapshot=False)
        self.record = False  # a long run: publish, keep nothing
        self.stories = stories  # a list of this many older stories, for the stories tab

    def answer(self, request) -> bytes:
        if isinstance(request, protocol.ListStories) and request.status is None:
            total = self.stories + self.model.next_id - 1
            stop = min(total, request.offset + request.limit)
            now = time.time()
            result = protocol.ListStoriesResult([
                protocol.StoryView(story_id=total - i, name=f"story {total - i}", description="", status="open",
                                   created_at=now, tasks_total=3, tasks_done=0)
                for i in range(request.offset, stop)
            ], total)
            return protocol.ok(request.id, result)
        return super().answer(request)


def serve(port: int, rate: float, stats_hz: float, stories: int, stages: int) -> int:
    server = FloodServer(port, rate, stats_hz, stories, stages)
    server.start()
    signal.signal(signal.SIGTERM, lambda *_: server.halt())
    while server.is_alive():
        server.join(0.5)
    return 0


def compare(args) -> int:
    """Each mode --runs times, each run in a fresh process; a table of the medians."""
    # The stock baseline scrolls the dashboard's charts: with the Flow tab in front, only the app as it ships.
    modes = ("smooth",) if args.tab == "flow" else ("smooth", "stock")
    results: dict[str, list[dict]] = {mode: [] for mode in modes}
    for run in range(args.runs):
        for mode in results:  # interleaved, so that a noisy minute hits both modes
            command = [sys.executable, __file__, "--mode", mode, "--json", "--seconds", str(args.seconds),
                       "--warmup", str(args.warmup), "--rate", str(args.rate), "--stats-hz", str(args.stats_hz),
                       "--window", str(args.window), "--tab", args.tab, "--theme", args.theme,
                       "--annotations", args.annotations, "--notes", str(args.notes), "--stages", str(args.stages)]
            out = subprocess.run(command, capture_output=True, text=True, timeout=args.seconds + args.warmup + 60)
            line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
            if not line:
                print(out.stdout + out.stderr, file=sys.stderr)
                return 1
            results[mode].append(json.loads(line[-1][len("RESULT "):]))
            r = results[mode][-1]
            print(f"run {run + 1} {mode:6s}: UI thread {r['cpu']:5.1f} % CPU ({r['wall']:5.1f} % wall), "
                  f"{r['fps']:5.1f} frames/s", flush=True)
    notes = f"{args.notes} annotations + 1 every 2 s" if args.annotations == "on" else "annotations off"
    print(f"\n{args.tab} tab, {args.theme} theme, {notes}, {args.stages} stage(s), {args.rate:,.0f} story events/s "
          f"+ {args.stats_hz:g} stats/s, {args.window} s window, median of {args.runs} runs of {args.seconds:g} s:")
    print(f"{'mode':8s} {'frames/s':>9s} {'UI CPU %':>9s} {'UI wall %':>10s} {'app CPU %':>10s}  drawn")
    for mode, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"{mode:8s} {med['fps']:9.1f} {med['cpu']:9.1f} {med['wall']:10.1f} {med['process']:10.0f}  {MODES[mode]}")
    return 0


def free_port() -> int:
    import socket

    for base in range(41000, 60000, 7):
        try:
            with socket.socket() as a, socket.socket() as b, socket.socket() as c:
                a.bind(("127.0.0.1", base))
                b.bind(("127.0.0.1", base + 1))
                c.bind(("127.0.0.1", base + 2))
            return base
        except OSError:
            continue
    raise RuntimeError("no free ports")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="story events a second (default 1000)")
    parser.add_argument("--stats-hz", type=float, default=10.0, help="stats messages a second (default 10)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time (default 10)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring (default 3)")
    parser.add_argument("--window", type=int, default=60, help="chart time window in seconds (default 60)")
    parser.add_argument("--tab", choices=("dashboard", "stories", "flow"), default="dashboard",
                        help="the tab in front: its charts' repaints are the frames counted (default dashboard)")
    parser.add_argument("--theme", choices=("light", "dark"), default="light", help="the app's theme (default light)")
    parser.add_argument("--annotations", choices=("on", "off"), default="on",
                        help="annotations on the time charts (default on)")
    parser.add_argument("--notes", type=int, default=30,
                        help="annotations over the window at the start (default 30); one more every 2 s")
    parser.add_argument("--stages", type=int, choices=(1, 3), default=3,
                        help="the team's workflow: analysis, build, test (3, default) or one stage (1)")
    parser.add_argument("--mode", choices=MODES,
                        help="run this mode once and print its details (default: every mode, --runs times)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each mode for the medians (default 3)")
    parser.add_argument("--every-tick", action="store_true", help=argparse.SUPPRESS)  # the old name of --mode stock
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # one run's figures, for the table
    parser.add_argument("--profile", metavar="FILE", help="also profile the UI thread into FILE (cProfile)")
    parser.add_argument("--stories", type=int, default=1_000_000,
                        help="stories in the stand-in's list, for the stories tab (default 1,000,000)")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)  # the stand-in, internal
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve, args.rate, args.stats_hz, args.stories, args.stages)
    if args.every_tick:
        args.mode = "stock"
    if args.mode is None and not args.profile:
        return compare(args)
    args.mode = args.mode or "smooth"

    from PySide6.QtCore import QEvent, QObject, QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    class TimedApp(QApplication):
        """Adds up the time the UI thread spends in event handlers (nested calls counted once)."""

        def __init__(self, argv):
            super().__init__(argv)
            self.busy = 0.0  # wall time in event handlers
            self.cpu = 0.0  # CPU time of the UI thread in event handlers
            self.depth = 0
            self.ui_thread = threading.get_ident()
            self.buckets: dict[str, float] = {}  # CPU time by kind of top-level event
            self.names: dict[int, str] = {}  # id(QObject) -> bucket name, for timers
            self.painted = False

        def bucket(self, receiver, event) -> str:
            kind = event.type()
            if kind in (QEvent.Type.UpdateRequest, QEvent.Type.Paint, QEvent.Type.LayoutRequest):
                return "painting"
            if kind == QEvent.Type.MetaCall:
                return "queued signals (feed batches, replies)"
            if kind == QEvent.Type.Timer:
                return self.names.get(id(receiver), "other timers")
            return "other events"

        def notify(self, receiver, event):
            if self.depth or threading.get_ident() != self.ui_thread:
                if self.depth and event.type() == QEvent.Type.Paint:
                    self.painted = True  # a repaint delivered inside another event: charge it to painting
                self.depth += threading.get_ident() == self.ui_thread
                try:
                    return super().notify(receiver, event)
                finally:
                    self.depth -= threading.get_ident() == self.ui_thread
            self.depth = 1
            started, cpu = time.perf_counter(), time.thread_time()
            name = self.bucket(receiver, event)
            self.painted = False
            try:
                return super().notify(receiver, event)
            finally:
                self.busy += time.perf_counter() - started
                spent = time.thread_time() - cpu
                self.cpu += spent
                if self.painted:
                    name = "painting"
                self.buckets[name] = self.buckets.get(name, 0.0) + spent
                self.depth = 0

    class PaintCounter(QObject):
        def __init__(self):
            super().__init__()
            self.paints = 0

        def eventFilter(self, obj, event):
            if event.type() == QEvent.Type.Paint:
                self.paints += 1
            return False

    # The stand-in runs in its own process, so that its Python work does not take the
    # app's GIL and count as UI time.
    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port), "--rate", str(args.rate),
                               "--stats-hz", str(args.stats_hz), "--stories", str(args.stories),
                               "--stages", str(args.stages)])
    try:
        endpoints = Endpoints("127.0.0.1", port)
        with Client(endpoints, timeout=10) as client:
            client.ping()
        app = TimedApp(sys.argv[:1])
        app.setStyle("Fusion")
        from storypulse.desktop.window import MainWindow

        settings_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"storypulse-bench-{os.getpid()}.ini"
        window = MainWindow(endpoints, QSettings(str(settings_path), QSettings.Format.IniFormat),
                            theme_choice=args.theme)
        window.resize(1280, 800)
        window.show()
        window.show_notes(args.annotations == "on")
        from storypulse.desktop.annotations import Note

        def note(at: float, i: int) -> None:
            kind = ("simulator", "wip_limit", "pool_bounds", "outage_began")[i % 4]
            window.notes.add(Note(at, kind, f"bench note {i}", "app" if kind == "simulator" else "server"))

        started = time.time()
        for i in range(args.notes):  # over the window, as if the app had been running
            note(started - args.window + args.window * i / max(args.notes, 1), i)
        more = QTimer()
        more.timeout.connect(lambda: note(window.dashboard.clock.now(), len(window.notes)))
        if args.annotations == "on":
            more.start(2000)
        window.window_choice.setCurrentIndex([s for _, s in __import__("storypulse.desktop.dashboard", fromlist=["WINDOWS"]).WINDOWS].index(args.window))
        window.dashboard.diagnostics.scroll_mode = args.mode
        jumps = QTimer()
        if args.tab == "stories":
            # Scroll the table like a user dragging the scroll bar through a million rows.
            import random

            window.tabs.setCurrentIndex(1)
            table = window.stories.table
            jumps.timeout.connect(lambda: table.verticalScrollBar().setValue(
                random.randrange(max(1, table.verticalScrollBar().maximum()))))
            jumps.start(200)
        if args.tab == "flow":
            window.open_tab("flow")
        app.names[id(window.dashboard.plot_timer)] = "chart timer (setData, scrolling)"
        app.names[id(window.dashboard.text_timer)] = "text timer (numbers, y ranges)"
        app.names[id(window.stories.refresh_timer)] = "stories refresh timer"
        app.names[id(window.flow.plot_timer)] = "flow chart timer (bands, dots, scrolling)"
        app.names[id(window.flow.text_timer)] = "flow text timer (numbers, y ranges)"
        app.names[id(window.flow.aging_timer)] = "flow aging timer (list_stories)"
        counter = PaintCounter()
        shown = window.flow if args.tab == "flow" else window.dashboard  # whose charts' frames count
        # The Flow tab has a view per chart: count the cumulative flow diagram's.
        (window.flow.views["cfd"] if args.tab == "flow" else window.dashboard.charts).viewport().installEventFilter(counter)

        marks: dict[str, tuple] = {}

        profiler = None
        if args.profile:
            import cProfile

            # CPU time of the UI thread: waits for the GIL (held by the feed thread) are not its work.
            profiler = cProfile.Profile(time.thread_time)

        def begin() -> None:
            if profiler is not None:
                profiler.enable()
            marks["buckets"] = dict(app.buckets)
            marks["start"] = (time.perf_counter(), app.busy, app.cpu, counter.paints, shown.diagnostics["frames"],
                              window.feed.worker.messages_total, time.process_time(), shown.diagnostics["ticks"])

        def end() -> None:
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(args.profile)
            t0, busy0, ucpu0, paints0, frames0, msgs0, cpu0, ticks0 = marks["start"]
            elapsed = time.perf_counter() - t0
            busy = app.busy - busy0
            print(f"events offered   : {args.rate:,.0f} story/s + {args.stats_hz:g} stats/s for {elapsed:.1f} s")
            print(f"messages decoded : {(window.feed.worker.messages_total - msgs0) / elapsed:,.0f}/s (feed thread)")
            print(f"UI thread busy   : {100 * (app.cpu - ucpu0) / elapsed:.1f} % CPU time, "
                  f"{100 * busy / elapsed:.1f} % wall time in event handlers (inflated by other load)")
            before = marks["buckets"]
            for name, spent in sorted(app.buckets.items(), key=lambda kv: -kv[1]):
                share = 100 * (spent - before.get(name, 0.0)) / elapsed
                if share >= 0.1:
                    print(f"  {share:5.1f} %  {name}")
            mode = MODES[args.mode]
            print(f"chart frames     : {(counter.paints - paints0) / elapsed:.1f}/s repaints of the charts "
                  f"(drawn {mode}; the chart timer ticked {(shown.diagnostics['ticks'] - ticks0) / elapsed:.1f}/s)")
            if args.tab == "stories":
                model = window.stories.model
                first, last = model.visible_rows
                loaded = sum(model.story_at(r) is not None for r in range(first, last + 1))
                print(f"stories table    : {model.rowCount():,} rows, 5 jumps/s; {loaded} of "
                      f"{last - first + 1} visible rows loaded at the end")
            if args.tab == "flow":
                flow = window.flow
                print(f"flow tab         : {flow.dots.count:,} lead-time dots shown ({len(flow.completions):,} kept, "
                      f"drawn anew {flow.diagnostics['dot paints'] / (elapsed + args.warmup):.1f}/s), "
                      f"{flow.aging_dots.count + flow.risk_dots.count} aging dots "
                      f"({flow.aging_chart.blocked_marks.count} blocked), "
                      f"{flow.diagnostics['aging requests']} aging pages asked for, "
                      f"{len(flow.stage_names) or 'no'} stage bands and cards")
            print(f"app process CPU  : {100 * (time.process_time() - cpu0) / elapsed:.0f} % of one core "
                  "(all its threads)")
            if args.json:
                print("RESULT " + json.dumps({
                    "cpu": 100 * (app.cpu - ucpu0) / elapsed, "wall": 100 * busy / elapsed,
                    "fps": (counter.paints - paints0) / elapsed,
                    "process": 100 * (time.process_time() - cpu0) / elapsed}))
            window.close()

        QTimer.singleShot(int(args.warmup * 1000), begin)
        QTimer.singleShot(int((args.warmup + args.seconds) * 1000), end)
        app.exec()
    finally:
        server.terminate()
        server.wait(10)
    settings_path.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
