"""Annotations: the notes, where they come from, and the lines and tooltips on every time chart.

The log and the outage watch are pure and fed directly; the layers are checked
on the dashboard and the Flow tab as built, with an explicit clock; a WIP limit
set from the window against a real server is noted once the server took it.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from PySide6.QtCore import QPointF, QSettings

from storypulse.desktop import theme
from storypulse.desktop.annotations import KINDS, Note, NoteLog
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
    log.add(Note(40.0, "pool", "bounds"))
    assert [n.ts for n in log.notes()] == [20, 30, 40]  # bounded: the oldest goes


def test_a_kind_this_app_does_not_know_is_a_plain_note_on_every_chart():
    """What the server will publish (phase 2) plugs in as it is: any kind, source "server"."""
    note = Note(5.0, "stage_limit", "build limited to 3", source="server")
    assert note.role == "note" and note.drawn and "Stage_limit: build limited to 3" in note.describe()
    assert Note(5.0, "outage", "x").role == "alert"
    assert not Note(5.0, "autoscale", "grow").drawn  # marked by the pool chart's triangles instead
    assert all(role in theme.SERIES for role, _, _ in KINDS.values())


def stats(ts: float, database: str = "ok", error: str | None = None):
    return SimpleNamespace(ts=ts, database=database, database_error=error)


def test_an_outage_is_noted_where_it_began_and_ended():
    watch = OutageWatch()
    notes = [watch.feed(stats(t, *(("unavailable", "disk full") if 3 <= t < 6 else ()))) for t in range(9)]
    found = [(n.ts, n.text) for n in notes if n is not None]
    assert found == [(3, "outage began, writes refused: disk full"), (6, "outage ended, writes accepted again")]
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
        (1_020.0, "limit", "WIP limit set to 4"),
        (1_020.0, "limit", "WIP limit lifted"),
        (1_020.0, "pool", "bounds set to 2–8 workers"),
        (1_020.0, "simulator", "stopped"),
    ]
    events = [SimpleNamespace(ts=1_030.0, old_size=2, new_size=4, reason="grow 2 -> 4: 5 queued tasks"),
              SimpleNamespace(ts=1_031.0, old_size=4, new_size=3, reason="bounds now 1..3: 4 -> 3")]
    sources.take_batch(SimpleNamespace(snapshot=None, stats=[], pool_events=events))
    assert [(n.kind, n.text) for n in log.notes()[-2:]] == [
        ("autoscale", "2 → 4 workers: grow 2 -> 4: 5 queued tasks"), ("pool", "4 → 3 workers: bounds now 1..3: 4 -> 3")]


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
    log.add(Note(now - 30, "outage", "outage began, writes refused: disk full"))
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
    log.add(Note(time.time() - 10, "limit", "WIP limit set to 4"))
    tab._draw(time.time())
    assert len(tab.notes.layers) == len(tab.time_charts) == 3
    assert all(len(_lines(layer, "note")) == 1 for layer in tab.notes.layers)


def test_a_wip_limit_set_from_the_window_is_noted_once_the_server_took_it(qtbot, server, tmp_path):
    from storypulse.desktop.feed import CONNECTED
    from storypulse.desktop.window import MainWindow

    window = MainWindow(server.endpoints, QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(window)
    window.show()
    try:
        qtbot.waitUntil(lambda: window.connection_state == CONNECTED, timeout=20_000)
        window.flow.wip.spin.setValue(3)
        window.flow.wip.apply.click()
        qtbot.waitUntil(lambda: any(n.kind == "limit" for n in window.notes.notes()), timeout=10_000)
        note = [n for n in window.notes.notes() if n.kind == "limit"][-1]
        assert note.text == "WIP limit set to 3"
        assert note.ts == pytest.approx(window.dashboard.clock.now(), abs=5)  # the server's clock
    finally:
        window.close()
