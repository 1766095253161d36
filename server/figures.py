"""The counts and rates behind the stats event and the autoscaler, and the two read from them.

The service moves these as it handles each message (no COUNT query per tick:
they are loaded at start and kept in step with every write); `stats` and
`load` only read them, with the work state and the pool, at the `now` given.
"""

from __future__ import annotations

from storypulse import protocol
from storypulse.protocol import Stats

from .autoscale import Load
from .config import ServerConfig
from .faults import Faults
from .flow import FlowWindow
from .outage import Outage
from .pool import Pool
from .state import WorkState
from .stats import History, MeanWindow, RateWindow


class Figures:
    def __init__(self, config: ServerConfig, now: float):
        self.config = config
        window = config.rate_window
        self.stories_in = RateWindow(window, now)
        self.stories_out = RateWindow(window, now)
        self.tasks_in = RateWindow(window, now)
        self.tasks_out = RateWindow(window, now)
        self.task_seconds = MeanWindow(window, now)  # how long a task runs, for the autoscaler
        self.history: History[Stats] = History(protocol.HISTORY_SECONDS_MAX)
        self.flow = FlowWindow(config.flow_window)  # lead and cycle times of completed stories
        self.completed_stories = 0
        self.tasks_completed = 0
        self.faults = Faults()  # what was dropped or failed, for the logs and the stats

    def load(self, now: float, state: WorkState, pool: Pool) -> Load:
        # Work the WIP limit holds back needs no more workers: they would only stand idle.
        held = state.held()
        return Load(
            now=now,
            queued_tasks=0 if held else state.queued,
            queued_work_s=0.0 if held else state.queued_ms * self.config.time_scale / 1000.0,
            busy=pool.busy,
            idle=len(pool.idle),
            starting=pool.count("starting"),
            arrival_rate=self.tasks_in.rate(now),
            completion_rate=self.tasks_out.rate(now),
            mean_task_s=self.task_seconds.mean(now),
        )

    def stats(self, now: float, wall: float, seq: int, state: WorkState, pool: Pool,
              outage: Outage | None) -> Stats:
        flow = self.flow.figures(now)
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
        )
