"""The .deb installed for real: `apt-get install ./storypulse_….deb` in a clean Debian root
(debootstrap, tools/debianroot.py), then the service run two ways:

- in the root as a chroot, the way its unit says to run it, done by hand from the unit file: its
  user and group, its state directory, its umask, its environment, its ExecStart, a notify
  socket bound where systemd's would be and a watchdog period; it answers ping, serves /metrics,
  says READY=1, WATCHDOG=1 and STOPPING=1, and stops on SIGTERM;
- the root booted with systemd as PID 1 (systemd-nspawn --boot), where `systemctl start` starts
  the unit itself, with all its sandboxing, returns once the server said READY=1, shows its
  STATUS=, and `systemctl stop` stops it cleanly; and with a short WatchdogSec= a server whose
  process is frozen (SIGSTOP) is killed and started again by systemd.

`systemd-analyze verify` checks the installed unit inside the root. The container shares the
host's network; the ports come from a drop-in, as an administrator would set them, since the
packaged ones may be taken on a machine that runs other tests.

Slow (the bundles take minutes to build; the root a minute the first time, then it is cached):
`make test-slow`, which CI runs.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from storypulse.client import Client
from storypulse.endpoints import Endpoints
from httpget import get, status
from support import REPO, end_session, free_port_block, session_gone, wait_for

sys.path.insert(0, str(REPO / "tools"))
from debianroot import Booted, Chroot, clean_env  # noqa: E402

MISSING = [tool for tool in ("debootstrap", "chroot", "dpkg-deb", "mount", "systemd-nspawn", "nsenter")
           if not shutil.which(tool)]
if MISSING and os.environ.get("STORYPULSE_CI") and sys.platform.startswith("linux"):
    raise RuntimeError(f"CI must run this test: .ci/run installs {', '.join(MISSING)} "
                       "(debootstrap, systemd-container)")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(not sys.platform.startswith("linux") or os.geteuid() != 0 or bool(MISSING),
                       reason="needs Linux, root, debootstrap and systemd-nspawn "
                              f"({', '.join(MISSING) or 'run as root'})"),
]
UNIT = "lib/systemd/system/storypulse-server.service"


@pytest.fixture(scope="module")
def system(deb, tmp_path_factory):
    """A clean Debian root with the .deb installed by apt, as an administrator would."""
    with Chroot(tmp_path_factory.mktemp("debian") / "root") as chroot:
        shutil.copyfile(deb, chroot.root / "tmp" / deb.name)
        install = chroot.run("apt-get", "install", "-y", "-q", f"./tmp/{deb.name}", timeout=900)
        if install.returncode != 0 and ("404" in install.stdout + install.stderr
                                        or "Unable to locate" in install.stdout + install.stderr):
            chroot.run("apt-get", "update", "-q", timeout=600)  # the cached lists went stale
            install = chroot.run("apt-get", "install", "-y", "-q", f"./tmp/{deb.name}", timeout=900)
        assert install.returncode == 0, f"{install.stdout[-3000:]}\n{install.stderr[-3000:]}"
        yield chroot


def service_section(root: Path) -> dict[str, list[str]]:
    """The unit's [Service] keys, each with every value it was given (Environment= repeats)."""
    values: dict[str, list[str]] = {}
    section = None
    for line in (root / UNIT).read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "Service" and "=" in line:
            key, _, value = line.partition("=")
            values.setdefault(key.strip(), []).append(value.strip())
    return values


def test_apt_installs_it_on_a_clean_debian_with_its_user_and_files(system):
    root = system.root
    state = system.run("dpkg-query", "-W", "-f=${Status} ${Version}", "storypulse", check=True).stdout
    assert state.startswith("install ok installed"), state
    user = system.run("getent", "passwd", "storypulse", check=True).stdout.strip().split(":")
    assert user[5] == "/var/lib/storypulse" and user[6] == "/usr/sbin/nologin", user
    keys = root / "etc/storypulse/keys"
    assert keys.is_dir() and oct(keys.stat().st_mode & 0o777) == "0o750"
    assert (root / "etc/storypulse/server.toml").exists() and (root / UNIT).exists()
    version = system.run("storypulse", "server", "--version", check=True).stdout
    assert version.startswith("storypulse ")


def test_systemd_analyze_verifies_the_installed_unit(system):
    verify = system.run("systemd-analyze", "verify", "/" + UNIT)
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr


