"""A clean Debian root for installing the .deb into: made once with debootstrap, kept as a tarball.

    python tools/debianroot.py [--out DIR]     (makes the tarball if missing; prints its path)

The root is the host's own Debian release (its codename from /etc/os-release),
from the first mirror the host's apt sources name for it, `minbase` plus systemd
(for systemd-sysusers and systemd-analyze, as on a real host). Making it takes
about a minute; the tarball is kept under build/debootstrap/, named by a hash of
what went into it, so later runs unpack it in seconds and a change of release,
mirror or package list makes a new one. Each use unpacks a fresh copy: nothing
of one run leaks into the next.

`Chroot` mounts /proc and /dev into a copy and runs commands in it; `Booted`
boots such a copy with systemd as PID 1 (systemd-nspawn --boot) and runs
commands inside it (nsenter into its namespaces), so that a unit is started by
systemd itself. Both share the host's network: a server in there is reached on
127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / "build" / "debootstrap"
INCLUDE = ("systemd",)  # besides minbase
RECIPE = 1  # bump when the way the root is made changes


def host_release() -> str:
    text = Path("/etc/os-release").read_text()
    found = re.search(r"^VERSION_CODENAME=\"?([a-z]+)\"?$", text, re.MULTILINE)
    if not found:
        raise RuntimeError("/etc/os-release names no VERSION_CODENAME: not a Debian release")
    return found.group(1)


def host_mirror(release: str, root: Path = Path("/")) -> str:
    """The URI of the first `deb` source with `release` and `main`, in the host's apt sources
    (one-line .list files and deb822 .sources files alike)."""
    apt = root / "etc" / "apt"
    files = [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list")),
             *sorted((apt / "sources.list.d").glob("*.sources"))]
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.MULTILINE))
                if ("deb" in fields.get("Types", "").split() and release in fields.get("Suites", "").split()
                        and "main" in fields.get("Components", "").split() and fields.get("URIs")):
                    return fields["URIs"].split()[0]
        else:
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
                if len(words) >= 4 and words[0] == "deb" and words[2] == release and "main" in words[3:]:
                    return words[1]
    raise RuntimeError(f"the host's apt sources name no `deb ... {release} main` mirror")


def architecture() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()


def tarball(cache: Path = CACHE) -> Path:
    """The cached root for the host's release; made first if missing (needs root, debootstrap)."""
    release, arch = host_release(), architecture()
    mirror = host_mirror(release)
    version = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "debootstrap"],
                             capture_output=True, text=True).stdout.strip()
    key = hashlib.sha256(repr((RECIPE, release, arch, mirror, INCLUDE, version,
                               platform.machine())).encode()).hexdigest()[:16]
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"{release}-{arch}-{key}.tar"
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs at once make it once
        if not path.exists():
            _make(path, release, mirror)
    return path


