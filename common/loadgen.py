"""The story simulator shared by `storypulse load` and the desktop app's simulator panel."""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field
from typing import Any

from . import protocol

WORDS = (
    "login", "checkout", "search", "billing", "profile", "export", "import", "audit",
    "onboarding", "dashboard", "reports", "alerts", "sync", "settings", "invoices", "api",
)
VERBS = ("add", "fix", "refactor", "speed up", "document", "test", "redesign", "migrate")


def parse_range(text: str, *, name: str, low: int, high: int) -> tuple[int, int]:
    """Parse 'A-B' or 'A' into (A, B) within [low, high]; ValueError names the option."""
    parts = text.split("-")
    try:
        if len(parts) == 1:
            a = b = int(parts[0])
        elif len(parts) == 2:
            a, b = int(parts[0]), int(parts[1])
        else:
            raise ValueError
    except ValueError:
        raise ValueError(f"{name} {text!r}: expected A-B with whole numbers, e.g. 1-5") from None
    if not low <= a <= b <= high:
        raise ValueError(f"{name} {text!r}: need {low} <= A <= B <= {high}")
    return a, b


ARRIVALS = ("steady", "poisson")  # stories at fixed intervals, or a Poisson process
ESTIMATES = ("uniform", "lognormal")  # a task's estimate within the range

# A log-normal range [A, B] holds the middle 90 % of the distribution (±1.645 σ around
# the median at the geometric middle √(A·B)); draws outside it are drawn again.
LOGNORMAL_Z = 1.6449


def lognormal_parameters(low: int, high: int) -> tuple[float, float]:
    """(mu, sigma) of the log-normal for estimates within [low, high] ms (a 0 ms low end
    counts as 1 ms: the geometric middle needs both ends above 0)."""
    lo = max(low, 1)
    hi = max(high, lo)
    return (math.log(lo) + math.log(hi)) / 2, (math.log(hi) - math.log(lo)) / (2 * LOGNORMAL_Z)


def _check(tasks: tuple[int, int], estimate_ms: tuple[int, int], estimates: str) -> None:
    if not 1 <= tasks[0] <= tasks[1] <= protocol.TASKS_MAX:
        raise ValueError(f"tasks per story must be within 1-{protocol.TASKS_MAX}")
    if not 0 <= estimate_ms[0] <= estimate_ms[1] <= protocol.ESTIMATE_MS_MAX:
        raise ValueError(f"estimates must be within 0-{protocol.ESTIMATE_MS_MAX} ms")
    if estimates not in ESTIMATES:
        raise ValueError(f"estimates {estimates!r}: must be one of {', '.join(ESTIMATES)}")


@dataclass
class StoryGenerator:
    """Random stories: a task count drawn uniformly from a range, and per-task estimates drawn
    from a range uniformly or log-normally (the usual shape of real task durations: most
    short, a few long). `retune` changes the ranges for the stories after it."""

    tasks: tuple[int, int] = (1, 5)
    estimate_ms: tuple[int, int] = (0, 1000)
    seed: int | None = None
    estimates: str = "uniform"
    _rng: random.Random = field(init=False, repr=False)
    _numbers: Any = field(init=False, repr=False)
    _lognormal: tuple[float, float] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        _check(self.tasks, self.estimate_ms, self.estimates)
        self._rng = random.Random(self.seed)
        self._numbers = itertools.count(1)
        self._lognormal = lognormal_parameters(*self.estimate_ms)

    def retune(self, tasks: tuple[int, int], estimate_ms: tuple[int, int], estimates: str) -> None:
        _check(tasks, estimate_ms, estimates)
        self.tasks, self.estimate_ms, self.estimates = tasks, estimate_ms, estimates
        self._lognormal = lognormal_parameters(*estimate_ms)

    def estimate(self) -> int:
        """One task's estimate in ms, within the range."""
        low, high = self.estimate_ms
        if self.estimates == "uniform" or low == high:
            return self._rng.randint(low, high)
        mu, sigma = self._lognormal
        for _ in range(50):  # 10 % fall outside: 50 misses in a row is a 1e-50 chance
            value = round(self._rng.lognormvariate(mu, sigma))
            if low <= value <= high:
                return value
        return min(high, max(low, value))

    def story(self) -> dict[str, Any]:
        """One create_story request body (without `op` and `id`)."""
        rng = self._rng
        n = next(self._numbers)
        count = rng.randint(*self.tasks)
        return {
            "name": f"{rng.choice(VERBS).capitalize()} {rng.choice(WORDS)} #{n}",
            "description": "simulated",
            "tasks": [{"name": f"task {i + 1}", "estimate_ms": self.estimate()} for i in range(count)],
        }


class Pacer:
    """When the next stories are due: steadily at `rate` a second, or as a Poisson process
    of that rate (independent arrivals, exponential gaps: the bursts a real team sees).
    Skips missed arrivals instead of bursting after a stall."""

    def __init__(self, rate: float, start: float, arrivals: str = "steady", seed: int | None = None):
        if arrivals not in ARRIVALS:
            raise ValueError(f"arrivals {arrivals!r}: must be one of {', '.join(ARRIVALS)}")
        self.arrivals = arrivals
        self._rng = random.Random(seed)
        self._set(rate)
        self.next_due = start if arrivals == "steady" else start + self._gap()

    def _set(self, rate: float) -> None:
        if not rate > 0:
            raise ValueError("rate must be above 0")
        self.rate = rate
        self.period = 1.0 / rate

    def _gap(self) -> float:
        return self.period if self.arrivals == "steady" else self._rng.expovariate(self.rate)

    def set_rate(self, rate: float, now: float) -> None:
        """A new rate from `now` on (a Poisson process has no memory: the next gap starts now)."""
        self._set(rate)
        if self.arrivals == "steady":
            self.next_due = min(self.next_due, now + self.period)
        else:
            self.next_due = now + self._gap()

    def due(self, now: float, max_burst: int = 100) -> int:
        """How many stories are due at `now` (at most `max_burst`, the rest are skipped)."""
        if now < self.next_due:
            return 0
        if self.arrivals == "steady":
            count = int((now - self.next_due) / self.period) + 1
            self.next_due += count * self.period
            return min(count, max_burst)
        count = 0
        while self.next_due <= now and count < max_burst:
            count += 1
            self.next_due += self._gap()
        if self.next_due <= now:  # a stall: drop the arrivals it missed
            self.next_due = now + self._gap()
        return count

    def wait(self, now: float) -> float:
        return max(0.0, self.next_due - now)
