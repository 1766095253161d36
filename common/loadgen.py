"""The story simulator shared by `storypulse load` and the desktop app's simulator panel.

Without stages a story is 1-5 tasks (say) with estimates in a range, as it always was.
With a per-stage load (a scenario's: scenario.py) each stage draws its own tasks per
story, estimates and blocks, in workflow order; the same seed gives the same stories.
"""

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


def _check(tasks: tuple[int, int], estimate_ms: tuple[int, int], estimates: str, *,
           fewest: int = 1, what: str = "") -> None:
    if not fewest <= tasks[0] <= tasks[1] <= protocol.TASKS_MAX:
        raise ValueError(f"{what}tasks per story must be within {fewest}-{protocol.TASKS_MAX}")
    if not 0 <= estimate_ms[0] <= estimate_ms[1] <= protocol.ESTIMATE_MS_MAX:
        raise ValueError(f"{what}estimates must be within 0-{protocol.ESTIMATE_MS_MAX} ms")
    if estimates not in ESTIMATES:
        raise ValueError(f"{what}estimates {estimates!r}: must be one of {', '.join(ESTIMATES)}")


@dataclass(frozen=True)
class StageLoad:
    """What one stage of a workflow gets of each story: `tasks` per story (0 lets stories skip
    it), their estimates, and the share of them (`block_chance`) that block when they first
    start, for a time drawn uniformly from `block_ms`."""

    name: str
    tasks: tuple[int, int] = (1, 1)
    estimate_ms: tuple[int, int] = (0, 1000)
    estimates: str = "uniform"
    block_chance: float = 0.0
    block_ms: tuple[int, int] = (0, 0)

    def check(self) -> None:
        what = f"stage {self.name!r}: "
        _check(self.tasks, self.estimate_ms, self.estimates, fewest=0, what=what)
        if not 0.0 <= self.block_chance <= 1.0:
            raise ValueError(f"{what}block chance {self.block_chance!r} must be within 0-1")
        if not 0 <= self.block_ms[0] <= self.block_ms[1] <= protocol.ESTIMATE_MS_MAX:
            raise ValueError(f"{what}block times must be within 0-{protocol.ESTIMATE_MS_MAX} ms")


def check_stage_loads(stages: tuple[StageLoad, ...]) -> None:
    """A per-stage load that can make stories: every stage valid, some task possible, and no
    story above the protocol's limit of tasks."""
    if not stages:
        raise ValueError("a per-stage load needs at least one stage")
    for stage in stages:
        stage.check()
    most = sum(stage.tasks[1] for stage in stages)
    if most > protocol.TASKS_MAX:
        raise ValueError(f"the stages' tasks per story add up to {most}; a story holds at most "
                         f"{protocol.TASKS_MAX}")
    if most == 0:
        raise ValueError("every stage has 0 tasks per story: a story needs at least one task")


@dataclass
class StoryGenerator:
    """Random stories: a task count drawn uniformly from a range, and per-task estimates drawn
    from a range uniformly or log-normally (the usual shape of real task durations: most
    short, a few long). `retune` changes the ranges for the stories after it."""

    tasks: tuple[int, int] = (1, 5)
    estimate_ms: tuple[int, int] = (0, 1000)
    seed: int | None = None
    estimates: str = "uniform"
    # A per-stage load (then `tasks`, `estimate_ms` and `estimates` are not used); with more
    # than one stage each task names its stage.
    stages: tuple[StageLoad, ...] | None = None
    _rng: random.Random = field(init=False, repr=False)
    _numbers: Any = field(init=False, repr=False)
    _lognormal: tuple[float, float] = field(init=False, repr=False)
    _stage_lognormal: list[tuple[float, float]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        _check(self.tasks, self.estimate_ms, self.estimates)
        self._rng = random.Random(self.seed)
        self._numbers = itertools.count(1)
        self._lognormal = lognormal_parameters(*self.estimate_ms)
        self.retune_stages(self.stages)

    def retune(self, tasks: tuple[int, int], estimate_ms: tuple[int, int], estimates: str) -> None:
        """One range of tasks and estimates for the next stories (no stages)."""
        _check(tasks, estimate_ms, estimates)
        self.tasks, self.estimate_ms, self.estimates = tasks, estimate_ms, estimates
        self._lognormal = lognormal_parameters(*estimate_ms)
        self.stages = None

    def retune_stages(self, stages: tuple[StageLoad, ...] | None) -> None:
        """A per-stage load for the next stories (None: back to the one range)."""
        if stages is not None:
            check_stage_loads(stages)
        self.stages = stages
        self._stage_lognormal = [lognormal_parameters(*s.estimate_ms) for s in stages or ()]

    def _draw(self, bounds: tuple[int, int], kind: str, lognormal: tuple[float, float]) -> int:
        low, high = bounds
        if kind == "uniform" or low == high:
            return self._rng.randint(low, high)
        mu, sigma = lognormal
        for _ in range(50):  # 10 % fall outside: 50 misses in a row is a 1e-50 chance
            value = round(self._rng.lognormvariate(mu, sigma))
            if low <= value <= high:
                return value
        return min(high, max(low, value))

    def estimate(self) -> int:
        """One task's estimate in ms, within the range."""
        return self._draw(self.estimate_ms, self.estimates, self._lognormal)

    def story(self) -> dict[str, Any]:
        """One create_story request body (without `op` and `id`)."""
        rng = self._rng
        n = next(self._numbers)
        if self.stages is not None:
            name = f"{rng.choice(VERBS).capitalize()} {rng.choice(WORDS)} #{n}"
            return {"name": name, "description": "simulated", "tasks": self._staged_tasks()}
        count = rng.randint(*self.tasks)  # (the draws in the order they always were: same seed, same stories)
        return {
            "name": f"{rng.choice(VERBS).capitalize()} {rng.choice(WORDS)} #{n}",
            "description": "simulated",
            "tasks": [{"name": f"task {i + 1}", "estimate_ms": self.estimate()} for i in range(count)],
        }

    def _staged_tasks(self) -> list[dict[str, Any]]:
        """Each stage's tasks in workflow order; drawn again while a story would have none."""
        stages = self.stages or ()
        named = len(stages) > 1  # one stage: the server's first, whatever it is called
        rng = self._rng
        for _ in range(100):
            tasks: list[dict[str, Any]] = []
            for stage, lognormal in zip(stages, self._stage_lognormal):
                for _ in range(rng.randint(*stage.tasks)):
                    task: dict[str, Any] = {
                        "name": f"{stage.name} {len(tasks) + 1}" if named else f"task {len(tasks) + 1}",
                        "estimate_ms": self._draw(stage.estimate_ms, stage.estimates, lognormal)}
                    if named:
                        task["stage"] = stage.name
                    if stage.block_chance and rng.random() < stage.block_chance:
                        task["blocked_ms"] = rng.randint(*stage.block_ms)
                    tasks.append(task)
            if tasks:
                return tasks
        # Every stage may draw 0: give the story the first task it could have.
        stage = next(s for s in stages if s.tasks[1] > 0)
        first = {"name": "task 1", "estimate_ms": stage.estimate_ms[0]}
        return [{**first, "stage": stage.name} if named else first]


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
