"""Annotations: the notes, where they come from, and the lines and tooltips on every time chart.

The log, the outage watch and the note sources are fed directly (batches as the
feed thread hands them, the server's notes as protocol.NoteEvent); the layers
are checked on the dashboard and the Flow tab as built, with an explicit clock;
against a real server, a WIP limit set from the window is noted once (the
server's note), beside the server's start.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from PySide6.QtCore import QPointF, QSettings

from storypulse import protocol
from storypulse.desktop import theme
from storypulse.desktop.annotations import KINDS, SAME_CHANGE_S, Note, NoteLog
from storypulse.desktop.feed import FeedBatch
from storypulse.desktop.note_sources import NoteSources, OutageWatch
from desktop_support import shown_dashboard, stats_row


def test_the_log_keeps_notes_in_time_order_and_finds_those_near_a_time():
    log = NoteLog(capacity=3)
    changes = []
    log.changed.connect(lambda: changes.append(1))
    for ts in (10.0, 30.0, 20.0):  # one comes late (a history's, a server's)
        log.add(Note(ts, "simulator", f"at {ts:g}"))
    assert [n.ts for n in log.notes()] == [10, 20, 30] and len(changes) == 3
    assert [n.ts for n in log.near(21, 2)] == [20]
    assert [n.ts for n in log.near(25, 5)] == [20, 30]
    log.add(Note(40.0, "pool_bounds", "bounds"))
    assert [n.ts for n in log.notes()] == [20, 30, 40]  # bounded: the oldest goes


def test_a_kind_this_app_does_not_know_is_a_plain_note_on_every_chart():
    """A newer server may add kinds: drawn as plain notes, its text shown."""
    note = Note(5.0, "deploy", "version 7 rolled out", source="server")
    assert note.role == "note" and note.drawn and "Deploy: version 7 rolled out" in note.describe()
    assert Note(5.0, "outage_began", "x").role == Note(5.0, "outage_ended", "x").role == "alert"
    assert set(protocol.NOTE_KINDS) <= set(KINDS)  # every kind the server sends has its word
    assert not Note(5.0, "autoscale", "grow").drawn  # marked by the pool chart's triangles instead
    assert all(role in theme.SERIES for role, _, _ in KINDS.values())


def stats(ts: float, database: str = "ok", error: str | None = None):
    return SimpleNamespace(ts=ts, database=database, database_error=error)


def test_an_outage_is_noted_where_it_began_and_ended():
    watch = OutageWatch()
    notes = [watch.feed(stats(t, *(("unavailable", "disk full") if 3 <= t < 6 else ()))) for t in range(9)]
    found = [(n.ts, n.text) for n in notes if n is not None]
    assert found == [(3, "outage began, writes refused: disk full"), (6, "outage ended, writes accepted again")]
    assert [n.kind for n in notes if n is not None] == ["outage_began", "outage_ended"]
    assert watch.feed(stats(4, "unavailable")) is None  # seen already: a snapshot repeating history
    first = OutageWatch().feed(stats(1, "unavailable", "restarting"))
    assert first is not None and "when first seen: restarting" in first.text


def test_the_apps_own_actions_become_notes_stamped_with_the_servers_clock(qtbot):
    log, clock = NoteLog(), [1_000.0]
    sources = NoteSources(log, lambda: clock[0])
    sources._rate_timer.setInterval(20)
    sources.simulator_rate(5.0)
    sources.simulator_toggled(True)
    clock[0] = 1_010.0
    for rate in (6.0, 7.0, 8.0):  # spun through: one note once it settles
        sources.simulator_rate(rate)
    qtbot.waitUntil(lambda: len(log) == 2, timeout=2_000)
    clock[0] = 1_020.0
    sources.wip_limit_set(4)
    sources.wip_limit_set(0)
    sources.pool_bounds_set(2, 8)
    sources.simulator_toggled(False)
    assert [(n.ts, n.kind, n.text) for n in log.notes()] == [
        (1_000.0, "simulator", "started, 5 stories/s"),
        (1_010.0, "simulator", "rate now 8 stories/s"),
        (1_020.0, "wip_limit", "WIP limit set to 4"),
        (1_020.0, "wip_limit", "WIP limit lifted"),
        (1_020.0, "pool_bounds", "bounds set to 2–8 workers"),
        (1_020.0, "simulator", "stopped"),
    ]
    assert {n.source for n in log.notes()} == {"app"}
    events = [SimpleNamespace(ts=1_030.0, old_size=2, new_size=4, reason="grow 2 -> 4: 5 queued tasks"),
              SimpleNamespace(ts=1_031.0, old_size=4, new_size=3, reason="bounds now 1..3: 4 -> 3")]
    sources.take_batch(batch(pool_events=events))
    # Resizes, whatever their reason, show over the pool's chart only: new bounds are the server's note.
    assert [(n.kind, n.text) for n in log.notes()[-2:]] == [
        ("autoscale", "2 → 4 workers: grow 2 -> 4: 5 queued tasks"),
        ("autoscale", "4 → 3 workers: bounds now 1..3: 4 -> 3")]


def batch(snapshot=None, **fields) -> FeedBatch:
    return FeedBatch(snapshot=snapshot, **fields)


def note_event(seq: int, ts: float, kind: str, text: str, **values) -> protocol.NoteEvent:
    return protocol.NoteEvent(seq=seq, ts=ts, kind=kind, text=text, **values)


def a_snapshot(ts: float, notes, history=()) -> protocol.SnapshotResult:
    """A snapshot of a server with notes (a list) or older than them (None)."""
    return SimpleNamespace(seq=10, stats=stats(ts), history=list(history), completions=[], notes=notes)


def test_a_change_this_app_made_appears_once_the_servers_note_in_place_of_its_own(qtbot):
    log, clock = NoteLog(), [1_000.0]
    sources = NoteSources(log, lambda: clock[0])
    start = note_event(1, 900.0, "started", "server started")
    sources.take_batch(batch(a_snapshot(990.0, [start])))
    assert [(n.kind, n.source) for n in log.notes()] == [("started", "server")]

    # The reply first (the app's own note), then the server's note for that change: it takes the place.
    sources.wip_limit_set(4)
    wip = note_event(20, 999.6, "wip_limit", "WIP limit set to 4 (was none)", old=0, new=4)
    sources.take_batch(batch(notes=[wip]))
    assert [(n.kind, n.text, n.source) for n in log.notes()] == [
        ("started", "server started", "server"), ("wip_limit", "WIP limit set to 4 (was none)", "server")]
    # The server's note first, then the reply: the app's own is not added.
    bounds = note_event(21, 1_000.2, "pool_bounds", "pool: bounds set to 2–8 workers (was 1–4)",
                        old=[1, 4], new=[2, 8])
    sources.take_batch(batch(notes=[bounds]))
    clock[0] = 1_000.5
    sources.pool_bounds_set(2, 8)
    sources.stage_limit_set("build", 3)  # no server note for it (yet): the app's own stays
    assert [(n.kind, n.source) for n in log.notes()[1:]] == [
        ("wip_limit", "server"), ("pool_bounds", "server"), ("stage_wip_limit", "app")]
    staged = note_event(22, 1_000.7, "stage_wip_limit", "WIP limit of build set to 3 (was none)",
                        stage="build", old=0, new=3)
    sources.take_batch(batch(notes=[staged]))
    assert [(n.kind, n.source) for n in log.notes()[-1:]] == [("stage_wip_limit", "server")]
    assert len(log) == 4

    # A snapshot after a gap repeats notes: each stays once.
    sources.take_batch(batch(a_snapshot(1_001.0, [start, wip, bounds, staged])))
    assert len(log) == 4
    # Another change to the same value long after is a change of its own, noted again.
    clock[0] = 1_000.5 + SAME_CHANGE_S + 1
    sources.wip_limit_set(4)
    assert [(n.kind, n.source) for n in log.notes()[-1:]] == [("wip_limit", "app")] and len(log) == 5


def test_outages_are_the_servers_notes_and_inferred_from_stats_only_from_an_older_server(qtbot):
    down = [stats(t, "unavailable", "disk full") for t in (5.0, 6.0)]
    newer, older = NoteLog(), NoteLog()
    sources = NoteSources(newer, lambda: 10.0)
    began = note_event(30, 4.8, "outage_began", "database refuses writes: disk full", cause="disk full")
    sources.take_batch(batch(a_snapshot(4.0, []), stats=down, notes=[began]))
    assert [(n.kind, n.source, n.role) for n in newer.notes()] == [("outage_began", "server", "alert")]

    inferred = NoteSources(older, lambda: 10.0)
    inferred.take_batch(batch(a_snapshot(4.0, None), stats=down))  # notes null: a server older than notes
    assert [(n.ts, n.kind, n.source) for n in older.notes()] == [(5.0, "outage_began", "app")]


def test_the_feed_batch_keeps_notes_and_only_counts_a_topic_it_does_not_know():
    got = FeedBatch()
    got.add(note_event(3, 1.0, "wip_limit", "WIP limit set to 2 (was none)", old=0, new=2))
    got.add(protocol.OtherEvent(seq=4, ts=1.0, topic="forecast_scores"))
    assert got and [n.seq for n in got.notes] == [3] and got.messages == 2
    assert not got.pool_events and not got.stats and not got.story_events


def _lines(layer, role: str) -> list[float]:
    """The x of every vertical line of a layer's path in a role's colour."""
    item = layer.items.get(role)
    if item is None:
        return []
    path = item.path()
    xs = [path.elementAt(i).x for i in range(path.elementCount()) if path.elementAt(i).isMoveTo()]
    return xs


def test_every_time_chart_draws_the_notes_and_shows_them_under_the_mouse(qtbot):
    now = time.time()
    dashboard = shown_dashboard(qtbot, [stats_row(now - 120 + k, k) for k in range(121)])
    log = NoteLog()
    dashboard.notes.set_log(log)
    log.add(Note(now - 60, "simulator", "started, 5 stories/s"))
    log.add(Note(now - 30, "outage_began", "outage began, writes refused: disk full"))
    log.add(Note(now - 20, "autoscale", "2 → 4 workers: grow"))
    dashboard.set_window(300)
    qtbot.waitUntil(lambda: not dashboard.notes.dirty, timeout=5_000)  # drawn at the next frame
    for layer in dashboard.notes.layers:
        assert _lines(layer, "note") == [now - 60]  # the autoscaler's resize is no line
        assert _lines(layer, "alert") == [now - 30]
        assert layer.items["alert"].pen().color() == theme.current().colour("alert")
        assert layer.items["alert"].pen().style() == theme.DOT

    # Under the mouse: the note within a few pixels of the pointer; the resize only over the pool's chart.
    tips = dashboard.notes.tips[0]
    first, pool = dashboard.plots[0], dashboard.plots[-1]

    def at(plot, ts):
        return plot.vb.mapViewToScene(QPointF(ts, plot.viewRange()[1][1] / 2))

    assert [n.text for n in tips.notes_at(at(first, now - 30))] == ["outage began, writes refused: disk full"]
    assert tips.notes_at(at(first, now - 45)) == []
    assert tips.notes_at(at(first, now - 20)) == []
    assert [n.kind for n in tips.notes_at(at(pool, now - 20))] == ["autoscale"]

    dashboard.notes.set_visible(False)  # the View menu's Annotations, unchecked
    assert not any(item.isVisible() for layer in dashboard.notes.layers for item in layer.items.values())
    assert tips.notes_at(at(first, now - 30)) == []


def test_the_flow_tabs_time_charts_draw_the_notes_too(qtbot):
    from storypulse.desktop.flow import FlowTab

    fake = SimpleNamespace(call=lambda *a, **k: 0)
    tab = FlowTab(fake, fake)
    qtbot.addWidget(tab)
    tab.resize(1000, 700)
    tab.show()
    qtbot.waitExposed(tab)
    log = NoteLog()
    tab.notes.set_log(log)
    log.add(Note(time.time() - 10, "wip_limit", "WIP limit set to 4"))
    tab._draw(time.time())
    assert len(tab.notes.layers) == len(tab.time_charts) == 3
    assert all(len(_lines(layer, "note")) == 1 for layer in tab.notes.layers)


def test_a_wip_limit_set_from_the_window_is_noted_once_by_the_server(qtbot, server, tmp_path):
    from storypulse.desktop.feed import CONNECTED
    from storypulse.desktop.window import MainWindow

    window = MainWindow(server.endpoints, QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(window)
    window.show()
    replied = []
    window.flow.wip_limit_set.connect(replied.append)
    try:
        qtbot.waitUntil(lambda: window.connection_state == CONNECTED, timeout=20_000)
        # The server's start came with the snapshot, before this app joined.
        assert [(n.kind, n.source) for n in window.notes.notes()] == [("started", "server")]
        window.flow.wip.spin.setValue(3)
        window.flow.wip.apply.click()

        def both_came() -> bool:  # the reply (the app's own note) and the server's note
            return replied == [3] and any(n.source == "server" and n.kind == "wip_limit"
                                          for n in window.notes.notes())
        qtbot.waitUntil(both_came, timeout=10_000)
        (note,) = [n for n in window.notes.notes() if n.kind == "wip_limit"]  # once
        assert (note.text, note.source) == ("WIP limit set to 3 (was none)", "server")
        assert note.ts == pytest.approx(window.dashboard.clock.now(), abs=5)  # the server's clock
    finally:
        window.close()
