"""The simulator panel: stories at a chosen rate, sent from a worker thread, never the UI thread.

Same generator and pacer as `storypulse load` (common/loadgen.py): arrivals steady or
Poisson, estimates uniform or log-normal. The settings may change while it runs: the
panel hands the latest to the worker, which applies them before its next story. Requests are
pipelined on one Client with a bound on those in flight, so a slow server slows
the simulator down instead of piling up requests. A `busy` reply is back-pressure,
not an error: the story is sent again later, backing off while the server stays
busy (as `storypulse load` does, common/loadrun.py).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, replace

import zmq
from PySide6.QtCore import QObject, QThread, Signal, Slot
from PySide6.QtWidgets import (
    QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QPushButton, QSpinBox, QVBoxLayout,
    QWidget,
)

from storypulse import protocol
from storypulse.client import Client, RequestError, ServerUnavailable
from storypulse.loadrun import BACKOFF_FIRST, BACKOFF_MAX
from storypulse.endpoints import Endpoints
from storypulse.loadgen import Pacer, StoryGenerator

MAX_IN_FLIGHT = 200
RATE_MAX = 1_000.0


@dataclass
class SimulatorSettings:
    rate: float = 2.0
    tasks: tuple[int, int] = (1, 5)
    estimate_ms: tuple[int, int] = (200, 3000)
    arrivals: str = "steady"  # or "poisson"
    estimates: str = "uniform"  # or "lognormal"


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
        generator = StoryGenerator(tasks=settings.tasks, estimate_ms=settings.estimate_ms,
                                   estimates=settings.estimates)
        pacer = Pacer(settings.rate, time.monotonic(), settings.arrivals)
        self.applied = settings
        progress = SimulatorProgress(running=True)
        try:
            client = Client(self.endpoints, timeout=2.0)
        except RuntimeError as exc:  # e.g. a CURVE key missing for a remote server
            progress.running, progress.last_error = False, str(exc)
            self.progress.emit(progress)
            return
        last_report = 0.0
        last_reply = time.monotonic()
        pending: dict[int, dict] = {}  # request id -> the story sent
        retry: deque[tuple[float, dict]] = deque()  # (when, story): refused as busy, in due order
        backoff = BACKOFF_FIRST
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                changed = self.take_update()
                if changed is not None:
                    generator.retune(changed.tasks, changed.estimate_ms, changed.estimates)
                    if changed.arrivals != pacer.arrivals:
                        pacer = Pacer(changed.rate, now, changed.arrivals)
                    else:
                        pacer.set_rate(changed.rate, now)
                    self.applied = changed
                while retry and retry[0][0] <= now and client.in_flight < MAX_IN_FLIGHT:
                    story = retry.popleft()[1]
                    pending[client.send("create_story", **story)] = story
                    progress.resent += 1
                for _ in range(pacer.due(now)):
                    if client.in_flight >= MAX_IN_FLIGHT:
                        progress.skipped += 1
                        continue
                    story = generator.story()
                    pending[client.send("create_story", **story)] = story
                    progress.sent += 1
                wait = min(pacer.wait(time.monotonic()), 0.1)
                if retry:
                    wait = max(0.0, min(wait, retry[0][0] - time.monotonic()))
                if client.in_flight and client.socket.poll(wait * 1000):
                    while client.in_flight:
                        try:
                            request_id, result = client.receive(timeout=0)
                        except ServerUnavailable:
                            break
                        except RequestError as exc:
                            last_reply = time.monotonic()
                            story = pending.pop(exc.request_id, None) if isinstance(exc.request_id, int) else None
                            if exc.code in protocol.TRY_AGAIN and story is not None:
                                progress.busy += 1
                                retry.append((last_reply + backoff, story))
                                backoff = min(BACKOFF_MAX, backoff * 2)
                            else:
                                progress.errors += 1
                                progress.last_error = exc.message
                            continue
                        pending.pop(request_id, None)
                        if result is not None:
                            progress.created += 1
                            backoff = BACKOFF_FIRST
                        last_reply = time.monotonic()
                elif not client.in_flight:
                    self._stop.wait(wait)
                    last_reply = time.monotonic()
                if client.in_flight and time.monotonic() - last_reply > 3.0:
                    # The server went away: forget what is in flight and start afresh.
                    progress.errors += client.in_flight
                    progress.last_error = "no reply from the server"
                    client.close()
                    pending.clear()
                    last_reply = time.monotonic()
                if time.monotonic() - last_report >= 0.5:
                    self.progress.emit(_copy(progress))
                    last_report = time.monotonic()
        except zmq.ZMQError as exc:
            progress.last_error = str(exc)
        finally:
            client.close()
            progress.running = False
            self.progress.emit(_copy(progress))


def _copy(progress: SimulatorProgress) -> SimulatorProgress:
    return SimulatorProgress(**vars(progress))


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
        self.rate.setValue(2.0)
        self.rate.setSuffix(" stories/s")
        self.tasks_min, self.tasks_max = _spin(1, protocol.TASKS_MAX, 1), _spin(1, protocol.TASKS_MAX, 5)
        self.estimate_min = _spin(0, protocol.ESTIMATE_MS_MAX, 200, step=100, suffix=" ms")
        self.estimate_max = _spin(0, protocol.ESTIMATE_MS_MAX, 3000, step=100, suffix=" ms")
        self.arrivals = _choice({"steady": "steady", "poisson": "Poisson"})
        self.arrivals.setToolTip("Steady: one story every 1/rate s. Poisson: independent arrivals "
                                 "at that mean rate, with bursts and lulls.")
        self.estimates = _choice({"uniform": "uniform", "lognormal": "log-normal"})
        self.estimates.setToolTip("Uniform within the range, or log-normal: the median at the "
                                  "geometric middle of the range, most tasks short, a few long.")
        self.button = QPushButton("Start")
        self.button.setCheckable(True)
        self.button.toggled.connect(self._on_toggled)
        self.status = QLabel("stopped")
        self.status.setStyleSheet("color: #555;")
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
        self.worker.stop()
        self.thread.quit()
        return self.thread.wait(timeout_ms)


def _spin(low: int, high: int, value: int, step: int = 1, suffix: str = "") -> QSpinBox:
    box = QSpinBox()
    box.setRange(low, high)
    box.setValue(value)
    box.setSingleStep(step)
    box.setSuffix(suffix)
    box.setMinimumWidth(80)
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
