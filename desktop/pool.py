"""Pool controls: the server's worker bounds (set_pool) and what the pool is doing now.

With a workflow each stage has its own pool: a stage list picks which one the
bounds and figures are of, and set_pool names it (`stage`). With one stage the
list is hidden and the panel is what it always was.
"""

from __future__ import annotations

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import QComboBox, QFormLayout, QGroupBox, QLabel, QPushButton, QSpinBox, QVBoxLayout, QWidget

from storypulse import protocol

from .live import muted
from .requests import Requests
from .stage_math import stage_names, stages_of


class PoolPanel(QGroupBox):
    message = Signal(str)
    bounds_set = Signal(int, int, str)  # the server took these bounds from this app (for this stage; "": the pool)

    def __init__(self, requests: Requests, parent: QWidget | None = None):
        super().__init__("Worker pool", parent)
        self.requests = requests
        self.stage = QComboBox()
        self.stage.setAccessibleName("Stage whose pool to show and set")
        self.stage.currentIndexChanged.connect(self._on_stage)
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
        self.stages: tuple[str, ...] = ()  # the workflow's (none: one pool)
        self._latest = None  # the newest stats
        self.form = QFormLayout()
        self.form.addRow("Stage", self.stage)
        self.form.addRow("Min workers", self.min_workers)
        self.form.addRow("Max workers", self.max_workers)
        self.form.setRowVisible(0, False)
        layout = QVBoxLayout(self)
        layout.addLayout(self.form)
        layout.addWidget(self.apply)
        layout.addWidget(self.now)

    def selected(self):
        """The figures of the pool shown: the chosen stage's, or the whole pool's."""
        stats = self._latest
        if stats is None or not self.stages:
            return stats
        name = self.stage.currentText()
        return next((s for s in stages_of(stats) if s.name == name), stats)

    @Slot(object)
    def apply_batch(self, batch) -> None:
        stats = batch.stats[-1] if batch.stats else (batch.snapshot.stats if batch.snapshot else None)
        if stats is None:
            return
        self._latest = stats
        names = stage_names(stats)
        if names != self.stages:
            self._use_stages(names)
        if not self._initialised or batch.snapshot is not None:
            self._show_bounds()
        self._show_now()

    def _use_stages(self, names: tuple[str, ...]) -> None:
        chosen = self.stage.currentText()
        self.stages = names
        self.stage.blockSignals(True)
        self.stage.clear()
        self.stage.addItems(names)
        self.stage.setCurrentIndex(max(0, self.stage.findText(chosen)))
        self.stage.blockSignals(False)
        self.form.setRowVisible(0, bool(names))
        self._initialised = False

    def _show_bounds(self) -> None:
        pool = self.selected()
        if pool is not None:
            self.min_workers.setValue(pool.min_workers)
            self.max_workers.setValue(pool.max_workers)
            self._initialised = True

    def _show_now(self) -> None:
        pool = self.selected()
        if pool is None:
            return
        if self.stages:
            text = (f"{pool.workers} workers, {pool.workers_busy} busy, {pool.tasks_queued:,} queued\n"
                    f"bounds {pool.min_workers}–{pool.max_workers}")
        else:
            text = (f"{pool.workers} workers, {pool.workers_busy} busy, target {pool.workers_target}\n"
                    f"bounds {pool.min_workers}–{pool.max_workers}")
        if self.now.text() != text:
            self.now.setText(text)

    @Slot(int)
    def _on_stage(self, index: int) -> None:
        self._show_bounds()
        self._show_now()

    @Slot()
    def submit(self) -> None:
        low, high = self.min_workers.value(), self.max_workers.value()
        if low > high:
            self.message.emit("Min workers must not exceed max workers.")
            return
        stage = self.stage.currentText() if self.stages else ""
        self.apply.setEnabled(False)

        def done(result: protocol.PoolResult) -> None:
            self.apply.setEnabled(True)
            whose = f"Pool of {stage}" if stage else "Pool"
            self.message.emit(f"{whose} bounds now {result.min_workers}–{result.max_workers} "
                              f"(target {result.target}).")
            self.bounds_set.emit(result.min_workers, result.max_workers, stage)

        def failed(code: str, message: str) -> None:
            self.apply.setEnabled(True)
            self.message.emit(f"Could not change the pool: {message}")

        bounds = {"min_workers": low, "max_workers": high, **({"stage": stage} if stage else {})}
        self.requests.call("set_pool", bounds, on_ok=done, on_error=failed)
