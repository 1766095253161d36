"""server/metrics.py and server/exposition.py: the figures the loop keeps for Prometheus, and
what a scrape shows of them; the metric list in docs/install.md and the Grafana dashboard
agree with what exists."""

from __future__ import annotations

import json
import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from storypulse import protocol
from storypulse.server.exposition import PREFIX, Exposition, catalogue
from storypulse.server.metrics import BUCKETS_S, Histogram, Meters, Snapshot
from storypulse.server.state import WorkState
from support import REPO


def stats(**fields) -> protocol.Stats:
    base = dict(seq=7, ts=1000.0, stories_produced_per_s=1.0, stories_completed_per_s=0.5,
                open_stories=4, completed_stories=9, tasks_produced_per_s=2.0,
                tasks_completed_per_s=1.0, tasks_queued=6, tasks_running=2, tasks_completed=30,
                queued_work_s=1.5, workers=2, workers_busy=1, workers_target=2, min_workers=1,
                max_workers=4, rate_window_s=5.0, stories_in_progress=3, lead_time_p50_s=0.2,
                lead_time_p85_s=0.4, lead_time_p95_s=0.5, cycle_time_p50_s=0.1,
                cycle_time_p85_s=0.3, cycle_time_p95_s=None, flow_window_s=60.0, wip_limit=5,
                internal_errors=1, dropped_messages=2)
    return protocol.Stats(**{**base, **fields})


def scrape(snapshot) -> dict[str, dict[tuple, float]]:
    """{sample name: {sorted labels: value}} of what /metrics shows."""
    text = Exposition(lambda: snapshot).render().decode()
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


# -- the loop's figures ---------------------------------------------------------------------
def test_a_value_on_a_bound_belongs_to_that_bucket_as_prometheus_le_says():
    histogram = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 1.0, 7.0):
        histogram.observe(value)
    histogram.observe(0.2, count=3)  # a lease's tasks of one story at once
    figures = histogram.figures()
    assert figures.cumulative == (2, 2 + 4 + 1, 2 + 4 + 1 + 1)  # le 0.1, le 1, +Inf
    assert figures.count == 8
    assert figures.sum == pytest.approx(0.05 + 0.1 + 0.5 + 1.0 + 7.0 + 0.6)


def test_the_story_events_of_a_commit_are_counted_and_their_times_observed():
    meters = Meters()
    meters.published([("created", 1), ("created", 2), ("completed", 1, 0.3, 0.2),
                      ("deleted", 2), ("completed", 3, 12.0, 11.0)])
    assert (meters.stories_created, meters.stories_completed, meters.stories_deleted) == (2, 2, 1)
    assert meters.lead_time.figures().count == 2
    assert meters.lead_time.figures().sum == pytest.approx(12.3)
    assert meters.cycle_time.figures().sum == pytest.approx(11.2)


def test_queue_wait_is_each_first_run_of_a_task_from_its_story_creation_to_its_lease():
    state = WorkState()
    state.add_story(1, 1, [10, 10, 10], created_at=100.0)
    state.add_story(2, 4, [10], created_at=101.0)
    meters = Meters()
    lease = state.take_lease(1.0, 256, 10.0, wall=103.0)  # all four tiny tasks, two stories
    assert [task_id for task_id, _ in lease] == [1, 2, 3, 4]
    meters.leased(state, lease, 103.0)
    waits = meters.queue_wait["work"].figures()
    assert waits.count == 4
    assert waits.sum == pytest.approx(3 * 3.0 + 2.0)

    state.requeue_front([1])  # its worker was lost: the re-run is not counted
    again = state.take_lease(1.0, 256, 10.0, wall=110.0)
    meters.leased(state, again, 110.0)
    assert meters.queue_wait["work"].figures().count == 4


def test_a_snapshot_is_a_copy_the_loop_cannot_change_afterwards():
    state = WorkState()
    state.add_story(1, 1, [10], created_at=990.0)
    state.add_story(2, 2, [10], created_at=995.0)
    meters = Meters()
    published = stats(ts=1000.0)
    snapshot = Snapshot.take(published, meters, state, started_at=900.0)
    published.open_stories = 99
    meters.stories_created += 5
    meters.lead_time.observe(1.0)
    assert snapshot.stats.open_stories == 4
    assert snapshot.stories_created == 0 and snapshot.lead_time.count == 0
    assert snapshot.oldest_open_age_s == pytest.approx(10.0)


