"""The main window: dashboard, stories and flow tabs, simulator and pool on the side, state in the status bar.

Every action is in the menu bar (Alt opens it) and most have a shortcut too
(Help ▸ Keyboard shortcuts lists them). The theme (theme.py) and whether the
charts show annotations (annotations.py) are settings like the others.
"""

from __future__ import annotations

import html

import os
from datetime import datetime

from PySide6.QtCore import QSettings, Qt, Slot
from PySide6.QtGui import QAction, QActionGroup, QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractButton, QApplication, QComboBox, QFileDialog, QHBoxLayout, QLabel, QMainWindow, QMenu, QMessageBox, QScrollArea, QTabWidget, QToolBar,
    QVBoxLayout, QWidget,
)

from storypulse.endpoints import Endpoints

from . import theme
from .annotations import NoteLog
from .dashboard import WINDOWS, Dashboard
from .export import DoneExport
from .feed import CONNECTED, CONNECTING, DISCONNECTED, RECONNECTING, Feed
from .flow import FlowTab
from .note_sources import NoteSources
from .pool import PoolPanel
from .requests import Requests
from .simulator import SimulatorPanel, SimulatorSettings
from .stories import StoriesPanel
from .story_dialog import AddStoryDialog

TABS = ("dashboard", "stories", "flow")  # in tab order: Ctrl+1, Ctrl+2, Ctrl+3
STATE_ROLES = {CONNECTED: "connected", CONNECTING: "connecting", RECONNECTING: "reconnecting",
               DISCONNECTED: "disconnected"}  # the series role (theme.SERIES) of each state's colour
SIDE_WIDTH_LINES = 21.5  # the side panel's width in lines of text (300 pixels at a 14-pixel line)
THEME_LABELS = {"system": "&Follow the system", "light": "&Light", "dark": "&Dark"}


