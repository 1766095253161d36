"""Real parts for tests: a real server process on free ports with a temporary database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import zmq

from storypulse import protocol
from storypulse.client import Client, ServerUnavailable
from storypulse.endpoints import Endpoints
from ports import bind_server_sockets, free_port_block  # noqa: F401  (tools/ports.py; tests use them from here)

T = TypeVar("T")
REPO = Path(__file__).resolve().parent.parent
HERE = REPO  # this checkout; REPO may be pointed at another one (a benchmark's baseline)


def server_command(tree: Path) -> tuple[list[str], dict[str, str] | None]:
    """The command (and environment) that starts the server of the source tree `tree`."""
    if tree == HERE:
        return [sys.executable, "-m", "storypulse.server"], None
    if "package-dir" not in (tree / "pyproject.toml").read_text():
        # Before the `storypulse` namespace: its folders import as top-level packages from the cwd.
        return [sys.executable, "-m", "server"], None
    # Another checkout with the namespace: the editable install points at this one, so
    # install that tree (not editable) into a folder of its own and put it first.
    stage = tree / "build" / "stage"
    if not (stage / "storypulse").is_dir():
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(stage),
                        str(tree)], check=True, cwd=tree)
    return [sys.executable, "-m", "storypulse.server"], {**os.environ, "PYTHONPATH": str(stage)}


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


class ServerProcess:
    """`storypulse server` in a subprocess; restartable on the same database and ports."""

    def __init__(self, db: Path, *, workers: int = 2, max_workers: int | None = None,
                 time_scale: float = 1.0, stats_interval: float = 0.1, extra: list[str] | None = None):
        self.db = db
        self.port = free_port_block()
        self.endpoints = Endpoints("127.0.0.1", self.port)
        # A workflow (--stages, --scenario) has its pool bounds per stage.
        staged = any(arg in ("--stages", "--scenario") for arg in extra or [])
        bounds = [] if staged else ["--min-workers", str(workers),
                                    "--max-workers", str(max_workers or workers)]
        self.args = [
            "--db", str(db), "--port", str(self.port), *bounds,
            "--time-scale", str(time_scale), "--stats-interval", str(stats_interval),
            "--log-level", "info", *(extra or []),
        ]
        self.proc: subprocess.Popen | None = None
        self.log_path = db.with_suffix(".log")

    def use_db(self, spec: str | Path) -> ServerProcess:
        """Another database (a path or URL) for the next start."""
        self.args[self.args.index("--db") + 1] = str(spec)
        if isinstance(spec, Path):
            self.db = spec
        return self

    def start(self, wait: bool = True) -> ServerProcess:
        log = open(self.log_path, "ab")
        command, env = server_command(REPO)
        self.proc = subprocess.Popen(
            [*command, *self.args], env=env,
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

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

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


def session_gone(pgid: int) -> bool:
    """No process is left in the session of `pgid` (started as the leader of a new one)."""
    try:
        os.killpg(pgid, 0)
        return False
    except ProcessLookupError:
        return True


def end_session(proc: subprocess.Popen) -> None:
    """SIGKILL whatever is left of a process started with start_new_session, and its children."""
    if proc.poll() is None or not session_gone(proc.pid):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)


def create_pipelined(client: Client, stories: int, tasks: list[dict], window: int,
                     each_reply: Callable[[], object] = lambda: None) -> None:
    """Send `stories` create_story requests with at most `window` unanswered; `each_reply` after each reply."""
    sent = answered = 0
    while answered < stories:
        while sent < stories and sent - answered < window:
            client.send("create_story", name=f"bench {sent}", tasks=tasks)
            sent += 1
        client.receive()
        answered += 1
        each_reply()


def empty_postgres(url: str) -> str:
    """Drop the server's tables from a test PostgreSQL database; returns the URL."""
    from playhouse.db_url import connect

    db = connect(url)
    db.execute_sql("DROP TABLE IF EXISTS task, story, counter, tally, task_flow, story_flow, stage_tally")
    db.close()
    return url


def subscribe_all(events_endpoint: str) -> zmq.Socket:
    """A SUB socket on a server's events: every topic, none dropped here (RCVHWM 0), no linger.
    PUB drops what it sends before the subscription has reached it: wait for a first event."""
    sock = zmq.Context.instance().socket(zmq.SUB)
    sock.linger = 0
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect(events_endpoint)
    return sock


def arrived_events(sock: zmq.Socket, timeout: float) -> Iterator[tuple[bytes, object]]:
    """(topic, decoded event) for every message waiting on `sock`; waits at most `timeout`
    seconds for the first, none for the rest."""
    waiting = timeout * 1000
    while sock.poll(waiting):
        topic, payload = sock.recv_multipart()
        waiting = 0
        yield topic, protocol.decode_event(topic, payload)


class EventTap:
    """A SUB socket on the server's events, recording everything in arrival order."""

    def __init__(self, server: ServerProcess, wait_joined: bool = True):
        self.sock = subscribe_all(server.endpoints.events)
        self.messages: list[tuple[bytes, object]] = []
        if wait_joined:  # PUB drops what it sends before the subscription arrives
            self.wait_stats(lambda stats: True, 10, what="the first stats event")

    def pump(self, timeout: float = 0.05) -> int:
        before = len(self.messages)
        self.messages.extend(arrived_events(self.sock, timeout))
        return len(self.messages) - before

    def stats(self) -> list[protocol.Stats]:
        return [m for t, m in self.messages if t == protocol.TOPIC_STATS]

    def last_stats(self) -> protocol.Stats | None:
        found = self.stats()
        return found[-1] if found else None

    def pool_events(self) -> list[protocol.PoolEvent]:
        return [m for t, m in self.messages if t == protocol.TOPIC_POOL]

    def story_events(self, event: str | None = None) -> list[protocol.StoryEvent]:
        return [m for t, m in self.messages
                if t == protocol.TOPIC_STORY and (event is None or m.event == event)]

    def wait_stats(self, predicate, timeout: float = 20, what: str = "") -> protocol.Stats:
        def check():
            self.pump()
            last = self.last_stats()
            return last if last is not None and predicate(last) else None
        return wait_for(check, timeout, what=what or "a stats event that matches")

    def close(self) -> None:
        self.sock.close(linger=0)


class StandInServer(threading.Thread):
    """Plays a broken (or newer) server on real sockets, for testing what clients put up with.

    A ROUTER answers each request with the frames `answer(request)` returns, one
    message each; a PUB sends `cycle()` (a list of multipart messages) over and
    over until stopped, so a subscriber that joins late still sees all of it.
    """

    def __init__(self, answer: Callable[[protocol.Request], list[bytes]],
                 cycle: Callable[[], list[list[bytes]]] = lambda: []):
        super().__init__(daemon=True)
        self.endpoints = Endpoints("127.0.0.1", free_port_block())
        self.answer, self.cycle = answer, cycle
        self.requests: list[protocol.Request] = []
        self.halt = threading.Event()
        self.router, self.pub = bind_server_sockets(self.endpoints)

    def run(self) -> None:
        while not self.halt.is_set():
            while self.router.poll(0):
                identity, frame = self.router.recv_multipart()
                request = protocol.decode_request(frame)
                self.requests.append(request)
                for payload in self.answer(request):
                    self.router.send_multipart([identity, payload])
            for message in self.cycle():
                self.pub.send_multipart(message)
            self.halt.wait(0.01)
        self.router.close(0)
        self.pub.close(0)

    def __enter__(self) -> StandInServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.halt.set()
        self.join(5)
