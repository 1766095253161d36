"""Monte Carlo forecasts from a throughput history: "when will N more be done?" and
"how many will be done within T?". Pure numpy; no clock, no I/O.

The model is the one the offline tools use: the completions counted in each
past sampling interval are independent draws of what a future interval will
complete (resampling with replacement). Within an interval, completions are
taken to fall at uniform random moments (see `_walk`), so answers are not rounded to
whole intervals.

Two methods, chosen by cost (docs/forecasts.md says how close the second one is):

- ``simulated``: the resampling itself, `trials` random futures drawn interval by
  interval (vectorised over the trials). Exact for the model, up to Monte Carlo
  noise. Used while trials x intervals stays within DRAWS_BUDGET (about 10 ms).
- ``normal``: beyond that, a forecast spans hundreds of intervals or more, and the
  sum S_k of k resampled intervals is close to normal (central limit theorem).
  Counts are never negative, so "N done within k intervals" is exactly "S_k >= N":
  the percentiles of the time to N follow from the quantiles of S_k, solved in closed
  form, with the skewness of the counts as a first-order (Cornish-Fisher) correction.
  No random draws: cost is microseconds, whatever N.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np

LEVELS = (0.50, 0.85, 0.95)  # the confidence levels every answer carries
DRAWS_BUDGET = 600_000  # trials x intervals simulated at most (about 10 ms on a shared core)
CHUNK_FIRST = 16  # intervals drawn in the first chunk of a "when" walk; each next chunk doubles

Method = Literal["simulated", "normal"]
_Z = NormalDist()


@dataclass(frozen=True)
class Sample:
    """The interval counts a forecast resamples, with the moments the normal method needs."""

    counts: np.ndarray  # int64, one per interval
    interval_s: float
    mean: float
    std: float
    skew: float  # third standardised moment; 0 when std is 0

    @classmethod
    def of(cls, counts, interval_s: float) -> Sample:
        values = np.asarray(counts, dtype=np.int64)
        if values.ndim != 1 or values.size == 0 or (values < 0).any():
            raise ValueError("counts must be a non-empty list of counts >= 0")
        if not interval_s > 0:
            raise ValueError("interval_s must be positive")
        mean = float(values.mean())
        centred = values - mean
        std = float(np.sqrt((centred ** 2).mean()))
        skew = float((centred ** 3).mean() / std ** 3) if std > 0 else 0.0
        return cls(values, interval_s, mean, std, skew)


@dataclass(frozen=True)
class When:
    """Seconds from now by which N more are done, at each of LEVELS."""

    seconds: tuple[float, float, float]
    method: Method


@dataclass(frozen=True)
class HowMany:
    """At least this many done within T, at each of LEVELS (so the last is the smallest)."""

    stories: tuple[int, int, int]
    method: Method


def nearest_rank(ordered: np.ndarray, level: float):
    """The level-quantile of sorted values by nearest rank: the smallest value that at
    least `level` of the values do not exceed."""
    n = len(ordered)
    rank = max(1, math.ceil(level * n - 1e-9))
    return ordered[rank - 1]


def when(sample: Sample, stories: int, trials: int, rng: np.random.Generator,
         method: Method | None = None) -> When:
    """When will `stories` more be done? `method` None: simulated within the budget."""
    if stories < 1 or trials < 1:
        raise ValueError("stories and trials must be >= 1")
    if sample.mean <= 0:
        raise ValueError("no completions in the sample: it never gets there")
    if method is None:
        method = "simulated" if trials * _walk_length(sample, stories) <= DRAWS_BUDGET else "normal"
    if method == "simulated":
        times = np.sort(_walk(sample, stories, trials, rng))
        seconds = tuple(float(nearest_rank(times, p)) for p in LEVELS)
    else:
        seconds = tuple(_normal_when(sample, stories, p) for p in LEVELS)
    return When(seconds, method)


def within(sample: Sample, seconds: float, trials: int, rng: np.random.Generator,
           method: Method | None = None) -> HowMany:
    """How many will be done within `seconds`? `method` None: simulated within the budget."""
    if not seconds > 0 or trials < 1:
        raise ValueError("seconds must be positive and trials >= 1")
    k = seconds / sample.interval_s
    if method is None:
        method = "simulated" if trials * math.ceil(k) <= DRAWS_BUDGET else "normal"
    if method == "simulated":
        totals = np.sort(_sums(sample, k, trials, rng))
        # "at least v with confidence p": the (1 - p) quantile from below
        stories = tuple(int(nearest_rank(totals, 1.0 - p)) for p in LEVELS)
    else:
        stories = tuple(_normal_within(sample, k, p) for p in LEVELS)
    return HowMany(stories, method)


# -- simulated ---------------------------------------------------------------------------------
def _walk_length(sample: Sample, stories: int) -> int:
    """Intervals a "when" walk draws per trial: its doubling chunks must reach well past the
    mean time to N (by 6 standard deviations, so almost never a chunk more)."""
    k = stories / sample.mean
    far = k + 6.0 * sample.std * math.sqrt(k) / sample.mean + 1.0
    total = CHUNK_FIRST
    while total < far:
        total *= 2
    return total


def _walk(sample: Sample, stories: int, trials: int, rng: np.random.Generator) -> np.ndarray:
    """Seconds until `stories` are done, one per trial.

    Every trial draws the same chunks (16, 16, 32, 64, ... intervals) until all have
    arrived, so a trial's whole intervals do not depend on `stories`: with one seed the
    interval that reaches N can only come later with N (common random numbers). Within
    that interval its c completions fall at independent uniform moments, as in "how many"
    (and as they do in a Poisson process): the j-th comes at the j-th smallest of c
    uniforms, a Beta(j, c - j + 1) share of the interval, drawn from a stream of its own.
    """
    counts = sample.counts
    inside = np.random.default_rng(rng.integers(2**63))  # one draw from `rng`, whatever N
    arrived = np.full(trials, np.nan)
    done = np.zeros(trials, dtype=np.int64)  # completions before the current chunk
    start = 0  # intervals before the current chunk
    chunk = CHUNK_FIRST
    while True:
        draws = counts[rng.integers(0, counts.size, size=(trials, chunk), dtype=np.int32)]
        cum = np.cumsum(draws, axis=1) + done[:, None]
        reached = cum[:, -1] >= stories
        pending = np.isnan(arrived)
        hit = pending & reached
        if hit.any():
            rows = np.nonzero(hit)[0]
            index = np.argmax(cum[rows] >= stories, axis=1)  # the interval that reaches N
            before = np.where(index > 0, cum[rows, index - 1], done[rows])
            j = stories - before  # the j-th completion of the interval is the N-th
            share = inside.beta(j, draws[rows, index] - j + 1)
            arrived[rows] = (start + index + share) * sample.interval_s
        if not np.isnan(arrived).any():
            return arrived
        done = cum[:, -1]
        start += chunk
        if start > CHUNK_FIRST:
            chunk *= 2


def _sums(sample: Sample, k: float, trials: int, rng: np.random.Generator) -> np.ndarray:
    """Completions within k intervals, one per trial: floor(k) whole intervals, and of the
    last, partial one each completion counts with the share of it that is inside."""
    counts = sample.counts
    whole = int(math.floor(k + 1e-9))
    part = k - whole
    total = np.zeros(trials, dtype=np.int64)
    # Intervals in steps of `step` rows of one draw per trial (bounded memory); the same
    # steps whatever k, so with one seed a longer T only adds draws (common random numbers).
    step = max(1, DRAWS_BUDGET // trials)
    for first in range(0, whole, step):
        rows = min(step, whole - first)
        total += counts[rng.integers(0, counts.size, size=(rows, trials), dtype=np.int32)].sum(axis=0)
    if part > 1e-9:
        last = counts[rng.integers(0, counts.size, size=trials)]
        total += rng.binomial(last, part)
    return total


# -- normal ------------------------------------------------------------------------------------
def _shift(sample: Sample, z: float) -> float:
    """The Cornish-Fisher term of a quantile of S_k: sigma * skew * (z^2 - 1) / 6, the same
    for every k (the skew of S_k falls as 1/sqrt(k) while its sd grows as sqrt(k))."""
    return sample.std * sample.skew * (z * z - 1.0) / 6.0


def _normal_when(sample: Sample, stories: int, level: float) -> float:
    """The smallest k (intervals) whose (1 - level) quantile of S_k reaches N, in seconds:
    P(done by k) = P(S_k >= N) >= level. With q(k) = k*mu + sqrt(k)*sigma*z + c (z the
    (1 - level) normal quantile), q(k) = N is a quadratic in sqrt(k)."""
    mu, sigma = sample.mean, sample.std
    z = _Z.inv_cdf(1.0 - level) if level < 1 else -8.0
    c = _shift(sample, z)
    # N - 0.5: S_k is whole, so "S_k >= N" is "S_k > N - 1/2" on the continuous scale
    target = stories - 0.5 - c
    b = sigma * z
    root = (-b + math.sqrt(max(0.0, b * b + 4.0 * mu * target))) / (2.0 * mu)
    return max(0.0, root * root) * sample.interval_s


def _normal_within(sample: Sample, k: float, level: float) -> int:
    """The largest v with P(S_k >= v) >= level under the normal approximation."""
    z = _Z.inv_cdf(1.0 - level) if level < 1 else -8.0
    q = k * sample.mean + math.sqrt(k) * sample.std * z + _shift(sample, z)
    return max(0, math.ceil(q - 0.5))
