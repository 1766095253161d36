"""The Flow tab fed by a stand-in server on real sockets: what it draws equals what was published.

The stand-in (standin.py) runs a queueing model of a team on a fast clock and
records every message it publishes; the tab gets them through the real feed
thread and request thread. Once the stand-in stops the model, its stats keep
coming with the same figures, and the tab must show exactly what was fed.
"""

from __future__ import annotations

import socket

import numpy as np
import pyqtgraph as pg
import pytest

from desktop_support import run_then_freeze
from storypulse import protocol
from storypulse.desktop.flow import format_littles
from storypulse.desktop.flow_math import AGING_LIMIT, COMPLETED_AT, LEAD, STORY, littles_law
from storypulse.desktop.requests import Requests
from standin import FlowModel, StandIn


def queue_model(**options) -> FlowModel:
    # 4 stories a second on 2 workers taking ~1 s each: the queue grows, the oldest are at risk.
    return FlowModel(**{"rate": 4.0, "workers": 2, "median_s": 1.0, "sigma": 0.5, "seed": 7, **options})


FIGURES = ("open_stories", "completed_stories", "stories_in_progress", "stories_completed_in_window",
           "lead_time_mean_s", "lead_time_p50_s", "lead_time_p85_s", "lead_time_p95_s", "flow_window_s", "wip_limit")


def figures(stats) -> tuple:
    return tuple(getattr(stats, name) for name in FIGURES)


def test_bands_dots_and_percentile_lines_equal_the_stream(qtbot, flow_tab):
    tab, stand_in = flow_tab(queue_model())
    last = run_then_freeze(qtbot, tab, stand_in, completions=40)
    # Every stats the tab got: published, or in a snapshot (its own figures and its history).
    fed = {s.ts: s for s in stand_in.stats()}
    for snapshot in stand_in.snapshots:
        fed.update({s.ts: s for s in [*snapshot.history, snapshot.stats]})

    # Cumulative flow: the last edges are the last stats' done, done + in progress, done + open.
    ts, done, progress, arrived = tab.cfd_edges
    assert ts[-1] >= last.ts
    assert (done[-1], progress[-1], arrived[-1]) == (
        last.completed_stories, last.completed_stories + last.stories_in_progress,
        last.completed_stories + last.open_stories)
    # ... and every edge drawn is the stats fed at that time.
    for at, d, p, a in zip(ts, done, progress, arrived):
        s = fed[at]
        assert (d, p, a) == (s.completed_stories, s.completed_stories + s.stories_in_progress,
                             s.completed_stories + s.open_stories)
    assert last.open_stories > last.stories_in_progress > 0  # all three bands have a height

    # Lead-time dots: one per completed event, at its time, as high as its lead time.
    completed = [e for e in stand_in.story_events() if e.event == "completed"]
    assert tab.dots.count == len(completed)
    assert np.array_equal(tab.dots.x, [e.ts for e in completed])
    assert np.array_equal(tab.dots.y, [e.lead_time_s for e in completed])
    assert list(tab.completions.column(STORY)) == [e.story_id for e in completed]

    # Percentile lines: the buffered series is the stats fed, and ends at the last one.
    buffer = tab.buffer
    for name in ("lead_time_p50_s", "lead_time_p85_s", "lead_time_p95_s"):
        for at, value in zip(buffer.column("ts"), buffer.column(name)):
            expected = getattr(fed[at], name)
            assert (np.isnan(value) and expected is None) or value == expected
        # The line goes through every point buffered (and breaks where a value is missing).
        drawn = pg.arrayToQPath(buffer.column("ts"), buffer.column(name), connect="finite", finiteCheck=True)
        assert tab.percentile_curves[name.split("_")[2]].path() == drawn  # (lead time: the default)
        assert buffer.column(name)[-1] == getattr(last, name)
    assert figures(stand_in.stats()[-1]) == figures(last)  # still: what the tab shows stays true

    # Little's law, in numbers and words. The stand-in started with this run: its flow window is
    # still filling, and the throughput is its count over the time since its first stats.
    first = min(fed)
    assert tab.coverage.covered(last.ts, last.flow_window_s) == pytest.approx(last.ts - first)
    law = littles_law(last, last.ts - first)
    assert law.filling and 0 < law.covered_s < last.flow_window_s
    assert law.predicted == pytest.approx(last.stories_completed_in_window / (last.ts - first) * last.lead_time_mean_s)
    # The stats go on, later stamped: the readout states the law for the newest one the tab has.
    qtbot.waitUntil(lambda: format_littles(littles_law(tab.clock.latest, tab.clock.latest.ts - first))
                    in tab.readout.text(), timeout=5_000)
    assert tab.numbers["predicted"].value.text() == f"{tab.littles.predicted:,.1f}"  # set with the readout
    assert tab.numbers["open"].value.text() == f"{last.open_stories:,}"


