"""The stories table's paged model against a fake request layer: synchronous, no sockets, answered when told.

The fake is a seam, not a mock of the model: it serves `list_stories` from a
list in memory the way the server pages it (newest first, a status filter,
the total), and holds each request until the test answers it, so that replies
can come late, out of order or after a filter change.
"""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from storypulse import protocol
from storypulse.desktop.story_model import (
    LEAD_COLUMN, MAX_LOADING, MAX_PAGES, NOT_LOADED, PAGE_SIZE, StoryTableModel, completed, span,
)

TOOLTIP = Qt.ItemDataRole.ToolTipRole


def story(story_id: int, status: str = "open") -> protocol.StoryView:
    return protocol.StoryView(story_id=story_id, name=f"story {story_id}", description="", status=status,
                              created_at=1_700_000_000.0 + story_id, tasks_total=2,
                              tasks_done=2 if status == "done" else 0)


class FakePages:
    """list_stories over `stories` (kept oldest first, listed newest first); each reply waits for `answer`."""

    def __init__(self, count: int = 0):
        self.stories = [story(i) for i in range(1, count + 1)]
        self.pending: list[tuple[dict, object, object]] = []
        self.asked: list[dict] = []

    def call(self, op, fields=None, on_ok=None, on_error=None) -> int:
        assert op == "list_stories"
        self.asked.append(dict(fields))
        self.pending.append((dict(fields), on_ok, on_error))
        return len(self.asked)

    def page(self, fields: dict) -> protocol.ListStoriesResult:
        listed = [s for s in reversed(self.stories) if fields.get("status") in (None, s.status)]
        return protocol.ListStoriesResult(listed[fields["offset"]:fields["offset"] + fields["limit"]], len(listed))

    def answer(self, index: int = 0) -> dict:
        fields, on_ok, _ = self.pending.pop(index)
        on_ok(self.page(fields))
        return fields

    def answer_all(self) -> None:
        while self.pending:
            self.answer()

    def fail(self, code: str, message: str) -> None:
        _, _, on_error = self.pending.pop(0)
        on_error(code, message)

    def offsets(self) -> list[int]:
        return [fields["offset"] for fields, _, _ in self.pending]


@pytest.fixture
def model(qapp):
    made = []

    def make(count: int) -> tuple[StoryTableModel, FakePages]:
        pages = FakePages(count)
        made.append(StoryTableModel(pages))
        return made[-1], pages

    yield make
    for m in made:
        m.deleteLater()


def shown(model: StoryTableModel, first: int, last: int) -> None:
    """The view shows rows first..last; their pages are asked for (at once, not after the event loop's turn)."""
    model.set_visible_rows(first, last)
    model.fetch_visible()


def name(model: StoryTableModel, row: int) -> str:
    return model.data(model.index(row, 1))


def test_the_visible_rows_come_in_pages_newest_first(model):
    m, pages = model(1000)
    assert m.rowCount() == 0
    shown(m, 0, 30)
    assert pages.offsets() == [0] and pages.asked[0] == {"offset": 0, "limit": PAGE_SIZE}
    pages.answer()
    assert m.rowCount() == 1000  # the total, though one page is held
    assert [m.story_at(r).story_id for r in (0, 1, PAGE_SIZE - 1)] == [1000, 999, 1000 - PAGE_SIZE + 1]
    assert m.story_at(PAGE_SIZE) is None and name(m, PAGE_SIZE) == NOT_LOADED
    assert m.row_of(990) == 10 and m.row_of(1) is None

    shown(m, 390, 420)  # across pages 1 and 2
    assert pages.offsets() == [PAGE_SIZE, 2 * PAGE_SIZE]
    pages.answer_all()
    assert name(m, 420) == "story 580" and m.cached_pages() == [0, 1, 2]


def test_painting_asks_for_nothing(model):
    m, pages = model(5000)
    shown(m, 0, 10)
    pages.answer()
    asked = len(pages.asked)
    # A view painting rows that are not loaded, every role of every cell: no request.
    for row in range(PAGE_SIZE, 3 * PAGE_SIZE):
        for col in range(m.columnCount()):
            for role in Qt.ItemDataRole:
                m.data(m.index(row, col), role)
    assert len(pages.asked) == asked and name(m, 2 * PAGE_SIZE) == NOT_LOADED


