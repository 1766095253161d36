"""The workflow's arithmetic for the Flow tab, tested directly: which stages, the bands per stage, aging by stage."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storypulse import protocol
from storypulse.desktop.flow_math import FLOW_FIELDS, IN_PROGRESS, WAITING, aging
from storypulse.desktop.series import SeriesBuffer
from storypulse.desktop.stage_math import (
    StageSeries, bottleneck_detail, bottleneck_text, format_efficiency, pool_text, stage_edges, stage_names,
    stage_role, stories_text,
)


def stage(name: str, stories: int = 0, **fields) -> protocol.StageStats:
    base = dict(workers=2, workers_busy=1, min_workers=1, max_workers=2, tasks_queued=5, tasks_ready=3,
                tasks_running=1, tasks_blocked=0, wip_limit=0)
    return protocol.StageStats(name=name, stories=stories, **{**base, **fields})


def row(ts: float, stories=(), **fields):
    values = {name: 0.0 for name in FLOW_FIELDS}
    values.update(ts=ts, seq=int(ts), stages=[stage(f"s{i}", n) for i, n in enumerate(stories)], **fields)
    return SimpleNamespace(**values)


def test_a_workflow_is_more_than_one_stage():
    assert stage_names(SimpleNamespace(open_stories=1)) == ()  # an older server: no stages field
    assert stage_names(row(1.0, ())) == ()
    assert stage_names(row(1.0, (4,))) == ()  # one stage, `work`: no workflow to show
    assert stage_names(row(1.0, (4, 2, 1))) == ("s0", "s1", "s2")


def test_stage_roles_cycle_so_that_neighbours_differ():
    roles = [stage_role(i) for i in range(protocol.STAGES_MAX)]
    assert roles[:5] == ["stage_1", "stage_2", "stage_3", "stage_2", "stage_1"]
    assert all(a != b for a, b in zip(roles, roles[1:]))


def test_the_stage_series_keeps_row_for_row_with_the_buffer_through_wrap_around():
    buffer = SeriesBuffer(5, max_rate=10.0, fields=FLOW_FIELDS)
    series: StageSeries | None = None
    rows = [row(1.0, (1,)), row(1.1, (2,)),  # one stage: no series yet
            *(row(1.0 + 0.1 * k, (k, 10 + k, 20 + k)) for k in range(2, 14))]
    rows.insert(6, row(1.45, (99, 99, 99)))  # too close to the one before: the buffer skips it
    for r in rows:
        if series is None and stage_names(r):
            series = StageSeries(buffer.capacity, len(buffer))
        if buffer.append(r) and series is not None:
            series.append(r)
    assert len(series) == len(buffer) == 5
    index = np.arange(len(buffer))
    kept = series.rows(index, 3)
    ts = buffer.column("ts")
    for at, stories in zip(ts, kept):
        k = round((at - 1.0) / 0.1)
        assert list(stories) == [k, 10 + k, 20 + k]
    # Rows from before the workflow showed are NaN (no split known).
    early = StageSeries(10, rows_before=2)
    early.append(row(5.0, (1, 2)))
    assert np.isnan(early.rows(np.arange(3), 2)[:2]).all() and list(early.rows(np.arange(3), 2)[2]) == [1, 2]


def test_stage_edges_stack_done_each_stage_from_the_last_and_waiting():
    done, progress, open_ = np.array([10.0]), np.array([6.0]), np.array([9.0])
    edges = stage_edges(done, progress, open_, np.array([[1.0, 2.0, 3.0]]))
    assert [e[0] for e in edges] == [10, 13, 15, 16, 19]  # done, +test 3, +build 2, +analysis 1, +waiting 3
    # A row without a split: all in progress in the first stage.
    edges = stage_edges(done, progress, open_, np.array([[np.nan, np.nan, np.nan]]))
    assert [e[0] for e in edges] == [10, 10, 10, 16, 19]
    # Stages that add up to more than in progress (a torn row) are clipped: no band below zero.
    edges = stage_edges(done, np.array([2.0]), open_, np.array([[0.0, 5.0, 5.0]]))
    assert [e[0] for e in edges] == [10, 12, 12, 12, 19]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 50), st.integers(0, 60),
                          st.lists(st.one_of(st.integers(0, 30), st.just(-1)), min_size=2, max_size=16)),
                min_size=1, max_size=20))
def test_stage_bands_never_go_below_zero_and_reach_arrivals(rows):
    count = min(len(r[3]) for r in rows)
    done = np.array([r[0] for r in rows], dtype=float)
    progress = np.array([r[1] for r in rows], dtype=float)
    open_ = np.array([r[2] for r in rows], dtype=float)
    stories = np.array([[np.nan if v < 0 else v for v in r[3][:count]] for r in rows], dtype=float)
    edges = stage_edges(done, progress, open_, stories)
    assert len(edges) == count + 2
    for lower, upper in zip(edges, edges[1:]):
        assert (upper >= lower).all()
    assert np.array_equal(edges[0], done) and np.array_equal(edges[-1], done + open_)
    assert np.array_equal(edges[-2], done + np.minimum(progress, open_))


def test_aging_puts_a_story_in_the_column_of_its_stage_and_marks_the_blocked():
    def story(i, stage=None, started=True, blocked_until=None):
        return protocol.StoryView(story_id=i, name="", description="", status="open", created_at=100.0 + i,
                                  tasks_total=3, tasks_done=0, started_at=101.0 + i if started else None,
                                  stage=stage, blocked_until=blocked_until)

    stories = [story(1, started=False), story(2, "analysis"), story(3, "build", blocked_until=130.0),
               story(4, "test", blocked_until=110.0), story(5, "deploy")]
    state = aging(stories, 120.0, None, ("analysis", "build", "test"))
    assert list(np.rint(state.x)) == [0, 1, 2, 3, 1]  # waiting, each stage; one it does not know: the first
    assert list(state.blocked) == [False, False, True, False, False]  # story 4's block ended at 110
    assert state.blocked_ids == [3]
    # Without a workflow: waiting or in progress, as always.
    single = aging(stories, 120.0, None)
    assert list(np.rint(single.x)) == [WAITING, IN_PROGRESS, IN_PROGRESS, IN_PROGRESS, IN_PROGRESS]


def test_the_figures_read_short_with_the_detail_apart():
    assert format_efficiency(0.564) == "56 %" and format_efficiency(None) == "–"
    stats = SimpleNamespace(bottleneck="test", stages=[stage("build"), stage("test", wait_s=4.25)])
    assert bottleneck_text(stats) == "bottleneck: test"
    assert "~4.2 s" in bottleneck_detail(stats)
    assert bottleneck_text(SimpleNamespace(bottleneck=None)) == "no bottleneck"
    assert pool_text(stage("build", workers=6, workers_busy=4, tasks_queued=12, tasks_blocked=2)) == \
        "4/6 busy · 12 queued · 2 blocked"
    assert pool_text(stage("build")) == "1/2 busy · 5 queued"
    assert stories_text(stage("build", 3, wip_limit=4)) == "3 / 4 stories"
    assert stories_text(stage("build", 3)) == "3 stories"
    assert stories_text(stage("build", 1)) == "1 story" and stories_text(stage("build", 1, wip_limit=2)) == \
        "1 / 2 stories"


@pytest.mark.parametrize("count", [2, 3, 16])
def test_stage_edges_take_exactly_the_stages_asked_for(count):
    stories = np.ones((4, protocol.STAGES_MAX))
    edges = stage_edges(np.zeros(4), np.full(4, 100.0), np.full(4, 200.0), stories[:, :count])
    assert len(edges) == count + 2 and list(edges[count - 1]) == [count - 1.0] * 4
