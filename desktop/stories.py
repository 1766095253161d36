"""The Stories tab: the paged table, the selected story's tasks, add and delete.

The table's model (story_model.py) holds a bounded number of pages of the
server's list and fetches the pages of the visible rows through the pages
request thread. Story events mark the list stale; at most once a second the
visible pages are fetched again, so a million stories or a thousand events a
second cost the same.
"""

from __future__ import annotations

import html
import time
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import (
    QAbstractItemView, QButtonGroup, QHBoxLayout, QHeaderView, QLabel, QMessageBox, QPushButton,
    QRadioButton, QSplitter, QTableView, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget,
)

from storypulse import protocol
from storypulse.format import clock, duration

from . import theme
from .requests import Requests
from .story_model import COLUMNS, CYCLE_COLUMN, LEAD_COLUMN, STATUS_ROLES, StoryTableModel


class StoryDetails(QWidget):
    """The selected story: its fields and its tasks with their states and times."""

    def __init__(self, requests: Requests, parent: QWidget | None = None):
        super().__init__(parent)
        self.requests = requests
        self.story_id: int | None = None
        self.story: protocol.StoryView | None = None
        self._loading = False
        self.header = QLabel("Select a story to see its tasks.")
        self.header.setWordWrap(True)
        self.header.setTextFormat(Qt.TextFormat.RichText)
        self.header.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.tasks = QTableWidget(0, 6)
        self.tasks.setAccessibleName("Tasks of the selected story")
        self.tasks.setHorizontalHeaderLabels(["Task", "Estimate", "State", "Attempts", "Started", "Took"])
        header = self.tasks.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.tasks.verticalHeader().setVisible(False)
        self.tasks.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.tasks.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.header)
        layout.addWidget(self.tasks, 1)

    def show_story(self, story_id: int | None) -> None:
        self.story_id = story_id
        self.story = None
        if story_id is None:
            self.header.setText("Select a story to see its tasks.")
            self.tasks.setRowCount(0)
            return
        self.reload()

    def reload(self) -> None:
        if self.story_id is None or self._loading:
            return
        self._loading = True
        story_id = self.story_id
        self.requests.call("get_story", {"story_id": story_id},
                           on_ok=lambda story: self._on_story(story_id, story),
                           on_error=lambda code, message: self._on_error(story_id, code, message))

    @property
    def needs_refresh(self) -> bool:
        return self.story_id is not None and (self.story is None or self.story.status != "done")

    def _on_story(self, story_id: int, story: protocol.StoryView) -> None:
        self._loading = False
        if story_id != self.story_id:
            return
        self.story = story
        colours = theme.current()
        colour = colours.text_colour("done" if story.status == "done" else "open")
        took = f" in {duration(story.completed_at - story.created_at)}" if story.completed_at else ""
        description = (f"<br><span style='color:{colours.muted}'>{html.escape(story.description)}</span>"
                       if story.description else "")
        self.header.setText(
            f"<b>#{story.story_id} {html.escape(story.name)}</b> — "
            f"<span style='color:{colour.name()}'>{story.status}</span>{took}, "
            f"{story.tasks_done}/{story.tasks_total} tasks done<br>created {clock(story.created_at)}"
            + (f", first task started {clock(story.started_at)}" if story.started_at else "")
            + (f", completed {clock(story.completed_at)}" if story.completed_at else "")
            + (f"<br>lead time {duration(story.lead_time_s)}" if story.lead_time_s is not None else "")
            + (f", cycle time {duration(story.cycle_time_s)}" if story.cycle_time_s is not None else "") + description
        )
        tasks = story.tasks or []
        self.tasks.setRowCount(len(tasks))
        for row, task in enumerate(tasks):
            took = duration(task.finished_at - task.started_at) if task.finished_at and task.started_at else ""
            started = clock(task.started_at) if task.started_at else ""
            values = (task.name or f"#{task.task_id}", f"{task.estimate_ms:,} ms", task.state, str(task.attempts),
                      started, took)
            for col, value in enumerate(values):
                item = self.tasks.item(row, col)
                if item is None:
                    item = QTableWidgetItem()
                    self.tasks.setItem(row, col, item)
                item.setText(value)
                if col == 2:
                    item.setForeground(colours.text_colour(STATUS_ROLES.get(task.state, "open")))

    def _on_error(self, story_id: int, code: str, message: str) -> None:
        self._loading = False
        if story_id == self.story_id:
            self.header.setText(f"#{story_id}: {'deleted' if code == 'not_found' else html.escape(message)}")
            self.tasks.setRowCount(0)
            if code == "not_found":
                self.story_id = None


