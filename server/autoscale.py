"""The pool's scaling policy: from the recent load to a target size, with its reason.

A pure policy: no clock reads, no I/O. The pool calls `Autoscaler.decide(load)`
every scale interval with what it observes and `now`; tests drive it with a
fake clock and synthetic load curves. docs/autoscaling.md explains it at length.

- offered = arrival rate x mean task time: the workers kept busy by the
  arrivals (Little's law). floor = offered / target utilisation, rounded up:
  what the arrivals need, with head-room so that not every clump of arrivals
  makes a queue. The pool never shrinks below it.
- backlog = workers that clear the queued work within `drain_s` (at most one
  per queued task).
- need = max(floor, busy, offered + backlog): keep up with the flow and drain
  the queue at the same time (a fluid model: busy workers beyond the flow are
  already working the queue off); busy workers are never counted away.
- Grow at once to `need` (one decision, not one worker per tick).
- Shrink only after a quiet window in which the need stayed clearly below the
  size (at most `shrink_below` = 2/3 of it: the hysteresis band); then by half
  the surplus (at least one worker), never below the floor, the window's peak
  need, or `min_workers`; the next step needs another window.
- Anti-flap: if the pool must grow again soon after a shrink, that shrink was
  premature, so the quiet window doubles (up to `max_patience` times); it
  halves again after a long calm, and returns to normal at once when the flow
  that caused it has fallen under a quarter (that load is over). A steady
  load settles instead of see-sawing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Load", "Decision", "Autoscaler"]

_EPS = 1e-9  # keeps ceil() from rounding 3.0000000001 up to 4


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

    @property
    def workers(self) -> int:
        return self.busy + self.idle + self.starting


@dataclass(frozen=True)
class Decision:
    target: int
    reason: str


@dataclass(frozen=True)
class Need:
    """The policy's view of one load sample (before the bounds)."""

    task_s: float  # the task time used: recent mean, else the queued tasks' mean estimate
    offered: float  # workers the arrivals keep busy (Little's law)
    floor: int  # offered at the target utilisation: never shrink below
    backlog: float  # extra workers that clear the queue within drain_s
    need: int  # workers wanted now


