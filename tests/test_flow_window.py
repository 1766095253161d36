"""The flow window (server/flow.py) with a fake clock, against a brute-force reference."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storypulse.server.flow import FlowWindow


def reference_percentile(values: list[float], p: int) -> float | None:
    """Nearest rank, the textbook way: sort, take the value at rank ceil(p/100 * n), in whole numbers.

    (The rule itself is tested in test_percentiles.py.)"""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[-(-p * len(ordered) // 100) - 1]


def test_completions_leave_the_window_as_the_clock_passes_them():
    w = FlowWindow(10.0)
    w.add(100.0, 1, 1_000.0, lead_s=4.0, cycle_s=1.0)
    w.add(105.0, 2, 1_005.0, lead_s=2.0, cycle_s=0.5)
    f = w.figures(109.9)
    assert (f.count, f.lead_p50_s, f.lead_p95_s, f.lead_mean_s) == (2, 2.0, 4.0, 3.0)
    f = w.figures(110.0)  # the first is exactly 10 s old: out
    assert (f.count, f.lead_p50_s, f.cycle_p50_s) == (1, 2.0, 0.5)
    f = w.figures(200.0)
    assert f.count == 0 and f.lead_p50_s is None and f.lead_mean_s is None and f.cycle_p95_s is None


def test_the_window_edge_is_now_minus_at_even_where_floats_round():
    # Found by the property below: with `at <= now - window`, 1.0 - 1.0 = 0.0 kept a
    # completion at 3e-239 that `now - at >= window` says has left.
    w = FlowWindow(1.0)
    w.add(3e-239, 1, 1.0, 0.5, 0.25)
    assert w.figures(0.5).count == 1
    assert w.figures(3e-239 + 1.0).count == 0


def test_a_shorter_window_drops_at_once_a_longer_one_fills_later():
    w = FlowWindow(60.0)
    for i in range(10):
        w.add(float(i), i + 1, 1_000.0 + i, lead_s=float(i), cycle_s=0.0)
    w.set_window(5.0, now=9.0)
    assert w.figures(9.0).count == 5  # completions at 5..9
    w.set_window(60.0, now=9.0)
    assert w.figures(9.0).count == 5  # what left does not come back
    with pytest.raises(ValueError):
        w.set_window(0.0, now=9.0)


def test_a_deleted_story_leaves_the_window():
    w = FlowWindow(60.0)
    for i, lead in enumerate([1.0, 5.0, 9.0]):
        w.add(float(i), i + 1, 1_000.0 + i, lead, lead / 2)
    assert w.discard(2) and not w.discard(2)
    f = w.figures(3.0)
    assert (f.count, f.lead_p95_s, f.lead_mean_s, f.cycle_p50_s) == (2, 9.0, 5.0, 0.5)
    assert [c.story_id for c in w.recent(3.0, 10)] == [1, 3]


def test_recent_gives_the_newest_oldest_first_and_the_cap_bounds_memory():
    w = FlowWindow(60.0, samples_max=3)
    for i in range(5):
        w.add(float(i), i + 1, 1_000.0 + i, float(i), 0.0)
    assert [c.story_id for c in w.recent(5.0, 10)] == [3, 4, 5]
    assert [c.story_id for c in w.recent(5.0, 2)] == [4, 5]
    assert w.recent(5.0, 0) == []
    assert w.figures(5.0).lead_p50_s == 3.0


def test_a_completion_earlier_than_the_last_is_clamped_to_keep_the_order():
    w = FlowWindow(10.0)
    w.add(50.0, 1, 1_000.0, 1.0, 1.0)
    w.add(49.0, 2, 999.0, 2.0, 2.0)  # e.g. one restored from the database with a skewed clock
    assert [c.at for c in w.entries] == [50.0, 50.0]
    assert w.figures(59.9).count == 2 and w.figures(60.0).count == 0


# One step of a random run: ("add", dt, lead, cycle) | ("discard", index) | ("window", w) | ("look", dt)
steps = st.lists(st.one_of(
    st.tuples(st.just("add"), st.floats(0, 3), st.floats(0, 1_000), st.floats(0, 1_000)),
    st.tuples(st.just("discard"), st.integers(0, 200)),
    st.tuples(st.just("window"), st.floats(0.5, 20)),
    st.tuples(st.just("look"), st.floats(0, 5)),
), max_size=120)


@settings(max_examples=300, deadline=None)
@given(steps=steps, window=st.floats(0.5, 20))
def test_figures_equal_a_brute_force_reference_under_a_fake_clock(steps, window):
    w = FlowWindow(window)
    now = 0.0
    added: list[tuple[float, int, float, float]] = []  # (at, story_id, lead, cycle)
    gone: set[int] = set()
    for step in steps:
        if step[0] == "add":
            now += step[1]
            story_id = len(added) + 1
            w.add(now, story_id, 1e9 + now, step[2], step[3])
            added.append((now, story_id, step[2], step[3]))
        elif step[0] == "discard":
            story_id = step[1]
            inside = any(s == story_id and now - at < window and s not in gone
                         for at, s, _, _ in added)
            assert w.discard(story_id) == inside
            if inside:
                gone.add(story_id)
        elif step[0] == "window":
            window = step[1]
            w.set_window(window, now)
        else:
            now += step[1]
        # Expiry is for good: once out, a completion never comes back (not even when the
        # window grows again).
        gone.update(s for at, s, _, _ in added if now - at >= window)
        kept = [(s, lead, cycle) for at, s, lead, cycle in added
                if s not in gone and now - at < window]
        f = w.figures(now)
        leads = [lead for _, lead, _ in kept]
        cycles = [cycle for _, _, cycle in kept]
        assert f.count == len(kept)
        for p, got in ((50, f.lead_p50_s), (85, f.lead_p85_s), (95, f.lead_p95_s)):
            assert got == reference_percentile(leads, p)
        for p, got in ((50, f.cycle_p50_s), (85, f.cycle_p85_s), (95, f.cycle_p95_s)):
            assert got == reference_percentile(cycles, p)
        if kept:
            assert f.lead_mean_s == pytest.approx(sum(leads) / len(leads), abs=1e-6)
        assert [c.story_id for c in w.recent(now, 1_000)] == [s for s, _, _ in kept]


def test_flow_efficiency_is_work_time_over_cycle_time_of_the_window():
    w = FlowWindow(60.0)
    assert w.figures(0.0).flow_efficiency is None
    w.add(1.0, 1, 1_001.0, lead_s=10.0, cycle_s=8.0, work_s=2.0)
    w.add(2.0, 2, 1_002.0, lead_s=5.0, cycle_s=2.0, work_s=2.0)
    w.add(3.0, 3, 1_003.0, lead_s=5.0, cycle_s=4.0)  # work time not known (e.g. read back after a restart)
    assert w.figures(3.0).flow_efficiency == pytest.approx(4.0 / 10.0)
    w.discard(2)
    assert w.figures(3.0).flow_efficiency == pytest.approx(0.25)
    assert w.figures(61.5).flow_efficiency is None  # story 1 left the window


def test_covered_is_the_part_of_the_window_counted_since_the_start_or_an_early_drop():
    w = FlowWindow(10.0, samples_max=3, since=100.0)
    assert (w.covered(100.0), w.covered(104.0), w.covered(200.0)) == (0.0, 4.0, 10.0)
    w.counted_from(50.0)  # a restart read back completions since then
    assert w.covered(100.0) == 10.0
    w.counted_from(80.0)  # later evidence never shortens it
    assert w.covered(100.0) == 10.0
    for i in range(5):  # two more than are kept: the oldest two leave early
        w.add(200.0 + i, i, 2_000.0 + i, lead_s=1.0, cycle_s=1.0)
    assert w.figures(204.5).count == 3
    assert w.covered(204.5) == 3.5  # counted since the last completion that left early (at 201)
    assert w.covered(300.0) == 10.0
