"""Percentiles by nearest rank: the one rule for every figure storypulse ranks.

Of n values sorted ascending, the p-th percentile (0 < p <= 100) is the value
at rank ceil(p/100 * n), 1-based: the smallest value that at least p % of the
values do not exceed. It is always one of the values, so a client that ranks
the same values gets the very same number (protocol.md: lead and cycle times).
The server's flow window, the load command's latencies, the stand-in team model
and the benchmarks all rank with `nearest_rank`.

The rank is worked out in whole numbers, not floating point: p/100 is rarely
exact in binary (0.07 is 0.0700000000000000067...), so `p / 100 * n` can land
a hair above a whole number and its ceiling one rank too high: 7 / 100 * 100
is 7.000000000000001, ceil 8, where the 7th value is meant. (The 50th, 85th and
95th happen to be spared up to a million values; the 7th, 14th or 28th are
not.) Taking a little off before the ceiling only moves the trouble: at a
hundred million values the error outgrows any fixed epsilon. A float p counts
as the decimal it is written as (99.9 is 999/10, not its binary neighbour).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Sequence, TypeVar

T = TypeVar("T")


def rank(p: float | int | Fraction, n: int) -> int:
    """The 1-based rank of the p-th percentile among n values (n >= 1): ceil(p/100 * n), exactly."""
    if isinstance(p, int):
        numerator, denominator = p, 1
    elif isinstance(p, float) and not math.isfinite(p):
        numerator, denominator = 0, 1  # refused below
    else:
        share = Fraction(str(p)) if isinstance(p, float) else Fraction(p)
        numerator, denominator = share.numerator, share.denominator
    if not 0 < numerator <= 100 * denominator:
        raise ValueError(f"percentile p must be above 0 and at most 100, not {p!r}")
    return -(-numerator * n // (100 * denominator))


def nearest_rank(ordered: Sequence[T], p: float | int | Fraction) -> T | None:
    """The p-th percentile (0 < p <= 100) of `ordered`, sorted ascending; None if it is empty."""
    n = len(ordered)
    if n == 0:
        return None
    return ordered[rank(p, n) - 1]
