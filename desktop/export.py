"""Completed stories to CSV with their times, paged from the server and written off the UI thread.

The export thread has a Client of its own (a socket belongs to one thread) and
walks `list_stories(status="done")` from its oldest end: the list is newest
first, so stories completed during the export land ahead of the pages still
to come and shift nothing. Rows are written as they arrive into `PATH.part`,
renamed to PATH when complete; a story seen twice (a page boundary that moved)
is written once.
"""

from __future__ import annotations

import csv
import os
import threading
from datetime import datetime

import msgspec
import zmq
from PySide6.QtCore import QObject, QThread, Signal, Slot

from storypulse import protocol
from storypulse.client import Client, RequestError, ServerUnavailable
from storypulse.endpoints import Endpoints
from storypulse.security import MissingKey

from .threads import stop_thread

PAGE = protocol.LIST_LIMIT_MAX
HEADER = ("story_id", "name", "tasks", "created", "started", "completed", "lead_time_s", "cycle_time_s")


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).isoformat(timespec="milliseconds") if ts is not None else ""


def _seconds(value: float | None) -> str:
    return f"{value:.3f}" if value is not None else ""


def csv_row(story: protocol.StoryView) -> list[str]:
    """One story as the file has it: local ISO times, lead and cycle time in seconds, empty when unknown."""
    return [str(story.story_id), story.name, str(story.tasks_total), _when(story.created_at),
            _when(story.started_at), _when(story.completed_at), _seconds(story.lead_time_s),
            _seconds(story.cycle_time_s)]


class ExportWorker(QObject):
    progress = Signal(int, int)  # rows written, done stories on the server
    finished = Signal(str, int, str)  # path, rows written, error ("" when it worked)

    def __init__(self, endpoints: Endpoints, page: int = PAGE):
        super().__init__()
        self.endpoints = endpoints
        self.page = page
        self._stop = threading.Event()

    def stop(self) -> None:
        """Thread-safe: the export stops after the page in flight."""
        self._stop.set()

    @Slot(str)
    def export(self, path: str) -> None:
        part = path + ".part"
        written = 0
        try:
            with Client(self.endpoints, timeout=10.0) as client, open(part, "w", newline="", encoding="utf-8") as out:
                writer = csv.writer(out)
                writer.writerow(HEADER)
                seen: set[int] = set()
                covered = 0  # stories taken, counted from the oldest end
                total = client.list_stories(status="done", limit=1).total
                while covered < total and not self._stop.is_set():
                    limit = min(self.page, total - covered)
                    reply = client.list_stories(status="done", offset=total - covered - limit, limit=limit)
                    for story in reversed(reply.stories):  # oldest first in the file
                        if story.story_id not in seen:
                            seen.add(story.story_id)
                            writer.writerow(csv_row(story))
                            written += 1
                    covered += limit
                    total = reply.total  # stories completed meanwhile are still ahead
                    self.progress.emit(written, total)
            if self._stop.is_set():
                raise InterruptedError("stopped")
            os.replace(part, path)
        except (RequestError, ServerUnavailable, OSError, InterruptedError, MissingKey, msgspec.MsgspecError,
                zmq.ZMQError) as exc:
            try:
                os.unlink(part)
            except OSError:
                pass
            self.finished.emit(path, written, str(exc) or type(exc).__name__)
            return
        self.finished.emit(path, written, "")


class DoneExport(QObject):
    """Owns the export thread; one export at a time."""

    _start = Signal(str)

    def __init__(self, endpoints: Endpoints, parent: QObject | None = None):
        super().__init__(parent)
        self.thread = QThread()
        self.thread.setObjectName("storypulse-export")
        self.worker = ExportWorker(endpoints)  # no parent: it moves to the thread
        self.worker.moveToThread(self.thread)
        self._start.connect(self.worker.export)
        self.progress = self.worker.progress
        self.finished = self.worker.finished
        self.finished.connect(self._on_finished)
        self.running = False
        self.last_result: tuple[str, int, str] | None = None  # (path, rows, error) of the last export
        self.thread.start()

    def start(self, path: str) -> bool:
        if self.running:
            return False
        self.running = True
        self.last_result = None
        self._start.emit(path)
        return True

    @Slot(str, int, str)
    def _on_finished(self, path: str, rows: int, error: str) -> None:
        self.running = False
        self.last_result = (path, rows, error)

    def stop(self, timeout_ms: int = 15000) -> bool:
        return stop_thread(self.thread, self.worker.stop, timeout_ms)
