"""Monte Carlo forecasts from a throughput history: "when will N more be done?" and
"how many will be done within T?". Pure numpy; no clock, no I/O.

The model (docs/forecasts.md says why each part, and how near nominal it lands):

- **Blocks.** A future is made of the history's intervals in runs of `block` consecutive
  ones, each run starting at a random interval (a circular block bootstrap): whatever
  ties neighbouring intervals together — a slow spell, a burst and the quiet after it —
  comes along. The block length is read from the history's autocorrelation
  (dependence.py); intervals that look independent get blocks of one, single draws:
  the model of the offline tools.
- **The rate is estimated, not known.** Every future runs at the history's pace times a
  factor f ~ Gamma(a, 1/a) (mean 1; by Wilson-Hilferty's cube-root normal approximation)
  whose variance is that of the history's mean rate
  as an estimate: the long-run variance of an interval over the history's length, over
  the mean squared (the block bootstrap of the mean, in closed form; for independent
  Poisson counts it is the Bayesian posterior of the rate). A future completes f times
  what its blocks hold, rounded at random: it adds about k/H to the variance of a forecast
  k intervals ahead of H intervals of history, which matters for long questions.
- Within an interval, completions fall at uniform random moments (see `_walk`), so
  answers are not rounded to whole intervals.

Two methods, chosen by cost:

- ``simulated``: `trials` random futures drawn block by block (vectorised over the
  trials). Exact for the model, up to Monte Carlo noise. Used while trials x blocks
  stays within DRAWS_BUDGET (about 10 ms).
- ``normal``: beyond that, a forecast spans hundreds of blocks or more, and the sum S_k of
  k intervals is close to normal given the rate factor: mean k*mu, variance k times the
  long-run variance, its skewness as a first-order (Edgeworth) correction, averaged over
  the rate factor's quantiles. Counts are never negative, so "N done within k intervals"
  is exactly "f * S_k >= N": the percentiles of the time to N follow by a root search on
  k (regula falsi from a normal guess: about ten evaluations). No random draws: well
  under a millisecond, whatever N.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np

from . import dependence

LEVELS = (0.50, 0.85, 0.95)  # the confidence levels every answer carries
DRAWS_BUDGET = 600_000  # trials x blocks simulated at most (about 10 ms on a shared core)
CHUNK_FIRST = 16  # blocks drawn in the first chunk of a "when" walk; each next chunk doubles
RATE_FLOOR = 1.0 / 64  # the slowest pace a future may run at, against the history's
RATE_NODES = 65  # quantiles of the rate factor the normal method averages over (odd: the median is one)
SOLVER_STEPS = 100  # the normal method's root finder gives up after this many (it needs ~10-20)

Method = Literal["simulated", "normal"]
_Z = NormalDist()
# standard normal quantiles at (i + 1/2) / RATE_NODES: where the rate factor is taken
_NODE_Z = np.array([_Z.inv_cdf((i + 0.5) / RATE_NODES) for i in range(RATE_NODES)])
_LEVEL_Z = np.array([_Z.inv_cdf(p) for p in LEVELS])  # where the normal method's search starts


@dataclass(frozen=True)
class Sample:
    """The interval counts a forecast resamples, their block length, and the moments the
    normal method needs."""

    counts: np.ndarray  # int64, one per interval, oldest first
    interval_s: float
    mean: float
    std: float  # of single intervals
    skew: float  # of single intervals (third standardised moment; 0 when std is 0)
    block: int  # intervals per resampled run
    run_var: float  # long-run variance per interval: Var(a block's sum) / block
    run_k3: float  # third central moment of a block's sum / block
    rate_known: bool  # True: no rate factor (the model of the offline tools)
    prefix: np.ndarray  # completions in the first i intervals of counts + counts[:block]

    @classmethod
    def of(cls, counts, interval_s: float, block: int | None = None,
           rate_uncertainty: bool = True) -> Sample:
        """`block` None: read from the counts' autocorrelation. `block=1,
        rate_uncertainty=False` is the independent model with the rate taken as known."""
        values = np.asarray(counts, dtype=np.int64)
        if values.ndim != 1 or values.size == 0 or (values < 0).any():
            raise ValueError("counts must be a non-empty list of counts >= 0")
        if not interval_s > 0:
            raise ValueError("interval_s must be positive")
        n = values.size
        mean = float(values.mean())
        centred = values - mean
        std = float(np.sqrt((centred ** 2).mean()))
        skew = float((centred ** 3).mean() / std ** 3) if std > 0 else 0.0
        if block is None:
            block = dependence.block_length(values)
        block = max(1, min(int(block), n))
        # circular: a block may run past the newest interval on into the oldest, so every
        # interval is in as many blocks as every other and the blocks' mean is the history's
        prefix = np.concatenate(([0], np.cumsum(np.concatenate((values, values[:block])))))
        sums = (prefix[block:block + n] - prefix[:n]) - block * mean
        run_var = float((sums ** 2).mean()) / block
        run_k3 = float((sums ** 3).mean()) / block
        if run_var < 1e-12 * max(1.0, mean * mean):
            run_var = run_k3 = 0.0  # rounding error of a constant history
        known = not rate_uncertainty or run_var == 0.0 or mean == 0.0
        return cls(values, interval_s, mean, std, skew, block, run_var, run_k3, known, prefix)

    @property
    def pace_var(self) -> float:
        """The variance of the rate factor: that of the history's mean rate as an estimate,
        over the mean squared, Var(m) / m^2 = run_var / (n m^2); 0 when the rate is taken as
        known. The same whatever the question, so that with one seed a larger N or T only
        adds to every future (common random numbers)."""
        if self.rate_known:
            return 0.0
        return self.run_var / (self.counts.size * self.mean ** 2)


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
        method = "simulated" if trials * _walk_blocks(sample, stories) <= DRAWS_BUDGET else "normal"
    if method == "simulated":
        times = np.sort(_walk(sample, stories, trials, rng, share=max(LEVELS)))
        seconds = tuple(float(nearest_rank(times, p)) for p in LEVELS)
    else:
        seconds = _normal_when(sample, stories)
    return When(seconds, method)


def within(sample: Sample, seconds: float, trials: int, rng: np.random.Generator,
           method: Method | None = None) -> HowMany:
    """How many will be done within `seconds`? `method` None: simulated within the budget."""
    if not seconds > 0 or trials < 1:
        raise ValueError("seconds must be positive and trials >= 1")
    k = seconds / sample.interval_s
    if method is None:
        method = "simulated" if trials * math.ceil(k / sample.block) <= DRAWS_BUDGET else "normal"
    if method == "simulated":
        totals = np.sort(_sums(sample, k, trials, rng))
        # "at least v with confidence p": the (1 - p) quantile from below
        stories = tuple(int(nearest_rank(totals, 1.0 - p)) for p in LEVELS)
    else:
        stories = _normal_within(sample, k)
    return HowMany(stories, method)


# -- simulated ---------------------------------------------------------------------------------
def _paces(pace_var: float, trials: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Each future's rate factor f ~ Gamma(1/v, v) (mean 1, variance v) and the uniform that
    rounds f * (completions) at random; drawn first, so that every answer of one seed shares
    them (common random numbers). f is drawn as the normal method takes it (`_gamma_at`)
    from a standard normal draw: the distribution the normal method averages over."""
    return _gamma_at(pace_var, rng.standard_normal(trials)), rng.random(trials)


def _walk_blocks(sample: Sample, stories: int) -> int:
    """Blocks a "when" walk draws per trial: its doubling chunks must reach past the time
    by which 95 % of the futures are done (well past: 4 standard deviations of it)."""
    mu = sample.mean
    k = stories / mu
    spread = math.sqrt(sample.run_var * k + sample.pace_var * (mu * k) ** 2) / mu
    far = (k + 4.0 * spread) / sample.block + 1.0
    total = CHUNK_FIRST
    while total < far:
        total *= 2
    return total


def _walk(sample: Sample, stories: int, trials: int, rng: np.random.Generator,
          share: float = 1.0) -> np.ndarray:
    """Seconds until `stories` are done, one per trial (inf for those not done when the walk
    stopped: it stops once `share` of the trials are, and the rest come later than all of those).

    A future with rate factor f is done when its blocks hold ceil((N - u) / f) completions
    (f * completions, rounded at random by u, reaches N). Every trial draws the same chunks
    (16, 16, 32, 64, ... blocks) whatever N, so with one seed the interval that reaches N can
    only come later with N (common random numbers). Within that interval its c completions
    fall at independent uniform moments (as they do in a Poisson process): the j-th comes at
    the j-th smallest of c uniforms, a Beta(j, c - j + 1) share of the interval, drawn from a
    stream of its own.
    """
    paces, rounding = _paces(sample.pace_var, trials, rng)
    inside = np.random.default_rng(rng.integers(2**63))  # one draw from `rng`, whatever N
    targets = np.maximum(1, np.ceil((stories - rounding) / paces)).astype(np.int64)
    prefix, block, size = sample.prefix, sample.block, sample.counts.size
    needed = max(1, math.ceil(share * trials - 1e-9))
    arrived = np.full(trials, np.inf)
    pending = np.ones(trials, dtype=bool)
    done = np.zeros(trials, dtype=np.int64)  # completions before the current chunk
    start = 0  # blocks before the current chunk
    chunk = CHUNK_FIRST
    while True:
        starts = rng.integers(0, size, size=(trials, chunk))
        cum = np.cumsum(prefix[starts + block] - prefix[starts], axis=1) + done[:, None]
        hit = pending & (cum[:, -1] >= targets)
        if hit.any():
            rows = np.nonzero(hit)[0]
            goal = targets[rows]
            index = np.argmax(cum[rows] >= goal[:, None], axis=1)  # the block that reaches it
            before = np.where(index > 0, cum[rows, np.maximum(index - 1, 0)], done[rows])
            first = starts[rows, index]
            left = goal - before  # completions still wanted from that block: 1.. its sum
            offset = _interval_reaching(prefix, first, left, block)
            base = prefix[first + offset] - prefix[first]
            count = prefix[first + offset + 1] - prefix[first + offset]
            j = left - base  # the j-th completion of the interval is the one
            moment = inside.beta(j, count - j + 1)
            arrived[rows] = ((start + index) * block + offset + moment) * sample.interval_s
            pending[rows] = False
            needed -= rows.size
            if needed <= 0:
                return arrived
        done = cum[:, -1]
        start += chunk
        if start > CHUNK_FIRST:
            chunk *= 2


def _interval_reaching(prefix: np.ndarray, first: np.ndarray, left: np.ndarray, block: int) -> np.ndarray:
    """For blocks starting at `first`, the offset of the interval in which the block's running
    count reaches `left` (binary search over the block's prefix sums)."""
    lo = np.zeros(first.size, dtype=np.int64)
    hi = np.full(first.size, block - 1, dtype=np.int64)
    while (lo < hi).any():
        mid = (lo + hi) // 2
        enough = prefix[first + mid + 1] - prefix[first] >= left
        hi = np.where(enough, mid, hi)
        lo = np.where(enough, lo, mid + 1)
    return lo


def _sums(sample: Sample, k: float, trials: int, rng: np.random.Generator) -> np.ndarray:
    """Completions within k intervals, one per trial: the whole intervals of the trial's
    blocks and, of a last, partial one, each completion with the share of it that is
    inside (binomial thinning); then times the trial's rate factor, rounded at random."""
    paces, rounding = _paces(sample.pace_var, trials, rng)
    inside = np.random.default_rng(rng.integers(2**63))
    prefix, block, size = sample.prefix, sample.block, sample.counts.size
    whole = int(math.floor(k + 1e-9))
    part = k - whole
    full, rest = divmod(whole, block)
    blocks = full + (1 if rest or part > 1e-9 else 0)
    total = np.zeros(trials, dtype=np.int64)
    # Blocks in steps of `step` rows of one draw per trial (bounded memory); the same steps
    # whatever k, so with one seed a longer T only adds draws (common random numbers).
    step = max(1, DRAWS_BUDGET // trials)
    for first in range(0, blocks, step):
        rows = min(step, blocks - first)
        starts = rng.integers(0, size, size=(rows, trials))
        whole_rows = min(rows, full - first)
        if whole_rows > 0:
            total += (prefix[starts[:whole_rows] + block] - prefix[starts[:whole_rows]]).sum(axis=0)
        if whole_rows < rows:  # the last, partial block: `rest` whole intervals and a share
            last = starts[rows - 1]
            total += prefix[last + rest] - prefix[last]
            if part > 1e-9:
                total += inside.binomial(prefix[last + rest + 1] - prefix[last + rest], part)
    return np.floor(total * paces + rounding).astype(np.int64)


# -- normal ------------------------------------------------------------------------------------
def _gamma_at(pace_var: float, z: np.ndarray) -> np.ndarray:
    """The Gamma(1/v, v) rate factor at standard normal quantiles z (Wilson-Hilferty: the cube
    root of a Gamma variable is close to normal), floored at RATE_FLOOR; 1 when v is 0."""
    if pace_var <= 0:
        return np.ones(z.shape)
    spread = pace_var / 9.0
    base = 1.0 - spread + z * math.sqrt(spread)
    return np.maximum(np.maximum(base, 0.0) ** 3, RATE_FLOOR)


def _pace_nodes(pace_var: float) -> np.ndarray:
    """The rate factor at RATE_NODES equally likely quantiles, or just 1 when the rate is
    taken as known."""
    return _gamma_at(pace_var, _NODE_Z) if pace_var > 0 else np.ones(1)


def _upper_tail(w: np.ndarray) -> np.ndarray:
    """P(Z > w) for a standard normal Z: erfc(w / sqrt 2) / 2 by Abramowitz and Stegun 7.1.26
    (within 1.5e-7), in as few array operations as it takes (each costs a microsecond or so,
    and the normal method's search makes a few hundred of them)."""
    x = np.abs(w) * (1.0 / math.sqrt(2.0))
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    half = 0.5 * poly * np.exp(-x * x)
    return np.where(w >= 0, half, 1.0 - half)


def _reach(sample: Sample, k: np.ndarray, need: np.ndarray) -> np.ndarray:
    """P(S_k > need), S_k the completions in k intervals at the history's pace: normal with
    the long-run variance and a first-order Edgeworth correction for its skewness, which
    falls as 1/sqrt(k). Broadcasts k against need."""
    sd = np.maximum(np.sqrt(sample.run_var * k), 1e-300)
    u = (need - sample.mean * k) / sd
    if sample.run_k3 == 0.0:
        return _upper_tail(u)
    skew = sample.run_k3 / sample.run_var / sd  # k3 k / (var k)^(3/2)
    # the correction bends back beyond |u| = 3 / |skew|: hold it there (probability ~0 or ~1)
    u = np.minimum(u, 3.0 / skew) if sample.run_k3 > 0 else np.maximum(u, 3.0 / skew)
    return _upper_tail(u - skew * (u * u - 1.0) / 6.0)


def _done_by(sample: Sample, k, stories, nodes: np.ndarray) -> np.ndarray:
    """P(f * S_k >= stories), per pair of k and stories (arrays of one shape): averaged over
    the rate factor's quantiles. S_k is a whole number, so the threshold is taken half a
    story lower (a continuity correction)."""
    k = np.asarray(k, dtype=np.float64)[..., None]
    need = (np.asarray(stories, dtype=np.float64)[..., None] - 0.5) / nodes
    return _reach(sample, k, need).mean(axis=-1)


def _crossing(gap, lo: list[float], hi: list[float], g_lo: list[float], g_hi: list[float],
              settled) -> tuple[list[float], list[float]]:
    """Per level, a bracket [lo, hi] around where the rising `gap` (an array function, one
    value per level) crosses 0, from g_lo = gap(lo) < 0 <= g_hi = gap(hi), narrowed until
    `settled(lo, hi, g_lo, g_hi)` says so for every level.

    Regula falsi with the Illinois modification (an end kept twice running has its gap
    halved, so the next step moves it), and a halving of the bracket whenever four steps
    have not halved it: about ten evaluations of the smooth curve of a normal average
    instead of forty halvings. The curve is evaluated for all levels at once (an evaluation
    costs tens of microseconds); the bookkeeping is per level, in plain floats, which for
    three levels is several times quicker than in arrays."""
    lo, hi, g_lo, g_hi = list(lo), list(hi), list(g_lo), list(g_hi)
    true_lo, true_hi = list(g_lo), list(g_hi)  # the gaps at the ends, not halved
    levels = range(len(lo))
    kept = [0] * len(lo)  # -1: lo kept last step, 1: hi kept, 0: neither
    widths = [[h - l] for l, h in zip(lo, hi)]  # the bracket's last widths, up to four
    for _ in range(SOLVER_STEPS):
        open_ = [i for i in levels if not settled(lo[i], hi[i], true_lo[i], true_hi[i])]
        if not open_:
            break
        x = list(hi)
        for i in open_:
            width = hi[i] - lo[i]
            secant = hi[i] - g_hi[i] * width / (g_hi[i] - g_lo[i]) if g_hi[i] > g_lo[i] else hi[i]
            stalled = len(widths[i]) == 4 and width > widths[i][0] / 2.0
            if stalled:
                widths[i] = []
            x[i] = secant if not stalled and lo[i] < secant < hi[i] else (lo[i] + hi[i]) / 2.0
        g = gap(np.array(x)).tolist()
        for i in open_:
            if g[i] >= 0:  # x reaches it: the new hi
                g_lo[i] = g_lo[i] / 2.0 if kept[i] < 0 else g_lo[i]
                hi[i], g_hi[i], true_hi[i], kept[i] = x[i], g[i], g[i], -1
            else:
                g_hi[i] = g_hi[i] / 2.0 if kept[i] > 0 else g_hi[i]
                lo[i], g_lo[i], true_lo[i], kept[i] = x[i], g[i], g[i], 1
            widths[i] = [*widths[i], hi[i] - lo[i]][-4:]
    return lo, hi


def _bracket(gap, guess: list[float], step: list[float], zero_gap: list[float]):
    """Per level, lo < hi with gap(lo) < 0 <= gap(hi) (and both gaps), stepping out from a
    guess by `step`, doubled each time, down to 0 at most, where the gap is `zero_gap` (< 0;
    not evaluated there)."""
    g = gap(np.array(guess)).tolist()
    reaches = [v >= 0 for v in g]  # the guess is the hi end (else the lo end)
    lo = [0.0 if r else x for r, x in zip(reaches, guess)]
    g_lo = [z if r else v for r, z, v in zip(reaches, zero_gap, g)]
    hi, g_hi = list(guess), list(g)
    found = [r and x - s <= 0 for r, x, s in zip(reaches, guess, step)]  # lo = 0 will do
    step = list(step)
    for _ in range(64):  # the gap rises without bound in steps that double: both ends are found
        if all(found):
            break
        x = [h if done else (x - s if r else x + s) for h, done, x, s, r in zip(hi, found, guess, step, reaches)]
        g = gap(np.array(x)).tolist()
        for i, r in enumerate(reaches):
            if found[i]:
                continue
            if r and g[i] < 0:  # stepped down below it: the lo end
                lo[i], g_lo[i], found[i] = x[i], g[i], True
            elif r:  # still reaches it: a closer hi, step further
                hi[i], g_hi[i] = x[i], g[i]
                found[i] = guess[i] - 2.0 * step[i] <= 0  # the next step would reach 0
            elif g[i] >= 0:  # stepped up to it: the hi end
                hi[i], g_hi[i], found[i] = x[i], g[i], True
            else:  # still short: a closer lo, step further
                lo[i], g_lo[i] = x[i], g[i]
        step = [2.0 * s for s in step]
    return lo, hi, g_lo, g_hi


def _normal_when(sample: Sample, stories: int) -> tuple[float, float, float]:
    """The smallest k (intervals) with P(done within k) >= level, in seconds, per level."""
    mu = sample.mean
    if sample.run_var == 0.0:  # a constant history: the N-th at (N - 1/2) / mu, whatever the level
        return ((stories - 0.5) / mu * sample.interval_s,) * 3
    nodes = _pace_nodes(sample.pace_var)
    levels = np.array(LEVELS)
    need = np.full(3, stories)

    def gap(k):
        return _done_by(sample, k, need, nodes) - levels

    # The guess: f * S_k normal with variance k * run_var + pace_var * (mu k)^2, so the p-time
    # solves mu k - z sqrt(k run_var + pace_var mu^2 k^2) = N - 1/2, a quadratic in k.
    target, z2, var, pace = stories - 0.5, _LEVEL_Z ** 2, sample.run_var, sample.pace_var
    a = mu * mu * (1.0 - z2 * pace)
    b = 2.0 * mu * target + z2 * var
    safe = a > 1e-3 * mu * mu  # else the rate factor alone spreads it too far for this guess
    a = np.where(safe, a, mu * mu)
    guess = np.where(safe, (b + np.sqrt(np.maximum(b * b - 4.0 * a * target * target, 0.0))) / (2.0 * a),
                     2.0 * stories / mu)
    step = np.maximum(np.sqrt(guess * var + pace * (mu * guess) ** 2) / mu / 2.0, 1e-6 * guess + 1e-9)
    lo, hi, g_lo, g_hi = _bracket(gap, guess.tolist(), step.tolist(), (-levels).tolist())  # none in no time

    def settled(lo, hi, g_lo, g_hi):  # within 1e-10 of the level, or of the time
        return g_hi <= 1e-10 or hi - lo <= 1e-10 * hi

    _, hi = _crossing(gap, lo, hi, g_lo, g_hi, settled)
    return tuple(float(v) * sample.interval_s for v in hi)


def _normal_within(sample: Sample, k: float) -> tuple[int, int, int]:
    """The largest v with P(f * S_k >= v) >= level, per level."""
    mu = sample.mean
    if sample.run_var == 0.0:
        return (max(0, math.floor(mu * k + 0.5)),) * 3
    nodes = _pace_nodes(sample.pace_var)
    levels = np.array(LEVELS)
    ks = np.full(3, k)

    def gap(v):  # rising in v: below 0 while v is reached at the level
        return levels - _done_by(sample, ks, v, nodes)

    spread = math.sqrt(sample.run_var * k + sample.pace_var * (mu * k) ** 2)
    guess = np.maximum(mu * k - _LEVEL_Z * spread + 0.5, 0.0)
    lo, hi, g_lo, g_hi = _bracket(gap, guess.tolist(), [max(spread / 2.0, 1.0)] * 3, gap(np.zeros(3)).tolist())

    def settled(lo, hi, g_lo, g_hi):  # one whole count, or within 1e-10 of the level, 1e-9 of the count
        return math.floor(lo) == math.floor(hi) or g_lo >= -1e-10 or hi - lo <= 1e-9 * hi

    lo, _ = _crossing(gap, lo, hi, g_lo, g_hi, settled)
    return tuple(max(0, math.floor(v)) for v in lo)