class NotifySocket:
    """Where systemd's notify socket would be, inside the root; the service user may send to it."""

    def __init__(self, root: Path):
        self.path = root / "run" / "storypulse-notify.sock"
        self.path.parent.mkdir(exist_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        os.chmod(self.path, 0o777)
        self.sock.settimeout(0.05)
        self.fields: list[dict[str, str]] = []

    def seen(self, key: str) -> list[dict[str, str]]:
        while True:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                break
            self.fields.append(dict(line.split("=", 1) for line in data.decode().splitlines()))
        return [f for f in self.fields if key in f]

    def close(self) -> None:
        self.sock.close()


def test_the_installed_server_runs_as_its_unit_says_answers_and_stops_on_sigterm(system, tmp_path):
    root = system.root
    unit = service_section(root)
    user, group = unit["User"][0], unit["Group"][0]
    assert unit["Type"] == ["notify"]
    # StateDirectory=: systemd makes /var/lib/NAME, owned by the service's user, with its mode.
    state = root / "var" / "lib" / unit["StateDirectory"][0]
    state.mkdir(parents=True, exist_ok=True)
    uid, gid = (int(system.run("id", "-u" if flag == "u" else "-g", user, check=True).stdout)
                for flag in "ug")
    os.chown(state, uid, gid)
    state.chmod(int(unit["StateDirectoryMode"][0], 8))
    umask = int(unit["UMask"][0], 8)
    watchdog_s = float(unit["WatchdogSec"][0].rstrip("s"))

    # The environment systemd gives it: the unit's Environment=, the user's HOME and the like,
    # the notify socket and the watchdog period; the ports as a drop-in would set them (the
    # packaged ones may be taken on a machine that runs other tests).
    port, http_port = free_port_block(), free_port_block(1)
    notify = NotifySocket(root)
    env = clean_env(HOME=str(Path("/var/lib") / unit["StateDirectory"][0]), USER=user, LOGNAME=user,
                    SHELL="/usr/sbin/nologin", NOTIFY_SOCKET="/run/storypulse-notify.sock",
                    WATCHDOG_USEC=str(int(watchdog_s * 1e6)),
                    STATE_DIRECTORY=str(Path("/var/lib") / unit["StateDirectory"][0]),
                    STORYPULSE_PORT=str(port), STORYPULSE_HTTP_PORT=str(http_port))
    for assignment in unit.get("Environment", []):
        name, _, value = assignment.partition("=")
        env[name] = value
    exec_start = unit["ExecStart"][0].split()
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            ["chroot", f"--userspec={user}:{group}", str(root), *exec_start], env=env,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=lambda: os.umask(umask))
    try:
        def said_ready() -> list[dict[str, str]]:
            if server.poll() is not None:
                pytest.fail(f"the server exited:\n{log_path.read_text()}")
            return notify.seen("READY")

        ready = wait_for(said_ready, 60, what="READY=1")
        assert ready[0]["READY"] == "1" and ready[0]["MAINPID"] == str(server.pid)

        with Client(Endpoints("127.0.0.1", port), timeout=5) as client:
            assert client.ping().server_version
        # the installed command-line client, inside the root, as any user would run it
        added = system.run("storypulse", "add", "--server", f"127.0.0.1:{port}", "--task", "50",
                           "--wait", "installed story", timeout=60)
        assert added.returncode == 0, added.stderr

        def scraped() -> str | None:
            reply = get(http_port, "/metrics")
            return reply.body if "storypulse_stories_completed_total 1.0" in reply.body else None

        body = wait_for(scraped, 10, what="the completion in /metrics")
        assert "storypulse_build_info{" in body and "storypulse_open_stories 0.0" in body
        assert get(http_port, "/readyz").status == 200 and get(http_port, "/livez").status == 200
        wait_for(lambda: len(notify.seen("WATCHDOG")) >= 1, watchdog_s, what="WATCHDOG=1")

        db = state / "storypulse.db"
        assert db.exists() and (db.stat().st_uid, db.stat().st_gid) == (uid, gid)
        assert db.stat().st_mode & 0o777 == 0o666 & ~umask  # the unit's UMask= in force

        # `systemctl stop`: SIGTERM to the main process alone (KillMode=mixed)
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0, log_path.read_text()
        assert notify.seen("STOPPING")
        wait_for(lambda: session_gone(server.pid), 15, what="its workers to exit with it")
        assert status(http_port, "/livez", timeout=1) is None  # nothing left listening
        assert "Traceback" not in log_path.read_text()
    finally:
        end_session(server)
        notify.close()


# -- systemd as PID 1 -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def machine(system, tmp_path_factory):
    """The root with the package installed, booted; the unit's ports set by a drop-in."""
    port, http_port = free_port_block(), free_port_block(1)
    drop_ins = system.root / "etc/systemd/system/storypulse-server.service.d"
    drop_ins.mkdir(parents=True, exist_ok=True)
    (drop_ins / "ports.conf").write_text(
        f"[Service]\nEnvironment=STORYPULSE_PORT={port} STORYPULSE_HTTP_PORT={http_port}\n")
    shutil.rmtree(system.root / "var/lib/storypulse", ignore_errors=True)  # StateDirectory= makes it
    system.unmount()  # the container mounts its own /proc and /dev
    log = tmp_path_factory.mktemp("nspawn") / "boot.log"
    with Booted(system.root, f"storypulse-test-{os.getpid()}", log) as booted:
        booted.port, booted.http_port, booted.drop_ins = port, http_port, drop_ins
        yield booted