# The widest text expected in each column, by which its width is set.
COLUMN_SAMPLES = {0: "0000000", 1: "Redesign onboarding #00", 2: "open", 3: "00/00", 4: "00-00 00:00:00",
                  5: "00-00 00:00:00", LEAD_COLUMN: "00 min 00 s", CYCLE_COLUMN: "00 min 00 s"}
NAME_COLUMN = 1


class StoriesTable(QTableView):
    """The stories' table: the name column takes the width the others leave (never less than its
    sample's); a narrow pane scrolls instead. Stretching the last column put the cycle times far
    from their header, and Qt's stretch mode shrinks a column to nothing when the others fill the pane."""

    name_width = 0

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().resizeEvent(event)
        others = sum(self.columnWidth(c) for c in COLUMN_SAMPLES if c != NAME_COLUMN)
        self.setColumnWidth(NAME_COLUMN, max(self.name_width, self.viewport().width() - others))


class StoriesPanel(QWidget):
    """Filter buttons, the table, the selected story's details; add and delete actions."""

    message = Signal(str)  # for the status bar
    story_created = Signal(int)
    export_requested = Signal()  # the window asks where, then exports the completed stories

    def __init__(self, requests: Requests, pages: Requests, parent: QWidget | None = None):
        super().__init__(parent)
        self.requests = requests
        self.model = StoryTableModel(pages, self)
        self.model.error.connect(self.message)
        self.confirm_box: QMessageBox | None = None

        self.filters = QButtonGroup(self)
        filter_row = QHBoxLayout()
        filter_row.addWidget(QLabel("Show:"))
        for i, (label, status) in enumerate((("All", None), ("Open", "open"), ("Done", "done"))):
            button = QRadioButton(label)
            button.setProperty("status", status)
            self.filters.addButton(button, i)
            filter_row.addWidget(button)
            if status is None:
                button.setChecked(True)
        self.filters.idClicked.connect(self._on_filter)
        filter_row.addStretch(1)
        self.count = QLabel("")
        filter_row.addWidget(self.count)
        self.add_button = QPushButton("Add story…")
        self.delete_button = QPushButton("Delete")
        self.delete_button.setEnabled(False)
        self.export_button = QPushButton("Export done…")
        self.export_button.setToolTip("Save every completed story with its lead and cycle time as CSV")
        filter_row.addWidget(self.add_button)
        filter_row.addWidget(self.delete_button)
        filter_row.addWidget(self.export_button)
        self.delete_button.clicked.connect(self.delete_selected)
        self.export_button.clicked.connect(self.export_requested)

        self.table = StoriesTable()
        self.table.setAccessibleName("Stories")
        self.table.setAccessibleDescription("Newest first; Delete removes the selected stories")
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().setVisible(False)
        # Fixed row heights: the view never measures a million rows.
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        metrics = self.table.fontMetrics()
        self.table.verticalHeader().setDefaultSectionSize(metrics.height() + 8)
        # Widths are what the widest expected text needs in this font, so they grow with it;
        # the name column takes what is left (StoriesTable).
        for col, widest in COLUMN_SAMPLES.items():
            text = max(metrics.horizontalAdvance(widest), metrics.horizontalAdvance(COLUMNS[col]))
            self.table.setColumnWidth(col, text + 2 * metrics.averageCharWidth())
        self.table.name_width = self.table.columnWidth(NAME_COLUMN)
        self.table.verticalScrollBar().valueChanged.connect(self._on_scrolled)
        self.table.selectionModel().selectionChanged.connect(self._on_selection)
        self.model.rowsInserted.connect(self._on_scrolled)
        self.model.rowsRemoved.connect(self._on_scrolled)
        self.model.modelReset.connect(self._on_scrolled)
        self.model.page_loaded.connect(self._keep_selection)
        self._reselecting = False

        self.details = StoryDetails(requests)
        # The tasks under the stories: beside them, at 1280 px, the stories' lead and cycle
        # times went past the pane's edge (a table of eight columns and one of six do not fit side by side).
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.table)
        splitter.addWidget(self.details)
        splitter.setStretchFactor(0, 2)
        splitter.setStretchFactor(1, 1)
        self.splitter = splitter

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(filter_row)
        layout.addWidget(splitter, 1)

        # One refresh a second at most, however many events arrive.
        self.refresh_timer = QTimer(self)
        self.refresh_timer.setInterval(1000)
        self.refresh_timer.timeout.connect(self._tick)
        self.refresh_timer.start()
        self._last_details_reload = 0.0

    # -- events and refresh -----------------------------------------------------
    @Slot(object)
    def apply_batch(self, batch) -> None:
        if batch.snapshot is not None or batch.story_events_dropped:
            self.model.mark_stale()
        self.model.apply_events(batch.story_events)
        if self.details.story_id is not None and any(e.story_id == self.details.story_id for e in batch.story_events):
            self._last_details_reload = 0.0

    @Slot()
    def _tick(self) -> None:
        self.model.refresh_if_due()
        self.count.setText(f"{self.model.rowCount():,} stories")
        now = time.monotonic()
        if self.details.needs_refresh and now - self._last_details_reload >= 1.0 and self.isVisible():
            self._last_details_reload = now
            self.details.reload()

    @Slot()
    def _on_scrolled(self, *_: object) -> None:
        first = self.table.rowAt(0)
        last = self.table.rowAt(self.table.viewport().height() - 1)
        first = 0 if first < 0 else first
        last = min(self.model.rowCount(), first + 60) - 1 if last < 0 else last
        self.model.set_visible_rows(first, max(first, last))

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._on_scrolled()

    @Slot(int)
    def _on_filter(self, button_id: int) -> None:
        self.model.set_filter(self.filters.button(button_id).property("status"))
        self.details.show_story(None)

    def selected_ids(self) -> list[int]:
        rows = sorted({index.row() for index in self.table.selectionModel().selectedRows()})
        return [story.story_id for story in (self.model.story_at(r) for r in rows) if story is not None]

    @Slot()
    def _keep_selection(self) -> None:
        """The list is newest first: new stories shift rows, so follow the selected story."""
        story_id = self.details.story_id
        if story_id is None:
            return
        row = self.model.row_of(story_id)
        selected = [index.row() for index in self.table.selectionModel().selectedRows()]
        if row is not None and selected != [row]:
            self._reselecting = True
            try:
                self.table.selectRow(row)
            finally:
                self._reselecting = False

    @Slot()
    def _on_selection(self, *_: object) -> None:
        if self._reselecting:
            return
        ids = self.selected_ids()
        self.delete_button.setEnabled(bool(ids))
        self.details.show_story(ids[0] if len(ids) == 1 else None)
        if len(ids) > 1:
            self.details.header.setText(f"{len(ids)} stories selected.")

    # -- actions -----------------------------------------------------------------
    def create(self, fields: dict[str, Any]) -> None:
        def created(result: protocol.CreateStoryResult) -> None:
            self.message.emit(f"Story #{result.story_id} added with {len(result.task_ids)} tasks.")
            self.model.mark_stale()
            self.story_created.emit(result.story_id)

        self.requests.call("create_story", fields, on_ok=created,
                           on_error=lambda code, message: self.message.emit(f"Could not add the story: {message}"))

    @Slot()
    def delete_selected(self, confirm: bool = True) -> None:
        ids = self.selected_ids()
        if not ids:
            return
        if not confirm:
            self._delete(ids)
            return
        what = f"story #{ids[0]}" if len(ids) == 1 else f"{len(ids)} stories"
        box = QMessageBox(QMessageBox.Icon.Question, "Delete", f"Delete {what} and their tasks?",
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel, self)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.finished.connect(self._on_confirm)  # open(), not exec(): no nested event loop
        box.setProperty("ids", ids)
        self.confirm_box = box
        box.open()

    @Slot(int)
    def _on_confirm(self, result: int) -> None:
        box, self.confirm_box = self.confirm_box, None
        if box is None:
            return
        if box.standardButton(box.clickedButton()) == QMessageBox.StandardButton.Yes:
            self._delete(box.property("ids"))
        box.deleteLater()

    def _delete(self, ids: list[int]) -> None:
        self.table.clearSelection()
        failures: list[str] = []
        remaining = len(ids)

        def done(story_id: int, error: str | None) -> None:
            nonlocal remaining
            remaining -= 1
            if error:
                failures.append(f"#{story_id}: {error}")
            if remaining == 0:
                self.model.mark_stale()
                self.model.refresh()
                if failures:
                    self.message.emit("Not deleted: " + "; ".join(failures[:3]))
                else:
                    self.message.emit(f"Deleted {len(ids)} stor{'y' if len(ids) == 1 else 'ies'}.")

        for story_id in ids:
            self.requests.call("delete_story", {"story_id": story_id},
                               on_ok=lambda _r, s=story_id: done(s, None),
                               on_error=lambda code, message, s=story_id: done(s, message))

    def select_story(self, story_id: int) -> bool:
        row = self.model.row_of(story_id)
        if row is None:
            return False
        self.table.selectRow(row)
        self.table.scrollTo(self.model.index(row, 0))
        return True