class MainWindow(QMainWindow):
    def __init__(self, endpoints: Endpoints, settings: QSettings, parent: QWidget | None = None,
                 theme_choice: str | None = None):
        """`theme_choice`: one of theme.CHOICES, else the remembered one (else "system")."""
        super().__init__(parent)
        self.endpoints = endpoints
        self.settings = settings
        self.theme_choice = theme_choice or str(settings.value("view/theme", "system"))
        if self.theme_choice not in theme.CHOICES:
            self.theme_choice = "system"  # a bad remembered value must not lock the user out
        theme.use(theme.resolve(self.theme_choice))  # before the widgets: they are made in its colours
        self.connection_state = CONNECTING
        self.connection_detail = str(endpoints)
        self.database_cause: str | None = None  # why the server's database refuses writes, while it does
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
        self.tabs.setAccessibleName("Views")
        self.notes = NoteLog(parent=self)  # annotations on every time chart
        self.note_sources = NoteSources(self.notes, self.dashboard.clock.now, self)
        self.dashboard.notes.set_log(self.notes)
        self.flow.notes.set_log(self.notes)

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
        side_scroll.setAccessibleName("Simulator and worker pool")
        side_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        # 300 pixels at the usual 9-10 pt, and wider with a larger font (a scale factor needs nothing).
        side_scroll.setFixedWidth(max(round(SIDE_WIDTH_LINES * self.fontMetrics().height()),
                                      side.minimumSizeHint().width()))

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
        self.feed.batch_ready.connect(self.simulator_panel.apply_batch)
        self.feed.batch_ready.connect(self._show_database)
        self.feed.batch_ready.connect(self.note_sources.take_batch)
        self.feed.state_changed.connect(self._show_state)
        self.simulator_panel.running_changed.connect(self.note_sources.simulator_toggled)
        self.simulator_panel.rate.valueChanged.connect(self.note_sources.simulator_rate)
        self.simulator_panel.scenario_changed.connect(self.note_sources.simulator_scenario)
        self.flow.wip_limit_set.connect(self.note_sources.wip_limit_set)
        self.flow.stage_limit_set.connect(self.note_sources.stage_limit_set)
        self.pool_panel.bounds_set.connect(self.note_sources.pool_bounds_set)
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
        self.note_sources.simulator_rate(self.simulator_panel.rate.value())
        theme.follow(self, self._apply_theme)
        QGuiApplication.styleHints().colorSchemeChanged.connect(self._on_system_scheme)
        self.feed.start()

    # -- actions -----------------------------------------------------------------
    def _make_actions(self) -> None:
        toolbar = QToolBar("Main")
        toolbar.setObjectName("main-toolbar")
        toolbar.setMovable(False)
        self.addToolBar(toolbar)
        # Menus made with the window as their parent and kept here: PySide then never takes one
        # for its own to delete (a submenu made by addMenu(title) was seen to lose its wrapper).
        self.menus = {name: QMenu(title, self) for name, title in (
            ("file", "&File"), ("view", "&View"), ("windows", "Time &window"), ("themes", "&Theme"),
            ("run", "&Run"), ("help", "&Help"))}
        file_menu, view_menu, windows, themes, run_menu, help_menu = self.menus.values()
        for menu in (file_menu, view_menu, run_menu, help_menu):
            self.menuBar().addMenu(menu)

        def action(menu, text: str, shortcut, slot, tip: str = "", checkable: bool = False) -> QAction:
            act = QAction(text, self)
            if shortcut:
                act.setShortcuts(shortcut if isinstance(shortcut, list) else [shortcut])
            plain = text.replace("&", "")
            act.setToolTip(f"{tip or plain} ({act.shortcut().toString()})" if shortcut else (tip or plain))
            act.setStatusTip(tip or plain)
            act.setCheckable(checkable)
            (act.toggled if checkable else act.triggered).connect(slot)
            self.addAction(act)
            menu.addAction(act)
            return act

        self.add_action = action(file_menu, "&Add story…", QKeySequence.StandardKey.New, self.open_add_dialog)
        self.delete_action = action(file_menu, "&Delete", [QKeySequence(Qt.Key.Key_Delete)], self._delete_selected,
                                    "Delete the selected stories")
        file_menu.addSeparator()
        self.export_png_action = action(file_menu, "Export &PNG…", QKeySequence("Ctrl+E"), self.export_png,
                                        "Save the dashboard as a PNG image")
        self.export_csv_action = action(file_menu, "Export &CSV…", QKeySequence("Ctrl+Shift+E"), self.export_csv,
                                        "Save the stats history as CSV")
        self.export_done_action = action(file_menu, "Export d&one stories…", QKeySequence("Ctrl+Shift+D"),
                                         self.export_done,
                                         "Save the completed stories with their lead and cycle times as CSV")
        file_menu.addSeparator()
        action(file_menu, "&Quit", QKeySequence.StandardKey.Quit, self.close)

        for i, name in enumerate(TABS):
            action(view_menu, f"&{name.capitalize()}", QKeySequence(f"Ctrl+{i + 1}"),
                   lambda _=False, n=name: self.open_tab(n), f"Show the {name} tab")
        view_menu.addSeparator()
        self.pause_action = action(view_menu, "&Pause", QKeySequence("P"), self.dashboard.toggle_pause,
                                   "Pause or resume the charts (P or Space)")
        # Space pauses too, unless a button has the focus: Space is how a keyboard presses it.
        QShortcut(QKeySequence(Qt.Key.Key_Space), self, self._space)
        view_menu.addMenu(windows)
        self.window_actions = QActionGroup(self)
        for label, seconds in WINDOWS:
            act = action(windows, label, None, lambda on, s=seconds: on and self.set_window_length(s),
                         f"Show the last {label} on the charts", checkable=True)
            act.setData(seconds)
            self.window_actions.addAction(act)
        windows.addSeparator()
        action(windows, "&Longer", QKeySequence("Ctrl+-"), lambda: self._step_window(+1), "A longer time window")
        action(windows, "&Shorter", [QKeySequence("Ctrl+="), QKeySequence("Ctrl++")], lambda: self._step_window(-1),
               "A shorter time window")
        self.notes_action = action(view_menu, "&Annotations", QKeySequence("Ctrl+Shift+A"), self.show_notes,
                                   "Mark on the charts what happened: simulator, limits, pool, database", checkable=True)
        view_menu.addMenu(themes)
        self.theme_actions = QActionGroup(self)
        for choice in theme.CHOICES:
            act = action(themes, THEME_LABELS[choice], None, lambda on, c=choice: on and self.set_theme(c),
                         f"The {choice} colours" if choice != "system" else "The colours the desktop uses",
                         checkable=True)
            act.setData(choice)
            self.theme_actions.addAction(act)
        themes.addSeparator()
        action(themes, "&Next theme", QKeySequence("Ctrl+Shift+T"), self._next_theme, "Follow the system, light, dark")

        self.simulate_action = action(run_menu, "&Simulator", QKeySequence("Ctrl+R"), self._toggle_simulator,
                                      "Start or stop the simulator")
        action(run_menu, "Simulator s&ettings", QKeySequence("Ctrl+Shift+R"),
               lambda: self.simulator_panel.rate.setFocus(Qt.FocusReason.ShortcutFocusReason),
               "Go to the simulator's rate and spread")
        action(run_menu, "Worker &pool bounds", QKeySequence("Ctrl+Shift+P"),
               lambda: self.pool_panel.min_workers.setFocus(Qt.FocusReason.ShortcutFocusReason),
               "Go to the pool's min and max workers")
        action(run_menu, "WIP &limit", QKeySequence("Ctrl+L"), self._focus_wip_limit, "Go to the Flow tab's WIP limit")
        action(help_menu, "&Keyboard shortcuts", QKeySequence.StandardKey.HelpContents, self.show_shortcuts)

        for act in (self.add_action, self.delete_action):
            toolbar.addAction(act)
        toolbar.addSeparator()
        window_label = QLabel(" &Window ")
        toolbar.addWidget(window_label)
        self.window_choice = QComboBox()
        self.window_choice.setAccessibleName("Chart time window")
        window_label.setBuddy(self.window_choice)  # Alt+W
        for label, seconds in WINDOWS:
            self.window_choice.addItem(label, seconds)
        self.window_choice.currentIndexChanged.connect(self._on_window_choice)
        toolbar.addWidget(self.window_choice)
        toolbar.addAction(self.pause_action)
        toolbar.addSeparator()
        toolbar.addAction(self.export_png_action)
        toolbar.addAction(self.export_csv_action)

    def shortcut_list(self) -> list[tuple[str, str]]:
        """(what, keys) of every action with a shortcut, in menu order."""
        return [(act.text().replace("&", ""), ", ".join(k.toString(QKeySequence.SequenceFormat.NativeText)
                                                         for k in act.shortcuts()))
                for act in self.actions() if act.shortcuts()]

    @Slot()
    def show_shortcuts(self) -> None:
        rows = "".join(f"<tr><td>{html.escape(what)}</td><td>&nbsp;&nbsp;<b>{html.escape(keys)}</b></td></tr>"
                       for what, keys in self.shortcut_list())
        box = QMessageBox(QMessageBox.Icon.Information, "Keyboard shortcuts",
                          f"<table>{rows}</table><p>Alt opens the menus; Tab moves between controls.</p>",
                          QMessageBox.StandardButton.Close, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

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

    @Slot()
    def _space(self) -> None:
        focused = QApplication.focusWidget()
        if isinstance(focused, QAbstractButton):
            focused.animateClick()
        else:
            self.dashboard.toggle_pause()

    @Slot()
    def _focus_wip_limit(self) -> None:
        self.open_tab("flow")
        self.flow.wip.spin.setFocus(Qt.FocusReason.ShortcutFocusReason)

    def set_window_length(self, seconds: int) -> None:
        self.window_choice.setCurrentIndex(max(0, self.window_choice.findData(seconds)))

    def _step_window(self, step: int) -> None:
        index = self.window_choice.currentIndex() + step
        self.window_choice.setCurrentIndex(min(max(index, 0), self.window_choice.count() - 1))

    @Slot(int)
    def _on_window_choice(self, index: int) -> None:
        seconds = int(self.window_choice.itemData(index))
        self.dashboard.set_window(seconds)
        self.flow.set_window(seconds)
        for act in self.window_actions.actions():
            if act.data() == seconds and not act.isChecked():
                act.setChecked(True)

    # -- theme and annotations ---------------------------------------------------
    def set_theme(self, choice: str) -> None:
        """Light, dark or the system's (theme.CHOICES), at once and remembered."""
        self.theme_choice = choice
        theme.use(theme.resolve(choice))
        for act in self.theme_actions.actions():
            if act.data() == choice and not act.isChecked():
                act.setChecked(True)

    def _next_theme(self) -> None:
        self.set_theme(theme.CHOICES[(theme.CHOICES.index(self.theme_choice) + 1) % len(theme.CHOICES)])

    @Slot()
    def _on_system_scheme(self, *_: object) -> None:
        if self.theme_choice == "system":
            theme.use(theme.resolve("system"))

    def _apply_theme(self, colours: theme.Theme) -> None:
        self._show_state(self.connection_state, self.connection_detail)
        self._database_text()

    @Slot(bool)
    def show_notes(self, on: bool) -> None:
        self.dashboard.notes.set_visible(on)
        self.flow.notes.set_visible(on)
        if self.notes_action.isChecked() != on:
            self.notes_action.setChecked(on)

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
        self.connection_detail = detail
        colour = theme.current().text_colour(STATE_ROLES.get(state, "connecting")).name()
        self.connection.setText(f"<span style='color:{colour}'>●</span> {html.escape(text)}")
        self.connection.setToolTip(detail)
        self.connection.setAccessibleName(f"Connection: {text}")

    @Slot(object)
    def _show_database(self, batch) -> None:
        stats = batch.stats[-1] if batch.stats else (batch.snapshot.stats if batch.snapshot else None)
        if stats is None:
            return
        down = stats.database != "ok"
        self.database_cause = (stats.database_error or "no cause given") if down else None
        self._database_text()

    def _database_text(self) -> None:
        cause = self.database_cause
        if cause is not None:
            colour = theme.current().text_colour("disconnected").name()
            self.database.setText(f"<span style='color:{colour}'>⚠ database unavailable</span> — writes refused: "
                                  f"{html.escape(cause)}")
            self.database.setAccessibleName(f"Database unavailable, writes refused: {cause}")
            self.database.setToolTip("The server keeps serving from memory and retries; it "
                                     "resumes by itself when the database accepts writes again.")
        self.database.setVisible(cause is not None)

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
        scenario = str(s.value("simulator/scenario", ""))
        if scenario:
            self.simulator_panel.load_scenario(scenario)  # one gone since says so in the panel
        # (a key of its own since the tasks moved under the stories: a side-by-side split saved
        # before would restore its orientation too)
        splitter = s.value("stories/split_vertical")
        if splitter is not None:
            self.stories.splitter.restoreState(splitter)
        for act in self.theme_actions.actions():
            act.setChecked(act.data() == self.theme_choice)
        self.flow.measure_choice.choose(str(s.value("view/flow_measure", "lead")))
        notes = s.value("view/annotations", True)
        self.show_notes(notes not in (False, "false", "0", 0))

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
        s.setValue("simulator/scenario", self.simulator_panel.scenario.source())
        s.setValue("stories/split_vertical", self.stories.splitter.saveState())
        s.setValue("view/theme", self.theme_choice)
        s.setValue("view/annotations", self.notes_action.isChecked())
        s.setValue("view/flow_measure", self.flow.measure.key)
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
