"""The simulator panel: stories at a chosen rate, sent from a worker thread, never the UI thread.

The worker runs the load loop that `storypulse load` runs (storypulse.loadrun):
the same generator and pacer (arrivals steady or Poisson, estimates uniform or
log-normal), requests pipelined up to a bound, `busy` replies resent with a
backoff. The settings may change while it runs: the panel hands the latest to
the worker, which applies them before its next story.

A scenario (scenario_load.py) gives it a load per workflow stage: the panel
then edits one stage's tasks, estimates and blocks at a time.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, replace

import zmq
from PySide6.QtCore import QObject, QThread, Signal, Slot
from PySide6.QtWidgets import (
    QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QPushButton, QSpinBox,
    QVBoxLayout, QWidget,
)

from storypulse import protocol
from storypulse.client import Client
from storypulse.endpoints import Endpoints
from storypulse.loadgen import StoryGenerator
from storypulse.loadrun import LoadRun, Tally
from storypulse.scenario import ScenarioError

from .live import muted
from .scenario_load import FROM_FILE, ONE_RANGE, ScenarioLoad
from .stage_math import stages_of
from .simulator_settings import DEFAULTS, SimulatorSettings
from . import theme
from .threads import stop_thread

MAX_IN_FLIGHT = 200
RATE_MAX = 1_000.0
SERVER_GONE_S = 3.0  # no reply for this long, with requests in flight: the server went away


@dataclass
class SimulatorProgress:
    sent: int = 0
    created: int = 0
    errors: int = 0
    skipped: int = 0  # due stories not sent because too many were in flight
    busy: int = 0  # `busy` replies: those stories are sent again later
    resent: int = 0
    last_error: str = ""
    running: bool = False


class SimulatorWorker(QObject):
    progress = Signal(object)  # SimulatorProgress

    def __init__(self, endpoints: Endpoints):
        super().__init__()
        self.endpoints = endpoints
        self._stop = threading.Event()
        self.send_thread_id: int | None = None
        self._lock = threading.Lock()
        self._latest: SimulatorSettings | None = None  # set by the UI thread, taken by run()
        self.applied: SimulatorSettings | None = None  # the settings in force, for tests

    def stop(self) -> None:
        self._stop.set()

    def update(self, settings: SimulatorSettings) -> None:
        """From any thread: the settings for the stories from now on (the latest one wins).

        A plain method, not a slot: run() never returns to the event loop while it runs.
        """
        with self._lock:
            self._latest = settings

    def take_update(self) -> SimulatorSettings | None:
        with self._lock:
            latest, self._latest = self._latest, None
        return latest

    @Slot(object)
    def run(self, settings: SimulatorSettings) -> None:
        self._stop.clear()
        self.send_thread_id = threading.get_ident()
        try:
            client = Client(self.endpoints, timeout=2.0)
        except RuntimeError as exc:  # e.g. a CURVE key missing for a remote server
            self.progress.emit(SimulatorProgress(last_error=str(exc)))
            return
        generator = StoryGenerator(tasks=settings.tasks, estimate_ms=settings.estimate_ms,
                                   estimates=settings.estimates, stages=settings.stages)
        loop = LoadRun(client, generator, rate=settings.rate, max_in_flight=MAX_IN_FLIGHT,
                       start=time.monotonic(), arrivals=settings.arrivals, keep_latencies=False)
        self.applied = settings
        last_report = 0.0
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                changed = self.take_update()
                if changed is not None:
                    loop.retune(changed, now)
                    self.applied = changed
                loop.send_due(now)
                # Wake at least every 0.1 s: a stop or new settings apply without delay.
                wake = min(loop.next_wakeup(now), now + 0.1)
                if loop.pending:
                    loop.receive(wake)
                else:
                    self._stop.wait(max(0.0, wake - time.monotonic()))
                if loop.silent_for(time.monotonic()) > SERVER_GONE_S:
                    # The server went away: forget what is in flight and start afresh.
                    loop.abandon("no reply from the server")
                if time.monotonic() - last_report >= 0.5:
                    self.progress.emit(_progress(loop.tally, running=True))
                    last_report = time.monotonic()
        except zmq.ZMQError as exc:
            loop.tally.last_error = str(exc)
        finally:
            client.close()
            self.progress.emit(_progress(loop.tally, running=False))


def _progress(tally: Tally, running: bool) -> SimulatorProgress:
    return SimulatorProgress(sent=tally.sent, created=tally.acked, errors=tally.errors, skipped=tally.skipped,
                             busy=tally.busy, resent=tally.resent, last_error=tally.last_error, running=running)


class SimulatorPanel(QGroupBox):
    _start = Signal(object)
    running_changed = Signal(bool)
    scenario_changed = Signal(str)  # its name, or "" (one range)

    def __init__(self, endpoints: Endpoints, parent: QWidget | None = None):
        super().__init__("Simulator", parent)
        self.thread = QThread()
        self.thread.setObjectName("storypulse-simulator")
        self.worker = SimulatorWorker(endpoints)
        self.worker.moveToThread(self.thread)
        self._start.connect(self.worker.run)
        self.worker.progress.connect(self._on_progress)
        self.thread.start()
        self.running = False
        self.last_progress = SimulatorProgress()

        self.rate = QDoubleSpinBox()
        self.rate.setRange(0.1, RATE_MAX)
        self.rate.setDecimals(2)  # a scenario's rate, say 0.88, as it is
        self.rate.setValue(DEFAULTS.rate)
        self.rate.setSuffix(" stories/s")
        self.tasks_min = _spin(1, protocol.TASKS_MAX, DEFAULTS.tasks[0])
        self.tasks_max = _spin(1, protocol.TASKS_MAX, DEFAULTS.tasks[1])
        self.estimate_min = _spin(0, protocol.ESTIMATE_MS_MAX, DEFAULTS.estimate_ms[0], step=100, suffix=" ms")
        self.estimate_max = _spin(0, protocol.ESTIMATE_MS_MAX, DEFAULTS.estimate_ms[1], step=100, suffix=" ms")
        self.arrivals = _choice({"steady": "steady", "poisson": "Poisson"})
        self.arrivals.setToolTip("Steady: one story every 1/rate s. Poisson: independent arrivals "
                                 "at that mean rate, with bursts and lulls.")
        self.estimates = _choice({"uniform": "uniform", "lognormal": "log-normal"})
        _select(self.arrivals, DEFAULTS.arrivals)
        _select(self.estimates, DEFAULTS.estimates)
        self.estimates.setToolTip("Uniform within the range, or log-normal: the median at the "
                                  "geometric middle of the range, most tasks short, a few long.")
        for box, name in ((self.rate, "Simulated stories per second"), (self.tasks_min, "Fewest tasks per story"),
                          (self.tasks_max, "Most tasks per story"), (self.estimate_min, "Shortest task estimate"),
                          (self.estimate_max, "Longest task estimate"), (self.estimates, "Spread of the estimates"),
                          (self.arrivals, "Arrivals of the stories")):
            box.setAccessibleName(name)
        self.button = QPushButton("Start")
        self.button.setAccessibleDescription("Start or stop the simulator (Ctrl+R)")
        self.button.setCheckable(True)
        self.button.toggled.connect(self._on_toggled)
        self.status = muted(QLabel("stopped"))
        self.status.setWordWrap(True)
        self.warning = QLabel("")  # the server would refuse the scenario's stories: why
        self.warning.setWordWrap(True)
        self.warning.setVisible(False)
        self.scenario = ScenarioLoad()
        self.scenario.picker.activated.connect(self._on_pick)
        self.scenario.stage.currentIndexChanged.connect(self._show_stage)
        self._one_range: SimulatorSettings | None = None  # the fields' own values while they show a stage
        self._server_stages: tuple[str, ...] = ()
        self.scenario_folder = os.path.expanduser("~")  # where "from file…" opens

        self.form = form = QFormLayout()
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        form.addRow("Scenario", self.scenario.picker)
        form.addRow("Rate", self.rate)
        form.addRow("Arrivals", self.arrivals)
        form.addRow("Stage", self.scenario.stage)
        form.addRow("Tasks per story", _pair(self.tasks_min, self.tasks_max))
        form.addRow("Estimates", _pair(self.estimate_min, self.estimate_max))
        form.addRow("Spread", self.estimates)
        form.addRow("Blocks", self.scenario.block_chance)
        form.addRow("Block time", _pair(self.scenario.block_min, self.scenario.block_max))
        self._stage_rows = (3, 7, 8)  # shown with a scenario only
        for row in self._stage_rows:
            form.setRowVisible(row, False)
        # The settings stay editable while it runs: each change applies to the next stories.
        for box in (self.rate, self.tasks_min, self.tasks_max, self.estimate_min, self.estimate_max,
                    self.scenario.block_chance, self.scenario.block_min, self.scenario.block_max):
            box.valueChanged.connect(self._on_edited)
        for combo in (self.arrivals, self.estimates):
            combo.currentIndexChanged.connect(self._on_edited)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.button)
        layout.addWidget(self.warning)
        layout.addWidget(self.status)
        theme.follow(self, self._apply_theme)

    def _fields(self) -> tuple[tuple[int, int], tuple[int, int], str]:
        """Tasks, estimates and spread as the fields show them (one range's, or the stage's shown)."""
        tasks = sorted((self.tasks_min.value(), self.tasks_max.value()))
        estimates = sorted((self.estimate_min.value(), self.estimate_max.value()))
        return (tasks[0], tasks[1]), (estimates[0], estimates[1]), self.estimates.currentData()

    def settings(self) -> SimulatorSettings:
        if self.scenario.active and self._one_range is not None:
            return replace(self._one_range, rate=self.rate.value(), arrivals=self.arrivals.currentData(),
                           stages=tuple(self.scenario.loads))
        tasks, estimates, spread = self._fields()
        return SimulatorSettings(self.rate.value(), tasks, estimates, arrivals=self.arrivals.currentData(),
                                 estimates=spread)

    # -- scenarios ------------------------------------------------------------------------
    def load_scenario(self, name_or_path: str) -> bool:
        """Run a scenario's load (a name of one that comes with storypulse, or a file); False, with the
        reason in the status line, when it cannot be used."""
        if not name_or_path:
            self._leave_scenario()
            return True
        if not self.scenario.active:
            self._one_range = self.settings()
        try:
            found = self.scenario.load(name_or_path)
        except ScenarioError as exc:
            self.status.setText(f"scenario not loaded: {exc}")
            if not self.scenario.active:
                self.scenario.clear()
            return False
        for row in self._stage_rows:
            self.form.setRowVisible(row, True)
        self.tasks_min.setMinimum(0)  # a stage may have no task of a story
        self.tasks_max.setMinimum(0)
        self._quietly(lambda: (self.rate.setValue(found.rate), _select(self.arrivals, found.arrivals)))
        self.scenario.stage.setCurrentIndex(0)
        self._show_stage(0)
        self.status.setText(f"scenario {found.name}: {found.description}")
        self._check_server()
        self.scenario_changed.emit(found.name)
        self._on_edited()
        return True

    def _leave_scenario(self) -> None:
        if not self.scenario.active:
            return
        self.scenario.clear()
        for row in self._stage_rows:
            self.form.setRowVisible(row, False)
        if self._one_range is not None:  # the fields as they were before the scenario
            self._quietly(lambda: self.apply_settings(self._one_range))
        self.tasks_min.setMinimum(1)
        self.tasks_max.setMinimum(1)
        self._check_server()
        self.scenario_changed.emit("")
        self._on_edited()

    @Slot(int)
    def _on_pick(self, index: int) -> None:
        value = self.scenario.picker.itemData(index)
        if value == FROM_FILE:
            path, _ = QFileDialog.getOpenFileName(self, "Load a scenario", self.scenario_folder, "Scenarios (*.toml)")
            if path:
                self.scenario_folder = os.path.dirname(path)
            if not path or not self.load_scenario(path):
                self._quietly(lambda: self.scenario.picker.setCurrentIndex(
                    max(0, self.scenario.picker.findData(self.scenario.source() or ONE_RANGE))))
            return
        self.load_scenario(value)

    @Slot(int)
    def _show_stage(self, index: int) -> None:
        if not self.scenario.active or index < 0:
            return
        load = self.scenario.loads[index]
        self._quietly(lambda: self._show_fields(load.tasks, load.estimate_ms, load.estimates))
        self.scenario.show_blocks(load)

    def _show_fields(self, tasks, estimate_ms, spread) -> None:
        self.tasks_min.setValue(tasks[0])
        self.tasks_max.setValue(tasks[1])
        self.estimate_min.setValue(estimate_ms[0])
        self.estimate_max.setValue(estimate_ms[1])
        _select(self.estimates, spread)

    def _quietly(self, change) -> None:
        """A change of the fields made here, not by the user: no edit signalled for each field."""
        boxes = (self.rate, self.arrivals, self.tasks_min, self.tasks_max, self.estimate_min, self.estimate_max,
                 self.estimates, self.scenario.picker)
        for box in boxes:
            box.blockSignals(True)
        try:
            change()
        finally:
            for box in boxes:
                box.blockSignals(False)

    @Slot(object)
    def apply_batch(self, batch) -> None:
        """The server's stages, from its stats: a scenario whose stages it lacks is refused there."""
        stats = batch.stats[-1] if batch.stats else (batch.snapshot.stats if batch.snapshot else None)
        if stats is None:
            return
        names = tuple(s.name for s in stages_of(stats))
        if names != self._server_stages:
            self._server_stages = names
            self._check_server()

    def _check_server(self) -> None:
        why = self.scenario.mismatch(self._server_stages)
        self.warning.setText(f"⚠ {why}" if why else "")
        self.warning.setVisible(bool(why))

    def _apply_theme(self, colours) -> None:
        theme.set_text_colour(self.warning, colours.text_colour("disconnected"))

    def apply_settings(self, settings: SimulatorSettings) -> None:
        self.rate.setValue(settings.rate)
        self.tasks_min.setValue(settings.tasks[0])
        self.tasks_max.setValue(settings.tasks[1])
        self.estimate_min.setValue(settings.estimate_ms[0])
        self.estimate_max.setValue(settings.estimate_ms[1])
        _select(self.arrivals, settings.arrivals)
        _select(self.estimates, settings.estimates)

    def start_with(self, rate: float | None = None, tasks: tuple[int, int] | None = None,
                   estimate_ms: tuple[int, int] | None = None, arrivals: str | None = None,
                   estimates: str | None = None, scenario: str | None = None) -> None:
        """Start with these settings (those left out stay); with `scenario`, its load, at `rate` if given."""
        if scenario:
            self.load_scenario(scenario)
            if rate is not None:
                self.rate.setValue(rate)
        else:
            self._leave_scenario()
            current = self.settings()
            self.apply_settings(replace(current, rate=current.rate if rate is None else rate,
                                        tasks=tasks or current.tasks, estimate_ms=estimate_ms or current.estimate_ms,
                                        arrivals=arrivals or current.arrivals,
                                        estimates=estimates or current.estimates))
        self.button.setChecked(True)

    @Slot()
    def _on_edited(self) -> None:
        if self.scenario.active:
            try:
                self.scenario.edit(*self._fields())
            except ValueError as exc:  # e.g. every stage left without a task: the stories keep the last load
                self.status.setText(f"not applied: {exc}")
                return
        if self.running:
            self.worker.update(self.settings())

    @Slot(bool)
    def _on_toggled(self, on: bool) -> None:
        self.button.setText("Stop" if on else "Start")
        if on and not self.running:
            self.running = True
            self.worker.take_update()  # a change left over from the last run is older than these
            self._start.emit(self.settings())
        elif not on:
            self.worker.stop()
            self.running = False
        self.running_changed.emit(on)

    @Slot(object)
    def _on_progress(self, progress: SimulatorProgress) -> None:
        self.last_progress = progress
        text = f"sent {progress.sent:,} · added {progress.created:,}"
        if progress.errors:
            text += f" · errors {progress.errors:,} ({progress.last_error})"
        if progress.busy:
            text += f" · server busy {progress.busy:,} (resent {progress.resent:,})"
        if progress.skipped:
            text += f" · held back {progress.skipped:,}"
        self.status.setText(text if progress.running else f"stopped — {text}")

    def shutdown(self, timeout_ms: int = 5000) -> bool:
        return stop_thread(self.thread, self.worker.stop, timeout_ms)


def _spin(low: int, high: int, value: int, step: int = 1, suffix: str = "") -> QSpinBox:
    box = QSpinBox()
    box.setRange(low, high)
    box.setValue(value)
    box.setSingleStep(step)
    box.setSuffix(suffix)
    box.setMinimumWidth(box.fontMetrics().horizontalAdvance("00000 ms") + 24)  # the digits and the arrows
    return box


def _choice(items: dict[str, str]) -> QComboBox:
    """A drop-down of (value: label); currentData() is the value."""
    box = QComboBox()
    for value, label in items.items():
        box.addItem(label, value)
    return box


def _select(box: QComboBox, value: str) -> None:
    index = box.findData(value)
    if index >= 0:
        box.setCurrentIndex(index)


def _pair(a: QWidget, b: QWidget) -> QWidget:
    holder = QWidget()
    row = QHBoxLayout(holder)
    row.setContentsMargins(0, 0, 0, 0)
    row.addWidget(a)
    row.addWidget(QLabel("to"))
    row.addWidget(b)
    return holder
