"""How far a throughput history's intervals depend on each other: the block length.

The forecasts resample the history in runs of consecutive intervals (blocks), so that
whatever ties neighbouring intervals together — a slow spell of the machine, a burst
and the quiet after it — comes along into the simulated futures. How long a run must
be is read from the history's own autocorrelation by the automatic rule of Politis and
White (2004, "Automatic block-length selection for the dependent bootstrap", with the
correction of Patton, Politis and White 2009) for the circular block bootstrap:

1. m: the smallest lag after which the correlogram looks negligible — the next K
   autocorrelations all within c * sqrt(log10(n) / n) (K = max(5, sqrt(log10 n)), c = 2);
2. with the flat-top lag window w over M = 2m lags, g = sum w(k/M) R(k) (the long-run
   variance: 2 pi times the spectral density at 0) and G = sum w(k/M) |k| R(k);
3. b = (2 G^2 / D)^(1/3) n^(1/3) with D = (4/3) g^2, within [1, min(3 sqrt n, n / 3)].

It minimises the error of the block bootstrap's variance of a sum, which is what the
spread of a forecast is. Where no autocorrelation stands out (m = 0: M = 0, G = 0),
b = 1: single intervals, independent draws — the model the forecasts used before.
Pure numpy, O(n log n).
"""

from __future__ import annotations

import math

import numpy as np

SIGNIFICANCE = 2.0  # c: an autocorrelation counts beyond c * sqrt(log10(n) / n)


def autocovariance(values: np.ndarray, lags: int) -> np.ndarray:
    """R(0..lags) of the values about their mean, each a sum over n (the biased, positive
    definite estimator), by FFT."""
    n = values.size
    centred = values - values.mean()
    size = 1 << (2 * n - 1).bit_length()  # zero padding: no wrap-around
    spectrum = np.fft.rfft(centred, size)
    return np.fft.irfft(spectrum * np.conj(spectrum), size)[: lags + 1] / n


def block_length(counts) -> int:
    """Intervals per block for resampling `counts` (oldest first): 1 when they look independent."""
    values = np.asarray(counts, dtype=np.float64)
    n = values.size
    if n < 8:
        return 1  # too few to tell dependence from chance
    logn = math.log10(n)
    run = max(5, math.ceil(math.sqrt(logn)))  # K
    max_lag = min(n - 1, math.ceil(math.sqrt(n)) + run)
    longest = max(1, math.ceil(min(3.0 * math.sqrt(n), n / 3.0)))
    acov = autocovariance(values, max_lag)
    if acov[0] <= 0:
        return 1  # constant: any block length gives the same futures
    small = np.abs(acov[1:] / acov[0]) < SIGNIFICANCE * math.sqrt(logn / n)  # lags 1..max_lag
    m = next((lag for lag in range(0, max_lag - run + 1) if small[lag:lag + run].all()), None)
    if m is None:  # correlated as far as it was looked: the farthest significant lag
        m = int(np.nonzero(~small)[0][-1]) + 1
    if m == 0:
        return 1
    window_lags = min(2 * m, max_lag)
    lag = np.arange(1, window_lags + 1)
    t = lag / window_lags
    weight = np.where(t <= 0.5, 1.0, 2.0 * (1.0 - t))  # the flat-top (trapezoid) window
    g = acov[0] + 2.0 * float((weight * acov[1:window_lags + 1]).sum())
    big_g = 2.0 * float((weight * lag * acov[1:window_lags + 1]).sum())
    if g <= 0:
        # the intervals cancel out over a few lags (a regular rhythm): the longest block
        # keeps the rhythm whole
        return longest
    b = (2.0 * big_g * big_g / (4.0 / 3.0 * g * g)) ** (1.0 / 3.0) * n ** (1.0 / 3.0)
    return int(min(longest, max(1, round(b))))