def test_aging_shows_the_oldest_open_stories_and_flags_those_past_p85(qtbot, flow_tab):
    tab, stand_in = flow_tab(queue_model(rate=12.0))
    last = run_then_freeze(qtbot, tab, stand_in, completions=60)
    assert last.open_stories > AGING_LIMIT  # else the oldest page would be the whole list
    pages_before = len(stand_in.requests_of(protocol.ListStories))
    qtbot.waitUntil(lambda: len(stand_in.requests_of(protocol.ListStories)) > pages_before + 1, timeout=10_000)
    qtbot.waitUntil(lambda: tab.aging_state is not None and tab.aging_total == last.open_stories, timeout=10_000)
    request = stand_in.requests_of(protocol.ListStories)[-1]
    assert (request.status, request.offset, request.limit) == ("open", last.open_stories - AGING_LIMIT, AGING_LIMIT)

    state = tab.aging_state
    oldest = sorted(stand_in.model.open.values(), key=lambda s: s.story_id)[:AGING_LIMIT]
    assert sorted(state.story_ids) == [s.story_id for s in oldest]
    created = {s.story_id: s.created_at for s in oldest}
    ages = np.array([state.now - created[i] for i in state.story_ids])
    assert np.allclose(state.age_s, ages)
    assert state.p85_s == last.lead_time_p85_s
    risky = ages > last.lead_time_p85_s
    assert risky.any() and not risky.all()
    assert list(state.at_risk) == list(risky)
    assert tab.risk_dots.count == risky.sum() and tab.aging_dots.count == (~risky).sum()
    assert tab.p85_line.isVisible() and tab.p85_line.line().y1() == last.lead_time_p85_s


def test_a_hidden_tab_does_no_drawing_work_and_asks_for_nothing(qtbot, flow_tab):
    tab, stand_in = flow_tab(queue_model())
    probes = tab.diagnostics
    qtbot.waitUntil(lambda: probes["frames"] > 5 and probes["aging requests"] > 0, timeout=10_000)
    # No page in flight when it hides: every one asked for has been answered.
    qtbot.waitUntil(lambda: not tab._aging_in_flight
                    and len(stand_in.requests_of(protocol.ListStories)) == probes["aging requests"], timeout=10_000)
    tab.hide()
    frames, ticks, asked = probes["frames"], probes["ticks"], probes["aging requests"]
    lists = len(stand_in.requests_of(protocol.ListStories))
    dots, path = tab.dots.count, tab.bands["done"].path().elementCount()
    # Time passes and data keeps coming: 15 more stats (1.5 s at 10 Hz, so the 1 s aging timer
    # fires) reach the tab.
    published = len(stand_in.stats())
    qtbot.waitUntil(lambda: len(stand_in.stats()) >= published + 15, timeout=10_000)
    seq = stand_in.stats()[-1].seq
    qtbot.waitUntil(lambda: tab.clock.latest.seq >= seq and len(tab.completions) > dots, timeout=10_000)
    assert (probes["frames"], probes["ticks"], probes["aging requests"]) == (frames, ticks, asked)
    assert len(stand_in.requests_of(protocol.ListStories)) == lists
    assert (tab.dots.count, tab.bands["done"].path().elementCount()) == (dots, path)  # nothing re-made
    tab.show()
    qtbot.waitUntil(lambda: probes["frames"] > frames and tab.dots.count > dots, timeout=5_000)


def test_pausing_stops_drawing_and_aging_requests(qtbot, flow_tab):
    tab, stand_in = flow_tab(queue_model())
    qtbot.waitUntil(lambda: tab.diagnostics["frames"] > 5, timeout=10_000)
    tab.set_paused(True)
    assert not tab.plot_timer.isActive() and not tab.aging_timer.isActive()
    tab.set_paused(False)
    assert tab.plot_timer.isActive() and tab.aging_timer.isActive()


