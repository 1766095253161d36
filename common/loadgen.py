"""The story simulator shared by `storypulse load` and the desktop app's simulator panel."""

from __future__ import annotations

import itertools
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


@dataclass
class StoryGenerator:
    """Random stories: a task count and per-task estimates drawn uniformly from ranges."""

    tasks: tuple[int, int] = (1, 5)
    estimate_ms: tuple[int, int] = (0, 1000)
    seed: int | None = None
    _rng: random.Random = field(init=False, repr=False)
    _numbers: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 1 <= self.tasks[0] <= self.tasks[1] <= protocol.TASKS_MAX:
            raise ValueError(f"tasks per story must be within 1-{protocol.TASKS_MAX}")
        if not 0 <= self.estimate_ms[0] <= self.estimate_ms[1] <= protocol.ESTIMATE_MS_MAX:
            raise ValueError(f"estimates must be within 0-{protocol.ESTIMATE_MS_MAX} ms")
        self._rng = random.Random(self.seed)
        self._numbers = itertools.count(1)

    def story(self) -> dict[str, Any]:
        """One create_story request body (without `op` and `id`)."""
        rng = self._rng
        n = next(self._numbers)
        count = rng.randint(*self.tasks)
        return {
            "name": f"{rng.choice(VERBS).capitalize()} {rng.choice(WORDS)} #{n}",
            "description": "simulated",
            "tasks": [
                {"name": f"task {i + 1}", "estimate_ms": rng.randint(*self.estimate_ms)}
                for i in range(count)
            ],
        }


class Pacer:
    """When the next story is due at a steady rate; skips missed ticks instead of bursting."""

    def __init__(self, rate: float, start: float):
        if rate <= 0:
            raise ValueError("rate must be above 0")
        self.period = 1.0 / rate
        self.next_due = start

    def due(self, now: float, max_burst: int = 100) -> int:
        """How many stories are due at `now` (at most `max_burst`, the rest are skipped)."""
        if now < self.next_due:
            return 0
        count = int((now - self.next_due) / self.period) + 1
        self.next_due += count * self.period
        return min(count, max_burst)

    def wait(self, now: float) -> float:
        return max(0.0, self.next_due - now)