# -- the exposition ------------------------------------------------------------------------
def test_a_scrape_shows_the_stats_the_counters_and_the_histograms():
    meters = Meters()
    meters.published([("created", 1), ("completed", 1, 0.3, 0.2)])
    meters.tasks_completed = 3
    meters.queue_wait["work"].observe(0.004, 3)
    snapshot = Snapshot.take(stats(database="unavailable", database_error="database is full: x"),
                             meters, WorkState(), started_at=900.0)
    seen = scrape(snapshot)

    def value(name: str, **labels) -> float:
        return seen[PREFIX + name][tuple(sorted(labels.items()))]

    assert value("open_stories") == 4 and value("completed_stories") == 9
    assert value("stories_in_progress") == 3 and value("tasks_queued") == 6
    assert value("tasks_running") == 2 and value("workers") == 2 and value("workers_busy") == 1
    assert value("wip_limit") == 5 and value("database_up") == 0
    # 4 open, none of them in memory (a backlog only on disk): the age is not known, not 0
    assert PREFIX + "oldest_open_story_age_seconds" not in seen
    assert value("stories_created_total") == 1 and value("stories_completed_total") == 1
    assert value("stories_deleted_total") == 0 and value("tasks_completed_total") == 3
    assert value("internal_errors_total") == 1 and value("dropped_messages_total") == 2
    assert value("lead_time_seconds_count") == 1
    assert value("lead_time_seconds_bucket", le="0.25") == 0
    assert value("lead_time_seconds_bucket", le="0.5") == 1
    assert value("task_queue_wait_seconds_bucket", le="0.005", stage="work") == 3
    assert value("task_queue_wait_seconds_bucket", le="+Inf", stage="work") == 3
    assert value("flow_lead_time_seconds", quantile="0.85") == 0.4
    assert (("quantile", "0.95"),) not in seen[PREFIX + "flow_cycle_time_seconds"]  # null: absent
    build = seen[PREFIX + "build_info"]
    assert list(build.values()) == [1.0] and dict(next(iter(build)))["version"]
    assert "process_cpu_seconds_total" in seen  # the process's own figures come along


def test_the_forecast_figures_are_gauges_by_level_and_the_scored_count_a_counter():
    """The backlog forecast and the server's own hit rates, as `stats` carries them; nulls
    (no history yet, nothing matured yet) are absent, not zero."""
    forecast = stats(forecast_open_p50_s=12.5, forecast_open_p85_s=15.0, forecast_open_p95_s=17.25,
                     forecast_hit_rate_p50=0.5, forecast_hit_rate_p85=0.875, forecast_hit_rate_p95=None,
                     forecast_scored=40)
    seen = scrape(Snapshot.take(forecast, Meters(), WorkState(), started_at=0.0))
    assert seen[PREFIX + "forecast_open_seconds"] == {
        (("quantile", "0.5"),): 12.5, (("quantile", "0.85"),): 15.0, (("quantile", "0.95"),): 17.25}
    assert seen[PREFIX + "forecast_hit_rate"] == {(("quantile", "0.5"),): 0.5, (("quantile", "0.85"),): 0.875}
    assert seen[PREFIX + "forecast_scored_total"] == {(): 40}
    early = scrape(Snapshot.take(stats(), Meters(), WorkState(), started_at=0.0))
    assert PREFIX + "forecast_open_seconds" not in early and PREFIX + "forecast_hit_rate" not in early
    assert early[PREFIX + "forecast_scored_total"] == {(): 0}


def test_every_bucket_bound_is_shown_and_counts_never_fall():
    meters = Meters()
    for value in (0.0005, 0.3, 3.0, 30.0, 3e5):
        meters.published([("completed", 1, value, value)])
    seen = scrape(Snapshot.take(stats(), meters, WorkState(), started_at=0.0))
    buckets = seen[PREFIX + "lead_time_seconds_bucket"]
    bounds = sorted(float(dict(labels)["le"]) for labels in buckets)
    assert bounds == sorted([*BUCKETS_S, float("inf")])
    counts = [buckets[(("le", label),)] for label in
              [repr(float(b)) for b in BUCKETS_S] + ["+Inf"]]
    assert counts == sorted(counts) and counts[-1] == 5