def show(machine, *properties: str) -> dict[str, str]:
    done = machine.run("systemctl", "show", "storypulse-server", "-p", ",".join(properties))
    return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)


def systemctl(machine, *args: str) -> subprocess.CompletedProcess:
    done = machine.run("systemctl", *args, "storypulse-server")
    journal = machine.run("journalctl", "-u", "storypulse-server", "--no-pager", "-n", "30").stdout
    assert done.returncode == 0, f"systemctl {' '.join(args)}: {done.stderr}\n{journal}"
    return done


def test_systemd_starts_the_service_once_it_is_ready_and_stops_it_cleanly(machine):
    start = time.monotonic()
    systemctl(machine, "start")  # returns once the server said READY=1 (Type=notify)
    took = time.monotonic() - start
    state = show(machine, "ActiveState", "SubState", "Type", "NotifyAccess", "WatchdogUSec", "MainPID")
    assert (state["ActiveState"], state["SubState"], state["Type"]) == ("active", "running", "notify")
    assert state["WatchdogUSec"] == "30s" and state["NotifyAccess"] == "main"
    with Client(Endpoints("127.0.0.1", machine.port), timeout=5) as client:
        assert client.ping().server_version  # READY means the sockets were bound: no waiting
        story = client.create_story("under systemd", [{"estimate_ms": 50}])
    with Client(Endpoints("127.0.0.1", machine.port), timeout=5) as client:
        wait_for(lambda: client.get_story(story.story_id).status == "done", 10, what="the story done")
    wait_for(lambda: status(machine.http_port, "/readyz") == 200, 10, what="readyz 200")
    assert "storypulse_stories_completed_total 1.0" in get(machine.http_port, "/metrics").body
    line = wait_for(lambda: "1 completed" in (s := show(machine, "StatusText")["StatusText"]) and s, 15,
                    what="the STATUS= line with the figures")
    assert "workers busy" in line
    owner = machine.run("stat", "-c", "%U %a", "/var/lib/storypulse/storypulse.db").stdout.split()
    assert owner == ["storypulse", "640"], owner  # its user, its UMask=0027
    print(f"\nsystemctl start took {took:.2f} s; STATUS={line}")

    systemctl(machine, "stop")
    state = show(machine, "ActiveState", "Result", "ExecMainStatus")
    assert state == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}, state
    journal = machine.run("journalctl", "-u", "storypulse-server", "-o", "cat", "--no-pager").stdout
    assert "stopped: 0 stories open, 1 completed" in journal and "Traceback" not in journal


def test_systemd_kills_and_restarts_a_server_that_stops_kicking_the_watchdog(machine):
    (machine.drop_ins / "watchdog.conf").write_text(
        "[Service]\nWatchdogSec=2s\nTimeoutAbortSec=2s\nRestartSec=1s\n")
    assert machine.run("systemctl", "daemon-reload").returncode == 0
    try:
        systemctl(machine, "start")
        first = show(machine, "MainPID")["MainPID"]
        time.sleep(3)  # kicked every second: still the same process
        assert show(machine, "MainPID", "ActiveState") == {"MainPID": first, "ActiveState": "active"}
        # frozen, as a loop that hangs: no more WATCHDOG=1 (minbase has no kill(1); systemctl kills)
        systemctl(machine, "kill", "--signal=SIGSTOP", "--kill-whom=main")
        restarted = wait_for(lambda: (s := show(machine, "MainPID", "ActiveState", "NRestarts"))
                             ["MainPID"] not in (first, "0") and s["ActiveState"] == "active" and s,
                             30, interval=0.2, what="systemd to restart the server")
        assert int(restarted["NRestarts"]) >= 1
        journal = machine.run("journalctl", "-u", "storypulse-server", "--no-pager").stdout
        assert "Watchdog timeout" in journal, journal[-3000:]
        with Client(Endpoints("127.0.0.1", machine.port), timeout=5) as client:
            wait_for(lambda: _pings(client), 20, what="the restarted server to answer")
        systemctl(machine, "stop")
    finally:
        (machine.drop_ins / "watchdog.conf").unlink()
        machine.run("systemctl", "daemon-reload")


def _pings(client) -> bool:
    try:
        return bool(client.ping().server_version)
    except Exception:
        return False


def test_the_host_mirror_is_read_from_apt_sources_of_both_formats(tmp_path):
    from debianroot import host_mirror

    apt = tmp_path / "etc" / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    (apt / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\nTypes: deb\nURIs: http://security.invalid/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n")
    assert host_mirror("bookworm", tmp_path) == "http://mirror.invalid/debian"
    (apt / "sources.list").write_text("# old style\ndeb [arch=amd64] http://one.invalid/debian bookworm main contrib\n")
    assert host_mirror("bookworm", tmp_path) == "http://one.invalid/debian"
    with pytest.raises(RuntimeError):
        host_mirror("trixie", tmp_path)
