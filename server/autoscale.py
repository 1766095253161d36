"""The pool's scaling policy: from the recent load to a target size, with its reason.

A pure policy: no clock reads, no I/O. The pool calls `Autoscaler.decide(load)`
every scale interval with what it observes and `now`; tests drive it with a
fake clock and synthetic load curves.

How the size is chosen (docs/autoscaling.md explains it at length):

- offered = arrival rate x mean task time: the workers busy at steady state
  (Little's law); floor = offered / target utilisation, rounded up, so that a
  queue does not form at every random clump of arrivals.
- backlog = workers that clear the queued work within `drain_s` (never more
  than one per queued task).
- need = max(floor, busy, offered + backlog): keep up with the arrivals and
  drain the queue at the same time; busy workers are never counted away.
- Grow at once to `need` (one decision, not one worker per tick).
- Shrink only after `quiet_window` seconds in which the need stayed at least
  `slack` below the size, by half the surplus (at least one) per window, never
  below the floor, the window's peak need, or `min_workers`.
- The floor's head-room is the hysteresis: a queue must outgrow it before
  the pool grows, and a whole quiet window must pass before it shrinks, so a
  steady load settles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Load", "Decision", "Autoscaler"]


@dataclass(frozen=True)
class Load:
    """What the pool observes now."""

    now: float  # monotonic seconds
    queued_tasks: int
    queued_work_s: float  # sum of scaled estimates of queued tasks, seconds
    busy: int  # workers holding a lease (running tasks)
    idle: int  # ready workers without a lease
    starting: int  # spawned, not yet Ready
    arrival_rate: float  # tasks/s entering the queue (recent)
    completion_rate: float  # tasks/s completed (recent)
    mean_task_s: float  # recent mean scaled task duration, seconds


@dataclass(frozen=True)
class Decision:
    target: int
    reason: str


class Autoscaler:
    """Quick to grow, slow to shrink, settles under a steady load."""

    def __init__(
        self,
        min_workers: int,
        max_workers: int,
        *,
        quiet_window: float = 5.0,
        worker_start_s: float = 0.05,
        drain_s: float = 1.0,
        utilisation: float = 0.8,
        slack: int = 1,
    ) -> None:
        if quiet_window < 0 or worker_start_s < 0 or drain_s <= 0:
            raise ValueError("quiet_window and worker_start_s must be >= 0, drain_s > 0")
        if not 0 < utilisation <= 1:
            raise ValueError("utilisation must be in (0, 1]")
        self.quiet_window = quiet_window
        self.worker_start_s = worker_start_s
        self.drain_s = drain_s
        self.utilisation = utilisation
        self.slack = max(0, slack)
        self.min_workers = 0
        self.max_workers = 0
        self.set_bounds(min_workers, max_workers)
        self._target = self.min_workers
        # Start of the current quiet stretch (need below the size) and the
        # highest need seen in it; None while the need is not below the size.
        self._quiet_since: float | None = None
        self._quiet_peak = 0

    @property
    def target(self) -> int:
        return self._target

    def set_bounds(self, min_workers: int, max_workers: int) -> None:
        """Change the bounds at run time; the next decision obeys them at once."""
        if min_workers < 0 or max_workers < 1 or min_workers > max_workers:
            raise ValueError(f"need 0 <= min_workers <= max_workers and max_workers >= 1, "
                             f"got {min_workers}..{max_workers}")
        self.min_workers = min_workers
        self.max_workers = max_workers

    # -- the policy ---------------------------------------------------------
    def needs(self, load: Load) -> tuple[int, float, int]:
        """(floor, backlog, need) for this load, before the bounds.

        floor   -- workers that keep up with the arrivals at the target utilisation;
        backlog -- workers (fractional) that clear the queued work within drain_s;
        need    -- enough workers for the arrivals and the backlog together, and
                   never fewer than the busy ones (they are not taken away).
        """
        task_s = max(load.mean_task_s, 0.0)
        offered = max(load.arrival_rate, 0.0) * task_s  # Little's law: busy workers at steady state
        floor = math.ceil(offered / self.utilisation - 1e-9)
        backlog = 0.0
        if load.queued_tasks > 0:
            # A worker started now only helps once it is up.
            window = max(self.drain_s - self.worker_start_s, 1e-3)
            backlog = min(float(load.queued_tasks), max(load.queued_work_s, 0.0) / window)
        need = max(floor, load.busy, math.ceil(offered + backlog - 1e-9))
        return floor, backlog, need

    def decide(self, load: Load) -> Decision:
        lo, hi = self.min_workers, self.max_workers
        size = self._target
        floor, backlog, need = self.needs(load)
        want = min(max(need, lo), hi)
        workers = load.busy + load.idle + load.starting

        # Bounds first: a set_pool may have moved them under the current size.
        if size < lo or size > hi:
            new = min(max(size, want), hi) if size < lo else max(min(size, hi), lo)
            return self._move(new, load, f"bounds {lo}..{hi}: size {size} -> {new}")

        if want > size:
            return self._move(want, load, self._grow_reason(load, size, want, floor))

        # Not growing: is this a quiet stretch in which we may shrink?
        floor = min(max(floor, lo), hi)
        if need + self.slack > size or size <= floor:
            self._quiet_since = None
            return Decision(size, self._hold_reason(load, size, need, workers))
        if self._quiet_since is None:
            self._quiet_since, self._quiet_peak = load.now, need
        self._quiet_peak = max(self._quiet_peak, need)
        quiet_for = load.now - self._quiet_since
        if quiet_for < self.quiet_window:
            return Decision(size, f"hold {size}: need {need} for {quiet_for:.1f} s of a "
                                  f"{self.quiet_window:g} s quiet window")
        keep = max(self._quiet_peak + self.slack, floor)
        step = max(1, (size - keep) // 2)
        new = max(size - step, keep, lo)
        if new >= size:
            self._quiet_since = None
            return Decision(size, f"hold {size}: peak need {self._quiet_peak} in the quiet window")
        reason = (f"shrink: need stayed <= {self._quiet_peak} for {quiet_for:.1f} s; "
                  f"floor {floor}; {size} -> {new}")
        return self._move(new, load, reason, restart_quiet=True)

    # -- helpers --------------------------------------------------------------
    def _move(self, new: int, load: Load, reason: str, restart_quiet: bool = False) -> Decision:
        self._target = new
        # Any move starts a fresh quiet window: a shrink must be earned again.
        self._quiet_since = load.now if restart_quiet else None
        self._quiet_peak = 0
        return Decision(new, reason)

    def _grow_reason(self, load: Load, size: int, new: int, floor: int) -> str:
        parts = []
        if load.queued_tasks:
            parts.append(f"{load.queued_tasks} queued tasks hold {load.queued_work_s:.1f} s of work")
        parts.append(f"{load.busy} busy")
        if floor:
            parts.append(f"arrivals {load.arrival_rate:.1f}/s x {load.mean_task_s:.2f} s need {floor}")
        clears = ""
        extra = new - load.busy
        if load.queued_work_s > 0 and extra > 0:
            clears = f"; {extra} free workers clear it in {load.queued_work_s / extra:.1f} s"
        capped = " (capped at max)" if new == self.max_workers else ""
        return f"grow {size} -> {new}{capped}: " + ", ".join(parts) + clears

    def _hold_reason(self, load: Load, size: int, need: int, workers: int) -> str:
        return f"hold {size}: need {need}, {load.busy} busy of {workers} workers"
