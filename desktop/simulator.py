"""The simulator panel: stories at a chosen rate, sent from a worker thread, never the UI thread.

The worker runs the load loop that `storypulse load` runs (storypulse.loadrun):
the same generator and pacer (arrivals steady or Poisson, estimates uniform or
log-normal), requests pipelined up to a bound, `busy` replies resent with a
backoff. The settings may change while it runs: the panel hands the latest to
the worker, which applies them before its next story.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace

import zmq
from PySide6.QtCore import QObject, QThread, Signal, Slot
from PySide6.QtWidgets import (
    QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QPushButton, QSpinBox, QVBoxLayout,
    QWidget,
)

from storypulse import protocol
from storypulse.client import Client
from storypulse.endpoints import Endpoints
from storypulse.loadgen import StoryGenerator
from storypulse.loadrun import LoadRun, Tally

from .live import muted
from .simulator_settings import DEFAULTS, SimulatorSettings
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
                                   estimates=settings.estimates)
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
        self.rate.setDecimals(1)
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

        form = QFormLayout()
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        form.addRow("Rate", self.rate)
        form.addRow("Tasks per story", _pair(self.tasks_min, self.tasks_max))
        form.addRow("Estimates", _pair(self.estimate_min, self.estimate_max))
        form.addRow("Spread", self.estimates)
        form.addRow("Arrivals", self.arrivals)
        # The settings stay editable while it runs: each change applies to the next stories.
        for box in (self.rate, self.tasks_min, self.tasks_max, self.estimate_min, self.estimate_max):
            box.valueChanged.connect(self._on_edited)
        for combo in (self.arrivals, self.estimates):
            combo.currentIndexChanged.connect(self._on_edited)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.button)
        layout.addWidget(self.status)

    def settings(self) -> SimulatorSettings:
        tasks = sorted((self.tasks_min.value(), self.tasks_max.value()))
        estimates = sorted((self.estimate_min.value(), self.estimate_max.value()))
        return SimulatorSettings(self.rate.value(), (tasks[0], tasks[1]), (estimates[0], estimates[1]),
                                 arrivals=self.arrivals.currentData(), estimates=self.estimates.currentData())

    def apply_settings(self, settings: SimulatorSettings) -> None:
        self.rate.setValue(settings.rate)
        self.tasks_min.setValue(settings.tasks[0])
        self.tasks_max.setValue(settings.tasks[1])
        self.estimate_min.setValue(settings.estimate_ms[0])
        self.estimate_max.setValue(settings.estimate_ms[1])
        _select(self.arrivals, settings.arrivals)
        _select(self.estimates, settings.estimates)

    def start_with(self, rate: float, tasks: tuple[int, int], estimate_ms: tuple[int, int],
                   arrivals: str | None = None, estimates: str | None = None) -> None:
        current = self.settings()
        self.apply_settings(replace(current, rate=rate, tasks=tasks, estimate_ms=estimate_ms,
                                    arrivals=arrivals or current.arrivals,
                                    estimates=estimates or current.estimates))
        self.button.setChecked(True)

    @Slot()
    def _on_edited(self) -> None:
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