def test_the_wip_limit_spin_box_sends_set_flow_and_reports_errors(qtbot, flow_tab):
    tab, stand_in = flow_tab(queue_model(wip_limit=0))
    qtbot.waitUntil(lambda: tab.clock.latest is not None, timeout=10_000)
    assert tab.wip.spin.value() == 0 and tab.wip.spin.text() == "none"
    tab.wip.spin.setValue(1)
    with qtbot.waitSignal(tab.message, timeout=10_000) as said:
        tab.wip.apply.click()
    assert said.args == ["WIP limit now 1 (lead times over the last 60 s)."]
    sent = stand_in.requests_of(protocol.SetFlow)
    assert len(sent) == 1 and sent[0].wip_limit == 1 and sent[0].flow_window_s is None
    # The stats that follow carry the limit, and the tab shows it next to the stories in progress.
    qtbot.waitUntil(lambda: tab.clock.latest.wip_limit == 1 and tab.clock.latest.stories_in_progress <= 1,
                    timeout=10_000)
    qtbot.waitUntil(lambda: tab.numbers["progress"].value.text().endswith(" / 1"), timeout=5_000)

    stand_in.refuse_set_flow = "Expected `int` <= 100000 - at `$.wip_limit`"
    tab.wip.spin.setValue(5)
    with qtbot.waitSignal(tab.message, timeout=10_000) as said:
        tab.wip.apply.click()
    assert said.args == ["Could not set the WIP limit: Expected `int` <= 100000 - at `$.wip_limit`"]
    assert tab.wip.apply.isEnabled()


def test_a_late_snapshot_brings_the_recent_completions_along(qtbot, flow_tab):
    """A tab that joins a running server draws the lead times completed before it joined."""
    model = queue_model()
    model.advance(model.now + 30.0)  # 30 s of work before anyone watches
    model.stats()
    before = list(model.recent)
    assert len(before) > 10
    tab, stand_in = flow_tab(model, speed=1.0)
    qtbot.waitUntil(lambda: tab.dots.count >= len(before), timeout=10_000)
    got = tab.completions.window(0.0, 10_000)
    assert list(got[:len(before), STORY]) == [c.story_id for c in before]
    assert list(got[:len(before), LEAD]) == [c.lead_time_s for c in before]
    assert list(got[:len(before), COMPLETED_AT]) == [c.completed_at for c in before]


def test_a_completed_event_fills_a_cached_rows_lead_and_cycle_time(qtbot):
    """The stories table takes a completion's times from the event, before the next page refresh."""
    from storypulse.desktop.feed import FeedBatch
    from storypulse.desktop.stories import CYCLE_COLUMN, LEAD_COLUMN, StoriesPanel

    stand_in = StandIn(queue_model(rate=2.0, workers=1, median_s=30.0), speed=1.0, start_on_snapshot=False)
    stand_in.start()
    requests = Requests(stand_in.endpoints, name="test-requests")
    pages = Requests(stand_in.endpoints, name="test-pages")
    try:
        panel = StoriesPanel(requests, pages)
        qtbot.addWidget(panel)
        panel.show()
        qtbot.waitUntil(lambda: any(s.status == "open" for s in panel.model.cached_stories()), timeout=15_000)
        story = next(s for s in panel.model.cached_stories() if s.status == "open")
        row = panel.model.row_of(story.story_id)
        assert panel.model.data(panel.model.index(row, LEAD_COLUMN)) == ""
        event = protocol.StoryEvent(seq=1, ts=story.created_at + 12.5, event="completed", story_id=story.story_id,
                                    lead_time_s=12.5, cycle_time_s=3.25)
        panel.apply_batch(FeedBatch(story_events=[event]))
        assert panel.model.data(panel.model.index(row, LEAD_COLUMN)) == "12.50 s"
        assert panel.model.data(panel.model.index(row, CYCLE_COLUMN)) == "3.25 s"
    finally:
        assert requests.stop() and pages.stop()
        stand_in.stop()


