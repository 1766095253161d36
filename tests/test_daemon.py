"""The server's HTTP side end to end: /metrics agrees with `stats`, /livez and /readyz tell the
truth under load, when the loop is stuck and when the disk is full, and hostile HTTP leaves
the server and its ZeroMQ side as they were."""

from __future__ import annotations

import resource
import socket
import statistics
import threading
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from storypulse import protocol
from httpget import get, status
from support import EventTap, create_pipelined, free_port_block, wait_for
from test_server_faults import Acknowledged, fill, tiny_disk  # noqa: F401  (a fixture)


def metrics(port: int) -> dict[str, float]:
    """{sample name with its labels: value}."""
    reply = get(port, "/metrics")
    assert reply.status == 200, reply
    found = {}
    for family in text_string_to_metric_families(reply.body):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return found


def with_http(factory, **options):
    port = free_port_block(1)
    server = factory(extra=["--http-port", str(port)], **options)
    server.http_port = port
    return server


def test_metrics_agree_with_stats_and_livez_answers_under_load(server_factory):
    server = with_http(server_factory, time_scale=0.01, workers=2).start()
    port = server.http_port
    tap = EventTap(server)
    answers: list[int | None] = []
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            answers.append(status(port, "/livez", timeout=2))
            time.sleep(0.02)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    try:
        with server.client(timeout=10) as client:
            create_pipelined(client, 2000, [{"estimate_ms": 5}] * 4, window=200)
        final = tap.wait_stats(lambda s: s.completed_stories == 2000 and s.open_stories == 0, 60,
                               what="all stories done")
    finally:
        stop.set()
        prober.join(5)
    assert len(answers) >= 10 and set(answers) == {200}, answers

    def caught_up() -> dict | None:
        seen = metrics(port)
        return seen if seen.get("storypulse_stories_completed_total") == 2000 else None

    seen = wait_for(caught_up, 5, what="the snapshot of the last stats interval")
    assert seen["storypulse_open_stories"] == final.open_stories == 0
    assert seen["storypulse_completed_stories"] == final.completed_stories == 2000
    assert seen["storypulse_stories_created_total"] == 2000
    assert seen["storypulse_tasks_completed_total"] == final.tasks_completed == 8000
    assert seen["storypulse_lead_time_seconds_count"] == 2000
    assert seen["storypulse_task_queue_wait_seconds_count{stage=work}"] == 8000
    assert seen["storypulse_database_up"] == 1
    assert seen["storypulse_workers"] == final.workers
    assert seen['storypulse_flow_lead_time_seconds{quantile=0.85}'] == pytest.approx(final.lead_time_p85_s)
    assert get(port, "/readyz").status == 200
    tap.close()
    assert server.stop() == 0


def test_livez_turns_503_while_the_loop_is_stuck_and_back_after(inproc_factory):
    port = free_port_block(1)
    # Short intervals: the loop counts as stuck after 10 x 0.05 s, or 1 s at least.
    server = inproc_factory(http_port=port, stats_interval=0.05, heartbeat=0.05,
                            scale_interval=0.05).start()
    wait_for(lambda: status(port, "/readyz") == 200, 10, what="ready")
    assert get(port, "/livez").body == "ok\n"
    server.pause()  # the loop stops turning: as a loop stuck in a turn would
    start = time.monotonic()
    stuck = wait_for(lambda: (r := get(port, "/livez")).status == 503 and r, 5, what="livez 503")
    assert 0.9 <= time.monotonic() - start < 3
    assert "has not turned for" in stuck.body
    assert get(port, "/readyz").status == 503
    server.start()
    wait_for(lambda: status(port, "/livez") == 200, 5, what="livez 200 again")
    wait_for(lambda: status(port, "/readyz") == 200, 5, what="readyz 200 again")


def test_readyz_says_503_and_why_while_the_disk_is_full_and_200_after(server_factory, tiny_disk,
                                                                      tmp_path):
    server = with_http(server_factory, time_scale=0.01).use_db(tiny_disk / "storypulse.db")
    server.log_path = tmp_path / "server.log"  # not on the disk that fills up
    server.start()
    port = server.http_port
    wait_for(lambda: status(port, "/readyz") == 200, 10, what="ready")
    with server.client(timeout=5) as client:
        made = Acknowledged(client, tasks=3, description="x" * protocol.DESCRIPTION_MAX)
        filler = tiny_disk / "filler"
        fill(filler)
        wait_for(lambda: not made.create(), 30, interval=0, what="a write refused")
        refused = wait_for(lambda: (r := get(port, "/readyz")).status == 503 and r, 5,
                           what="readyz 503")
        assert refused.body.startswith("database: database is full"), refused.body
        assert metrics(port)["storypulse_database_up"] == 0
        assert get(port, "/livez").status == 200  # alive all the same: no restart wanted
        filler.unlink()
        wait_for(made.create, 20, interval=0.05, what="writes accepted again")
    wait_for(lambda: status(port, "/readyz") == 200, 10, what="readyz 200 again")
    assert metrics(port)["storypulse_database_up"] == 1
    assert server.stop() == 0