class Autoscaler:
    """Quick to grow, slow to shrink, settles under a steady load."""

    def __init__(
        self,
        min_workers: int,
        max_workers: int,
        *,
        quiet_window: float = 5.0,
        worker_start_s: float = 0.05,
        drain_s: float = 0.5,
        utilisation: float = 0.8,
        max_patience: int = 4,
        shrink_below: float = 2 / 3,
    ) -> None:
        if quiet_window < 0 or worker_start_s < 0:
            raise ValueError("quiet_window and worker_start_s must be >= 0")
        if drain_s <= 0 or not 0 < utilisation <= 1 or max_patience < 1 or not 0 < shrink_below <= 1:
            raise ValueError("need drain_s > 0, 0 < utilisation <= 1, max_patience >= 1, "
                             "0 < shrink_below <= 1")
        self.quiet_window = quiet_window
        self.worker_start_s = worker_start_s
        self.drain_s = drain_s
        self.utilisation = utilisation
        self.max_patience = max_patience
        self.shrink_below = shrink_below
        self.min_workers = 0
        self.max_workers = 1
        self.set_bounds(min_workers, max_workers)
        self._target = self.min_workers
        self._patience = 1  # multiplies quiet_window; doubled by a premature shrink
        self._patience_flow = 0.0  # the offered load when the window was last lengthened
        self._quiet_since: float | None = None  # start of the current quiet stretch
        self._quiet_peak = 0  # highest need within it
        self._last_shrink: float | None = None
        self._shrunk_from = 0  # the size before the current run of shrinks
        self._calm_since: float | None = None  # last grow or patience change

    # -- state the pool may show ----------------------------------------------
    @property
    def target(self) -> int:
        return self._target

    @property
    def window(self) -> float:
        """The quiet window now in force (longer after premature shrinks)."""
        return self.quiet_window * self._patience

    def set_bounds(self, min_workers: int, max_workers: int) -> None:
        """Change the bounds at run time; the next decision obeys them at once."""
        if not 0 <= min_workers <= max_workers or max_workers < 1:
            raise ValueError(f"need 0 <= min_workers <= max_workers and max_workers >= 1, "
                             f"got {min_workers}..{max_workers}")
        self.min_workers = min_workers
        self.max_workers = max_workers

    # -- the policy -------------------------------------------------------------------
    def assess(self, load: Load) -> Need:
        task_s = max(load.mean_task_s, 0.0)
        if task_s == 0.0 and load.queued_tasks > 0:
            task_s = max(load.queued_work_s, 0.0) / load.queued_tasks  # nothing completed lately
        # Workers the flow keeps busy (Little's law). Completions count too: they
        # show the work being done when the pool is saturated, and after a step
        # down they keep the floor up while the backlog drains.
        offered = max(load.arrival_rate, load.completion_rate, 0.0) * task_s
        floor = math.ceil(offered / self.utilisation - _EPS)
        backlog = 0.0
        if load.queued_tasks > 0:
            # A worker started now helps only once it is up.
            window = max(self.drain_s - self.worker_start_s, 0.1 * self.drain_s)
            backlog = min(float(load.queued_tasks), max(load.queued_work_s, 0.0) / window)
        # Fluid model: over drain_s the pool must serve the flow (offered) and
        # clear the queue (backlog). Busy workers beyond the flow are already
        # clearing the queue, so they are not added again; but never fewer
        # than the busy ones, and a queue always gets at least one more worker
        # when no flow is known to free one up.
        need = max(floor, load.busy, math.ceil(offered + backlog - _EPS))
        if load.queued_tasks > 0 and offered == 0.0:
            need = max(need, load.busy + min(load.queued_tasks, max(1, math.ceil(backlog - _EPS))))
        return Need(task_s, offered, floor, backlog, need)

    def decide(self, load: Load) -> Decision:
        now, lo, hi = load.now, self.min_workers, self.max_workers
        size = self._target
        n = self.assess(load)
        want = min(max(n.need, lo), hi)
        floor = min(max(n.floor, lo), hi)

        if size < lo or size > hi:  # a set_pool moved the bounds under us
            new = max(min(max(size, want), hi), lo)
            return self._moved(new, now, f"bounds now {lo}..{hi}: {size} -> {new}")

        if want > size:
            if self._last_shrink is not None and now - self._last_shrink < 3 * self.window \
                    and want <= self._shrunk_from:
                # Growing back soon to where it was before the last shrink: that
                # shrink was premature, so be more patient next time. (A grow
                # beyond that is new load, not a flap.)
                self._patience = min(self._patience * 2, self.max_patience)
                self._patience_flow = n.offered
            self._last_shrink = None  # a grow ends the run of shrinks
            self._calm_since = now
            return self._moved(want, now, self._grow_reason(load, n, size, want))

        if self._patience > 1 and self._calm_since is not None \
                and now - self._calm_since > 2 * self.window:
            self._patience //= 2  # a long calm: back towards the normal window
            self._calm_since = now
        if self._patience > 1 and load.queued_tasks == 0 and n.offered < self._patience_flow / 4:
            # The flow that made the pool see-saw has fallen to under a quarter:
            # the load is over, so the extra patience for it no longer applies.
            self._patience = 1

        # Hysteresis: only a clearly oversized pool shrinks.
        limit = min(size - 1, math.floor(size * self.shrink_below + _EPS))
        if n.need > limit or size <= floor:
            self._quiet_since = None
            if size <= floor:
                why = f"the flow needs {n.floor}" if n.floor >= size else f"at min_workers {lo}"
            elif n.need >= size:
                why = f"need {n.need}"
            else:
                why = f"need {n.need} (a shrink needs {limit} or less)"
            return Decision(size, f"hold {size}: {why}; {load.busy} busy, {load.queued_tasks} queued")

        if self._quiet_since is None:
            self._quiet_since, self._quiet_peak = now, n.need
        self._quiet_peak = max(self._quiet_peak, n.need)
        quiet_for = now - self._quiet_since
        if quiet_for < self.window:
            return Decision(size, f"hold {size}: need {self._quiet_peak} or less for {quiet_for:.1f} s "
                                  f"of a {self.window:g} s quiet window")

        keep = max(self._quiet_peak, floor)
        new = max(size - max(1, (size - keep) // 2), keep)
        reason = (f"shrink {size} -> {new}: need stayed at {self._quiet_peak} or less for "
                  f"{quiet_for:.1f} s; the flow needs {n.floor}")
        # The size this run of shrinks started from (a grow ends a run).
        self._shrunk_from = max(self._shrunk_from, size) if self._last_shrink is not None else size
        self._last_shrink = now
        decision = self._moved(new, now, reason)
        self._quiet_since = now  # the next step needs another quiet window
        return decision

    # -- helpers ----------------------------------------------------------------------
    def _moved(self, new: int, now: float, reason: str) -> Decision:
        self._target = new
        self._quiet_since = None
        self._quiet_peak = 0
        return Decision(new, reason)

    def _grow_reason(self, load: Load, n: Need, size: int, new: int) -> str:
        parts = []
        if load.queued_tasks:
            parts.append(f"{load.queued_tasks} queued tasks hold {load.queued_work_s:.1f} s of work")
        if n.offered > 0:
            rate = max(load.arrival_rate, load.completion_rate)
            parts.append(f"{rate:.1f} tasks/s x {n.task_s:.2f} s keep {n.offered:.1f} workers busy")
        parts.append(f"{load.busy} busy")
        text = f"grow {size} -> {new}: " + ", ".join(parts)
        free = new - load.busy
        if load.queued_work_s > 0 and free > 0:
            text += f"; {free} free workers clear the queue in {load.queued_work_s / free:.1f} s"
        if new == self.max_workers and n.need > new:
            text += f" (capped at max {self.max_workers}; {n.need} wanted)"
        return text
