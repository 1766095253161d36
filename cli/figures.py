"""The live figures as `storypulse watch` keeps and prints them, apart from any socket.

`Figures` holds what the core's feed session (storypulse.feed_session, one set
of rules shared with the desktop app) says to apply and to load; `render` draws
the panel and `flow_lines` the flow part, which `storypulse flow` prints too.
"""

from __future__ import annotations

from collections import deque

from storypulse import format as fmt
from storypulse import protocol

HISTORY_POINTS = 120  # one a second: what the sparklines can show
SPARK_WIDTH = 40


class Figures:
    """The latest stats, recent history, last pool decision and last note, with the seq of the newest shown."""

    def __init__(self) -> None:
        self.seq: int | None = None  # None until the first snapshot
        self.stats: protocol.Stats | None = None
        self.pool: protocol.PoolEvent | None = None
        self.note: protocol.NoteEvent | None = None  # the server's newest (a snapshot carries them)
        self.history: deque[protocol.Stats] = deque(maxlen=HISTORY_POINTS)

    def load_snapshot(self, snap: protocol.SnapshotResult) -> None:
        """Take a snapshot's history and, unless newer ones were applied, its stats.

        A snapshot that repairs a gap may be older than the events applied while
        it was on its way (feed_session's gap rule): it must not move the figures back."""
        later = [h for h in self.history if h.ts > snap.stats.ts]
        self.history.clear()
        self.history.extend(snap.history)
        if self.stats is None or snap.stats.ts >= self.stats.ts:
            self.stats = snap.stats
            self.seq = snap.seq
        if snap.notes and (self.note is None or snap.notes[-1].ts >= self.note.ts):
            self.note = snap.notes[-1]
        for stats in later:
            self._keep(stats)

    def apply(self, event: protocol.Event | protocol.OtherEvent) -> None:
        """An event the session says to apply, in order (one of a topic unknown here: its seq only)."""
        self.seq = event.seq
        if isinstance(event, protocol.Stats):
            self.stats = event
            self._keep(event)
        elif isinstance(event, protocol.PoolEvent):
            self.pool = event
        elif isinstance(event, protocol.NoteEvent):
            self.note = event

    def _keep(self, stats: protocol.Stats) -> None:
        # Keep the history at one point a second, like the snapshot's.
        if not self.history or stats.ts >= self.history[-1].ts + 1.0:
            self.history.append(stats)


def render(figures: Figures, server: str, state: str, now: float) -> list[str]:
    """The panel as lines of text; `now` is the wall clock (for "x s ago")."""
    head = f"storypulse watch · {server} · {state}"
    if figures.seq is not None:
        head += f" · seq {figures.seq}"
    s = figures.stats
    if s is None:
        return [head, "", "  no figures yet"]
    produced = [h.stories_produced_per_s for h in figures.history]
    completed = [h.stories_completed_per_s for h in figures.history]
    lines = [head + f" · {fmt.clock(s.ts, now)}", ""]
    if s.database != "ok":
        lines += [f"  DATABASE UNAVAILABLE — writes refused, retrying: {s.database_error}", ""]
    lines += [
        f"  stories produced   {fmt.rate(s.stories_produced_per_s):>12}   {fmt.sparkline(produced, SPARK_WIDTH)}",
        f"  stories completed  {fmt.rate(s.stories_completed_per_s):>12}   {fmt.sparkline(completed, SPARK_WIDTH)}",
        f"  open stories       {fmt.count(s.open_stories):>12}",
        f"  completed stories  {fmt.count(s.completed_stories):>12}",
        "",
        f"  tasks    queued {fmt.count(s.tasks_queued)} · running {fmt.count(s.tasks_running)}"
        f" · queued work {fmt.duration(s.queued_work_s)} · done {fmt.count(s.tasks_completed)}"
        f" · in {fmt.rate(s.tasks_produced_per_s)} · out {fmt.rate(s.tasks_completed_per_s)}",
        f"  workers  busy {s.workers_busy} / {s.workers} · target {s.workers_target}"
        f" · bounds {s.min_workers}-{s.max_workers}",
    ]
    p = figures.pool
    if p is not None:
        lines.append(
            f"  last resize  {p.old_size} -> {p.new_size}: {p.reason} ({fmt.duration(now - p.ts)} ago)"
        )
    else:
        lines.append("  last resize  none seen yet")
    n = figures.note
    if n is not None:
        lines.append(f"  last note    {n.text} ({fmt.duration(now - n.ts)} ago)")
    lines += flow_lines(s)
    lines += forecast_lines(s)
    lines.append(f"  rates over the last {s.rate_window_s:g} s")
    return lines


def flow_lines(s: protocol.Stats) -> list[str]:
    """In progress and waiting, lead and cycle times; nothing from a server without them."""
    if s.flow_window_s is None:
        return []
    limit = f" (limit {s.wip_limit})" if s.wip_limit else " (no limit)"
    waiting = s.open_stories - s.stories_in_progress

    def times(p50: float | None, p85: float | None, p95: float | None) -> str:
        return f"p50 {fmt.duration(p50)} · p85 {fmt.duration(p85)} · p95 {fmt.duration(p95)}"

    return [
        f"  flow     in progress {fmt.count(s.stories_in_progress)}{limit} · waiting {fmt.count(waiting)}"
        f" · {fmt.count(s.stories_completed_in_window)} done in the last {fmt.duration(s.flow_window_s)}",
        f"  lead     {times(s.lead_time_p50_s, s.lead_time_p85_s, s.lead_time_p95_s)}"
        f" · mean {fmt.duration(s.lead_time_mean_s)}",
        f"  cycle    {times(s.cycle_time_p50_s, s.cycle_time_p85_s, s.cycle_time_p95_s)}",
    ]


def stage_lines(s: protocol.Stats) -> list[str]:
    """A line per stage of a workflow, then flow efficiency and the bottleneck; nothing from a
    server with one stage (or none: an older one)."""
    if len(s.stages) < 2:
        return []
    width = max(len(st.name) for st in s.stages)
    lines = [f"  {st.name:<{width}}  {fmt.count(st.stories)} stories"
             + (f" (limit {st.wip_limit})" if st.wip_limit else "")
             + f" · workers {st.workers_busy}/{st.workers} busy ({st.min_workers}-{st.max_workers})"
             + f" · {fmt.count(st.tasks_ready)} ready · {fmt.count(st.tasks_blocked)} blocked"
             for st in s.stages]
    efficiency = "-" if s.flow_efficiency is None else f"{s.flow_efficiency:.0%}"
    lines.append(f"  flow efficiency {efficiency} · bottleneck {s.bottleneck or 'none'}")
    return lines


def forecast_lines(s: protocol.Stats) -> list[str]:
    """The backlog forecast and the server's own hit rate, on one line."""
    if s.forecast_open_p85_s is None and s.forecast_hit_rate_p85 is None:
        return []  # no history yet, or a server without forecasts
    if s.forecast_open_p85_s is None:
        when = "backlog: too little history"
    else:
        when = (f"backlog of {fmt.count(s.open_stories)} done within p50 {fmt.duration(s.forecast_open_p50_s)}"
                f" · p85 {fmt.duration(s.forecast_open_p85_s)} · p95 {fmt.duration(s.forecast_open_p95_s)}")
    rate = s.forecast_hit_rate_p85
    score = "no forecast scored yet" if rate is None else (
        f"p85 came true {rate:.0%} of {fmt.count(s.forecast_scored)}")
    return [f"  forecast {when} · {score}"]