def test_an_http_port_in_use_stops_the_start_in_one_line(server_factory):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        server = server_factory(extra=["--http-port", str(taken.getsockname()[1])])
        server.start(wait=False)
        assert server.proc.wait(20) == 1
        lines = [line for line in server.log().splitlines() if line.strip()]
        assert any("cannot start" in line and "Address already in use" in line for line in lines), lines
        assert "Traceback" not in server.log()
    finally:
        taken.close()


# -- hostile HTTP against a whole server ------------------------------------------------------
class Pinger(threading.Thread):
    """Pings over ZeroMQ as fast as answers come, recording each round trip."""

    def __init__(self, server):
        super().__init__(daemon=True)
        self.server, self.times, self.failures = server, [], 0
        self.halt = threading.Event()

    def run(self) -> None:
        with self.server.client(timeout=2) as client:
            while not self.halt.is_set():
                start = time.monotonic()
                try:
                    client.ping()
                except Exception:
                    self.failures += 1
                self.times.append(time.monotonic() - start)
                time.sleep(0.005)

    def stop(self) -> list[float]:
        self.halt.set()
        self.join(5)
        return self.times


def attack(port: int, seconds: float) -> dict[str, int]:
    """A thousand connections, slow clients, huge headers and garbage, for `seconds`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    done = {"connections": 0, "slow": 0, "huge": 0, "garbage": 0}
    held: list[socket.socket] = []
    deadline = time.monotonic() + seconds
    try:
        for _ in range(1000):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port))
            held.append(sock)
            done["connections"] += 1
        slow = []
        for _ in range(200):
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=1)
                sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                slow.append(sock)
                done["slow"] += 1
            except OSError:
                pass
        held += slow
        payloads = [b"GET /metrics HTTP/1.1\r\nX-Big: " + b"A" * 65536 + b"\r\n\r\n",
                    bytes(range(256)) * 40, b"\x00" * 10000, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
                    b"GET /" + b"%" * 9000 + b" HTTP/1.1\r\n\r\n"]
        i = 0
        while time.monotonic() < deadline:
            for sock in slow[:50]:  # trickle a byte to each slow client now and then
                try:
                    sock.send(b"X")
                except OSError:
                    pass
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    sock.sendall(payloads[i % len(payloads)])
                    done["huge" if i % len(payloads) == 0 else "garbage"] += 1
            except OSError:
                pass
            i += 1
    finally:
        for sock in held:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return done


def test_hostile_http_leaves_the_server_and_its_zeromq_side_unaffected(server_factory):
    server = with_http(server_factory, time_scale=0.01).start()
    port = server.http_port
    tap = EventTap(server)

    quiet = Pinger(server)
    quiet.start()
    time.sleep(2)
    calm = quiet.stop()

    pinger = Pinger(server)
    pinger.start()
    tap.pump(0.1)
    before = len(tap.stats())
    done = attack(port, 4.0)
    during = pinger.stop()
    tap.pump(0.2)
    stats_seen = tap.stats()[before:]

    assert done["connections"] == 1000 and done["garbage"] > 10, done
    assert pinger.failures == 0 and quiet.failures == 0
    # ZeroMQ requests answered as quickly as without the attack, within scheduling noise
    p99_calm = statistics.quantiles(calm, n=100)[98]
    p99_during = statistics.quantiles(during, n=100)[98]
    print(f"\nping p50 {statistics.median(calm) * 1e3:.2f} -> {statistics.median(during) * 1e3:.2f} ms, "
          f"p99 {p99_calm * 1e3:.2f} -> {p99_during * 1e3:.2f} ms, max {max(during) * 1e3:.1f} ms; {done}")
    assert p99_during < max(0.05, 5 * p99_calm), (p99_calm, p99_during)
    assert max(during) < 0.5
    # stats kept their cadence (0.1 s in these tests)
    gaps = [b.ts - a.ts for a, b in zip(stats_seen, stats_seen[1:])]
    assert len(stats_seen) >= 30 and max(gaps) < 0.5, max(gaps)
    # and the work goes on: stories created during the attack's aftermath complete
    with server.client() as client:
        ids = [client.create_story(f"after {i}", [{"estimate_ms": 10}]).story_id for i in range(20)]
    tap.wait_stats(lambda s: s.completed_stories == 20, 20, what="the stories done")
    assert sorted(ids) == list(range(1, 21))
    assert get(port, "/metrics").status == 200 and get(port, "/readyz").status == 200
    assert server.alive() and "Traceback" not in server.log()
    tap.close()
    assert server.stop() == 0
