"""The wheel: one `storypulse` namespace at the top of site-packages, and it works alone.

The source folders (common/, server/, desktop/, ...) are mapped onto the
`storypulse` package by pyproject.toml; this builds the wheel as a release
would, checks that nothing else lands at the top of site-packages, installs
it into a fresh venv (not editable, away from the source tree) and runs the
installed commands and a short server there. Slow (a venv and its
dependencies, ~30 s), so marked `slow`: `make test-slow` runs it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from storypulse.client import Client, ServerUnavailable
from storypulse.endpoints import Endpoints
from support import REPO, free_port_block, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # What `python -m build --wheel` does: the PEP 517 backend in an isolated build environment.
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(REPO)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (path,) = out.glob("storypulse-*.whl")
    return path


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """The bin/ folder of a fresh venv holding the wheel and its dependencies only."""
    env = tmp_path_factory.mktemp("venv") / "env"
    venv.create(env, with_pip=True)
    done = subprocess.run([str(env / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return env / "bin"


def test_the_wheel_holds_only_the_storypulse_namespace(wheel):
    with zipfile.ZipFile(wheel) as archive:
        tops = {name.split("/")[0] for name in archive.namelist()}
        names = set(archive.namelist())
    dist_info = {t for t in tops if t.endswith(".dist-info")}
    assert tops - dist_info == {"storypulse"} and len(dist_info) == 1, sorted(tops)
    for module in ("storypulse/protocol.py", "storypulse/server/loop.py", "storypulse/desktop/window.py",
                   "storypulse/__main__.py", "storypulse/server/__main__.py",
                   "storypulse/scenarios/single.toml", "storypulse/scenarios/bottleneck.toml"):
        assert module in names, f"{module} missing from the wheel"


def test_the_installed_wheel_runs_its_commands_and_a_server(installed, tmp_path):
    # Run away from the source tree, so that nothing can come from it.
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(a) for a in args], cwd=tmp_path, capture_output=True, text=True, timeout=60)

    where = run(installed / "python", "-c", "import storypulse.server.loop as m; print(m.__file__)")
    assert where.returncode == 0 and where.stdout.startswith(str(installed.parent)), where

    top = run(installed / "storypulse", "--help")
    assert top.returncode == 0 and "server" in top.stdout and "watch" in top.stdout, top
    server_help = run(installed / "storypulse", "server", "--help")
    assert server_help.returncode == 0 and "--db" in server_help.stdout, server_help
    # The scenarios that come with storypulse are found by name, away from the source tree.
    scenarios = run(installed / "python", "-c", "from storypulse import scenario; "
                    "print(scenario.load('bottleneck').workflow.describe())")
    assert scenarios.returncode == 0 and scenarios.stdout.strip() == "analysis:1-2,build:1-6,test:1-2", scenarios
    # Without the desktop extra the app says what is missing instead of a traceback.
    desktop = run(installed / "storypulse", "desktop")
    assert desktop.returncode != 0 and "Traceback" not in desktop.stderr, desktop

    port = free_port_block()
    log = open(tmp_path / "server.log", "wb")
    server = subprocess.Popen([str(installed / "storypulse"), "server", "--db", str(tmp_path / "w.db"),
                               "--port", str(port), "--max-workers", "1", "--time-scale", "0.01"],
                              cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    try:
        def answers() -> bool:
            assert server.poll() is None, (tmp_path / "server.log").read_text()
            try:
                with Client(Endpoints("127.0.0.1", port), timeout=0.5) as c:
                    c.ping()
                return True
            except ServerUnavailable:
                return False

        wait_for(answers, 30, what="the installed server to answer")
        added = run(installed / "storypulse", "add", "--server", f"127.0.0.1:{port}", "--task", "100",
                    "--wait", "wheel story")
        assert added.returncode == 0, added.stderr
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0, (tmp_path / "server.log").read_text()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)