def test_before_the_first_snapshot_only_the_build_info_is_shown():
    seen = scrape(None)
    assert PREFIX + "build_info" in seen
    assert not [name for name in seen if name.startswith(PREFIX) and name != PREFIX + "build_info"]


def test_per_stage_figures_carry_a_stage_label_once_the_stats_event_has_stages():
    stages = [protocol.StageStats(name="build", workers=3, workers_busy=2, min_workers=1, max_workers=6,
                                  tasks_queued=7, tasks_running=2, tasks_blocked=1, stories=4,
                                  wip_limit=3, tasks_ready=5, wait_s=1.5),
              protocol.StageStats(name="test", workers=1, workers_busy=1, min_workers=1, max_workers=2,
                                  tasks_queued=0, tasks_running=1, tasks_blocked=0, stories=2,
                                  wip_limit=0)]
    staged = stats(stages=stages, bottleneck="build", flow_efficiency=0.25, tasks_blocked=1)
    seen = scrape(Snapshot.take(staged, Meters(), WorkState(), started_at=0.0))
    assert seen[PREFIX + "stage_tasks_queued"] == {(("stage", "build"),): 7, (("stage", "test"),): 0}
    assert seen[PREFIX + "stage_wip_limit"][(("stage", "build"),)] == 3
    assert seen[PREFIX + "stage_wait_seconds"][(("stage", "build"),)] == 1.5
    assert seen[PREFIX + "stage_bottleneck"] == {(("stage", "build"),): 1, (("stage", "test"),): 0}
    assert seen[PREFIX + "flow_efficiency"][()] == 0.25 and seen[PREFIX + "tasks_blocked"][()] == 1
    plain = scrape(Snapshot.take(stats(), Meters(), WorkState(), started_at=0.0))
    assert PREFIX + "stage_workers" not in plain  # no stages: no per-stage series
    assert PREFIX + "flow_efficiency" not in plain  # null: absent


def test_every_metric_listed_is_shown_and_none_other():
    meters = Meters()
    meters.published([("completed", 1, 1.0, 1.0)])
    text = Exposition(lambda: Snapshot.take(stats(open_stories=0), meters, WorkState(), 0.0)).render()
    shown = {family.name + ("_total" if family.type == "counter" else ""): family.type
             for family in text_string_to_metric_families(text.decode())
             if family.name.startswith(PREFIX)}
    listed = {name: kind for name, kind in catalogue().items()
              if "_stage_" not in name and not name.endswith("flow_efficiency")}  # absent: null
    assert shown == listed


# -- docs and dashboard --------------------------------------------------------------------
def documented_metrics() -> dict[str, str]:
    """`metric` -> type from the table in docs/install.md."""
    text = (REPO / "docs" / "install.md").read_text()
    rows = re.findall(r"^\| `(storypulse_[a-z_]+)(?:\{[^`]*\})?` \| (counter|gauge|histogram) \|",
                      text, re.MULTILINE)
    return dict(rows)


def test_the_install_guide_lists_every_metric_with_its_type():
    assert documented_metrics() == catalogue()


def test_the_grafana_dashboard_uses_only_metrics_that_exist():
    dashboard = json.loads((REPO / "packaging" / "grafana" / "storypulse.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert len(exprs) >= 10
    exposed = set(catalogue())
    exposed |= {name + suffix for name, kind in catalogue().items() if kind == "histogram"
                for suffix in ("_bucket", "_sum", "_count")}
    exposed |= {"process_cpu_seconds_total", "process_resident_memory_bytes",
                "process_open_fds", "process_start_time_seconds"}
    used = {name for expr in exprs for name in re.findall(r"\b(?:storypulse|process)_[a-z_]+\b", expr)}
    unknown = sorted(used - exposed)
    assert not unknown, f"the dashboard queries metrics that do not exist: {unknown}"
    # and it shows the figures the product exists for
    for needed in ("storypulse_open_stories", "storypulse_stories_completed_total",
                   "storypulse_stories_created_total", "storypulse_lead_time_seconds_bucket",
                   "storypulse_task_queue_wait_seconds_bucket", "storypulse_database_up"):
        assert needed in used, needed
