"""systemd's notify protocol: a fake NOTIFY_SOCKET (a unix datagram socket the test binds) gets
READY=1 once the server answers, STATUS lines, WATCHDOG=1 at half WATCHDOG_USEC while the loop
turns (and none while it is stuck), STOPPING=1 on SIGTERM; nothing without NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket
import time
import uuid

import pytest

from storypulse.server.notify import Notifier, address, watchdog_period
from support import wait_for


class FakeSystemd:
    """The receiving end of NOTIFY_SOCKET: a path in `folder`, or an abstract name."""

    def __init__(self, folder=None):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if folder is None:
            self.where = f"@storypulse-test-{uuid.uuid4().hex}"
        else:
            self.where = str(folder / "notify.sock")
        self.sock.bind(address(self.where))
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, dict[str, str]]] = []

    def pump(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except (socket.timeout, BlockingIOError):
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines())
            self.messages.append((time.monotonic(), fields))

    def seen(self, key: str) -> list[tuple[float, dict[str, str]]]:
        self.pump()
        return [(at, fields) for at, fields in self.messages if key in fields]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(params=["path", "abstract"])
def systemd(request, tmp_path):
    fake = FakeSystemd(tmp_path if request.param == "path" else None)
    yield fake
    fake.close()


def test_ready_status_watchdog_and_stopping_from_a_real_server(server_factory, systemd, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", systemd.where)
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # 0.4 s: a kick every 0.2 s
    server = server_factory(time_scale=0.01).start()
    ready = wait_for(lambda: systemd.seen("READY=1") or systemd.seen("READY"), 5, what="READY=1")
    fields = ready[0][1]
    assert fields["READY"] == "1" and fields["MAINPID"] == str(server.proc.pid)
    assert fields["STATUS"].startswith("serving: 0 open stories") and "\n" not in fields["STATUS"]

    wait_for(lambda: len(systemd.seen("WATCHDOG")) >= 10, 10, what="ten WATCHDOG=1")
    kicks = [at for at, _ in systemd.seen("WATCHDOG")]
    gaps = [b - a for a, b in zip(kicks, kicks[1:])]
    assert all(f["WATCHDOG"] == "1" for _, f in systemd.seen("WATCHDOG"))
    assert 0.15 <= sorted(gaps)[len(gaps) // 2] <= 0.3, gaps  # half the period, give or take a turn
    assert max(gaps) < 0.4, gaps  # never as late as the period itself
    assert ready[0][0] <= kicks[0]  # no kick before READY

    wait_for(lambda: [f for _, f in systemd.seen("STATUS") if "workers busy" in f["STATUS"]], 10,
             what="a STATUS line with the figures")
    assert server.stop() == 0
    stopping = wait_for(lambda: systemd.seen("STOPPING"), 5, what="STOPPING=1")
    assert stopping[0][1]["STOPPING"] == "1"


def test_no_watchdog_kick_while_the_loop_is_stuck(inproc_factory, systemd, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", systemd.where)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    from storypulse.server.daemon import Daemon

    server = inproc_factory(stats_interval=0.05, heartbeat=0.05, scale_interval=0.05)
    server.server.daemon = daemon = Daemon(server.config, notifier=Notifier.from_environ())
    server.start()
    wait_for(lambda: len(systemd.seen("WATCHDOG")) >= 3, 5, what="kicks while turning")
    server.pause()
    time.sleep(0.05)
    systemd.pump()
    before = len(systemd.seen("WATCHDOG"))
    time.sleep(0.6)  # three periods
    assert len(systemd.seen("WATCHDOG")) == before, "a kick without a turn"
    server.start()
    wait_for(lambda: len(systemd.seen("WATCHDOG")) > before, 5, what="kicks again")
    daemon.close()


def test_nothing_is_sent_without_notify_socket(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert Notifier.from_environ() is None
    assert Notifier.from_environ({"NOTIFY_SOCKET": ""}) is None
    assert Notifier.from_environ({"NOTIFY_SOCKET": "relative/path"}) is None


def test_the_watchdog_period_is_for_this_process_only():
    pid = os.getpid()
    assert watchdog_period({"WATCHDOG_USEC": "30000000"}, pid) == 30.0
    assert watchdog_period({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(pid)}, pid) == 30.0
    assert watchdog_period({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, pid) is None
    assert watchdog_period({"WATCHDOG_USEC": "0"}, pid) is None
    assert watchdog_period({"WATCHDOG_USEC": "soon"}, pid) is None
    assert watchdog_period({}, pid) is None


def test_a_status_is_one_short_line_and_a_missing_systemd_costs_nothing(tmp_path):
    notifier = Notifier(str(tmp_path / "nobody-listens.sock"), watchdog_s=1.0)
    assert notifier.send("READY=1") is False  # no error raised: the server goes on
    fake = FakeSystemd(tmp_path)
    notifier = Notifier(fake.where)
    notifier.status("line one\nline two " + "x" * 500)
    (_, fields), = fake.seen("STATUS")
    assert "\n" not in fields["STATUS"] and len(fields["STATUS"]) <= 200
    assert fields["STATUS"].startswith("line one line two")
    fake.close()
