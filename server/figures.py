"""The counts and rates behind the stats event and the autoscaler, and the two read from them.

The service moves these as it handles each message (no COUNT query per tick:
they are loaded at start and kept in step with every write); `stats` and
`load` only read them, with the work state and the pool, at the `now` given.
"""

from __future__ import annotations

from storypulse import protocol
from storypulse.protocol import StageStats, Stats

from .autoscale import Load
from .config import ServerConfig
from .faults import Faults
from .flow import FlowWindow
from .outage import Outage
from .pool import Pool
from .pools import Pools
from .stages import bottleneck, wait_s
from .state import WorkState
from .stats import History, MeanWindow, RateWindow

# What `wait_s` says of a stage that has work and no worker at all (it waits forever):
# finite, so that it goes into JSON as a number.
NO_WORKER_WAIT_S = 1e9


class StageRates:
    """One stage's task flow, for its pool's autoscaler: its tasks created, its tasks done by
    its workers, and how long its leases ran (a server with several stages keeps one each)."""

    def __init__(self, window: float, now: float):
        self.tasks_in = RateWindow(window, now)
        self.tasks_out = RateWindow(window, now)
        self.task_seconds = MeanWindow(window, now)


class Figures:
    def __init__(self, config: ServerConfig, now: float, stages: int = 1):
        self.config = config
        window = config.rate_window
        self.stories_in = RateWindow(window, now)
        self.stories_out = RateWindow(window, now)
        self.tasks_in = RateWindow(window, now)
        self.tasks_out = RateWindow(window, now)
        self.task_seconds = MeanWindow(window, now)  # how long a task runs, for the autoscaler
        self.history: History[Stats] = History(protocol.HISTORY_SECONDS_MAX)
        self.flow = FlowWindow(config.flow_window, since=now)  # lead and cycle times of completed stories
        self.completed_stories = 0
        self.tasks_completed = 0
        self.faults = Faults()  # what was dropped or failed, for the logs and the stats
        # Per stage, with several (with one, the totals above are its own).
        self.stages = [StageRates(window, now) for _ in range(stages)] if stages > 1 else []

    def load(self, now: float, state: WorkState, pool: Pool, stage: int = 0) -> Load:
        """What `stage`'s autoscaler sees: the work its workers could start now (none while a
        WIP limit holds it back: more workers would only stand idle), and its task flow."""
        tasks, work_ms = state.demand(stage)
        rates = self.stages[stage] if self.stages else self
        return Load(
            now=now,
            queued_tasks=tasks,
            queued_work_s=work_ms * self.config.time_scale / 1000.0,
            busy=pool.busy,
            idle=len(pool.idle),
            starting=pool.count("starting"),
            arrival_rate=rates.tasks_in.rate(now),
            completion_rate=rates.tasks_out.rate(now),
            mean_task_s=rates.task_seconds.mean(now),
        )

    def stage_stats(self, state: WorkState, pools: Pools) -> tuple[list[StageStats], str | None]:
        """Each stage's figures with its pool's, in workflow order, and the bottleneck."""
        scale = self.config.time_scale
        figures = state.figures()
        workers = [pool.connected for pool in pools.stages]
        stages = [StageStats(
            name=f.name, workers=count, workers_busy=pool.busy, min_workers=pool.min_workers,
            max_workers=pool.max_workers, tasks_queued=f.tasks_queued, tasks_ready=f.tasks_ready,
            tasks_running=f.tasks_running, tasks_blocked=f.tasks_blocked, stories=f.stories,
            wip_limit=f.wip_limit, wait_s=min(wait_s(f, count, scale), NO_WORKER_WAIT_S))
            for f, pool, count in zip(figures, pools.stages, workers)]
        return stages, bottleneck(figures, workers, scale)

    def stats(self, now: float, wall: float, seq: int, state: WorkState, pool: Pools,
              outage: Outage | None) -> Stats:
        flow = self.flow.figures(now)
        stages, slowest = self.stage_stats(state, pool)
        return Stats(
            seq=seq,
            ts=wall,
            stories_produced_per_s=self.stories_in.rate(now),
            stories_completed_per_s=self.stories_out.rate(now),
            open_stories=state.open_stories,
            completed_stories=self.completed_stories,
            tasks_produced_per_s=self.tasks_in.rate(now),
            tasks_completed_per_s=self.tasks_out.rate(now),
            tasks_queued=state.queued,
            tasks_running=state.running,
            tasks_completed=self.tasks_completed,
            queued_work_s=state.queued_ms * self.config.time_scale / 1000.0,
            workers=pool.connected,
            workers_busy=pool.busy,
            workers_target=pool.target,
            min_workers=pool.min_workers,
            max_workers=pool.max_workers,
            rate_window_s=self.config.rate_window,
            database="ok" if outage is None else "unavailable",
            database_error=None if outage is None else outage.cause,
            internal_errors=self.faults.internal_errors,
            dropped_messages=self.faults.dropped_messages,
            stories_in_progress=state.in_progress,
            stories_completed_in_window=flow.count,
            lead_time_mean_s=flow.lead_mean_s,
            lead_time_p50_s=flow.lead_p50_s,
            lead_time_p85_s=flow.lead_p85_s,
            lead_time_p95_s=flow.lead_p95_s,
            cycle_time_p50_s=flow.cycle_p50_s,
            cycle_time_p85_s=flow.cycle_p85_s,
            cycle_time_p95_s=flow.cycle_p95_s,
            flow_window_s=self.flow.window,
            wip_limit=state.wip_limit,
            stages=stages,
            tasks_blocked=state.blocked,
            flow_efficiency=flow.flow_efficiency,
            bottleneck=slowest,
            flow_window_covered_s=round(self.flow.covered(now), 3),
        )
