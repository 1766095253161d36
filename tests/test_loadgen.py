"""The simulator's distributions (common/loadgen.py), seeded: arrivals and estimates."""

from __future__ import annotations

import math
import statistics

import pytest

from storypulse.loadgen import LOGNORMAL_Z, Pacer, StoryGenerator, lognormal_parameters


def arrival_times(pacer: Pacer, seconds: float, step: float = 0.001) -> list[float]:
    """Drive the pacer with a fake clock; the time of each story it lets out."""
    times = []
    for i in range(round(seconds / step)):
        now = i * step
        times.extend([now] * pacer.due(now, max_burst=10_000))
    return times


def test_poisson_arrivals_have_the_rate_and_exponential_gaps():
    pacer = Pacer(rate=50, start=0.0, arrivals="poisson", seed=7)
    times = arrival_times(pacer, 200.0)
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(times) == pytest.approx(50 * 200, rel=0.03)
    assert statistics.fmean(gaps) == pytest.approx(1 / 50, rel=0.03)
    # exponential: the spread equals the mean (a steady pacer's would be ~0)
    assert statistics.pstdev(gaps) / statistics.fmean(gaps) == pytest.approx(1.0, abs=0.1)
    # and memoryless: about e^-1 of the gaps are longer than the mean
    assert sum(g > 1 / 50 for g in gaps) / len(gaps) == pytest.approx(math.exp(-1), abs=0.03)


def test_steady_arrivals_are_evenly_spaced():
    times = arrival_times(Pacer(rate=50, start=0.0), 10.0)
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(times) == 500
    assert statistics.pstdev(gaps) < 0.001 and statistics.fmean(gaps) == pytest.approx(0.02, abs=1e-3)


def test_the_same_seed_gives_the_same_arrivals():
    one = arrival_times(Pacer(20, 0.0, "poisson", seed=3), 5.0)
    two = arrival_times(Pacer(20, 0.0, "poisson", seed=3), 5.0)
    assert one == two and one != arrival_times(Pacer(20, 0.0, "poisson", seed=4), 5.0)


def test_a_new_rate_applies_from_now():
    for arrivals in ("steady", "poisson"):
        pacer = Pacer(rate=0.1, start=0.0, arrivals=arrivals, seed=1)
        pacer.due(0.0)
        pacer.set_rate(100, now=1.0)
        assert pacer.wait(1.0) <= 0.1, arrivals  # not the 10 s gap of the old rate
        later = arrival_times(pacer, 11.0)
        assert len([t for t in later if t >= 1.0]) == pytest.approx(1_000, rel=0.1), arrivals


def test_a_stalled_poisson_pacer_skips_instead_of_bursting():
    pacer = Pacer(rate=100, start=0.0, arrivals="poisson", seed=2)
    assert pacer.due(10.0, max_burst=5) == 5
    assert pacer.due(10.0) == 0 and pacer.wait(10.0) > 0  # no debt carried over


def test_bad_modes_and_rates_are_refused_by_name():
    with pytest.raises(ValueError, match="arrivals 'bursty'"):
        Pacer(1, 0.0, arrivals="bursty")
    with pytest.raises(ValueError, match="rate"):
        Pacer(1, 0.0).set_rate(0, 1.0)
    with pytest.raises(ValueError, match="estimates 'normal'"):
        StoryGenerator(estimates="normal")


def estimates(gen: StoryGenerator, n: int) -> list[int]:
    return [gen.estimate() for _ in range(n)]


def test_lognormal_estimates_stay_in_range_with_the_median_at_the_geometric_middle():
    gen = StoryGenerator(estimate_ms=(100, 10_000), estimates="lognormal", seed=11)
    values = estimates(gen, 20_000)
    assert min(values) >= 100 and max(values) <= 10_000
    assert statistics.median(values) == pytest.approx(1_000, rel=0.05)  # √(100 · 10,000)
    # right-skewed like real task times: the mean well above the median, a long tail
    assert statistics.fmean(values) > 1.4 * statistics.median(values)
    # truncated, not clipped: no pile-up at the ends of the range
    assert values.count(100) < 0.005 * len(values) and values.count(10_000) < 0.005 * len(values)
    mu, sigma = lognormal_parameters(100, 10_000)
    assert math.exp(mu) == pytest.approx(1_000) and sigma == pytest.approx(math.log(100) / 2 / LOGNORMAL_Z)


def test_uniform_estimates_fill_the_range_evenly():
    values = estimates(StoryGenerator(estimate_ms=(100, 10_000), seed=11), 20_000)
    assert min(values) >= 100 and max(values) <= 10_000
    assert statistics.fmean(values) == pytest.approx(5_050, rel=0.02)
    assert statistics.median(values) == pytest.approx(5_050, rel=0.03)


def test_lognormal_edge_ranges():
    assert set(estimates(StoryGenerator(estimate_ms=(250, 250), estimates="lognormal"), 50)) == {250}
    zero_low = estimates(StoryGenerator(estimate_ms=(0, 1_000), estimates="lognormal", seed=5), 5_000)
    assert min(zero_low) >= 0 and max(zero_low) <= 1_000
    assert statistics.median(zero_low) == pytest.approx(math.sqrt(1 * 1_000), rel=0.15)


def test_retune_changes_the_next_stories():
    gen = StoryGenerator(tasks=(1, 1), estimate_ms=(0, 10), seed=1)
    assert all(t["estimate_ms"] <= 10 for t in gen.story()["tasks"])
    gen.retune(tasks=(3, 3), estimate_ms=(500, 600), estimates="lognormal")
    story = gen.story()
    assert len(story["tasks"]) == 3 and all(500 <= t["estimate_ms"] <= 600 for t in story["tasks"])
    with pytest.raises(ValueError, match="tasks per story"):
        gen.retune(tasks=(0, 3), estimate_ms=(0, 1), estimates="uniform")
