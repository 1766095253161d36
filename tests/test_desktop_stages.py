"""The Flow tab with a workflow, fed by a stand-in server with three stages: what it draws is what was published.

The stand-in's team model (team_model.py) runs analysis, build and test, test
short of people, with blocks in build; the tab gets its stream through the real
feed and request threads. With one stage the tab must look as it always did.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from desktop_support import run_then_freeze
from storypulse import protocol
from storypulse.desktop.flow import FlowTab
from storypulse.desktop.flow_math import FLOW_FIELDS
from storypulse.desktop.pool import PoolPanel
from storypulse.desktop.requests import Requests
from storypulse.desktop.series import FIELDS
from storypulse.desktop.stage_math import bottleneck_text, format_efficiency, pool_detail, pool_text, stories_text
from standin import FlowModel, three_stages

NAMES = ("analysis", "build", "test")


def workflow_model(**options) -> FlowModel:
    # 4 stories a second against a test stage that finishes about 3: work piles up before test.
    return FlowModel(**{"rate": 4.0, "seed": 11, "stages": three_stages(4 / 3), **options})


def test_a_band_per_stage_equals_the_stream(qtbot, flow_tab):
    tab, stand_in = flow_tab(workflow_model())
    last = run_then_freeze(qtbot, tab, stand_in, completions=40)
    assert tab.stage_names == NAMES
    fed = {s.ts: s for s in stand_in.stats()}
    for snapshot in stand_in.snapshots:
        fed.update({s.ts: s for s in [*snapshot.history, snapshot.stats]})

    # The bands shown, bottom to top: done, test, build, analysis, waiting.
    assert tab.cfd_stack() == [tab.bands["done"], *tab.stage_bands.bands[::-1], tab.bands["waiting"]]
    assert not tab.bands["progress"].isVisible() and all(b.isVisible() for b in tab.stage_bands.bands)
    ts = tab.cfd_edges[0]
    edges = tab.cfd_stage_edges
    assert len(edges) == 5 and ts[-1] >= last.ts

    def expected(s) -> list[float]:
        analysis, build, test = (stage.stories for stage in s.stages)
        done = s.completed_stories
        return [done, done + test, done + test + build, done + s.stories_in_progress, done + s.open_stories]

    assert [e[-1] for e in edges] == expected(last)
    for i, at in enumerate(ts):  # every edge drawn is the stats fed at that time
        assert [e[i] for e in edges] == expected(fed[at])
    assert all(stage.stories > 0 for stage in last.stages)  # every band has a height
    # The stages add up to the stories in progress: the stage bands fill exactly the in-progress band.
    assert sum(stage.stories for stage in last.stages) == last.stories_in_progress
    # The keys of the chart name the stages in the order of the stack, top to bottom.
    assert [label for label, _, _ in tab._titles[tab.cfd][1]] == ["waiting", *NAMES, "done"]


def test_aging_has_a_column_per_stage_and_marks_the_blocked_stories(qtbot, flow_tab):
    model = workflow_model()
    model.stages[1].block_chance = 0.5  # many blocks in build, so some are blocked when the page is taken
    tab, stand_in = flow_tab(model)
    last = run_then_freeze(qtbot, tab, stand_in, completions=30)
    assert last.tasks_blocked > 0
    pages = len(stand_in.requests_of(protocol.ListStories))
    qtbot.waitUntil(lambda: len(stand_in.requests_of(protocol.ListStories)) > pages + 1, timeout=10_000)
    qtbot.waitUntil(lambda: tab.aging_state is not None and tab.aging_total == last.open_stories, timeout=10_000)
    state = tab.aging_state
    ticks = tab.aging_chart.bottom._tickLevels[0]
    assert [label for _, label in ticks] == ["waiting", *NAMES]

    open_ = stand_in.model.open
    for story_id, x, blocked in zip(state.story_ids, state.x, state.blocked):
        story = open_[int(story_id)]
        column = 0 if story.stage < 0 else 1 + story.stage
        assert abs(x - column) < 0.4  # its column, spread within it
        assert blocked == (story.blocked_until is not None and story.blocked_until > state.now)
    assert state.blocked.any()
    marks = tab.aging_chart.blocked_marks
    assert marks.count == state.blocked.sum()
    assert np.array_equal(marks.x, state.x[state.blocked]) and np.array_equal(marks.y, state.age_s[state.blocked])
    assert "blocked" in [label for label, _, _ in tab.aging_chart.keys()]
    assert f"{state.blocked.sum():,} blocked" in tab.aging_text()


def test_the_strip_shows_each_stage_the_efficiency_and_the_bottleneck(qtbot, flow_tab):
    tab, stand_in = flow_tab(workflow_model())
    last = run_then_freeze(qtbot, tab, stand_in, completions=40)
    strip = tab.stage_strip
    assert strip.isVisible() and [card.name for card in strip.cards] == list(NAMES)
    tab._text_tick()
    latest = tab.clock.latest
    assert latest.stages == last.stages  # frozen: the same figures, later stamped
    for card, stage in zip(strip.cards, last.stages):
        assert card.pool.full == pool_text(stage) and card.pool.toolTip() == pool_detail(stage)
        assert card.stories.text() == stories_text(stage)
        assert card.badge.isVisible() == (stage.name == last.bottleneck)
    assert last.bottleneck == "test"  # the stage short of people
    assert strip.efficiency.value.text() == format_efficiency(last.flow_efficiency) != "–"
    assert strip.efficiency.detail.full == bottleneck_text(last)
    assert strip.card("test").accessibleName().endswith("the bottleneck")


def test_a_stage_limit_set_from_its_card_holds(qtbot, flow_tab):
    tab, stand_in = flow_tab(workflow_model())
    qtbot.waitUntil(lambda: tab.stage_names == NAMES, timeout=10_000)
    card = tab.stage_strip.card("build")
    assert card.spin.value() == 0 and card.spin.text() == "no limit"
    card.spin.setValue(3)
    with qtbot.waitSignal(tab.stage_limit_set, timeout=10_000) as took:
        card.apply.click()
    assert took.args == ["build", 3]
    sent = stand_in.requests_of(protocol.SetFlow)
    assert len(sent) == 1 and sent[0].stage_wip_limits == {"build": 3} and sent[0].wip_limit is None
    # From the next stats on the stage carries its limit and starts no story beyond it. Stories
    # already there stay until they move on (a slow start may have let more than 3 in), so the
    # count only falls while above the limit, and once within it stays within it.
    seq = stand_in.stats()[-1].seq
    qtbot.waitUntil(lambda: tab.clock.latest.seq > seq + 20, timeout=10_000)
    after = [s.stages[1] for s in stand_in.stats() if s.seq > seq]
    assert all(stage.wip_limit == 3 for stage in after)
    for before, now in zip(after, after[1:]):
        assert now.stories <= max(before.stories, 3), (before.stories, now.stories)
    qtbot.waitUntil(lambda: card.stories.text().endswith("/ 3 stories"), timeout=5_000)

    stand_in.refuse_set_flow = "stage_wip_limits: stage 'build': no"
    with qtbot.waitSignal(tab.message, timeout=10_000) as said:
        card.apply.click()
    assert said.args == ["Could not set the WIP limit of build: stage_wip_limits: stage 'build': no"]
    assert card.apply.isEnabled()


def test_the_pool_panel_sets_the_pool_of_the_stage_chosen(qtbot, flow_tab):
    tab, stand_in = flow_tab(workflow_model())
    requests = Requests(stand_in.endpoints, name="test-pool")
    panel = PoolPanel(requests)
    qtbot.addWidget(panel)
    panel.show()
    try:
        feed = stand_in  # the stats the tab got, handed to the panel as the window's feed would
        latest = tab.clock.latest
        panel.apply_batch(SimpleNamespace(stats=[latest], snapshot=None))
        assert panel.stage.isVisible() and [panel.stage.itemText(i) for i in range(3)] == list(NAMES)
        panel.stage.setCurrentIndex(2)
        test = latest.stages[2]
        assert (panel.min_workers.value(), panel.max_workers.value()) == (test.min_workers, test.max_workers)
        panel.max_workers.setValue(test.max_workers + 2)
        with qtbot.waitSignal(panel.bounds_set, timeout=10_000) as took:
            panel.apply.click()
        assert took.args == [test.min_workers, test.max_workers + 2, "test"]
        sent = stand_in.requests_of(protocol.SetPool)[-1]
        assert (sent.stage, sent.max_workers) == ("test", test.max_workers + 2)
        qtbot.waitUntil(lambda: feed.stats()[-1].stages[2].workers == test.max_workers + 2, timeout=10_000)
        panel.apply_batch(SimpleNamespace(stats=[feed.stats()[-1]], snapshot=None))
        assert panel.now.text().startswith(f"{test.max_workers + 2} workers")
    finally:
        assert requests.stop()


# -- one stage: as it always was ------------------------------------------------------------------
class NoRequests:
    """A request layer that sends nothing (the tab asks for aging pages; none come)."""

    def call(self, *args, **kwargs) -> None:
        pass


def one_stage_rows(stages: bool) -> list:
    """A minute of stats, with the one stage `work` a server with stages publishes, or without any."""
    rows = []
    for k in range(120):
        values = {name: float(3 + (k * 7) % 11) for name in (*FIELDS, *FLOW_FIELDS)}
        values.update(ts=1_800_000_000.0 + 0.5 * k, seq=k, completed_stories=10.0 + k, open_stories=4.0 + k % 5,
                      stories_in_progress=2.0 + k % 3, wip_limit=0.0, flow_window_s=60.0)
        if stages:
            values.update(stages=[protocol.StageStats(name="work", workers=4, workers_busy=2, min_workers=1,
                                                      max_workers=4, tasks_queued=5, tasks_running=2,
                                                      tasks_blocked=0, stories=int(values["stories_in_progress"]),
                                                      wip_limit=0)],
                          bottleneck="work", flow_efficiency=0.97)
        rows.append(SimpleNamespace(**values))
    return rows


def drawn(qtbot, rows) -> tuple:
    tab = FlowTab(NoRequests(), NoRequests())
    qtbot.addWidget(tab)
    tab.resize(1000, 700)
    tab.show()
    qtbot.waitExposed(tab)
    tab.set_paused(True)  # drawn once, below, at the same moment for both
    tab.apply_batch(SimpleNamespace(snapshot=SimpleNamespace(history=rows[:-1], stats=rows[-1], completions=[]),
                                    stats=[], story_events=[]))
    tab._draw(rows[-1].ts)
    tab._text_tick()
    return tab, tab.grab().toImage()


def test_with_one_stage_the_tab_shows_no_workflow_and_draws_as_before(qtbot):
    """A server with stages publishes its one stage, `work`: the tab must draw exactly what it drew for a
    server without stages, with no per-stage widget showing."""
    before, image_before = drawn(qtbot, one_stage_rows(stages=False))
    now, image_now = drawn(qtbot, one_stage_rows(stages=True))
    for tab in (before, now):
        assert tab.stage_names == () and tab.stage_series is None
        assert not tab.stage_strip.isVisible() and tab.stage_strip.cards == []
        assert tab.bands["progress"].isVisible() and tab.stage_bands.bands == []
        assert [label for _, label in tab.aging_chart.bottom._tickLevels[0]] == ["waiting", "in progress"]
        assert "blocked" not in [label for label, _, _ in tab.aging_chart.keys()]
    assert image_before == image_now
    panel = PoolPanel(NoRequests())
    qtbot.addWidget(panel)
    panel.show()
    panel.apply_batch(SimpleNamespace(stats=[one_stage_rows(stages=True)[-1]], snapshot=None))
    assert not panel.stage.isVisible()


@pytest.mark.parametrize("count", [2, 5])
def test_a_workflow_that_changes_remakes_its_bands_and_cards(qtbot, count):
    tab = FlowTab(NoRequests(), NoRequests())
    qtbot.addWidget(tab)
    rows = one_stage_rows(stages=False)
    names = tuple(f"s{i}" for i in range(count))
    for k, row in enumerate(rows):
        row.stages = [protocol.StageStats(name=n, workers=1, workers_busy=0, min_workers=1, max_workers=1,
                                          tasks_queued=0, tasks_running=0, tasks_blocked=0, stories=0, wip_limit=0)
                      for n in (names if k >= 60 else ("a", "b", "c"))]
    tab.apply_batch(SimpleNamespace(snapshot=SimpleNamespace(history=rows[:60], stats=rows[59], completions=[]),
                                    stats=[], story_events=[]))
    assert tab.stage_names == ("a", "b", "c") and len(tab.stage_bands.bands) == 3
    tab.apply_batch(SimpleNamespace(snapshot=None, stats=rows[60:], story_events=[]))
    assert tab.stage_names == names and len(tab.stage_bands.bands) == count == len(tab.stage_strip.cards)
    assert len(tab.stage_series) == len(tab.buffer)
