"""The Monte Carlo forecasts against answers known in closed form, and their properties.

Known answers: a constant throughput gives a degenerate distribution; a Poisson
throughput gives Poisson sums (how many in k intervals ~ Poisson(k*lambda)) and
Gamma waiting times, whose quantiles are computed here from the Poisson CDF (no
scipy). The normal method is checked against brute-force simulation where that
is feasible, in probability terms: the share of simulated futures that reach N by
the normal method's p-time must be within 0.02 of p.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storypulse.server import montecarlo as mc


def poisson_cdf(n: int, mu: float) -> float:
    """P(X <= n) for X ~ Poisson(mu), summed in log space (stable for mu in the thousands)."""
    if n < 0:
        return 0.0
    log_terms = [-mu + i * math.log(mu) - math.lgamma(i + 1) for i in range(n + 1)]
    top = max(log_terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in log_terms))


def poisson_lower_quantile(mu: float, level: float) -> int:
    """The smallest n with P(X <= n) >= level."""
    n = 0
    while poisson_cdf(n, mu) < level:
        n += 1
    return n


def poisson_history(lam: float, samples: int = 100_000) -> mc.Sample:
    """Interval counts whose spread is Poisson(lam) itself: each value as often as its pmf says,
    in a random order (in order of size they would be one long run of dependent intervals,
    and the forecasts would resample them in blocks)."""
    counts = []
    n = 0
    while True:
        pmf = math.exp(-lam + n * math.log(lam) - math.lgamma(n + 1))
        times = round(pmf * samples)
        if times == 0 and n > lam:
            break
        counts += [n] * times
        n += 1
    return mc.Sample.of(np.random.default_rng(0).permutation(counts), 1.0)


def rng(seed: int = 7) -> np.random.Generator:
    return np.random.default_rng(seed)


# -- constant throughput: a degenerate distribution ------------------------------------------
@pytest.mark.parametrize("per_interval,stories", [(1, 1), (4, 10), (7, 700), (3, 2)])
def test_constant_throughput_gives_the_same_interval_at_every_level(per_interval, stories):
    """Every future needs the same whole intervals: ceil(N/c). Only where the N-th falls within
    the last one is random (uniform moments), so every level lies inside that interval."""
    sample = mc.Sample.of([per_interval] * 30, 2.0)
    answer = mc.when(sample, stories, 4000, rng(), "simulated")
    last = math.ceil(stories / per_interval)
    assert all((last - 1) * 2.0 < s <= last * 2.0 for s in answer.seconds), answer
    assert answer.seconds[0] <= answer.seconds[1] <= answer.seconds[2]


@pytest.mark.parametrize("per_interval,stories", [(1, 1), (4, 10), (7, 700), (3, 2)])
def test_constant_throughput_gives_one_answer_by_the_normal_method(per_interval, stories):
    sample = mc.Sample.of([per_interval] * 30, 2.0)
    answer = mc.when(sample, stories, 1000, rng(), "normal")
    # no spread at all: the N-th at (N - 1/2)/c intervals (a whole count reaches N at N - 1/2)
    assert answer.seconds == pytest.approx(((stories - 0.5) / per_interval * 2.0,) * 3)


def test_within_an_interval_completions_fall_at_uniform_moments():
    """One completion a second: the next comes at a Uniform(0, 1) moment of the next second,
    so its p-quantile is p seconds; the 2nd of 4 at the 2nd smallest of 4 uniforms, whose
    median is the root of P(Beta(2, 3) <= x) = 1/2, 0.3857."""
    one = mc.when(mc.Sample.of([1] * 10, 1.0), 1, 40_000, rng(), "simulated").seconds
    assert one == pytest.approx(mc.LEVELS, abs=0.01)
    second_of_four = mc.when(mc.Sample.of([4] * 10, 1.0), 2, 40_000, rng(), "simulated").seconds
    assert second_of_four[0] == pytest.approx(0.3857, abs=0.01)


@pytest.mark.parametrize("method", ["simulated", "normal"])
def test_constant_throughput_how_many_is_exact(method):
    sample = mc.Sample.of([5] * 30, 1.0)
    assert mc.within(sample, 12.0, 1000, rng(), method).stories == (60, 60, 60)


# -- Poisson throughput: closed-form percentiles ---------------------------------------------
@pytest.mark.parametrize("lam,k", [(4.0, 25), (0.5, 40), (30.0, 10)])
def test_poisson_how_many_matches_poisson_quantiles(lam, k):
    sample = poisson_history(lam)
    got = mc.within(sample, float(k), 20_000, rng(), "simulated").stories
    expected = tuple(poisson_lower_quantile(k * lam, 1 - p) for p in mc.LEVELS)
    # Monte Carlo noise: the 5 % quantile of 20,000 draws has a standard error of 0.0015 in
    # probability, a fraction of one story at these means; one story of slack is several of it.
    for g, e in zip(got, expected):
        assert abs(g - e) <= 1, (got, expected)


@pytest.mark.parametrize("lam,stories", [(4.0, 100), (0.5, 20), (30.0, 300)])
def test_poisson_when_matches_the_interval_of_the_poisson_answer(lam, stories):
    """P(done within k intervals) = P(Poisson(k*lam) >= N): the p-time lies in the interval
    (K_p - 1, K_p] of the smallest K_p where that reaches p (one interval of slack for noise)."""
    sample = poisson_history(lam)
    got = mc.when(sample, stories, 20_000, rng(), "simulated").seconds
    for seconds, p in zip(got, mc.LEVELS):
        k = 1
        while 1 - poisson_cdf(stories - 1, k * lam) < p:
            k += 1
        assert k - 2 < seconds <= k + 1, (p, seconds, k)


def gamma_quantile(n: int, lam: float, p: float) -> float:
    """The p-quantile of the time to the n-th event of a Poisson process of rate lam:
    P(T <= t) = P(Poisson(lam t) >= n), solved by bisection."""
    lo, hi = 0.0, 10.0 * (n + 10) / lam
    for _ in range(100):
        mid = (lo + hi) / 2
        if 1 - poisson_cdf(n - 1, lam * mid) >= p:
            hi = mid
        else:
            lo = mid
    return hi


@pytest.mark.parametrize("method", ["simulated", "normal"])
@pytest.mark.parametrize("lam,stories", [(4.0, 200), (30.0, 3000)])
def test_poisson_when_is_close_to_the_gamma_waiting_time(method, lam, stories):
    """In continuous time the wait for N Poisson arrivals is Gamma(N, lam): given their count,
    a Poisson process's arrivals in an interval fall at uniform moments, as simulated, so the
    simulation is that exactly (up to Monte Carlo noise); the normal method is within a
    quarter interval of it."""
    sample = poisson_history(lam)
    got = mc.when(sample, stories, 20_000, rng(), method).seconds
    for seconds, p in zip(got, mc.LEVELS):
        assert seconds == pytest.approx(gamma_quantile(stories, lam, p), abs=0.25 if method == "normal" else 0.12)


# -- the normal method against brute force ---------------------------------------------------
def bursty(seed: int, size: int = 600) -> mc.Sample:
    """Mostly quiet intervals with a burst one time in ten: skewed, as bursty loads are."""
    r = np.random.default_rng(seed)
    counts = np.where(r.random(size) < 0.1, r.poisson(20, size), r.poisson(1, size))
    return mc.Sample.of(counts, 1.0)


HISTORIES = {
    "poisson-3": lambda: mc.Sample.of(np.random.default_rng(1).poisson(3, 600), 1.0),
    "bursty": lambda: bursty(2),
    "sparse": lambda: mc.Sample.of(np.random.default_rng(3).poisson(0.3, 600), 1.0),
}


@pytest.mark.parametrize("history", sorted(HISTORIES))
@pytest.mark.parametrize("intervals", [60, 200])
def test_normal_when_is_within_two_points_of_brute_force(history, intervals):
    """Just past where the method switches (hundreds of intervals), the normal answer's
    level, measured on 40,000 simulated futures, is within 0.02 of the level it claims."""
    sample = HISTORIES[history]()
    stories = max(1, round(intervals * sample.mean))
    times = np.sort(mc._walk(sample, stories, 40_000, rng(11)))
    normal = mc.when(sample, stories, 1, rng(), "normal").seconds
    for seconds, p in zip(normal, mc.LEVELS):
        level = np.searchsorted(times, seconds, side="right") / times.size
        assert abs(level - p) <= 0.02, (history, p, level)


@pytest.mark.parametrize("history", sorted(HISTORIES))
@pytest.mark.parametrize("intervals", [60, 200])
def test_normal_how_many_is_within_two_points_of_brute_force(history, intervals):
    sample = HISTORIES[history]()
    totals = np.sort(mc._sums(sample, float(intervals), 40_000, rng(11)))
    normal = mc.within(sample, float(intervals), 1, rng(), "normal").stories
    for stories, p in zip(normal, mc.LEVELS):
        # the share of futures with at least that many, against the p it claims; one story
        # either side, since a whole number cannot hit a level between two of them
        above = np.mean(totals >= stories)
        below = np.mean(totals >= stories + 1)
        assert below - 0.02 <= p <= above + 0.02, (history, p, stories, above, below)


def test_large_questions_take_the_normal_method_and_small_ones_simulate():
    sample = HISTORIES["poisson-3"]()
    assert mc.when(sample, 30, 10_000, rng()).method == "simulated"
    assert mc.when(sample, 1_000_000, 10_000, rng()).method == "normal"
    assert mc.within(sample, 10.0, 10_000, rng()).method == "simulated"
    assert mc.within(sample, 86_400.0, 10_000, rng()).method == "normal"


def test_a_partial_interval_counts_its_share():
    """Half an interval of a steady 10 a second: Binomial(10, 1/2) done, median 5."""
    sample = mc.Sample.of([10] * 20, 1.0)
    assert mc.within(sample, 0.5, 20_000, rng(), "simulated").stories[0] == 5


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        mc.Sample.of([], 1.0)
    with pytest.raises(ValueError):
        mc.Sample.of([1, -1], 1.0)
    with pytest.raises(ValueError):
        mc.when(mc.Sample.of([0, 0], 1.0), 1, 10, rng())  # never gets there
    with pytest.raises(ValueError):
        mc.when(mc.Sample.of([1], 1.0), 0, 10, rng())


# -- properties -------------------------------------------------------------------------------
histories = st.lists(st.integers(0, 60), min_size=1, max_size=80).filter(any)
methods = st.sampled_from(["simulated", "normal"])


@settings(max_examples=int(os.environ.get('FORECAST_EXAMPLES', 60)), deadline=None)
@given(histories, st.integers(1, 300), st.integers(0, 200), st.integers(0, 2**32 - 1), methods)
def test_when_is_ordered_by_level_and_grows_with_n(counts, stories, more, seed, method):
    sample = mc.Sample.of(counts, 1.0)
    first = mc.when(sample, stories, 300, np.random.default_rng(seed), method).seconds
    later = mc.when(sample, stories + more, 300, np.random.default_rng(seed), method).seconds
    assert first[0] <= first[1] <= first[2]
    # With one seed every future's whole intervals are the same, so the interval that reaches
    # N never comes sooner for a larger N; where in it the N-th falls is drawn anew: at most
    # one interval earlier (the normal method has no draws: never earlier).
    slack = sample.interval_s if method == "simulated" else 1e-9
    assert all(a <= b + slack for a, b in zip(first, later))
    # (the normal method, never chosen for so few, may say 0 for one story of a skewed history)
    assert first[0] > 0 if method == "simulated" else first[0] >= 0


@settings(max_examples=int(os.environ.get('FORECAST_EXAMPLES', 60)), deadline=None)
@given(histories, st.integers(1, 300), st.integers(0, 200), st.integers(0, 2**32 - 1), methods)
def test_how_many_is_ordered_by_level_and_grows_with_t(counts, seconds, more, seed, method):
    sample = mc.Sample.of(counts, 1.0)
    first = mc.within(sample, float(seconds), 300, np.random.default_rng(seed), method).stories
    later = mc.within(sample, float(seconds + more), 300, np.random.default_rng(seed), method).stories
    assert first[2] <= first[1] <= first[0]
    assert all(a <= b for a, b in zip(first, later))
    assert min(first) >= 0


# -- dependent intervals: blocks and the rate's uncertainty -----------------------------------
def on_off(seconds: int, seed: int, rate: float = 10.0, switch: float = 0.2) -> np.ndarray:
    """Completions per second of a Markov-modulated rate: on (Poisson `rate` a second) or off
    (none), switching with probability `switch` each second (spells of 5 s on average). The
    seconds of a spell go together, so sums over many seconds vary far more than sums of
    independent seconds would (by (1 + 0.6) / (1 - 0.6) = 4 times for the rate's part)."""
    r = np.random.default_rng(seed)
    flips = r.random(seconds) < switch
    on = (np.cumsum(flips) + r.integers(2)) % 2 == 1
    return np.where(on, r.poisson(rate, seconds), 0)


def hit_rates(counts: np.ndarray, history: int, ahead: int, sample_of) -> tuple[np.ndarray, np.ndarray]:
    """Backtest: at every `ahead`-th second, forecast from the `history` seconds before (how many
    within `ahead`; when will as many as the history's mean rate makes in `ahead` be done) and
    score against the seconds after. Futures do not overlap, so the scores are near
    independent. Returns the hit rates of (how many, when) at each level."""
    r = np.random.default_rng(5)
    many, when, asked = np.zeros(3), np.zeros(3), 0
    for t in range(history, counts.size - 4 * ahead, ahead):
        sample = sample_of(counts[t - history:t])
        future = counts[t:t + 4 * ahead]
        least = mc.within(sample, float(ahead), 1000, r, "simulated").stories
        many += [future[:ahead].sum() >= v for v in least]
        stories = max(1, round(ahead * sample.mean))
        done = np.cumsum(future)
        second = int(np.searchsorted(done, stories))  # the second it came in, at a uniform moment
        nth = stories - (done[second - 1] if second else 0)
        came = second + np.sort(r.random(future[second]))[nth - 1]
        when += [came <= s for s in mc.when(sample, stories, 1000, r, "simulated").seconds]
        asked += 1
    return many / asked, when / asked


def test_an_on_off_rate_is_forecast_near_each_level_where_independent_draws_miss():
    """Ten hours of an on/off rate, forecasts 30 s ahead from 10 minutes of history. Drawn
    second by second, as the offline tools do, the futures vary half as much as the real
    ones: the p85 answers come true about 70 % of the time. In blocks, with the rate's own
    uncertainty, near 85 %. (About 1,200 forecasts: a hit rate's standard error is 0.01.)"""
    counts = on_off(36_000, seed=4)
    old_many, old_when = hit_rates(counts, 600, 30, lambda h: mc.Sample.of(h, 1.0, block=1, rate_uncertainty=False))
    new_many, new_when = hit_rates(counts, 600, 30, lambda h: mc.Sample.of(h, 1.0))
    assert old_many[1] < 0.76 and old_when[1] < 0.76, (old_many, old_when)
    assert old_many[2] < 0.87 and old_when[2] < 0.87, (old_many, old_when)
    for rates in (new_many, new_when):
        assert rates == pytest.approx(mc.LEVELS, abs=0.04), (new_many, new_when)
