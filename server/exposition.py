"""`/metrics`: the newest snapshot (metrics.py) in Prometheus's text format, by prometheus_client.

One custom collector turns the snapshot into metric families at scrape time, in the
HTTP thread; the loop's only part is to publish a snapshot each stats tick. Every
metric is listed in the tables below with its help text; docs/install.md shows the
same list, and tests/test_metrics.py checks that the two agree and that the Grafana
dashboard (packaging/grafana/storypulse.json) uses no other name.

Per-stage figures carry a `stage` label: the task queue wait histogram already (a
server without a workflow has one stage, `work`), and `storypulse_stage_*` gauges
from the `stages` of the stats event, one series per stage, once the event has them.
"""

from __future__ import annotations

import platform
from typing import Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.process_collector import ProcessCollector

from storypulse import __version__, protocol

from .metrics import HistogramFigures, Snapshot

PREFIX = "storypulse_"

# (metric, field of the stats event, help): what the stats event says, as gauges.
STATS_GAUGES = (
    ("open_stories", "open_stories", "Stories not done yet, in the database."),
    ("completed_stories", "completed_stories",
     "Stories done, in the database (falls when a done story is deleted: the stats event's "
     "completed_stories)."),
    ("stories_in_progress", "stories_in_progress", "Open stories one of whose tasks has started."),
    ("tasks_queued", "tasks_queued", "Tasks waiting for a worker."),
    ("tasks_running", "tasks_running", "Tasks handed to a worker and not reported done yet."),
    ("queued_work_seconds", "queued_work_s",
     "The estimates of the queued tasks, time scale applied, in seconds."),
    ("workers", "workers", "Worker processes connected (idle or busy)."),
    ("workers_busy", "workers_busy", "Workers running a lease."),
    ("workers_target", "workers_target", "The pool size the autoscaler aims at."),
    ("workers_min", "min_workers", "The pool's lower bound."),
    ("workers_max", "max_workers", "The pool's upper bound."),
    ("wip_limit", "wip_limit", "Stories allowed in progress at once; 0: no limit."),
    ("tasks_blocked", "tasks_blocked", "Tasks started and blocked now (the stages' sum)."),
    ("flow_window_seconds", "flow_window_s",
     "The window the flow_* quantiles are taken over, in seconds."),
)
# (metric, field, help): counts the server keeps since it started, as the stats event shows them.
STATS_COUNTERS = (
    ("internal_errors", "internal_errors",
     "Messages whose handling failed inside the server (answered `internal`), since start."),
    ("dropped_messages", "dropped_messages",
     "Messages dropped unanswered (bad envelopes, bad worker messages), since start."),
    ("forecast_scored", "forecast_scored",
     "The server's own backlog forecasts that matured (came true or not by their p85 time), "
     "since start: what forecast_hit_rate is over."),
)
# (metric, Snapshot attribute, help): counted by the loop since start.
EVENT_COUNTERS = (
    ("stories_created", "stories_created", "Stories created (stored), since this server started."),
    ("stories_completed", "stories_completed",
     "Stories completed (their last task done), since this server started."),
    ("stories_deleted", "stories_deleted", "Stories deleted, since this server started."),
    ("tasks_completed", "tasks_completed", "Tasks completed, since this server started."),
)
HISTOGRAMS = (
    ("lead_time_seconds", "lead_time",
     "Lead time of the stories completed since this server started: created to done."),
    ("cycle_time_seconds", "cycle_time",
     "Cycle time of the stories completed since this server started: first task started to done."),
)
QUEUE_WAIT = ("task_queue_wait_seconds",
              "Time a task waited in its stage's queue: its lease's start minus its enqueue time "
              "(first runs; a re-run after a lost worker is not counted).")


def _by_quantile(stem: str, unit: str = "") -> tuple[tuple[str, str], ...]:
    """The `stats` fields of a figure at p50, p85, p95, by the quantile label of each."""
    levels = (("0.5", 50), ("0.85", 85), ("0.95", 95))
    return tuple((label, f"{stem}_p{level}{unit}") for label, level in levels)


# (metric, stats fields by quantile, help): the server's exact percentiles over the flow window,
# then the forecasts (docs/forecasts.md), as `stats` has them.
QUANTILE_GAUGES = (
    ("flow_lead_time_seconds", _by_quantile("lead_time", "_s"),
     "Lead time percentiles (nearest rank) over the stories completed in the flow window; "
     "absent while none were."),
    ("flow_cycle_time_seconds", _by_quantile("cycle_time", "_s"),
     "Cycle time percentiles (nearest rank) over the stories completed in the flow window; "
     "absent while none were."),
    ("forecast_open_seconds", _by_quantile("forecast_open", "_s"),
     "Seconds until as many more stories are done as are open now, with that confidence "
     "(Monte Carlo from the throughput history); absent without history."),
    ("forecast_hit_rate", _by_quantile("forecast_hit_rate"),
     "Share of the server's own matured backlog forecasts that came true by their time at that "
     "level, since start (well calibrated: about the level); absent until one matured."),
)
# (metric, attribute of each entry of the stats event's `stages`, help): one series per stage.
STAGE_GAUGES = (
    ("stage_workers", "workers", "Workers of the stage's pool, connected."),
    ("stage_workers_busy", "workers_busy", "Busy workers of the stage."),
    ("stage_workers_min", "min_workers", "The stage pool's lower bound."),
    ("stage_workers_max", "max_workers", "The stage pool's upper bound."),
    ("stage_tasks_queued", "tasks_queued", "Tasks waiting in the stage's queue."),
    ("stage_tasks_running", "tasks_running", "Tasks of the stage running."),
    ("stage_tasks_blocked", "tasks_blocked", "Tasks of the stage blocked."),
    ("stage_stories", "stories", "Stories counted in the stage (its WIP)."),
    ("stage_wip_limit", "wip_limit", "The stage's WIP limit; 0: none."),
    ("stage_tasks_ready", "tasks_ready",
     "Of the stage's queued tasks, those in its own queue now (earlier stages done)."),
    ("stage_wait_seconds", "wait_s",
     "How long a task joining the stage's queue now waits for a worker, time scale applied."),
)
OTHER_GAUGES = (
    ("database_up", "1 while the database accepts writes, 0 during an outage (full disk, "
                    "PostgreSQL gone, another server holding it)."),
    ("oldest_open_story_age_seconds",
     "Age of the oldest open story (now minus its creation); 0 with none open."),
    ("build_info", "Always 1; the labels say which storypulse this is."),
    ("flow_efficiency", "Work time over cycle time of the stories completed in the flow window; "
                        "absent while none were."),
    ("stage_bottleneck", "1 for the stage whose tasks wait longest for a worker (the stats "
                         "event's bottleneck), 0 for the others."),
)