def test_a_limit_box_follows_the_servers_limit_but_keeps_an_edit_not_applied(qtbot):
    from PySide6.QtWidgets import QSpinBox

    from storypulse.desktop.cards import LimitFollower

    spin = QSpinBox()
    spin.setRange(0, 100)
    follower = LimitFollower(spin)
    follower.show(0)
    assert spin.value() == 0
    follower.show(8)  # another client set it: the box shows the limit in force
    assert spin.value() == 8
    spin.setValue(3)  # typed here, not applied yet
    follower.show(8)
    follower.show(5)  # the server's changes meanwhile do not overwrite it
    assert spin.value() == 3
    follower.show(5, initial=True)  # a snapshot (a reconnect) shows the server's again
    assert spin.value() == 5


def test_the_time_chart_shows_lead_or_cycle_time_as_chosen_and_remembers_the_choice(qtbot, flow_tab, tmp_path):
    """Stories queue before they start (4 a second on 2 workers): lead and cycle times differ, and the dots,
    the p85 line and the title follow the measure chosen from the keyboard; a new window keeps the choice."""
    from PySide6.QtCore import QSettings, Qt

    from storypulse.desktop.flow_math import CYCLE
    from storypulse.desktop.window import MainWindow
    from storypulse.endpoints import Endpoints

    tab, stand_in = flow_tab(queue_model())
    last = run_then_freeze(qtbot, tab, stand_in, completions=40)
    completed = [e for e in stand_in.story_events() if e.event == "completed"]
    assert sum(e.lead_time_s > e.cycle_time_s for e in completed) > len(completed) // 2  # a queue before the start
    assert last.cycle_time_p85_s < last.lead_time_p85_s

    def p85_drawn(field: str):
        buffer = tab.buffer
        return pg.arrayToQPath(buffer.column("ts"), buffer.column(field), connect="finite", finiteCheck=True)

    choice = tab.measure_choice
    assert choice.accessibleName() and choice.currentText() == "Lead time"  # the default
    assert "Lead time per completed story" in tab.lead_plot.titleLabel.text
    assert tab.numbers["percentiles"].full_title.startswith("Lead time p50")
    assert np.array_equal(tab.dots.y, [e.lead_time_s for e in completed])
    assert tab.percentile_curves["p85"].path() == p85_drawn("lead_time_p85_s")

    choice.setFocus()
    qtbot.keyClick(choice, Qt.Key.Key_Down)  # the keyboard reaches it
    assert choice.currentText() == "Cycle time" and tab.measure.column == CYCLE
    assert "Cycle time per completed story" in tab.lead_plot.titleLabel.text
    assert np.array_equal(tab.dots.x, [e.ts for e in completed])
    assert np.array_equal(tab.dots.y, [e.cycle_time_s for e in completed])
    assert tab.percentile_curves["p85"].path() == p85_drawn("cycle_time_p85_s")
    assert tab.percentile_curves["p85"].path() != p85_drawn("lead_time_p85_s")
    # The figures above the charts follow: the cycle time's percentiles, under their own title.
    box = tab.numbers["percentiles"]
    assert box.full_title.startswith("Cycle time p50")
    assert box.value.text() == " · ".join(f"{v:,.1f}" for v in (last.cycle_time_p50_s, last.cycle_time_p85_s,
                                                               last.cycle_time_p95_s))
    # The y range fits the cycle times, not the longer lead times.
    top = tab.lead_plot.viewRange()[1][1]
    assert max(e.cycle_time_s for e in completed) <= top < max(e.lead_time_s for e in completed)
    # Little's law stays a statement about lead time, whatever the chart shows.
    qtbot.waitUntil(lambda: "mean lead time" in tab.readout.text(), timeout=5_000)

    # Remembered: a window closed with cycle time chosen opens the next time with it.
    settings_file = str(tmp_path / "s.ini")
    with socket.socket() as probe:  # a port where nothing answers: the widgets are all there
        probe.bind(("127.0.0.1", 0))
        nowhere = Endpoints("127.0.0.1", probe.getsockname()[1])
    for expected, key in (("lead", "cycle"), ("cycle", None)):
        window = MainWindow(nowhere, QSettings(settings_file, QSettings.Format.IniFormat))
        qtbot.addWidget(window)
        assert window.flow.measure.key == expected
        assert window.flow.measure_choice.currentData() == expected
        if key:
            window.flow.measure_choice.choose(key)
        window.close()
    assert QSettings(settings_file, QSettings.Format.IniFormat).value("view/flow_measure") == "cycle"
