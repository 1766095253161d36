"""A real Prometheus (Debian's `prometheus` package) scrapes the server every second; its HTTP
API then says what `stats` says: the open and completed stories, and a lead-time p85 from the
histogram within a bucket of the server's exact one."""

from __future__ import annotations

import bisect
import json
import os
import random
import shutil
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from storypulse.server.metrics import BUCKETS_S
from support import EventTap, free_port_block, wait_for

PROMETHEUS = shutil.which("prometheus") or shutil.which("prometheus", path="/usr/bin:/usr/sbin")
if PROMETHEUS is None and os.environ.get("STORYPULSE_CI"):
    raise RuntimeError("CI must run this test: .ci/run installs Debian's prometheus package")
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None,
    reason="no `prometheus` binary (Debian: apt-get install prometheus; CI installs it)")


class Prometheus:
    def __init__(self, tmp_path, target_port: int):
        self.port = free_port_block(1)
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: storypulse\n    scrape_interval: 1s\n"
            f"    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n")
        self.log_path = tmp_path / "prometheus.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(self._ready, 60, interval=0.2, what="Prometheus ready")

    def _ready(self) -> bool:
        assert self.proc.poll() is None, self.log_path.read_text()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def query(self, promql: str) -> float | None:
        """The value of a query that gives one series; None while it gives none."""
        url = (f"http://127.0.0.1:{self.port}/api/v1/query?"
               + urllib.parse.urlencode({"query": promql}))
        with urllib.request.urlopen(url, timeout=5) as reply:
            answer = json.load(reply)
        assert answer["status"] == "success", answer
        result = answer["data"]["result"]
        if not result:
            return None
        assert len(result) == 1, result
        return float(result[0]["value"][1])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def bucket(value: float) -> int:
    return bisect.bisect_left(BUCKETS_S, value)


def test_prometheus_scrapes_what_stats_says(server_factory, tmp_path):
    http_port = free_port_block(1)
    server = server_factory(time_scale=0.05, workers=4,
                            extra=["--http-port", str(http_port), "--flow-window", "600"]).start()
    prometheus = Prometheus(tmp_path, http_port)
    try:
        wait_for(lambda: prometheus.query('up{job="storypulse"}') == 1, 30, interval=0.5,
                 what="the first scrape")
        tap = EventTap(server)
        rng = random.Random(18)
        stories = 150
        with server.client(timeout=10) as client:
            for i in range(stories):  # lead times from tens of ms to seconds, over several buckets
                client.create_story(f"s{i}", [{"estimate_ms": rng.choice([50, 200, 800, 3000])}
                                              for _ in range(rng.randint(1, 4))])
            # a few left open, so that open_stories is not just 0
            for i in range(5):
                client.create_story(f"long {i}", [{"estimate_ms": 600_000}])
        final = tap.wait_stats(lambda s: s.completed_stories == stories, 120,
                               what="every short story done")
        tap.close()

        def scraped() -> float | None:
            done = prometheus.query("storypulse_stories_completed_total")
            return done if done == stories else None

        wait_for(scraped, 30, interval=0.5, what="Prometheus to scrape the last completion")
        with server.client() as client:
            stats = client.snapshot().stats
        assert stats.completed_stories == stories and stats.open_stories == final.open_stories == 5
        assert prometheus.query("storypulse_open_stories") == stats.open_stories
        assert prometheus.query("storypulse_stories_completed_total") == stats.completed_stories
        assert prometheus.query("storypulse_completed_stories") == stats.completed_stories
        assert prometheus.query("storypulse_stories_created_total") == stories + 5
        assert prometheus.query("storypulse_database_up") == 1

        estimate = prometheus.query("histogram_quantile(0.85, storypulse_lead_time_seconds_bucket)")
        exact = stats.lead_time_p85_s
        print(f"\nlead time p85: server {exact:.3f} s, Prometheus {estimate:.3f} s "
              f"(buckets {bucket(exact)} and {bucket(estimate)})")
        assert abs(bucket(estimate) - bucket(exact)) <= 1, (estimate, exact)
        assert prometheus.query('storypulse_flow_lead_time_seconds{quantile="0.85"}') == \
            pytest.approx(exact)
        rate = prometheus.query("rate(storypulse_task_queue_wait_seconds_count[1m])")
        assert rate is not None and rate > 0
    finally:
        prometheus.stop()
    assert server.stop() == 0