def catalogue() -> dict[str, str]:
    """Every metric this collector can show, by its name in the exposition (a counter's with
    `_total`; a histogram's before `_bucket`, `_sum`, `_count`), with its type."""
    kinds = {name: "gauge" for name, _, _ in STATS_GAUGES + QUANTILE_GAUGES + STAGE_GAUGES}
    kinds.update((name, "gauge") for name, _ in OTHER_GAUGES)
    kinds.update((name + "_total", "counter") for name, _, _ in STATS_COUNTERS + EVENT_COUNTERS)
    kinds.update((name, "histogram") for name, _, _ in HISTOGRAMS)
    kinds[QUEUE_WAIT[0]] = "histogram"
    return {PREFIX + name: kind for name, kind in kinds.items()}


class SnapshotCollector(Collector):
    """Metric families from the newest snapshot; nothing before the first one."""

    def __init__(self, current: Callable[[], Snapshot | None]):
        self.current = current

    def collect(self) -> Iterator:
        snapshot = self.current()
        yield _build_info()
        if snapshot is None:
            return
        stats = snapshot.stats
        for name, field, text in STATS_GAUGES:
            yield GaugeMetricFamily(PREFIX + name, text, value=getattr(stats, field))
        yield GaugeMetricFamily(PREFIX + "database_up", dict(OTHER_GAUGES)["database_up"],
                                value=1 if stats.database == "ok" else 0)
        age = snapshot.oldest_open_age_s
        if age is not None or stats.open_stories == 0:
            yield GaugeMetricFamily(PREFIX + "oldest_open_story_age_seconds",
                                    dict(OTHER_GAUGES)["oldest_open_story_age_seconds"],
                                    value=age or 0.0)
        for name, field, text in STATS_COUNTERS:
            yield CounterMetricFamily(PREFIX + name, text, value=getattr(stats, field))
        for name, attribute, text in EVENT_COUNTERS:
            yield CounterMetricFamily(PREFIX + name, text, value=getattr(snapshot, attribute))
        for name, attribute, text in HISTOGRAMS:
            family = HistogramMetricFamily(PREFIX + name, text)
            _add_histogram(family, [], getattr(snapshot, attribute))
            yield family
        family = HistogramMetricFamily(PREFIX + QUEUE_WAIT[0], QUEUE_WAIT[1], labels=["stage"])
        for stage, figures in snapshot.queue_wait:
            _add_histogram(family, [stage], figures)
        yield family
        efficiency = getattr(stats, "flow_efficiency", None)
        if efficiency is not None:
            yield GaugeMetricFamily(PREFIX + "flow_efficiency", dict(OTHER_GAUGES)["flow_efficiency"],
                                    value=efficiency)
        for name, fields, text in QUANTILE_GAUGES:
            family = GaugeMetricFamily(PREFIX + name, text, labels=["quantile"])
            for quantile, field in fields:
                value = getattr(stats, field)
                if value is not None:
                    family.add_metric([quantile], value)
            yield family
        yield from _stage_families(getattr(stats, "stages", None) or (),
                                   getattr(stats, "bottleneck", None))


def _add_histogram(family: HistogramMetricFamily, labels: list[str], figures: HistogramFigures) -> None:
    buckets = [(_bound(b), c) for b, c in zip(figures.bounds, figures.cumulative)]
    buckets.append(("+Inf", figures.cumulative[-1]))
    family.add_metric(labels, buckets, figures.sum)


def _bound(value: float) -> str:
    return repr(float(value))


def _stage_families(stages, bottleneck: str | None) -> Iterator[GaugeMetricFamily]:
    if not stages:
        return
    for name, attribute, text in STAGE_GAUGES:
        family = GaugeMetricFamily(PREFIX + name, text, labels=["stage"])
        for stage in stages:
            value = getattr(stage, attribute, None)
            if value is not None:
                family.add_metric([str(stage.name)], value)
        yield family
    family = GaugeMetricFamily(PREFIX + "stage_bottleneck", dict(OTHER_GAUGES)["stage_bottleneck"],
                               labels=["stage"])
    for stage in stages:
        family.add_metric([str(stage.name)], 1 if stage.name == bottleneck else 0)
    yield family


def _build_info() -> GaugeMetricFamily:
    family = GaugeMetricFamily(PREFIX + "build_info", dict(OTHER_GAUGES)["build_info"],
                               labels=["version", "protocol", "python"])
    family.add_metric([__version__, str(protocol.PROTOCOL_VERSION), platform.python_version()], 1)
    return family


class Exposition:
    """The registry a scrape renders: the snapshot's families and the process's own
    (`process_*`: CPU seconds, memory, open files, start time)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, current: Callable[[], Snapshot | None]):
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(SnapshotCollector(current))
        ProcessCollector(registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
