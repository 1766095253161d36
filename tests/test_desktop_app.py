"""The desktop app against a real server process (real workers, real sockets), offscreen.

Every wait is a condition with a deadline (qtbot.waitUntil), never a sleep.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from PySide6.QtCore import QSettings, QThread
from PySide6.QtWidgets import QDialogButtonBox, QMessageBox

from storypulse.client import RequestError
from storypulse.desktop.dashboard import format_figure
from storypulse.desktop.feed import CONNECTED, RECONNECTING
from storypulse.desktop.window import MainWindow
from support import REPO, ServerProcess, free_port_block, wait_for

COUNTS = ("open_stories", "completed_stories")


@pytest.fixture
def open_window(qtbot, tmp_path):
    """Open the main window on a server; every window is closed (and its threads joined) at the end."""
    windows = []

    def make(server) -> MainWindow:
        settings = QSettings(str(tmp_path / f"settings-{len(windows)}.ini"), QSettings.Format.IniFormat)
        window = MainWindow(server.endpoints, settings)
        qtbot.addWidget(window)
        window.show()
        windows.append(window)
        qtbot.waitUntil(lambda: window.connection_state == CONNECTED, timeout=20_000)
        return window

    yield make
    for window in windows:
        window.close()


def shown(window: MainWindow, field: str) -> str:
    return window.dashboard.numbers[field].value.text()


def add_stories(server, count: int, estimate_ms: int = 100) -> list[int]:
    with server.client() as client:
        return [client.create_story(f"story {i}", [{"estimate_ms": estimate_ms}] * 2).story_id for i in range(count)]


def server_stats(server):
    with server.client() as client:
        return client.snapshot(history_seconds=0).stats


def test_dashboard_numbers_equal_the_servers_snapshot_and_follow_it(qtbot, server, open_window):
    add_stories(server, 5)
    wait_for(lambda: server_stats(server).completed_stories == 5, timeout=30, what="5 stories done")
    window = open_window(server)
    # Quiet now: the counts shown must be the server's, exactly.
    stats = server_stats(server)
    for field in COUNTS:
        qtbot.waitUntil(lambda f=field: shown(window, f) == format_figure(f, getattr(stats, f)), timeout=10_000)
    # The charts start from the snapshot's history, not empty.
    assert len(window.dashboard.buffer) >= 1

    add_stories(server, 7)
    wait_for(lambda: server_stats(server).completed_stories == 12, timeout=30, what="12 stories done")
    stats = server_stats(server)
    for field in COUNTS:
        qtbot.waitUntil(lambda f=field: shown(window, f) == format_figure(f, getattr(stats, f)), timeout=10_000)
    # The rates move too: some stories per second were produced in the last window.
    assert window.dashboard.buffer.column("stories_produced_per_s").max() > 0


def test_a_story_added_through_the_dialog_appears_and_completes(qtbot, server, open_window):
    window = open_window(server)
    window.tabs.setCurrentWidget(window.stories)
    window.add_action.trigger()
    dialog = window.add_dialog
    assert dialog is not None and dialog.isVisible()
    ok = dialog.buttons.button(QDialogButtonBox.StandardButton.Ok)
    dialog.name.setText("")
    assert not ok.isEnabled()  # validated in the dialog: no name, no story
    dialog.name.setText("Pay by invoice")
    dialog.description.setPlainText("for business customers")
    dialog.set_tasks([("API endpoint", 300), ("form", 200), ("email", 100)])
    assert ok.isEnabled()
    ok.click()
    model = window.stories.model

    def story():
        return next((s for s in model.cached_stories() if s.name == "Pay by invoice"), None)

    qtbot.waitUntil(lambda: story() is not None, timeout=15_000)
    assert story().tasks_total == 3
    qtbot.waitUntil(lambda: story() is not None and story().status == "done", timeout=30_000)
    # Its tasks, with their states and times, when selected.
    assert window.stories.select_story(story().story_id)
    details = window.stories.details
    qtbot.waitUntil(lambda: details.tasks.rowCount() == 3 and details.story is not None, timeout=10_000)
    assert [details.tasks.item(r, 2).text() for r in range(3)] == ["done"] * 3


def test_deleting_selected_stories_after_confirmation(qtbot, server, open_window):
    ids = add_stories(server, 3, estimate_ms=0)
    window = open_window(server)
    window.tabs.setCurrentWidget(window.stories)
    panel = window.stories
    qtbot.waitUntil(lambda: {s.story_id for s in panel.model.cached_stories()} >= set(ids), timeout=15_000)
    panel.table.selectRow(panel.model.row_of(ids[0]))
    qtbot.waitUntil(lambda: panel.details.story is not None, timeout=10_000)
    panel.table.selectAll()
    assert sorted(panel.selected_ids()) == sorted(ids)

    panel.delete_selected()  # asks first
    box = panel.confirm_box
    assert box is not None and box.isVisible()
    box.button(QMessageBox.StandardButton.Cancel).click()
    assert panel.confirm_box is None
    with server.client() as client:
        assert client.list_stories().total == 3  # nothing sent

    panel.table.selectAll()
    panel.delete_selected()
    with qtbot.waitSignal(panel.message, timeout=15_000) as said:  # once every reply is in
        panel.confirm_box.button(QMessageBox.StandardButton.Yes).click()
    assert said.args == ["Deleted 3 stories."]
    with server.client() as client:
        assert client.list_stories().total == 0
    qtbot.waitUntil(lambda: panel.model.rowCount() == 0, timeout=10_000)


def test_the_feed_decodes_in_its_own_thread_not_the_ui_thread(qtbot, server, open_window):
    window = open_window(server)
    with qtbot.waitSignal(window.feed.batch_ready, timeout=10_000) as blocker:
        pass
    batch = blocker.args[0]
    worker = window.feed.worker
    ui_thread = threading.get_ident()
    assert worker.decode_thread_id is not None
    assert batch.decoded_in_thread == worker.decode_thread_id != ui_thread
    assert window.feed.thread.isRunning() and window.feed.thread is not QThread.currentThread()
    assert worker.thread() is window.feed.thread  # the worker object lives in the feed thread


def test_shows_reconnecting_and_recovers_after_a_server_restart(qtbot, server, open_window):
    window = open_window(server)
    version = window.server_version
    assert version and "connected" in window.connection.text()
    server.kill9()
    qtbot.waitUntil(lambda: window.connection_state == RECONNECTING, timeout=15_000)
    assert "reconnecting" in window.connection.text()
    server.start()  # same port, same database
    qtbot.waitUntil(lambda: window.connection_state == CONNECTED, timeout=30_000)
    add_stories(server, 2, estimate_ms=0)
    wait_for(lambda: server_stats(server).completed_stories == 2, timeout=30, what="2 stories done")
    qtbot.waitUntil(lambda: shown(window, "completed_stories") == "2", timeout=10_000)


def test_the_status_bar_shows_a_database_that_refuses_writes_until_it_accepts_them(
        qtbot, server, open_window):
    import sqlite3

    window = open_window(server)
    assert window.database.isHidden()
    lock = sqlite3.connect(server.db, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    try:
        with pytest.raises(RequestError):
            add_stories(server, 1)
        qtbot.waitUntil(lambda: not window.database.isHidden(), timeout=10_000)
        assert "database unavailable" in window.database.text() and "locked" in window.database.text()
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    wait_for(lambda: _adds(server), timeout=20, what="writes accepted again")
    qtbot.waitUntil(window.database.isHidden, timeout=10_000)
    assert window.connection_state == CONNECTED
    # The outage is annotated on the charts, by the server's notes: where it began (with its
    # cause) and where it ended.
    def outage():
        return [note for note in window.notes.notes() if note.kind.startswith("outage")]
    qtbot.waitUntil(lambda: len(outage()) == 2, timeout=10_000)
    assert [(n.kind, n.source) for n in outage()] == [("outage_began", "server"), ("outage_ended", "server")]
    began, ended = outage()
    assert "locked" in began.text and began.ts < ended.ts and "accepts writes again" in ended.text


def _adds(server) -> bool:
    try:
        add_stories(server, 1)
        return True
    except RequestError:
        return False


def test_closing_the_window_stops_every_thread_without_warnings(qtbot, qtlog, server, tmp_path):
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    window = MainWindow(server.endpoints, settings)
    window.show()
    qtbot.waitUntil(lambda: window.connection_state == CONNECTED, timeout=20_000)
    window.simulator_panel.start_with(rate=20, tasks=(1, 2), estimate_ms=(0, 10))
    qtbot.waitUntil(lambda: window.simulator_panel.last_progress.created > 0, timeout=15_000)
    assert window.simulator_panel.worker.send_thread_id not in (None, threading.get_ident())
    threads = [window.feed.thread, window.requests.thread, window.pages.thread, window.simulator_panel.thread]
    window.close()
    for thread in threads:
        assert thread.isFinished()
    assert settings.value("server/address") == str(server.endpoints)
    noise = ("propagateSizeHints",)  # the offscreen platform's own remark on show()
    problems = [r.message for r in qtlog.records if not any(n in r.message for n in noise)]
    assert problems == []


def test_the_app_command_starts_and_exits_cleanly(server, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "storypulse.desktop", "--server", str(server.endpoints), "--quit-after", "3",
         "--settings", str(tmp_path / "s.ini"), "--theme", "dark", "--scenario", "bottleneck"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    saved = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    assert saved.value("view/theme") == "dark" and saved.value("simulator/scenario") == "bottleneck"
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\n[load]\nrate = -1\n[[stage]]\nname = "dev"\n')
    refused = subprocess.run([sys.executable, "-m", "storypulse", "desktop", "--scenario", str(bad)], cwd=REPO,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "--scenario: " in refused.stderr and "line 3" in refused.stderr
    wrong = subprocess.run([sys.executable, "-m", "storypulse", "demo", "--theme", "purple"], cwd=REPO,
                           capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 2 and "--theme: invalid choice: 'purple'" in wrong.stderr


def test_exports_shortcuts_and_remembered_settings(qtbot, server, open_window, tmp_path):
    window = open_window(server)
    qtbot.waitUntil(lambda: len(window.dashboard.buffer) >= 3, timeout=10_000)
    png, csv_path = tmp_path / "charts.png", tmp_path / "stats.csv"
    assert window.export_png(str(png)) == str(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert window.export_csv(str(csv_path)) == str(csv_path)
    lines = csv_path.read_text().splitlines()
    assert lines[0].startswith("time,ts,stories_produced_per_s") and len(lines) >= 4

    assert window.pause_action.shortcut().toString() == "P"  # and Space (tests/test_desktop_access.py)
    assert window.add_action.shortcut().toString() == "Ctrl+N"
    assert window.export_png_action.shortcut().toString() == "Ctrl+E"
    window.pause_action.trigger()
    assert window.dashboard.paused and not window.dashboard.plot_timer.isActive()
    window.pause_action.trigger()
    assert not window.dashboard.paused and window.dashboard.plot_timer.isActive()

    window.window_choice.setCurrentIndex(window.window_choice.findData(900))
    assert window.dashboard.window_s == 900
    window.simulator_panel.rate.setValue(7.5)
    window.set_theme("dark")
    window.show_notes(False)
    window.close()
    settings = QSettings(str(tmp_path / "settings-0.ini"), QSettings.Format.IniFormat)
    assert int(settings.value("dashboard/window_s")) == 900
    assert float(settings.value("simulator/rate")) == 7.5
    assert settings.value("window/geometry") is not None
    assert settings.value("view/theme") == "dark" and settings.value("view/annotations") in (False, "false")


def _demo(tmp_path, port: int, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_STATE_HOME": str(tmp_path / "state")}
    return subprocess.run(
        [sys.executable, "-m", "storypulse", "demo", "--port", str(port), "--settings", str(tmp_path / "demo.ini"),
         "--quit-after", "8", "--rate", "5", *extra],
        cwd=REPO, capture_output=True, text=True, timeout=120, env=env,
    )


def test_demo_starts_a_server_simulates_and_stops_it_on_close(tmp_path):
    from storypulse.endpoints import Endpoints
    from storypulse.desktop.demo import server_answers
    port = free_port_block()
    db = tmp_path / "demo.db"
    done = _demo(tmp_path, port, "--db", str(db), "--estimate-ms", "0-50")
    assert done.returncode == 0, done.stderr
    assert "started a server" in done.stderr and "server stopped (exit code 0)" in done.stderr
    assert not server_answers(Endpoints("127.0.0.1", port))  # the server it started is gone
    # The simulator ran: its stories are in the demo's database.
    check = ServerProcess(db)
    check.start()
    try:
        with check.client() as client:
            assert client.list_stories(limit=1).total > 0
    finally:
        check.stop()


def test_demo_with_a_scenario_runs_its_workflow_and_simulates_its_load(tmp_path):
    port = free_port_block()
    db = tmp_path / "demo.db"
    done = _demo(tmp_path, port, "--db", str(db), "--scenario", "bottleneck")
    assert done.returncode == 0, done.stderr
    assert QSettings(str(tmp_path / "demo.ini"), QSettings.Format.IniFormat).value("simulator/scenario") == \
        "bottleneck"
    check = ServerProcess(db, extra=["--scenario", "bottleneck"])  # the same workflow, or it would refuse
    check.start()
    try:
        with check.client() as client:
            page = client.list_stories(limit=20)
            assert page.total > 0
            stages = {task.stage for story in page.stories for task in client.get_story(story.story_id).tasks}
        assert stages == {"analysis", "build", "test"}  # the scenario's per-stage load, not one range
    finally:
        check.stop()
    refused = _demo(tmp_path, port, "--scenario", "bottleneck", "--tasks", "1-2")
    assert refused.returncode == 2 and "--tasks: the scenario sets each stage's tasks" in refused.stderr


def test_demo_uses_a_server_already_answering_and_leaves_it_running(server, tmp_path):
    done = _demo(tmp_path, server.port)
    assert done.returncode == 0, done.stderr
    assert "using the server already answering" in done.stderr
    with server.client() as client:
        client.ping()  # still there
        assert client.list_stories(limit=1).total > 0  # and the simulator fed it


def test_the_stories_table_shows_lead_and_cycle_times_as_the_server_sends_them(qtbot, server, open_window):
    from PySide6.QtCore import Qt

    from storypulse.desktop.story_model import CYCLE_COLUMN, LEAD_COLUMN, span

    ids = add_stories(server, 3, estimate_ms=0)
    wait_for(lambda: server_stats(server).completed_stories == 3, timeout=30, what="3 stories done")
    window = open_window(server)
    window.tabs.setCurrentWidget(window.stories)
    model = window.stories.model
    qtbot.waitUntil(lambda: {s.story_id for s in model.cached_stories()} >= set(ids), timeout=15_000)
    assert model.headerData(LEAD_COLUMN, Qt.Orientation.Horizontal) == "Lead time"
    assert model.headerData(CYCLE_COLUMN, Qt.Orientation.Horizontal) == "Cycle time"
    with server.client() as client:
        stories = client.list_stories(limit=100).stories
    # What the reply carries: empty cells from a server without flow figures, durations from one with them.
    for story in stories:
        row = model.row_of(story.story_id)
        assert model.data(model.index(row, LEAD_COLUMN)) == span(story.lead_time_s)
        assert model.data(model.index(row, CYCLE_COLUMN)) == span(story.cycle_time_s)


def test_completed_stories_export_as_csv_with_their_times(qtbot, server, open_window, tmp_path):
    import csv

    from storypulse.desktop.export import HEADER, csv_row

    ids = add_stories(server, 5, estimate_ms=0)
    wait_for(lambda: server_stats(server).completed_stories == 5, timeout=30, what="5 stories done")
    add_stories(server, 1, estimate_ms=3_600_000)  # open for an hour: not exported
    window = open_window(server)
    assert window.export_done_action.shortcut().toString() == "Ctrl+Shift+D"
    window.done_export.worker.page = 2  # three pages for five stories
    path = tmp_path / "done.csv"
    export = window.done_export
    assert window.export_done(str(path))
    assert not window.export_done_action.isEnabled() and not window.export_done(str(path))  # one at a time
    # (Waiting on the UI thread's view of the end: a waitSignal blocker would hear it in the export thread.)
    qtbot.waitUntil(lambda: export.last_result is not None, timeout=20_000)
    assert export.last_result == (str(path), 5, "")
    assert window.export_done_action.isEnabled()
    assert "Saved 5 completed stories" in window.statusBar().currentMessage()
    with server.client() as client:
        done = client.list_stories(status="done", limit=100).stories
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == list(HEADER)
    # Oldest first, each story once, with the times the server's reply carries.
    assert rows[1:] == [csv_row(story) for story in sorted(done, key=lambda s: s.story_id)]
    assert [int(r[0]) for r in rows[1:]] == ids
    assert not (tmp_path / "done.csv.part").exists()

    missing = tmp_path / "no such folder" / "done.csv"
    assert window.export_done(str(missing))
    qtbot.waitUntil(lambda: export.last_result is not None, timeout=20_000)
    assert export.last_result[2] and not missing.exists()
    assert "Could not export" in window.statusBar().currentMessage()


def test_the_flow_tab_shows_a_real_servers_workflow_and_sets_its_limits_and_pools(qtbot, server_factory,
                                                                                   open_window):
    """A server running the `bottleneck` scenario's workflow, fed by the app's own simulator on the same
    scenario: a band per stage equal to the stats, aging by stage, a stage's WIP limit and pool set."""
    from PySide6.QtCore import QObject, Slot

    class Recorder(QObject):  # lives in the UI thread: the feed's batches arrive here queued
        def __init__(self):
            super().__init__()
            self.stats = {}

        @Slot(object)
        def take(self, batch):
            for stats in ([batch.snapshot.stats] if batch.snapshot else []) + list(batch.stats):
                self.stats[stats.ts] = stats

    names = ("analysis", "build", "test")
    server = server_factory(time_scale=0.05, extra=["--scenario", "bottleneck"]).start()
    window = open_window(server)
    recorder = Recorder()
    window.feed.batch_ready.connect(recorder.take)
    window.open_tab("flow")
    flow = window.flow
    qtbot.waitUntil(lambda: flow.stage_names == names and window.pool_panel.stages == names, timeout=10_000)
    window.simulator_panel.start_with(scenario="bottleneck", rate=12)
    qtbot.waitUntil(lambda: flow.clock.latest.completed_stories >= 20
                    and sum(s.stories > 0 for s in flow.clock.latest.stages) >= 2, timeout=30_000)

    # Each band is the stats at its time: done, test, build, analysis, waiting. Rows drawn before the
    # recorder was connected cannot be checked: wait until 20 drawn rows can (a busy machine is slower).
    def checkable_rows():
        return sum(at in recorder.stats for at in flow.cfd_edges[0])

    qtbot.waitUntil(lambda: not flow._dirty and flow.diagnostics["frames"] > 0 and checkable_rows() >= 20,
                    timeout=20_000)
    ts, edges = flow.cfd_edges[0], flow.cfd_stage_edges
    matched = 0
    for i, at in enumerate(ts):
        stats = recorder.stats.get(at)
        if stats is not None:
            analysis, build, test = (s.stories for s in stats.stages)
            done = stats.completed_stories
            assert [e[i] for e in edges] == [done, done + test, done + test + build, done + stats.stories_in_progress,
                                             done + stats.open_stories]
            matched += 1
    assert matched >= 20

    # Aging: the open stories in the columns of the stages they count in.
    qtbot.waitUntil(lambda: flow.aging_state is not None and len(flow.aging_state.story_ids) > 0, timeout=10_000)
    assert set(np.rint(flow.aging_state.x)) <= {0, 1, 2, 3}

    # A stage's WIP limit from its card: the server takes it, and once the stories that were in the stage
    # (a lower limit stops nothing started) are down to it, it holds.
    card = flow.stage_strip.card("build")
    card.spin.setValue(2)
    with qtbot.waitSignal(flow.stage_limit_set, timeout=10_000):
        card.apply.click()
    qtbot.waitUntil(lambda: flow.clock.latest.stages[1].wip_limit == 2
                    and flow.clock.latest.stages[1].stories <= 2, timeout=20_000)
    since = flow.clock.latest.ts
    qtbot.waitUntil(lambda: flow.clock.latest.ts > since + 2, timeout=10_000)
    later = [s for at, s in recorder.stats.items() if at >= since]
    assert len(later) > 10 and all(s.stages[1].stories <= 2 for s in later)
    qtbot.waitUntil(lambda: card.stories.text().endswith("/ 2 stories"), timeout=5_000)

    # The pool of `test`, from the pool panel.
    panel = window.pool_panel
    panel.stage.setCurrentIndex(2)
    panel.max_workers.setValue(3)
    with qtbot.waitSignal(panel.bounds_set, timeout=10_000) as took:
        panel.apply.click()
    assert took.args[2] == "test"
    qtbot.waitUntil(lambda: flow.clock.latest.stages[2].max_workers == 3, timeout=10_000)
    assert [s.max_workers for s in flow.clock.latest.stages] == [2, 6, 3]
    window.simulator_panel.button.setChecked(False)
