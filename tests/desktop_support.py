"""Helpers for the desktop tests: a dashboard on screen, fed a stats history as a snapshot would; a Flow
tab on a stand-in server (standin.py), and running its model until it has done enough."""

from __future__ import annotations

from types import SimpleNamespace

from storypulse.desktop.series import FIELDS


def stats_row(ts: float, i: int, **fields):
    """A Stats-like row: every charted field set (to small numbers that move), then `fields`."""
    row = {name: float(i % 7) for name in FIELDS}
    row.update(ts=ts, seq=i, **fields)
    return SimpleNamespace(**row)


def workflow_stages(i: int = 0, names=("analysis", "build", "test")) -> list:
    """The `stages` of a stats row from a server with a workflow: build holds the most, one blocked, test the
    bottleneck (wait_s), build under a WIP limit of 3."""
    from storypulse import protocol

    return [protocol.StageStats(name=name, workers=2, workers_busy=2, min_workers=1, max_workers=2, tasks_queued=4,
                                tasks_ready=2, tasks_running=2, tasks_blocked=int(name == "build"),
                                stories=1 + (i % 3) * (name == "build"), wip_limit=3 * (name == "build"),
                                wait_s=2.0 * (name == "test"))
            for name in names]


def snapshot_batch(history: list):
    """A FeedBatch with a snapshot of `history`, its last row the current stats."""
    return SimpleNamespace(snapshot=SimpleNamespace(history=history, stats=history[-1], completions=[]),
                           stats=[], pool_events=[], story_events=[], story_events_dropped=0)


def shown_dashboard(qtbot, history: list | None = None):
    """A Dashboard on screen (1000 × 700), given `history` as a snapshot if any."""
    from storypulse.desktop.dashboard import Dashboard

    dashboard = Dashboard()
    qtbot.addWidget(dashboard)
    dashboard.resize(1000, 700)
    dashboard.show()
    qtbot.waitExposed(dashboard)
    if history:
        dashboard.apply_batch(snapshot_batch(history))
    return dashboard


def stand_in_flow_tab(qtbot, made: list, model, speed: float = 20.0):
    """A Flow tab on a stand-in of `model`, wired as the main window wires it, on screen with a 5-minute
    window once the snapshot reached it; what was started goes into `made` (for stop_all)."""
    from standin import StandIn
    from storypulse.desktop.feed import Feed
    from storypulse.desktop.flow import FlowTab
    from storypulse.desktop.requests import Requests

    stand_in = StandIn(model, speed=speed)
    stand_in.start()
    feed = Feed(stand_in.endpoints)
    requests = Requests(stand_in.endpoints, name="test-requests")
    pages = Requests(stand_in.endpoints, name="test-pages")
    tab = FlowTab(requests, pages)
    qtbot.addWidget(tab)
    tab.resize(1000, 700)
    feed.batch_ready.connect(tab.apply_batch)
    made.append((stand_in, feed, requests, pages))
    feed.start()
    # Connected once the snapshot reached the tab (in the UI thread: a waitSignal on the feed's
    # signal would be served in the feed thread).
    qtbot.waitUntil(lambda: tab.clock.latest is not None, timeout=10_000)
    tab.show()
    qtbot.waitExposed(tab)
    tab.set_window(300)
    return tab, stand_in


def stop_all(made: list) -> None:
    for stand_in, feed, requests, pages in made:
        assert feed.stop() and requests.stop() and pages.stop()
        stand_in.stop()


def run_then_freeze(qtbot, tab, stand_in, completions: int):
    """Let the model run until `completions` stories are done, stop it, and wait until the tab has its last figures.

    The stats that follow carry those figures, later and later stamped.
    """
    qtbot.waitUntil(lambda: sum(e.event == "completed" for e in stand_in.story_events()) >= completions,
                    timeout=20_000)
    stand_in.freeze()
    count = len(stand_in.stats())
    qtbot.waitUntil(lambda: len(stand_in.stats()) >= count + 3, timeout=10_000)
    last = stand_in.stats()[-1]
    qtbot.waitUntil(lambda: tab.clock.latest is not None and tab.clock.latest.seq >= last.seq, timeout=10_000)
    qtbot.waitUntil(lambda: tab.diagnostics["frames"] > 0 and not tab._dirty and not tab._dots_dirty, timeout=5_000)
    return last
