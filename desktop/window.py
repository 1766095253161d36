"""The main window: dashboard, stories and flow tabs, simulator and pool on the side, state in the status bar."""

from __future__ import annotations

import html

import os
from datetime import datetime

from PySide6.QtCore import QSettings, Qt, Slot
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QComboBox, QFileDialog, QHBoxLayout, QLabel, QMainWindow, QScrollArea, QTabWidget, QToolBar, QVBoxLayout, QWidget,
)

from storypulse.endpoints import Endpoints

from .dashboard import WINDOWS, Dashboard
from .export import DoneExport
from .feed import CONNECTED, CONNECTING, DISCONNECTED, RECONNECTING, Feed
from .flow import FlowTab
from .pool import PoolPanel
from .requests import Requests
from .simulator import SimulatorPanel, SimulatorSettings
from .stories import StoriesPanel
from .story_dialog import AddStoryDialog

TABS = ("dashboard", "stories", "flow")  # in tab order: Ctrl+1, Ctrl+2, Ctrl+3
STATE_COLOURS = {CONNECTED: "#1aa34a", CONNECTING: "#7f8c8d", RECONNECTING: "#e67e22", DISCONNECTED: "#c0392b"}


class MainWindow(QMainWindow):
    def __init__(self, endpoints: Endpoints, settings: QSettings, parent: QWidget | None = None):
        super().__init__(parent)
        self.endpoints = endpoints
        self.settings = settings
        self.connection_state = CONNECTING
        self.server_version = ""
        self.add_dialog: AddStoryDialog | None = None
        self._closed = False
        self.setWindowTitle(f"storypulse — {endpoints}")

        self.requests = Requests(endpoints, self, name="storypulse-requests")
        self.pages = Requests(endpoints, self, name="storypulse-pages")  # slow pages never hold up actions
        self.feed = Feed(endpoints, self)
        self.done_export = DoneExport(endpoints, self)

        self.dashboard = Dashboard()
        self.stories = StoriesPanel(self.requests, self.pages)
        self.flow = FlowTab(self.requests, self.pages)
        self.simulator_panel = SimulatorPanel(endpoints)
        self.pool_panel = PoolPanel(self.requests)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.dashboard, "Dashboard")
        self.tabs.addTab(self.stories, "Stories")
        self.tabs.addTab(self.flow, "Flow")

        side = QWidget()
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(0, 6, 6, 6)
        side_layout.addWidget(self.simulator_panel)
        side_layout.addWidget(self.pool_panel)
        side_layout.addStretch(1)
        side_scroll = QScrollArea()
        side_scroll.setWidget(side)
        side_scroll.setWidgetResizable(True)
        side_scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        side_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        side_scroll.setFixedWidth(300)

        central = QWidget()

        row = QHBoxLayout(central)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(0)
        row.addWidget(self.tabs, 1)
        row.addWidget(side_scroll)
        self.setCentralWidget(central)

        self._make_actions()
        self.connection = QLabel()
        self.connection.setTextFormat(Qt.TextFormat.RichText)
        self.database = QLabel()  # shown only while the server's database refuses writes
        self.database.setTextFormat(Qt.TextFormat.RichText)
        self.database.hide()
        self.statusBar().addPermanentWidget(self.database)
        self.statusBar().addPermanentWidget(self.connection)
        self._show_state(CONNECTING, str(endpoints))

        # Every consumer is a QObject method in the UI thread: queued, runs here.
        self.feed.batch_ready.connect(self.dashboard.apply_batch)
        self.feed.batch_ready.connect(self.stories.apply_batch)
        self.feed.batch_ready.connect(self.pool_panel.apply_batch)
        self.feed.batch_ready.connect(self.flow.apply_batch)
        self.feed.batch_ready.connect(self._show_database)
        self.feed.state_changed.connect(self._show_state)
        self.stories.message.connect(self._status_message)
        self.pool_panel.message.connect(self._status_message)
        self.flow.message.connect(self._status_message)
        self.stories.add_button.clicked.connect(self.open_add_dialog)
        self.stories.export_requested.connect(self.export_done)
        self.done_export.progress.connect(self._on_export_progress)
        self.done_export.finished.connect(self._on_export_finished)
        self.dashboard.paused_changed.connect(self._on_paused)
        self.dashboard.paused_changed.connect(self.flow.set_paused)

        self._restore_settings()
        self.feed.start()

    # -- actions -----------------------------------------------------------------
    def _make_actions(self) -> None:
        toolbar = QToolBar("Main")
        toolbar.setObjectName("main-toolbar")
        toolbar.setMovable(False)
        self.addToolBar(toolbar)

        def action(text: str, shortcut, slot, tip: str = "") -> QAction:
            act = QAction(text, self)
            if shortcut:
                act.setShortcuts(shortcut if isinstance(shortcut, list) else [shortcut])
            act.setToolTip(f"{tip or text} ({act.shortcut().toString()})" if shortcut else (tip or text))
            act.triggered.connect(slot)
            self.addAction(act)
            return act

        self.add_action = action("Add story…", QKeySequence.StandardKey.New, self.open_add_dialog)
        self.delete_action = action("Delete", [QKeySequence(Qt.Key.Key_Delete)], self._delete_selected,
                                    "Delete the selected stories")
        self.pause_action = action("Pause", [QKeySequence(Qt.Key.Key_Space), QKeySequence("P")],
                                   self.dashboard.toggle_pause, "Pause or resume the charts")
        self.export_png_action = action("Export PNG…", QKeySequence("Ctrl+E"), self.export_png,
                                        "Save the dashboard as a PNG image")
        self.export_csv_action = action("Export CSV…", QKeySequence("Ctrl+Shift+E"), self.export_csv,
                                        "Save the stats history as CSV")
        self.export_done_action = action("Export done stories…", QKeySequence("Ctrl+Shift+D"), self.export_done,
                                         "Save the completed stories with their lead and cycle times as CSV")
        self.simulate_action = action("Simulator", QKeySequence("Ctrl+R"), self._toggle_simulator,
                                      "Start or stop the simulator")
        action("Quit", QKeySequence.StandardKey.Quit, self.close)
        action("Dashboard", QKeySequence("Ctrl+1"), lambda: self.open_tab("dashboard"))
        action("Stories", QKeySequence("Ctrl+2"), lambda: self.open_tab("stories"))
        action("Flow", QKeySequence("Ctrl+3"), lambda: self.open_tab("flow"))
        for act in (self.add_action, self.delete_action):
            toolbar.addAction(act)
        toolbar.addSeparator()
        toolbar.addWidget(QLabel(" Window "))
        self.window_choice = QComboBox()
        for label, seconds in WINDOWS:
            self.window_choice.addItem(label, seconds)
        self.window_choice.currentIndexChanged.connect(self._on_window_choice)
        toolbar.addWidget(self.window_choice)
        toolbar.addAction(self.pause_action)
        toolbar.addSeparator()
        toolbar.addAction(self.export_png_action)
        toolbar.addAction(self.export_csv_action)

    @Slot()
    def open_add_dialog(self) -> None:
        if self.add_dialog is not None:
            self.add_dialog.raise_()
            return
        dialog = AddStoryDialog(self)
        dialog.accepted.connect(self._on_dialog_accepted)
        dialog.finished.connect(self._on_dialog_finished)
        self.add_dialog = dialog
        dialog.open()

    @Slot()
    def _on_dialog_accepted(self) -> None:
        if self.add_dialog is not None:
            self.stories.create(self.add_dialog.story())

    @Slot()
    def _on_dialog_finished(self) -> None:
        if self.add_dialog is not None:
            self.add_dialog.deleteLater()
            self.add_dialog = None

    @Slot()
    def _delete_selected(self) -> None:
        if self.tabs.currentWidget() is self.stories:
            self.stories.delete_selected()

    @Slot()
    def _toggle_simulator(self) -> None:
        self.simulator_panel.button.toggle()

    def open_tab(self, name: str) -> None:
        self.tabs.setCurrentIndex(TABS.index(name))

    @Slot(int)
    def _on_window_choice(self, index: int) -> None:
        seconds = int(self.window_choice.itemData(index))
        self.dashboard.set_window(seconds)
        self.flow.set_window(seconds)

    @Slot(bool)
    def _on_paused(self, paused: bool) -> None:
        self.pause_action.setText("Resume" if paused else "Pause")

    @Slot()
    def export_png(self, path: str | None = None) -> str | None:
        path = path or self._ask_path("Save the dashboard", "png", "PNG image (*.png)")
        if path and self.dashboard.export_png(path):
            self._status_message(f"Saved {path}")
            return path
        return None

    @Slot()
    def export_csv(self, path: str | None = None) -> str | None:
        path = path or self._ask_path("Save the stats history", "csv", "CSV (*.csv)")
        if path:
            rows = self.dashboard.export_csv(path)
            self._status_message(f"Saved {rows:,} rows to {path}")
            return path
        return None

    @Slot()
    def export_done(self, path: str | None = None) -> bool:
        """Completed stories with their times to CSV, paged and written by the export thread."""
        if self.done_export.running:
            self._status_message("An export of the completed stories is already running.")
            return False
        path = path or self._ask_path("Save the completed stories", "csv", "CSV (*.csv)")
        if not path:
            return False
        self.export_done_action.setEnabled(False)
        self.stories.export_button.setEnabled(False)
        self._status_message(f"Exporting the completed stories to {path}…")
        return self.done_export.start(path)

    @Slot(int, int)
    def _on_export_progress(self, rows: int, total: int) -> None:
        self.statusBar().showMessage(f"Exporting the completed stories: {rows:,} of {total:,}…", 8000)

    @Slot(str, int, str)
    def _on_export_finished(self, path: str, rows: int, error: str) -> None:
        self.export_done_action.setEnabled(True)
        self.stories.export_button.setEnabled(True)
        if error:
            self._status_message(f"Could not export the completed stories: {error}")
        else:
            self._status_message(f"Saved {rows:,} completed stories to {path}")

    def _ask_path(self, title: str, suffix: str, filter_: str) -> str | None:
        folder = self.settings.value("export/folder", os.path.expanduser("~"))
        name = f"storypulse-{datetime.now():%Y%m%d-%H%M%S}.{suffix}"
        path, _ = QFileDialog.getSaveFileName(self, title, os.path.join(folder, name), filter_)
        if path:
            self.settings.setValue("export/folder", os.path.dirname(path))
        return path or None

    # -- state ---------------------------------------------------------------------
    @Slot(str, str)
    def _show_state(self, state: str, detail: str) -> None:
        self.connection_state = state
        if state == CONNECTED:
            self.server_version = detail
            text = f"connected to {self.endpoints} — server {detail}"
        elif state == RECONNECTING:
            text = f"reconnecting to {self.endpoints}…"
        elif state == CONNECTING:
            text = f"connecting to {self.endpoints}…"
        else:
            text = f"disconnected — {detail}" if detail else "disconnected"
        colour = STATE_COLOURS.get(state, "#333")
        self.connection.setText(f"<span style='color:{colour}'>●</span> {text}")
        self.connection.setToolTip(detail)

    @Slot(object)
    def _show_database(self, batch) -> None:
        stats = batch.stats[-1] if batch.stats else (batch.snapshot.stats if batch.snapshot else None)
        if stats is None:
            return
        down = stats.database != "ok"
        if down:
            cause = html.escape(stats.database_error or "no cause given")
            self.database.setText(f"<span style='color:{STATE_COLOURS[DISCONNECTED]}'>⚠ database "
                                  f"unavailable</span> — writes refused: {cause}")
            self.database.setToolTip("The server keeps serving from memory and retries; it "
                                     "resumes by itself when the database accepts writes again.")
        self.database.setVisible(down)

    @Slot(str)
    def _status_message(self, text: str) -> None:
        self.statusBar().showMessage(text, 8000)

    # -- settings and shutdown ---------------------------------------------------
    def _restore_settings(self) -> None:
        s = self.settings
        geometry = s.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(1280, 800)
        seconds = int(s.value("dashboard/window_s", 300))
        index = max(0, self.window_choice.findData(seconds))
        self.window_choice.setCurrentIndex(index)
        self._on_window_choice(index)
        d = SimulatorSettings()
        self.simulator_panel.apply_settings(SimulatorSettings(
            rate=float(s.value("simulator/rate", d.rate)),
            tasks=(int(s.value("simulator/tasks_min", d.tasks[0])), int(s.value("simulator/tasks_max", d.tasks[1]))),
            estimate_ms=(int(s.value("simulator/estimate_min", d.estimate_ms[0])),
                         int(s.value("simulator/estimate_max", d.estimate_ms[1]))),
            arrivals=str(s.value("simulator/arrivals", d.arrivals)),
            estimates=str(s.value("simulator/estimates", d.estimates)),
        ))
        splitter = s.value("stories/splitter")
        if splitter is not None:
            self.stories.splitter.restoreState(splitter)

    def save_settings(self) -> None:
        s = self.settings
        s.setValue("server/address", str(self.endpoints))
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("dashboard/window_s", self.dashboard.window_s)
        sim = self.simulator_panel.settings()
        s.setValue("simulator/rate", sim.rate)
        s.setValue("simulator/tasks_min", sim.tasks[0])
        s.setValue("simulator/tasks_max", sim.tasks[1])
        s.setValue("simulator/estimate_min", sim.estimate_ms[0])
        s.setValue("simulator/estimate_max", sim.estimate_ms[1])
        s.setValue("simulator/arrivals", sim.arrivals)
        s.setValue("simulator/estimates", sim.estimates)
        s.setValue("stories/splitter", self.stories.splitter.saveState())
        s.sync()

    def shutdown(self) -> bool:
        """Stop every thread; True when all ended in time. Safe to call twice."""
        if self._closed:
            return True
        self._closed = True
        self.dashboard.plot_timer.stop()
        self.dashboard.text_timer.stop()
        self.stories.refresh_timer.stop()
        for timer in (self.flow.plot_timer, self.flow.text_timer, self.flow.aging_timer):
            timer.stop()
        ok = self.simulator_panel.shutdown()
        ok = self.feed.stop() and ok
        ok = self.requests.stop() and ok
        ok = self.pages.stop() and ok
        ok = self.done_export.stop() and ok
        return ok

    def closeEvent(self, event) -> None:
        self.save_settings()
        self.shutdown()
        super().closeEvent(event)
