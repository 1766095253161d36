"""The add-story dialog; validation uses the protocol's own limits, before anything is sent."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog, QDialogButtonBox, QFormLayout, QHBoxLayout, QHeaderView, QLabel, QLineEdit,
    QPlainTextEdit, QPushButton, QSpinBox, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget,
)

from storypulse import protocol

from . import theme


def validate_story(name: str, description: str, tasks: list[tuple[str, str]]) -> list[str]:
    """Problems with a story as typed (task estimates still text); empty when it can be sent."""
    problems = []
    if not name.strip():
        problems.append("The story needs a name.")
    elif len(name) > protocol.NAME_MAX:
        problems.append(f"The name has {len(name)} characters; at most {protocol.NAME_MAX}.")
    if len(description) > protocol.DESCRIPTION_MAX:
        problems.append(f"The description has {len(description)} characters; at most {protocol.DESCRIPTION_MAX}.")
    if not tasks:
        problems.append("A story needs at least one task.")
    elif len(tasks) > protocol.TASKS_MAX:
        problems.append(f"{len(tasks)} tasks; at most {protocol.TASKS_MAX}.")
    for i, (task_name, estimate) in enumerate(tasks, 1):
        if len(task_name) > protocol.NAME_MAX:
            problems.append(f"Task {i}: the name is longer than {protocol.NAME_MAX} characters.")
        try:
            value = int(estimate.strip())
        except ValueError:
            problems.append(f"Task {i}: the estimate must be a whole number of milliseconds.")
            continue
        if not 0 <= value <= protocol.ESTIMATE_MS_MAX:
            problems.append(f"Task {i}: the estimate must be within 0-{protocol.ESTIMATE_MS_MAX:,} ms.")
    return problems


class AddStoryDialog(QDialog):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Add story")
        self.resize(520, 460)
        self.name = QLineEdit()
        self.name.setMaxLength(protocol.NAME_MAX)
        self.name.setPlaceholderText("e.g. Speed up checkout")
        self.description = QPlainTextEdit()
        self.description.setPlaceholderText("optional")
        self.description.setMaximumHeight(80)

        self.tasks = QTableWidget(0, 2)
        self.tasks.setAccessibleName("Tasks")
        self.tasks.setHorizontalHeaderLabels(["Task", "Estimate (ms)"])
        self.tasks.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.tasks.verticalHeader().setVisible(False)
        add = QPushButton("Add task")
        add.clicked.connect(lambda: self.add_task())
        remove = QPushButton("Remove task")
        remove.clicked.connect(self._remove_selected)
        self.fill_count = QSpinBox()
        self.fill_count.setRange(1, protocol.TASKS_MAX)
        self.fill_count.setValue(3)
        self.fill_estimate = QSpinBox()
        self.fill_estimate.setRange(0, protocol.ESTIMATE_MS_MAX)
        self.fill_estimate.setSingleStep(100)
        self.fill_estimate.setValue(1000)
        self.fill_estimate.setSuffix(" ms")
        self.fill_count.setAccessibleName("Number of tasks to fill in")
        self.fill_estimate.setAccessibleName("Estimate of each task filled in")
        fill = QPushButton("Fill")
        fill.setToolTip("Replace the tasks with this many, each with this estimate")
        fill.clicked.connect(self._fill)
        task_buttons = QHBoxLayout()
        for widget in (add, remove):
            task_buttons.addWidget(widget)
        task_buttons.addStretch(1)
        for widget in (QLabel("or"), self.fill_count, QLabel("tasks of"), self.fill_estimate, fill):
            task_buttons.addWidget(widget)

        self.problems = QLabel()
        self.problems.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Add story")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)

        form = QFormLayout()
        form.addRow("Name", self.name)
        form.addRow("Description", self.description)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(QLabel("Tasks"))
        layout.addWidget(self.tasks, 1)
        layout.addLayout(task_buttons)
        layout.addWidget(self.problems)
        layout.addWidget(self.buttons)

        self.name.textChanged.connect(self._validate)
        self.description.textChanged.connect(self._validate)
        self.tasks.itemChanged.connect(self._validate)
        self.add_task("task 1", 1000)
        theme.follow(self, self.apply_theme)

    def apply_theme(self, colours: theme.Theme) -> None:
        theme.set_text_colour(self.problems, colours.text_colour("alert"))

    def add_task(self, name: str = "", estimate_ms: int = 1000) -> None:
        row = self.tasks.rowCount()
        self.tasks.insertRow(row)
        self.tasks.setItem(row, 0, QTableWidgetItem(name or f"task {row + 1}"))
        estimate = QTableWidgetItem(str(estimate_ms))
        estimate.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.tasks.setItem(row, 1, estimate)
        self._validate()

    def set_tasks(self, tasks: list[tuple[str, int]]) -> None:
        self.tasks.setRowCount(0)
        for name, estimate in tasks:
            self.add_task(name, estimate)
        self._validate()

    def _fill(self) -> None:
        self.set_tasks([(f"task {i + 1}", self.fill_estimate.value()) for i in range(self.fill_count.value())])

    def _remove_selected(self) -> None:
        rows = sorted({index.row() for index in self.tasks.selectedIndexes()}, reverse=True)
        for row in rows or [self.tasks.rowCount() - 1]:
            if row >= 0:
                self.tasks.removeRow(row)
        self._validate()

    def _typed_tasks(self) -> list[tuple[str, str]]:
        def text(row: int, col: int) -> str:
            item = self.tasks.item(row, col)
            return item.text() if item is not None else ""
        return [(text(r, 0), text(r, 1)) for r in range(self.tasks.rowCount())]

    def _validate(self) -> list[str]:
        problems = validate_story(self.name.text(), self.description.toPlainText(), self._typed_tasks())
        self.problems.setText(problems[0] if problems else "")
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(not problems)
        return problems

    def accept(self) -> None:
        if not self._validate():
            super().accept()

    def story(self) -> dict[str, Any]:
        """The create_story fields as typed (call after the dialog was accepted)."""
        return {
            "name": self.name.text().strip(),
            "description": self.description.toPlainText(),
            "tasks": [{"name": n, "estimate_ms": int(e.strip())} for n, e in self._typed_tasks()],
        }
