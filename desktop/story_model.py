"""The stories table's model: the server's paged list, a bounded cache of it, and live events on top.

The model never holds the whole list: it knows the total and keeps at most
MAX_PAGES pages (the least recently stored or shown go first). What it fetches is
decided by the rows the view shows (`set_visible_rows`), never while painting:
`data()` only reads, and shows a placeholder for a row not loaded yet. Visible
pages are asked for after the current burst of scroll signals (one zero-delay
timer coalesces them), at most MAX_LOADING at once.

A filter change starts a new generation: replies to requests of an older one
are dropped. A refresh keeps showing the cached pages, marked stale, until
their new rows arrive. Completed events fill a cached row at once; any other
change waits for the next refresh (the list is newest first, so a new story
shifts every row).

The request layer is given: anything with `call(op, fields, on_ok, on_error)`
whose callbacks run in the UI thread (requests.Requests, or a fake in tests).
Protocol structs are never changed in place: an event makes a new copy.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime
from typing import Any, Callable, Protocol

import msgspec
from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QColor

from storypulse import protocol
from storypulse.format import clock, duration

from . import theme

PAGE_SIZE = 200
MAX_PAGES = 50  # 10,000 rows cached at most
MAX_LOADING = 4  # page requests in flight at once
COLUMNS = ("ID", "Name", "Status", "Tasks", "Created", "Completed", "Lead time", "Cycle time")
LEAD_COLUMN, CYCLE_COLUMN = 6, 7
NOT_LOADED = "…"  # the name cell of a row whose page has not arrived
STATUS_ROLES = {"done": "done", "open": "open", "running": "running"}  # a state's series role (theme.SERIES)
# Qt enums as plain ints, looked up once: data() runs thousands of times a second.
DISPLAY = Qt.ItemDataRole.DisplayRole.value
FOREGROUND = Qt.ItemDataRole.ForegroundRole.value
ALIGNMENT = Qt.ItemDataRole.TextAlignmentRole.value
TOOLTIP = Qt.ItemDataRole.ToolTipRole.value
ROLES_USED = frozenset((DISPLAY, FOREGROUND, ALIGNMENT, TOOLTIP))
RIGHT_ALIGNED = (Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter).value


class RequestLayer(Protocol):
    def call(self, op: str, fields: dict[str, Any] | None = None,
             on_ok: Callable[[Any], None] | None = None,
             on_error: Callable[[str, str], None] | None = None) -> int: ...


def span(seconds: float | None) -> str:
    """A lead or cycle time as the table shows it; empty until the story is done."""
    return duration(seconds) if seconds is not None else ""


def short_time(ts: float | None) -> str:
    """A date and time narrow enough for a table column (no year)."""
    return datetime.fromtimestamp(ts).strftime("%m-%d %H:%M:%S") if ts else ""


def tooltip(story: protocol.StoryView, col: int) -> str | None:
    """The whole name and description, the full times, what a lead or cycle time measures."""
    if col == 1:
        return f"{story.name}\n{story.description}" if story.description else story.name
    if col in (4, 5):
        ts = story.created_at if col == 4 else story.completed_at
        return clock(ts) if ts else None
    if col == LEAD_COLUMN:
        return "created → completed" if story.lead_time_s is not None else None
    if col == CYCLE_COLUMN and story.cycle_time_s is not None:
        started = f" (first task started {clock(story.started_at)})" if story.started_at else ""
        return f"first task started → completed{started}"
    return None


def completed(story: protocol.StoryView, event: protocol.StoryEvent) -> protocol.StoryView:
    """`story` as a completed event leaves it: a new struct, the one received stays as it was."""
    return msgspec.structs.replace(story, status="done", tasks_done=story.tasks_total, completed_at=event.ts,
                                   lead_time_s=event.lead_time_s, cycle_time_s=event.cycle_time_s)


class StoryTableModel(QAbstractTableModel):
    error = Signal(str)
    page_loaded = Signal()

    def __init__(self, requests: RequestLayer, parent: QObject | None = None):
        super().__init__(parent)
        self.requests = requests
        self.status: str | None = None  # the filter: None, "open" or "done"
        self._total = 0
        self._pages: OrderedDict[int, list[protocol.StoryView]] = OrderedDict()
        # story_id -> (cached page, index in it): live events find rows in O(1)
        self._page_of: dict[int, tuple[int, int]] = {}
        self._stale: set[int] = set()
        self._loading: set[int] = set()
        self._generation = 0  # bumped by a filter change: older replies are dropped
        self._visible = (0, 0)
        self._refresh_due = True
        self.status_colours: dict[str, QColor] = {}
        theme.follow(self, self.apply_theme)
        # Scrolling sends a burst of range changes: one fetch after the burst, outside painting.
        self._fetch_timer = QTimer(self)
        self._fetch_timer.setSingleShot(True)
        self._fetch_timer.setInterval(0)
        self._fetch_timer.timeout.connect(self.fetch_visible)

    def apply_theme(self, colours: theme.Theme) -> None:
        """Status in the colour of its series, as text (4.5:1 on the table's rows)."""
        self.status_colours = {state: colours.text_colour(role) for state, role in STATUS_ROLES.items()}
        if self.rowCount():
            self.dataChanged.emit(self.index(0, 2), self.index(self.rowCount() - 1, 2),
                                  [Qt.ItemDataRole.ForegroundRole])

    # -- Qt model ------------------------------------------------------------
    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else self._total

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return COLUMNS[section]
        return None

    def data(self, index: QModelIndex, role: int = DISPLAY) -> Any:
        # Views ask for a dozen roles per cell per paint: refuse the unused ones first, cheaply.
        if role not in ROLES_USED or not index.isValid():
            return None
        row, col = index.row(), index.column()
        story = self.story_at(row)
        if story is None:  # its page is on its way, or will be asked for with the visible rows
            return (NOT_LOADED if col == 1 else "") if role == DISPLAY else None
        if role == DISPLAY:
            if col == 0:
                return story.story_id
            if col == 1:
                return story.name
            if col == 2:
                return story.status
            if col == 3:
                return f"{story.tasks_done}/{story.tasks_total}"
            if col == 4:
                return short_time(story.created_at)
            if col == 5:
                return short_time(story.completed_at)
            return span(story.lead_time_s if col == LEAD_COLUMN else story.cycle_time_s)
        if role == FOREGROUND:
            return self.status_colours.get(story.status) if col == 2 else None
        if role == ALIGNMENT:
            return RIGHT_ALIGNED if col in (0, 3, LEAD_COLUMN, CYCLE_COLUMN) else None
        return tooltip(story, col)

    # -- rows ------------------------------------------------------------------
    def story_at(self, row: int) -> protocol.StoryView | None:
        page = self._pages.get(row // PAGE_SIZE)
        if page is None:
            return None
        offset = row % PAGE_SIZE
        return page[offset] if offset < len(page) else None

    def row_of(self, story_id: int) -> int | None:
        number, index = self._page_of.get(story_id, (None, 0))
        if number is None or number not in self._pages:
            return None
        return number * PAGE_SIZE + index

    def cached_stories(self) -> list[protocol.StoryView]:
        return [story for page in self._pages.values() for story in page]

    def cached_pages(self) -> list[int]:
        """The page numbers held, least recently stored or shown first."""
        return list(self._pages)

    @property
    def visible_rows(self) -> tuple[int, int]:
        return self._visible

    def _store_page(self, number: int, stories: list[protocol.StoryView]) -> None:
        self._drop_page(number)
        self._pages[number] = list(stories)  # our own list: events replace rows in it
        for index, story in enumerate(stories):
            self._page_of[story.story_id] = (number, index)
        while len(self._pages) > MAX_PAGES:
            self._drop_page(next(iter(self._pages)))

    def _drop_page(self, number: int) -> None:
        for story in self._pages.pop(number, ()):
            if self._page_of.get(story.story_id, (None,))[0] == number:
                del self._page_of[story.story_id]

    # -- what to fetch -----------------------------------------------------------
    def set_filter(self, status: str | None) -> None:
        if status == self.status:
            return
        self.beginResetModel()
        self.status = status
        self._generation += 1
        self._pages.clear()
        self._page_of.clear()
        self._stale.clear()
        self._loading.clear()
        self._total = 0
        self.endResetModel()
        self.refresh()

    def set_visible_rows(self, first: int, last: int) -> None:
        """The rows the view shows; their missing or stale pages are asked for once the event loop is free."""
        self._visible = (max(first, 0), max(last, first, 0))
        self._fetch_timer.start()

    def mark_stale(self) -> None:
        """The list changed on the server; fetch again at the next refresh tick."""
        self._refresh_due = True

    @Slot()
    def refresh_if_due(self) -> None:
        if self._refresh_due:
            self.refresh()

    def refresh(self) -> None:
        """Fetch the visible pages again; every cached page is shown until its new rows arrive."""
        self._refresh_due = False
        self._stale.update(self._pages)
        self.fetch_visible()

    @Slot()
    def fetch_visible(self) -> None:
        """Ask for the visible pages that are missing or stale, nearest the top first, within MAX_LOADING."""
        self._fetch_timer.stop()
        first, last = self._visible
        # Never past the known end (a page there would come back empty, and be asked for again);
        # before the first reply the total is 0, and the first page tells it.
        end = (min(last, max(self._total, 1) - 1)) // PAGE_SIZE
        visible = range(min(first // PAGE_SIZE, end), end + 1)
        for page in visible:
            if page in self._pages:
                self._pages.move_to_end(page)  # in view: the last to be evicted
        for page in visible:
            if len(self._loading) >= MAX_LOADING:
                return  # each reply asks for the rest
            if page not in self._loading and (page not in self._pages or page in self._stale):
                self._fetch(page)

    def _fetch(self, page: int) -> None:
        self._loading.add(page)
        generation = self._generation
        fields: dict[str, Any] = {"offset": page * PAGE_SIZE, "limit": PAGE_SIZE}
        if self.status:
            fields["status"] = self.status
        self.requests.call(
            "list_stories", fields,
            on_ok=lambda result: self._on_page(generation, page, result),
            on_error=lambda code, message: self._on_page_error(generation, page, code, message),
        )

    def _on_page(self, generation: int, page: int, result: protocol.ListStoriesResult) -> None:
        if generation != self._generation:
            return
        self._loading.discard(page)
        self._stale.discard(page)
        self._set_total(result.total)
        if page * PAGE_SIZE < self._total or page == 0:  # an empty list is a page too: not asked for again
            self._store_page(page, result.stories)
            first = page * PAGE_SIZE
            last = min(first + PAGE_SIZE, self._total) - 1
            if last >= first:
                self.dataChanged.emit(self.index(first, 0), self.index(last, len(COLUMNS) - 1))
        self.fetch_visible()
        self.page_loaded.emit()

    def _on_page_error(self, generation: int, page: int, code: str, message: str) -> None:
        if generation == self._generation:
            self._loading.discard(page)
            self._refresh_due = True  # try again at the next tick
            self.error.emit(f"list_stories: {message}")

    def _set_total(self, total: int) -> None:
        if total > self._total:
            self.beginInsertRows(QModelIndex(), self._total, total - 1)
            self._total = total
            self.endInsertRows()
        elif total < self._total:
            self.beginRemoveRows(QModelIndex(), total, self._total - 1)
            self._total = total
            for page in [p for p in self._pages if p * PAGE_SIZE >= total]:
                self._drop_page(page)
            end = (total - 1) // PAGE_SIZE
            tail = self._pages.get(end) if total % PAGE_SIZE else None
            if tail is not None and len(tail) > total % PAGE_SIZE:
                # The rows past the new end are gone from the page that now ends the list.
                for index in range(total % PAGE_SIZE, len(tail)):
                    if self._page_of.get(tail[index].story_id) == (end, index):
                        del self._page_of[tail[index].story_id]
                del tail[total % PAGE_SIZE:]
            self.endRemoveRows()

    # -- live events -------------------------------------------------------------
    def apply_events(self, events: list[protocol.StoryEvent]) -> None:
        """Show completions at once in cached rows; anything else waits for the next refresh."""
        if not events:
            return
        changed: set[int] = set()
        for event in events:
            if event.event != "completed":
                continue
            number, index = self._page_of.get(event.story_id, (None, 0))
            page = self._pages.get(number) if number is not None else None
            if page is None or page[index].status == "done":
                continue
            page[index] = completed(page[index], event)
            changed.add(number * PAGE_SIZE + index)
        if changed:
            # One signal for the span: the view repaints once, not once per story.
            self.dataChanged.emit(self.index(min(changed), 2), self.index(max(changed), len(COLUMNS) - 1))
        self._refresh_due = True