def _make(path: Path, release: str, mirror: str) -> None:
    work = path.with_suffix(".work")
    shutil.rmtree(work, ignore_errors=True)
    try:
        done = subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(INCLUDE)}", release,
             str(work), mirror], capture_output=True, text=True, timeout=1200)
        if done.returncode != 0:
            raise RuntimeError(f"debootstrap failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        subprocess.run(["chroot", str(work), "apt-get", "clean"], check=True)
        partial = path.with_suffix(".partial")
        subprocess.run(["tar", "--numeric-owner", "--xattrs", "-cf", str(partial), "-C", str(work), "."],
                       check=True)
        partial.rename(path)
    finally:
        shutil.rmtree(work, ignore_errors=True)


class Chroot:
    """A fresh copy of the cached root, with /proc and /dev mounted while in use."""

    def __init__(self, where: Path, cache: Path = CACHE):
        self.root = where
        self.cache = cache
        self._mounts: list[Path] = []

    def __enter__(self) -> Chroot:
        self.root.mkdir(parents=True, exist_ok=True)
        subprocess.run(["tar", "--numeric-owner", "--xattrs", "-xf", str(tarball(self.cache)),
                        "-C", str(self.root)], check=True)
        shutil.copyfile("/etc/resolv.conf", self.root / "etc" / "resolv.conf")
        try:
            self._mount(["-t", "proc", "proc"], "proc")
            self._mount(["--rbind", "/dev"], "dev")
            subprocess.run(["mount", "--make-rslave", str(self.root / "dev")], check=True)
            # Downloaded packages are kept between runs (the root itself is always fresh).
            archives = self.cache / "archives"
            (archives / "partial").mkdir(parents=True, exist_ok=True)
            self._mount(["--bind", str(archives)], "var/cache/apt/archives")
        except BaseException:
            self.__exit__()
            raise
        return self

    def _mount(self, how: list[str], inside: str) -> None:
        target = self.root / inside
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", *how, str(target)], check=True)
        self._mounts.append(target)

    def unmount(self) -> None:
        """Take /proc, /dev and the package cache out (before booting it: see Booted)."""
        for target in reversed(self._mounts):
            done = subprocess.run(["umount", "-R", str(target)], capture_output=True)
            if done.returncode != 0:
                subprocess.run(["umount", "-R", "-l", str(target)], capture_output=True)
        self._mounts.clear()

    def __exit__(self, *exc: object) -> None:
        self.unmount()
        with contextlib.suppress(OSError):
            shutil.rmtree(self.root)

    def run(self, *command: str, user: str | None = None, timeout: float = 600,
            env: dict[str, str] | None = None, check: bool = False) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(*command, user=user), capture_output=True, text=True,
                              timeout=timeout, env=env or clean_env(), check=check)

    def command(self, *command: str, user: str | None = None) -> list[str]:
        spec = [f"--userspec={user}:{user}"] if user else []
        return ["chroot", *spec, str(self.root), *command]


class Booted:
    """The root booted with systemd as PID 1 in a container (systemd-nspawn), shut down on exit.

    The container shares the host's network and is not registered with a machine manager
    (none may run here): commands go in with nsenter, into the namespaces of its PID 1."""

    def __init__(self, root: Path, name: str, log: Path):
        self.root, self.name, self.log_path = root, name, log
        self.proc: subprocess.Popen | None = None
        self.init_pid: int | None = None

    def __enter__(self) -> Booted:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                ["systemd-nspawn", "--quiet", "--boot", "--register=no", "--keep-unit",
                 f"--machine={self.name}", f"--directory={self.root}"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait_booted()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_booted(self, timeout: float = 90) -> None:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited:\n{self.log()}")
            if self.init_pid is None:
                self.init_pid = _child_named(_children(self.proc.pid), "systemd")
            elif self.run("systemctl", "is-system-running").stdout.strip() in ("running", "degraded"):
                return
            time.sleep(0.2)
        raise RuntimeError(f"systemd did not finish booting in {timeout} s:\n{self.log()}")

    def run(self, *command: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(["nsenter", "-t", str(self.init_pid), "-a", *command],
                              capture_output=True, text=True, timeout=timeout, env=clean_env())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # nspawn halts the container: every service is stopped
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(Path("/run/systemd/nspawn/propagate") / self.name, ignore_errors=True)


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(p) for p in (task / "children").read_text().split()]
    return found


def _child_named(pids: list[int], name: str) -> int | None:
    """The first process called `name` among `pids` and their children (nspawn forks before
    it execs the container's init)."""
    for pid in pids:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().strip() == name:
                return pid
        deeper = _child_named(_children(pid), name)
        if deeper is not None:
            return deeper
    return None


def clean_env(**extra: str) -> dict[str, str]:
    """What a service or an admin's shell would have, without the test run's own variables."""
    return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
            "DEBIAN_FRONTEND": "noninteractive", **extra}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=CACHE)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("debootstrap and chroot need root")
    print(tarball(args.out))


if __name__ == "__main__":
    main()
