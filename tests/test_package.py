"""The installers, end to end: build the bundles and the .deb, unpack it, run what it installed.

Slow (about two minutes to build on two cores), so marked `slow`: run it with
`make test-package`, or `pytest -m slow`. With STORYPULSE_DIST pointing at a
built dist/ (`make package`), it tests those artifacts instead of building.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from storypulse.client import Client, ServerUnavailable
from storypulse.endpoints import Endpoints
from support import end_session, free_port_block, session_gone, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.skipif(not sys.platform.startswith("linux") or not shutil.which("dpkg-deb"),
                       reason="the .deb is built and unpacked with dpkg-deb, on Linux only"),
]

OPT = Path("opt/storypulse")


@pytest.fixture(scope="module")
def root(deb, tmp_path_factory) -> Path:
    """The .deb unpacked into a scratch root, as dpkg would install its files."""
    root = tmp_path_factory.mktemp("root")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root


def cli(root: Path) -> Path:
    return root / OPT / "storypulse" / "storypulse"


def desktop(root: Path) -> Path:
    return root / OPT / "storypulse-desktop" / "storypulse-desktop"


def run(*args, timeout: float = 60, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_the_package_installs_the_bundles_the_commands_the_menu_entry_and_the_service(deb, root):
    fields = run("dpkg-deb", "-f", deb, "Package", "Version", "Architecture", "Depends").stdout
    assert "Package: storypulse" in fields and "Depends: libc6 (>=" in fields
    for name, bundle in (("storypulse", "storypulse"), ("storypulse-desktop", "storypulse-desktop")):
        link = root / "usr" / "bin" / name
        assert link.is_symlink() and os.readlink(link) == f"/{OPT}/{bundle}/{name}"
        assert os.access(root / OPT / bundle / name, os.X_OK)
    entry = (root / "usr/share/applications/storypulse.desktop").read_text()
    assert "Exec=storypulse-desktop" in entry and "Icon=storypulse" in entry
    assert (root / "usr/share/icons/hicolor/scalable/apps/storypulse.svg").exists()
    assert (root / "usr/share/icons/hicolor/256x256/apps/storypulse.png").read_bytes()[:4] == b"\x89PNG"
    assert (root / "etc/storypulse/server.toml").exists()
    assert "u storypulse" in (root / "usr/lib/sysusers.d/storypulse.conf").read_text()

    control = root.parent / "control"
    subprocess.run(["dpkg-deb", "-e", str(deb), str(control)], check=True)
    assert (control / "conffiles").read_text().split() == ["/etc/storypulse/server.toml"]
    for script in ("postinst", "prerm", "postrm"):
        assert os.access(control / script, os.X_OK)
        assert run("sh", "-n", control / script).returncode == 0
    # Owned by root inside the package, whoever built it.
    listing = run("dpkg-deb", "-c", deb).stdout.splitlines()
    assert listing and all(" root/root " in line for line in listing)


def test_the_server_bundle_carries_no_qt(root):
    bundle = root / OPT / "storypulse"
    qt = [p for p in bundle.rglob("*") if any(s in p.name for s in ("Qt6", "PySide", "shiboken", "pyqtgraph"))]
    assert not qt, qt[:5]
    # PostgreSQL's driver is in it, so `db = "postgresql://..."` works for the service.
    assert (bundle / "_internal" / "psycopg2").is_dir()
    # ...and says so clearly when asked for the desktop app.
    result = run(cli(root), "desktop", "--quit-after", "1")
    assert result.returncode != 0 and "storypulse[desktop]" in result.stderr and "Traceback" not in result.stderr


def test_the_desktop_bundle_leaves_out_the_qt_it_does_not_use(root):
    bundle = root / OPT / "storypulse-desktop"
    names = {p.name for p in bundle.rglob("*")}
    assert any(n.startswith("libQt6OpenGL.") for n in names), "pyqtgraph needs QtOpenGL"
    unwanted = [n for n in names if any(s in n for s in (
        "Qt6Quick", "Qt6Qml", "Qt6Pdf", "Qt6Wayland", "virtualkeyboard", "qgtk3", "qwayland", "libqpdf"))]
    assert not unwanted, unwanted
    version = run(desktop(root), "--version")
    assert version.returncode == 0 and version.stdout.startswith("storypulse "), version


def test_the_service_unit_verifies_and_stops_the_server_gently(root, tmp_path):
    unit = (root / "lib/systemd/system/storypulse-server.service").read_text()
    for line in ("Type=notify", "WatchdogSec=30s", "NotifyAccess=main",
                 "User=storypulse", "StateDirectory=storypulse", "Restart=on-failure", "KillMode=mixed",
                 "KillSignal=SIGTERM", "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes",
                 "PrivateTmp=yes",
                 "ExecStart=/opt/storypulse/storypulse/storypulse server --config /etc/storypulse/server.toml"):
        assert line in unit.splitlines(), line
    # The stop timeout must leave the server its shutdown grace (and some).
    from storypulse.server.config import DEFAULTS

    stop = next(int(line.split("=")[1].rstrip("s")) for line in unit.splitlines() if line.startswith("TimeoutStopSec="))
    assert stop > 2 * DEFAULTS["shutdown_grace"]
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed: the unit's keys were checked, not verified")
    # verify checks that ExecStart exists: point it at the unpacked bundle.
    copy = tmp_path / "storypulse-server.service"
    copy.write_text(unit.replace("/opt/storypulse/", f"{root / OPT}/"))
    result = run("systemd-analyze", "verify", copy)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_the_bundled_server_and_cli_work_a_story_to_the_end(root, tmp_path):
    version = run(cli(root), "server", "--version")
    assert version.returncode == 0 and version.stdout.startswith("storypulse "), version
    # The scenarios that come with storypulse are in the bundle, found by name.
    scenario = run(cli(root), "load", "--scenario", "nowhere")
    assert scenario.returncode == 2 and "(bottleneck, single)" in scenario.stderr, scenario

    # The three layers, as the service uses them: the file gives the database and
    # the port, the environment the pool floor, an option the time scale.
    port = free_port_block()
    config = tmp_path / "server.toml"
    config.write_text(f'db = "{tmp_path / "storypulse.db"}"\nport = {port}\nmax_workers = 2\n'
                      f'log_level = "info"\n')
    log = open(tmp_path / "server.log", "wb")
    server = subprocess.Popen(
        [str(cli(root)), "server", "--config", str(config), "--time-scale", "0.01"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "STORYPULSE_MIN_WORKERS": "1"},
    )
    log.close()
    try:
        endpoints = Endpoints("127.0.0.1", port)

        def answers() -> bool:
            assert server.poll() is None, (tmp_path / "server.log").read_text()
            try:
                with Client(endpoints, timeout=0.5) as c:
                    c.ping()
                return True
            except ServerUnavailable:
                return False

        wait_for(answers, 30, what="the bundled server to answer")

        added = run(cli(root), "add", "--server", f"127.0.0.1:{port}", "--task", "400", "--task", "900:review",
                    "--wait", "--json", "packaged story", timeout=60)
        assert added.returncode == 0, added.stderr
        story = json.loads(added.stdout)
        assert story["status"] == "done" and len(story["task_ids"]) == 2

        shown = run(cli(root), "show", "--server", f"127.0.0.1:{port}", "--json", str(story["story_id"]))
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["status"] == "done"

        # The desktop app, offscreen, against the same server, for a bounded run.
        gui = run(desktop(root), "--server", f"127.0.0.1:{port}", "--quit-after", "3",
                  "--settings", tmp_path / "desktop.ini", timeout=90,
                  env={"QT_QPA_PLATFORM": "offscreen"})
        assert gui.returncode == 0, gui.stderr[-3000:]

        # What the service's stop does (KillMode=mixed): SIGTERM to the server
        # alone; it stops its workers itself and exits cleanly.
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0, (tmp_path / "server.log").read_text()

        wait_for(lambda: session_gone(server.pid), 15, what="the server's workers to exit with it")
    finally:
        end_session(server)


def test_the_desktop_bundle_runs_the_demo_with_its_own_server(root, tmp_path):
    """`storypulse-desktop demo` starts the server from the same bundle, simulates, and stops it."""
    import sqlite3

    db = tmp_path / "demo.db"
    demo = run(desktop(root), "demo", "--port", free_port_block(), "--db", db, "--rate", "5",
               "--quit-after", "4", "--settings", tmp_path / "demo.ini", timeout=120,
               env={"QT_QPA_PLATFORM": "offscreen", "XDG_STATE_HOME": str(tmp_path / "state")})
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert "server stopped (exit code 0)" in demo.stderr, demo.stderr[-3000:]
    with sqlite3.connect(db) as con:
        assert con.execute("select count(*) from story").fetchone()[0] > 0, "the simulator made no story"
