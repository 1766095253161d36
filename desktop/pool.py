"""Pool controls: the server's worker bounds (set_pool) and what the pool is doing now."""

from __future__ import annotations

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import QFormLayout, QGroupBox, QLabel, QPushButton, QSpinBox, QVBoxLayout, QWidget

from storypulse import protocol

from .live import muted
from .requests import Requests


class PoolPanel(QGroupBox):
    message = Signal(str)
    bounds_set = Signal(int, int)  # the server took these bounds from this app

    def __init__(self, requests: Requests, parent: QWidget | None = None):
        super().__init__("Worker pool", parent)
        self.requests = requests
        self.min_workers = QSpinBox()
        self.min_workers.setRange(0, protocol.WORKERS_MAX)
        self.max_workers = QSpinBox()
        self.max_workers.setRange(1, protocol.WORKERS_MAX)
        self.min_workers.setAccessibleName("Min workers")
        self.max_workers.setAccessibleName("Max workers")
        self.apply = QPushButton("Apply")
        self.apply.setAccessibleName("Apply the pool bounds")
        self.apply.clicked.connect(self.submit)
        self.now = muted(QLabel("–\n"))
        # Two fixed lines, no word wrap: a wrapped label that changes its line count
        # leaves the group box too short, squashing the spin boxes above it.
        self._initialised = False
        form = QFormLayout()
        form.addRow("Min workers", self.min_workers)
        form.addRow("Max workers", self.max_workers)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.apply)
        layout.addWidget(self.now)

    @Slot(object)
    def apply_batch(self, batch) -> None:
        stats = batch.stats[-1] if batch.stats else (batch.snapshot.stats if batch.snapshot else None)
        if stats is None:
            return
        if not self._initialised or batch.snapshot is not None:
            self.min_workers.setValue(stats.min_workers)
            self.max_workers.setValue(stats.max_workers)
            self._initialised = True
        self.now.setText(
            f"{stats.workers} workers, {stats.workers_busy} busy, target {stats.workers_target}\n"
            f"bounds {stats.min_workers}–{stats.max_workers}"
        )

    @Slot()
    def submit(self) -> None:
        low, high = self.min_workers.value(), self.max_workers.value()
        if low > high:
            self.message.emit("Min workers must not exceed max workers.")
            return
        self.apply.setEnabled(False)

        def done(result: protocol.PoolResult) -> None:
            self.apply.setEnabled(True)
            self.message.emit(f"Pool bounds now {result.min_workers}–{result.max_workers} (target {result.target}).")
            self.bounds_set.emit(result.min_workers, result.max_workers)

        def failed(code: str, message: str) -> None:
            self.apply.setEnabled(True)
            self.message.emit(f"Could not change the pool: {message}")

        self.requests.call("set_pool", {"min_workers": low, "max_workers": high}, on_ok=done, on_error=failed)
