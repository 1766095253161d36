"""Nearest-rank percentiles (storypulse.percentiles), against the definition worked out by brute force."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storypulse.percentiles import nearest_rank, rank


def by_definition(values: list[float], p: Fraction) -> float | None:
    """The smallest value that at least p % of the values do not exceed, counted one by one."""
    for v in sorted(set(values)):
        if sum(x <= v for x in values) * 100 >= p * len(values):
            return v
    return None


def test_the_rank_is_ceil_p_n_over_100():
    values = list(range(1, 21))  # 1..20
    assert nearest_rank(values, 50) == 10 and nearest_rank(values, 85) == 17
    assert nearest_rank(values, 95) == 19 and nearest_rank(values, 100) == 20
    assert nearest_rank(values, 0.1) == 1  # the smallest share still takes the first
    assert nearest_rank([7.5], 50) == nearest_rank([7.5], 95) == 7.5
    assert nearest_rank([1, 2, 3], 50) == 2 and nearest_rank([1, 2, 3, 4], 50) == 2
    assert nearest_rank([], 50) is None


def test_floating_point_would_rank_one_too_high_where_whole_numbers_do_not():
    # The reason not to rank in floating point: p/100 is rarely exact in binary.
    assert 0.95 * 20 == 19.0  # (not 19.000000000000004, as a comment once said)
    assert 7 / 100 * 100 == 7.000000000000001 and math.ceil(7 / 100 * 100) == 8
    assert 0.07 * 300 == 21.000000000000004
    values = list(range(1, 101))
    assert nearest_rank(values, 7) == 7 and nearest_rank(list(range(1, 301)), 7) == 21
    # And no epsilon taken off before the ceiling is enough at every size: this one rank
    # 16,940,000 (of 100,000,000) comes out 16,940,001 with 1e-9 taken off.
    assert math.ceil(16.94 / 100 * 10**8 - 1e-9) == 16_940_001
    assert rank(16.94, 10**8) == 16_940_000


def test_a_percentile_out_of_range_is_refused_naming_it():
    for bad in (0, -5, 100.5, 101, float("nan")):
        with pytest.raises(ValueError, match="percentile"):
            rank(bad, 10)


@given(values=st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=300),
       hundredths=st.integers(1, 10_000))
def test_nearest_rank_is_the_definition(values, hundredths):
    """Any values, any p with two decimals (as written: 14.3 means 143/10), ties and all."""
    p = Fraction(hundredths, 100)
    expected = by_definition(values, p)
    assert nearest_rank(sorted(values), hundredths / 100) == expected
    if hundredths % 100 == 0:
        assert nearest_rank(sorted(values), hundredths // 100) == expected


# Sizes at which p/100 * n is a whole number too: where floating point trips.
@given(n=st.one_of(st.integers(1, 10**15), st.integers(1, 10**11).map(lambda m: m * 10_000)),
       hundredths=st.integers(1, 10_000))
def test_the_rank_is_exact_at_any_size(n, hundredths):
    expected = math.ceil(Fraction(hundredths, 100) * n / 100)
    assert rank(hundredths / 100, n) == expected
    assert 1 <= expected <= n