def test_a_burst_of_scrolling_asks_once_for_where_it_ended(qtbot, model):
    m, pages = model(100_000)
    shown(m, 0, 10)
    pages.answer()
    for first in range(0, 50_000, 500):  # a drag of the scroll bar: many ranges before the loop turns
        m.set_visible_rows(first, first + 30)
    assert len(pages.asked) == 1
    qtbot.waitUntil(lambda: len(pages.asked) > 1, timeout=2_000)
    assert pages.offsets() == [49_500 // PAGE_SIZE * PAGE_SIZE]


def test_no_more_than_max_loading_pages_in_flight(model):
    m, pages = model(10_000)
    shown(m, 0, 10)
    pages.answer()
    shown(m, 0, 10 * PAGE_SIZE)  # ten pages tall (a huge window), nine missing
    assert len(pages.pending) == MAX_LOADING
    shown(m, 0, 10 * PAGE_SIZE)  # asking again asks nothing more
    assert len(pages.pending) == MAX_LOADING
    loaded = 1
    while pages.pending:
        pages.answer()  # each reply asks for the next missing page
        loaded += 1
        assert len(pages.pending) <= MAX_LOADING
    assert loaded == 11 and all(m.story_at(r) is not None for r in range(0, 10 * PAGE_SIZE + 1))
    assert len(pages.asked) == 11  # each page once


def test_the_least_recently_stored_or_shown_pages_are_evicted(model):
    m, pages = model(PAGE_SIZE * (MAX_PAGES + 10))
    shown(m, 0, 10)
    pages.answer()
    for page in range(1, MAX_PAGES + 5):
        shown(m, page * PAGE_SIZE, page * PAGE_SIZE + 10)
        pages.answer_all()
        shown(m, 0, 10)  # page 0 stays in view between jumps: it is kept
    held = m.cached_pages()
    assert len(held) == MAX_PAGES and 0 in held
    assert 1 not in held and 5 not in held and MAX_PAGES + 4 in held
    assert m.story_at(PAGE_SIZE) is None
    first_of_page_one = PAGE_SIZE * (MAX_PAGES + 10) - PAGE_SIZE
    assert m.row_of(first_of_page_one) is None  # evicted rows are not found either
    assert len(m.cached_stories()) == MAX_PAGES * PAGE_SIZE


def test_a_reply_from_before_a_filter_change_is_dropped(model):
    m, pages = model(10)
    pages.stories[2] = story(3, "done")
    pages.stories[6] = story(7, "done")
    shown(m, 0, 30)
    assert len(pages.pending) == 1
    m.set_filter("done")  # the first request is still in flight
    assert pages.pending[1][0] == {"offset": 0, "limit": PAGE_SIZE, "status": "done"}
    pages.answer(0)  # the unfiltered list arrives late: not shown
    assert m.rowCount() == 0 and m.cached_stories() == []
    pages.answer()
    assert m.rowCount() == 2 and [s.story_id for s in m.cached_stories()] == [7, 3]

    m.set_filter("done")  # the same filter: nothing new
    assert pages.pending == []
    shown(m, 0, 30)
    m.set_filter(None)
    pages.fail("internal", "late")  # nothing in flight of the new generation failed: no error
    assert pages.pending == []


def test_a_refresh_shows_the_old_rows_until_the_new_ones_arrive(model):
    m, pages = model(300)
    shown(m, 0, 30)
    pages.answer()
    pages.stories += [story(301), story(302)]  # two new stories: every row moves down two
    m.refresh()
    assert name(m, 0) == "story 300" and m.rowCount() == 300  # stale, still shown
    pages.answer()
    assert m.rowCount() == 302 and name(m, 0) == "story 302" and name(m, 2) == "story 300"
    assert m.row_of(300) == 2


def test_a_completed_event_fills_a_cached_row_and_leaves_the_received_struct_alone(qtbot, model):
    m, pages = model(50)
    shown(m, 0, 30)
    pages.answer()
    received = m.story_at(5)
    event = protocol.StoryEvent(seq=1, ts=received.created_at + 12.5, event="completed", story_id=received.story_id,
                                lead_time_s=12.5, cycle_time_s=3.25)
    m.refresh_if_due()  # the first tick of a new model
    pages.answer_all()
    asked = len(pages.asked)
    with qtbot.waitSignal(m.dataChanged, timeout=1000) as changed:
        m.apply_events([event, protocol.StoryEvent(seq=2, ts=1.0, event="completed", story_id=999)])
    assert changed.args[0].row() == changed.args[1].row() == 5
    now = m.story_at(5)
    assert (now.status, now.tasks_done, now.completed_at, now.lead_time_s, now.cycle_time_s) == (
        "done", 2, event.ts, 12.5, 3.25)
    assert now == completed(received, event)
    assert (received.status, received.tasks_done, received.completed_at, received.lead_time_s) == (
        "open", 0, None, None)
    assert m.data(m.index(5, LEAD_COLUMN)) == span(12.5) == "12.50 s"
    assert m.data(m.index(5, LEAD_COLUMN), TOOLTIP) == "created → completed"
    assert len(pages.asked) == asked  # events ask for nothing themselves...
    m.refresh_if_due()
    assert len(pages.asked) == asked + 1  # ...but make the next refresh tick fetch the visible pages


def test_events_for_rows_not_cached_or_already_done_change_nothing(qtbot, model):
    m, pages = model(20)
    pages.stories[9] = story(10, "done")
    shown(m, 0, 30)
    pages.answer()
    before = m.cached_stories()
    with qtbot.assertNotEmitted(m.dataChanged):
        m.apply_events([
            protocol.StoryEvent(seq=1, ts=5.0, event="completed", story_id=10, lead_time_s=1.0),  # done already
            protocol.StoryEvent(seq=2, ts=5.0, event="completed", story_id=4_000, lead_time_s=1.0),  # not cached
            protocol.StoryEvent(seq=3, ts=5.0, event="created", story_id=21),
            protocol.StoryEvent(seq=4, ts=5.0, event="deleted", story_id=3),
        ])
    assert m.cached_stories() == before


def test_deleted_stories_shrink_the_count_and_leave_no_rows_behind(qtbot, model, qtmodeltester):
    m, pages = model(3 * PAGE_SIZE)
    qtmodeltester.check(m)  # Qt's checker stays on the model: every insert and remove below is checked
    shown(m, 0, 3 * PAGE_SIZE - 1)
    pages.answer_all()
    assert m.rowCount() == 3 * PAGE_SIZE and m.cached_pages() == [0, 1, 2]
    del pages.stories[:PAGE_SIZE + 50]  # the oldest 250 deleted on the server
    m.refresh()
    with qtbot.waitSignal(m.rowsRemoved, timeout=1000) as removed:
        pages.answer()
    assert (removed.args[1], removed.args[2]) == (350, 3 * PAGE_SIZE - 1)
    assert m.rowCount() == 350 and sorted(m.cached_pages()) == [0, 1]  # page 2 starts past the end now
    assert m.story_at(349) is not None and m.story_at(350) is None
    assert m.row_of(1) is None and m.row_of(PAGE_SIZE + 50) is None  # deleted: not found in any page
    assert m.row_of(PAGE_SIZE + 51) == 349
    pages.answer_all()
    assert m.cached_stories()[-1].story_id == PAGE_SIZE + 51

    del pages.stories[:]
    m.refresh()
    pages.answer_all()
    assert m.rowCount() == 0 and m.cached_stories() == []


def test_a_failed_page_is_reported_and_tried_again_at_the_next_tick(qtbot, model):
    m, pages = model(10)
    shown(m, 0, 30)
    m.refresh_if_due()  # the first tick: already in flight, nothing more
    assert len(pages.asked) == 1
    with qtbot.waitSignal(m.error, timeout=1000) as said:
        pages.fail("unavailable", "no reply")
    assert said.args == ["list_stories: no reply"]
    m.refresh_if_due()
    assert len(pages.pending) == 1
    pages.answer()
    assert m.rowCount() == 10


def test_an_empty_list_and_rows_past_the_end_are_asked_for_once_a_refresh(model):
    m, pages = model(0)
    shown(m, 0, 30)
    pages.answer()
    assert pages.pending == [] and m.rowCount() == 0  # answered: not asked again at once
    m.refresh()
    pages.answer()
    assert pages.pending == [] and len(pages.asked) == 2

    m, pages = model(250)
    shown(m, 0, 10)
    pages.answer()
    shown(m, 1000, 1030)  # rows the view still shows, past the end: only the last page is asked for
    assert pages.offsets() == [PAGE_SIZE]
    pages.answer()
    assert pages.pending == [] and m.story_at(249).story_id == 1
