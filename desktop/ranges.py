"""What a live chart shows, as pure functions of its data and the clock (tested without Qt).

- Time: the last `window_s` seconds, once the data reaches that far back.
  Before that (a server that just started, an app that just connected to
  one) the axis spans from the first sample to now, so that a young chart is
  full instead of a sliver squeezed against its right edge.
- Values: one rule for every chart's y range. It moves only when the data
  leaves the range or uses less than a third of it, so the axis does not
  twitch with every sample; a zero-based range ends on a round 1, 2 or 5 × 10^n.
"""

from __future__ import annotations

import math

MIN_SPAN_S = 10.0  # a chart never shows less time than this (a sample a few seconds old is not a chart)
HEADROOM = 1.1  # room above the highest value, so a rising line does not resize the chart at once
SHRINK_BELOW = 1 / 3  # a range is made smaller only when the data uses less than this share of it
MARGIN = 0.05  # around the data of a range that does not start at zero


def nice_ceiling(value: float) -> float:
    """The next 1, 2, 5 × 10^n at or above `value` (at least 1): round axis tops."""
    if not value > 1:  # NaN too
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return float(step * magnitude)
    return float(10 * magnitude)


def time_span(now: float, window_s: float, first_ts: float | None, min_span_s: float = MIN_SPAN_S,
              ) -> tuple[float, float]:
    """The time a chart shows, (left, right = now): its window, or from the first sample while the data is younger."""
    left = now - window_s
    if first_ts is not None and math.isfinite(first_ts) and first_ts > left:
        left = min(first_ts, now - min(min_span_s, window_s))
    return left, now


def y_range(current: tuple[float, float], low: float, high: float, zero_based: bool = True,
            ) -> tuple[float, float] | None:
    """The y range for data from `low` to `high` on a chart that shows `current`; None: keep `current`.

    Zero-based (rates, counts, times): from 0 to a round top above the highest value.
    Otherwise (a cumulative count, whose history is not the point): the data with a
    margin, and headroom above; never below zero for data that is not.
    """
    current_low, current_high = current
    if zero_based:
        top = nice_ceiling(max(high, 0.0) * HEADROOM)
        if current_low != 0 or top > current_high or top < current_high * SHRINK_BELOW:
            return 0.0, top
        return None
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    margin = max(1.0, MARGIN * (high - low))
    bottom, top = low - margin, high + margin
    if low >= 0:
        bottom = max(0.0, bottom)
    span = top - bottom
    if bottom < current_low or top > current_high or span < (current_high - current_low) * SHRINK_BELOW:
        return bottom, top + span * (HEADROOM - 1)
    return None
