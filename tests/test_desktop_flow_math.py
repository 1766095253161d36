"""The Flow tab's arithmetic, tested directly: cumulative flow, completions, aging, Little's law."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from storypulse import protocol
from storypulse.desktop.flow_math import (
    COMPLETED_AT, FLOW_FIELDS, IN_PROGRESS, LEAD, RESTART_GAP_S, STORY, WAITING, CompletionBuffer, FlowCoverage,
    aging, cfd_edges, jitter, littles_law, oldest_page, predicted_wip, stride,
)
from storypulse.desktop.series import SeriesBuffer, ServerClock
from standin import nearest_rank


def test_cfd_edges_stack_done_in_progress_and_waiting():
    done, progress, arrived = cfd_edges(np.array([10, 12]), np.array([3, 9]), np.array([5, 4]))
    assert list(done) == [10, 12]
    assert list(progress) == [13, 16]  # 9 in progress of 4 open is clipped to 4
    assert list(arrived) == [15, 16]  # done + open
    # A null in_progress (a server without flow figures) counts as none started.
    _, progress, _ = cfd_edges(np.array([1.0]), np.array([np.nan]), np.array([2.0]))
    assert list(progress) == [1.0]


def test_stride_keeps_every_series_aligned_and_the_last_row():
    assert list(stride(0, 10, 3)) == [0, 3, 6, 9]
    assert list(stride(0, 11, 3)) == [0, 3, 6, 9, 10]
    assert list(stride(4, 5, 1)) == [4]
    assert len(stride(5, 5, 1)) == 0


def stats(**fields):
    base = dict(open_stories=12, stories_completed_in_window=120, flow_window_s=60.0, lead_time_mean_s=6.0)
    return SimpleNamespace(**{**base, **fields})


def test_littles_law_is_throughput_times_mean_lead_time():
    law = littles_law(stats())
    assert law.wip == 12 and law.throughput_per_s == 2.0 and law.predicted == pytest.approx(12.0)
    assert littles_law(stats(lead_time_mean_s=None)).predicted is None  # none completed in the window
    assert littles_law(stats(flow_window_s=None)).predicted is None  # a server without flow figures
    series = predicted_wip(np.array([120.0, 0.0, 30.0]), np.array([60.0, 60.0, np.nan]),
                           np.array([6.0, np.nan, 2.0]))
    assert series[0] == pytest.approx(12.0) and np.isnan(series[1]) and np.isnan(series[2])


def server_counts(rate: float, window: float, started: float, ts: float) -> int:
    """What a server that started at `started` counts at `ts`: completions of a steady flow in its window."""
    return int(rate * min(window, ts - started))


def test_a_fresh_servers_throughput_is_its_count_over_the_time_it_has_counted():
    """The warm-up: a steady 2 stories/s from the start reads 2/s at once, not 2/s × t / window."""
    coverage, start, rate, window = FlowCoverage(), 10_000.0, 2.0, 60.0
    clock = [start + 0.25 * k for k in range(4 * 150)]  # a fake clock: stats every 250 ms for 150 s
    for ts in clock:
        coverage.observe(ts, window)
    for ts in clock[4:]:  # from one second in
        law = littles_law(stats(stories_completed_in_window=server_counts(rate, window, start, ts),
                                lead_time_mean_s=5.0), float(coverage.covered(ts, window)))
        assert law.throughput_per_s == pytest.approx(rate, rel=0.02 if ts - start > 25 else 0.5)
        assert law.filling == (ts - start < window)
    # The whole series at once, as the chart draws it: flat at rate × lead time, no climb from zero.
    ts = np.array(clock[4:])
    counts = np.array([server_counts(rate, window, start, t) for t in ts], dtype=float)
    drawn = predicted_wip(counts, coverage.covered(ts, np.full(len(ts), window)), np.full(len(ts), 5.0))
    assert drawn[ts - start > 25] == pytest.approx(rate * 5.0, rel=0.02)
    old_rule = predicted_wip(counts, np.full(len(ts), window), np.full(len(ts), 5.0))
    assert old_rule[0] < 0.1 * rate * 5.0  # what it looked like: climbing from zero


def test_a_longer_window_fills_from_what_the_shorter_one_held():
    coverage = FlowCoverage()
    for ts in range(0, 200):  # a server up for 200 s with a 60 s window
        coverage.observe(float(ts), 60.0)
    coverage.observe(200.0, 600.0)  # made longer: it holds the last 60 s and fills from there
    assert coverage.covered(200.0, 600.0) == 60.0
    for ts in range(201, 400):
        coverage.observe(float(ts), 600.0)
    assert coverage.covered(399.0, 600.0) == 259.0
    assert coverage.covered(150.0, 60.0) == 60.0  # earlier rows keep their own figures
    coverage.observe(400.0, 30.0)  # shorter: full at once
    assert coverage.covered(400.0, 30.0) == 30.0


def test_a_restarted_server_counts_afresh_unless_it_reloaded_older_completions():
    coverage = FlowCoverage()
    for ts in range(0, 100):
        coverage.observe(float(ts), 60.0)
    restart = 99 + RESTART_GAP_S + 5
    coverage.observe(restart, 60.0)  # a gap: the server stopped, and counts from its restart
    assert coverage.covered(restart + 20, 60.0) == 20.0
    coverage.saw_completion(restart - 1)  # within the slack of the first row: no proof of older data
    assert coverage.covered(restart + 20, 60.0) == 20.0
    coverage.saw_completion(restart - 30)  # its snapshot holds a completion from before: the window is full
    assert coverage.covered(restart + 20, 60.0) == 60.0
    assert coverage.covered(50.0, 60.0) == 50.0  # before the restart: as it was
    assert FlowCoverage().covered(5.0, 60.0) == 60.0  # nothing seen: the window as it is


def row(ts: float, window: float, covered: float | None = None):
    return SimpleNamespace(ts=ts, flow_window_s=window, flow_window_covered_s=covered)


def test_a_server_that_says_what_it_has_counted_is_taken_at_its_word():
    """flow_window_covered_s wins over the inference: after a restart the server knows that the
    completions it read back cover its window, which no row this client saw can tell."""
    coverage, start = FlowCoverage(), 5_000.0
    for k in range(40):  # joined 12 s after the server started; its two clocks drift by a few ms
        ts = start + 12 + k
        coverage.take(row(ts, 60.0, 12.0 + k + (0.003 if k % 2 else 0.0)))
    assert coverage.covered(start + 30, 60.0) == 30.0  # from the server's start, not this client's
    assert coverage.covered(start + 51, 60.0) == 51.0
    assert len(coverage._from) == 1  # the drift made no new marks
    coverage.saw_completion(start - 100)  # the server counted what it has: no inference over it
    assert coverage.covered(start + 51, 60.0) == 51.0
    for k in range(40, 60):
        coverage.take(row(start + 12 + k, 60.0, min(60.0, 12.0 + k)))
    assert coverage.covered(start + 71, 60.0) == 60.0

    restarted = FlowCoverage()  # a restart within the window: full at once, by the server's word
    restarted.take(row(start, 60.0, 60.0))
    restarted.take(row(start + 1, 600.0, 61.0))  # then a longer window: it fills from there
    assert (restarted.covered(start, 60.0), restarted.covered(start + 1, 600.0)) == (60.0, 61.0)
    assert restarted.covered(start + 101, 600.0) == 161.0

    older = FlowCoverage()  # rows without the field (an older server): the inference, as before
    for k in range(10):
        older.take(row(start + k, 60.0))
    assert older.covered(start + 9, 60.0) == 9.0


def test_completion_buffer_is_bounded_and_keeps_the_newest():
    buf = CompletionBuffer(capacity=100)
    for start in range(0, 1000, 37):  # batches of every size across the compaction point
        buf.extend((float(t), t / 10, None, t) for t in range(start, min(start + 37, 1000)))
    assert len(buf) == 100
    assert buf.column(COMPLETED_AT)[0] == 900 and buf.column(COMPLETED_AT)[-1] == 999
    assert np.isnan(buf.column(2)).all()  # no cycle time: NaN
    assert buf._data.shape[0] == 200


def test_a_snapshot_replaces_what_it_covers_and_keeps_what_came_before():
    buf = CompletionBuffer()
    buf.extend([(1.0, 1.0, 0.5, 1), (2.0, 1.5, 0.5, 2), (3.0, 9.9, 0.5, 3)])  # 3: a value the snapshot corrects
    completions = [protocol.Completion(3, 3.0, 2.0, 1.0), protocol.Completion(4, 4.0, 2.5, 1.0)]
    buf.merge_snapshot(completions)
    assert list(buf.column(STORY)) == [1, 2, 3, 4]
    assert list(buf.column(LEAD)) == [1.0, 1.5, 2.0, 2.5]
    buf.merge_snapshot([])  # an empty snapshot (nothing in its window) takes nothing away
    assert len(buf) == 4


def test_thinned_dots_keep_their_places_as_completions_arrive():
    buf = CompletionBuffer()
    buf.extend((float(t), 1.0, 1.0, t) for t in range(1000))
    first = buf.window(since=0.0, max_points=100)
    assert 50 <= len(first) <= 100
    buf.extend((float(t), 1.0, 1.0, t) for t in range(1000, 1010))
    second = buf.window(since=0.0, max_points=100)
    # Same step, same phase: every dot drawn before is drawn again.
    assert set(first[:, STORY]) <= set(second[:, STORY])
    assert set(buf.window(since=995.0, max_points=100)[:, STORY]) == set(range(995, 1010))
    buf.extend((float(t), 1.0, 1.0, t) for t in range(1010, 3000))
    third = buf.window(since=0.0, max_points=100)  # a coarser step keeps a subset, none moved
    assert set(third[:, STORY]) <= set(second[:, STORY]) | set(range(1010, 3000)) and len(third) <= 100


def test_the_oldest_open_stories_are_the_last_page_of_a_newest_first_list():
    assert oldest_page(1_000, 200) == (800, 200)
    assert oldest_page(50, 200) == (0, 200)


def view(story_id: int, created_at: float, started_at: float | None = None, tasks_done: int = 0):
    return protocol.StoryView(story_id=story_id, name="s", description="", status="open", created_at=created_at,
                              tasks_total=3, tasks_done=tasks_done, started_at=started_at)


def test_aging_places_stories_by_state_and_marks_those_older_than_p85():
    stories = [view(1, 100.0), view(2, 150.0, started_at=151.0), view(3, 190.0, tasks_done=1), view(4, 10.0)]
    state = aging(stories, now=200.0, p85_s=60.0)
    assert list(state.age_s) == [100.0, 50.0, 10.0, 190.0]
    assert list(np.rint(state.x)) == [WAITING, IN_PROGRESS, IN_PROGRESS, WAITING]
    assert list(state.at_risk) == [True, False, False, True]
    assert state.risky_ids == [4, 1]  # oldest first
    assert not aging(stories, now=200.0, p85_s=None).at_risk.any()  # no p85 yet: nobody flagged


def test_jitter_is_stable_and_stays_within_its_column():
    ids = np.arange(1, 5000)
    spread = jitter(ids)
    assert np.array_equal(spread, jitter(ids))
    assert spread.min() >= -0.35 and spread.max() <= 0.35 and spread.std() > 0.1


def test_the_flow_series_keep_nulls_as_gaps():
    buf = SeriesBuffer(10, fields=FLOW_FIELDS)
    row = {name: 1.0 for name in FLOW_FIELDS}
    buf.append(SimpleNamespace(**{**row, "ts": 1.0, "lead_time_p85_s": None}))
    buf.append(SimpleNamespace(**{**row, "ts": 2.0, "lead_time_p85_s": 4.5}))
    p85 = buf.column("lead_time_p85_s")
    assert np.isnan(p85[0]) and p85[1] == 4.5
    with pytest.raises(ValueError):
        SeriesBuffer(10, fields=("open_stories", "ts"))


def test_server_clock_follows_the_newest_stats_and_never_runs_far_ahead():
    clock = ServerClock(max_ahead_s=0.0)
    clock.update(SimpleNamespace(ts=100.0, seq=5))
    clock.update(SimpleNamespace(ts=90.0, seq=4))  # older: ignored
    assert clock.now() == 100.0
    clock.update(SimpleNamespace(ts=95.0, seq=6))  # a higher seq after the server's clock stepped back
    assert clock.now() == 95.0


def test_nearest_rank_percentiles_of_the_stand_in():
    values = sorted(float(v) for v in range(1, 101))
    assert nearest_rank(values, 50) == 50 and nearest_rank(values, 85) == 85 and nearest_rank(values, 95) == 95
    assert nearest_rank([7.0], 95) == 7.0 and nearest_rank([], 50) is None
