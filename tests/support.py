"""Real parts for tests: a real server process on free ports with a temporary database."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, TypeVar

from common.client import Client, ServerUnavailable
from common.endpoints import Endpoints

T = TypeVar("T")
REPO = Path(__file__).resolve().parent.parent


def wait_for(condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.02, what: str = "") -> T:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(interval)


def free_port_block(count: int = 3) -> int:
    """A base port P such that P..P+count-1 are all free on 127.0.0.1."""
    for _ in range(200):
        base = random.randrange(20000, 60000)
        sockets = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                s.bind(("127.0.0.1", port))
                sockets.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free block of ports")


class ServerProcess:
    """`storypulse server` in a subprocess; restartable on the same database and ports."""

    def __init__(self, db: Path, *, workers: int = 2, max_workers: int | None = None,
                 time_scale: float = 1.0, stats_interval: float = 0.1, extra: list[str] | None = None):
        self.db = db
        self.port = free_port_block()
        self.endpoints = Endpoints("127.0.0.1", self.port)
        self.args = [
            "--db", str(db), "--port", str(self.port),
            "--min-workers", str(workers), "--max-workers", str(max_workers or workers),
            "--time-scale", str(time_scale), "--stats-interval", str(stats_interval),
            "--log-level", "info", *(extra or []),
        ]
        self.proc: subprocess.Popen | None = None
        self.log_path = db.with_suffix(".log")

    def start(self, wait: bool = True) -> ServerProcess:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server", *self.args],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        def answers() -> bool:
            assert self.proc and self.proc.poll() is None, f"server exited:\n{self.log()}"
            try:
                with self.client(timeout=0.5) as c:
                    c.ping()
                return True
            except ServerUnavailable:
                return False
        wait_for(answers, timeout, what="the server to answer ping")

    def client(self, timeout: float = 5.0) -> Client:
        return Client(self.endpoints, timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill9(self) -> None:
        """SIGKILL the server and every process of its session (its workers too)."""
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
                raise AssertionError(f"server did not stop within {timeout} s:\n{self.log()}")
        return self.proc.returncode
