"""`storypulse demo`: a server (unless one already answers), the app and the simulator, together.

The server runs as a subprocess (`python -m storypulse.server`), never imported: the
desktop package does not depend on the server package. Closing the app stops
the server that the demo started (SIGTERM, then wait), and only that one.

If the app dies without closing (Qt's abort(), kill -9), no code of ours runs,
so the server watches us instead: it gets the read end of a pipe whose write
end only this process holds, and stops when it reads end of file, which the
kernel delivers when the last holder of the write end is gone, however it went.
A pipe rather than Linux's PR_SET_PDEATHSIG: it works on macOS and the BSDs
too, it follows this process rather than the thread that started the server,
and the server stops through its own loop as on SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import platformdirs

from storypulse.client import Client, ServerUnavailable
from storypulse.endpoints import Endpoints

from .simulator_settings import DEFAULTS

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0


def server_answers(endpoints: Endpoints, timeout: float = 0.5) -> bool:
    try:
        with Client(endpoints, timeout=timeout) as client:
            client.ping()
        return True
    except (ServerUnavailable, OSError):
        return False


def start_server(port: int, db: str | None, max_workers: int, log_path: Path,
                 scenario: str | None = None) -> subprocess.Popen:
    command = [sys.executable, "-m", "storypulse.server", "--port", str(port)]
    # A scenario's stages bring their own pool bounds.
    command += ["--scenario", scenario] if scenario else ["--max-workers", str(max_workers)]
    if db:
        command += ["--db", db]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    watch_r = watch_w = None
    if os.name == "posix":  # Windows cannot poll a pipe; there only the `finally` stops it
        watch_r, watch_w = os.pipe()  # not inherited by anything but the server (pass_fds)
        command += ["--parent-pipe", str(watch_r)]
    try:
        with open(log_path, "ab") as log:
            # Its own session: Ctrl+C in the terminal reaches the app, which then stops the
            # server in order, instead of both racing to shut down.
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                    pass_fds=(watch_r,) if watch_r is not None else ())
    except BaseException:
        if watch_w is not None:
            os.close(watch_w)
        raise
    finally:
        if watch_r is not None:
            os.close(watch_r)  # only the server holds the read end
    return proc  # watch_w stays open, never written, until this process ends


def stop_server(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_demo(*, port: int, db: str | None, rate: float | None, tasks: tuple[int, int], estimates: tuple[int, int],
             max_workers: int, quit_after: float | None, settings_file: str | None,
             screenshot: str | None = None, tab: str | None = None, theme: str | None = None,
             scenario: str | None = None) -> int:
    from .app import run_app

    endpoints = Endpoints("127.0.0.1", port)
    proc = None
    if server_answers(endpoints):
        print(f"storypulse demo: using the server already answering on {endpoints}", file=sys.stderr)
    else:
        log_path = Path(platformdirs.user_log_dir("storypulse")) / "demo-server.log"
        proc = start_server(port, db, max_workers, log_path, scenario)
        print(f"storypulse demo: started a server (pid {proc.pid}) on {endpoints} (log: {log_path})",
              file=sys.stderr)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server_answers(endpoints):
            if proc.poll() is not None:
                print(f"storypulse demo: the server exited with code {proc.returncode}:\n{_tail(log_path)}",
                      file=sys.stderr)
                return 1
            if time.monotonic() > deadline:
                stop_server(proc)
                print(f"storypulse demo: the server did not answer within {START_TIMEOUT_S:g} s:\n{_tail(log_path)}",
                      file=sys.stderr)
                return 1
    try:
        # With a scenario the simulator runs its load (at --rate if given); else the one range.
        simulate = {"scenario": scenario, "rate": rate} if scenario else \
            {"rate": DEFAULTS.rate if rate is None else rate, "tasks": tasks, "estimate_ms": estimates}
        return run_app(server=str(endpoints), quit_after=quit_after, settings_file=settings_file, screenshot=screenshot,
                       simulate=simulate, tab=tab, theme=theme)
    finally:
        if proc is not None:
            code = stop_server(proc)
            print(f"storypulse demo: server stopped (exit code {code})", file=sys.stderr)
