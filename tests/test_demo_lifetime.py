"""The demo never leaves a server behind, and without a display the app commands say so first.

The real `storypulse demo` runs offscreen with a temporary database on free ports; it is killed
with SIGKILL, so none of its own clean-up runs: the server it started must notice and stop,
workers and all.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from storypulse.endpoints import Endpoints
from storypulse.desktop.demo import server_answers
from support import REPO, free_port_block, wait_for


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state, ppid, pgrp, session, ...)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text.rpartition(")")[2].split()


def running(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")  # a zombie has exited


def session(sid: int) -> list[int]:
    """Live processes of the session `sid` (the server runs in a session of its own)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and int(fields[3]) == sid and fields[0] not in ("Z", "X"):
                found.append(int(entry.name))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_demos_server_stops_when_the_app_is_killed(tmp_path):
    port = free_port_block()
    endpoints = Endpoints("127.0.0.1", port)
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_STATE_HOME": str(tmp_path / "state")}
    err_path = tmp_path / "demo.err"
    with open(err_path, "wb") as err:
        demo = subprocess.Popen(
            [sys.executable, "-m", "storypulse", "demo", "--port", str(port), "--db", str(tmp_path / "demo.db"),
             "--settings", str(tmp_path / "demo.ini"), "--rate", "5", "--estimate-ms", "0-50"],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=err, env=env,
        )
    try:
        started = wait_for(lambda: re.search(r"started a server \(pid (\d+)\).*\(log: (.*)\)",
                                             err_path.read_text(errors="replace")),
                           60, what="the demo to start its server")
        pid, log_path = int(started.group(1)), Path(started.group(2))
        wait_for(lambda: server_answers(endpoints), 30, what="the demo's server to answer")
        # The server and its workers (and their forkserver): all in the server's own session.
        wait_for(lambda: len(session(pid)) >= 3, 30, what="the server's workers to start")
        assert running(demo.pid)  # the app is still up, and the server with it
    except BaseException:
        demo.kill()
        raise
    demo.send_signal(signal.SIGKILL)
    demo.wait(10)
    try:
        wait_for(lambda: not running(pid), 30, what="the server to stop after the app was killed")
        wait_for(lambda: not session(pid), 15, what="the server's workers to stop")
    except AssertionError:
        for left in session(pid):
            os.kill(left, signal.SIGKILL)
        raise
    assert not server_answers(endpoints)
    log = log_path.read_text(errors="replace")
    assert "the process that started the server is gone: stopping" in log, log
    assert "stopped:" in log  # its own clean shutdown, not a kill


def test_the_server_refuses_a_parent_pipe_that_is_not_open():
    done = subprocess.run([sys.executable, "-m", "storypulse.server", "--parent-pipe", "987"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--parent-pipe 987: not an open file descriptor" in done.stderr


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="those always have a display")
@pytest.mark.parametrize("command", ["desktop", "demo"])
def test_without_a_display_the_app_commands_say_so_in_one_line(tmp_path, command):
    port = free_port_block()
    db = tmp_path / "demo.db"
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    extra = ["--port", str(port), "--db", str(db)] if command == "demo" else []
    done = subprocess.run([sys.executable, "-m", "storypulse", command, *extra,
                           "--settings", str(tmp_path / "app.ini")],
                          cwd=REPO, capture_output=True, text=True, timeout=60, env=env)
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    assert len(lines) == 1, done.stderr
    assert "no display" in lines[0] and "`storypulse server`" in lines[0] and "`storypulse watch`" in lines[0]
    # The demo said so before starting anything.
    assert not db.exists() and not (tmp_path / "state").exists()
    assert not server_answers(Endpoints("127.0.0.1", port))


@pytest.mark.parametrize("options, words", [
    (["--scenario", "nowhere"], "--scenario: scenario 'nowhere': no such file"),
    (["--scenario", "bottleneck", "--max-workers", "3"], "--max-workers with --scenario"),
])
def test_a_bad_demo_scenario_is_refused_before_anything_starts(tmp_path, options, words):
    port = free_port_block()
    done = subprocess.run([sys.executable, "-m", "storypulse", "demo", "--port", str(port),
                           "--db", str(tmp_path / "demo.db"), *options],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and words in done.stderr, done.stderr
    assert not (tmp_path / "demo.db").exists()


def test_the_demos_server_runs_the_scenarios_workflow(tmp_path):
    from storypulse.client import Client
    from storypulse.desktop.demo import start_server, stop_server

    port = free_port_block()
    endpoints = Endpoints("127.0.0.1", port)
    proc = start_server(port, str(tmp_path / "demo.db"), 16, tmp_path / "server.log",
                        scenario="bottleneck")
    try:
        wait_for(lambda: server_answers(endpoints), 30, what="the demo's server to answer")
        with Client(endpoints) as client:
            stages = client.snapshot(history_seconds=0).stats.stages
        assert [(s.name, s.max_workers) for s in stages] == [("analysis", 2), ("build", 6),
                                                            ("test", 2)]
    finally:
        assert stop_server(proc) == 0
