"""bench/worker_hosts.py's network namespaces: made as described, and nothing left behind
(after a clean close and after a set-up that fails half-way). Needs root and iproute2."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys

import pytest

from support import REPO

spec = importlib.util.spec_from_file_location("worker_hosts", REPO / "bench" / "worker_hosts.py")
worker_hosts = importlib.util.module_from_spec(spec)
sys.modules["worker_hosts"] = worker_hosts  # its dataclasses look their module up
spec.loader.exec_module(worker_hosts)

pytestmark = pytest.mark.skipif(
    os.name != "posix" or shutil.which("ip") is None or os.geteuid() != 0,
    reason="network namespaces need root and iproute2")


def leftovers(prefix: str) -> list[str]:
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return [line for line in (names + links).splitlines() if prefix in line]


@pytest.fixture
def prefix():
    name = f"spt{os.getpid() % 100000}"
    if worker_hosts.namespaces_refused():
        pytest.skip(f"namespaces refused here: {worker_hosts.namespaces_refused()}")
    yield name
    assert not leftovers(name)


def test_hosts_reach_the_root_namespace_and_close_leaves_nothing(prefix):
    with worker_hosts.Namespaces(2, prefix=prefix, net="10.202") as ns:
        assert len(leftovers(prefix)) == 4  # two namespaces, two root ends
        for k in (1, 2):
            addrs = subprocess.run(["ip", "-n", ns.name(k), "-o", "addr"],
                                   capture_output=True, text=True).stdout
            assert f"10.202.{k}.2/24" in addrs
            route = subprocess.run(["ip", "-n", ns.name(k), "route", "get", "10.202.1.1"],
                                   capture_output=True, text=True, check=True).stdout
            # host 1 is on the server address's own link; host 2 goes through its gateway
            assert ("via" not in route) if k == 1 else ("via 10.202.2.1" in route)
    assert not leftovers(prefix)


def test_a_set_up_that_fails_half_way_leaves_nothing(prefix, monkeypatch):
    real = worker_hosts._ip

    def failing(*args: str) -> None:
        if args[:2] == ("-n", f"{prefix}h2") and "route" in args:
            raise subprocess.CalledProcessError(2, ["ip", *args], stderr="planted")
        real(*args)

    monkeypatch.setattr(worker_hosts, "_ip", failing)
    with pytest.raises(subprocess.CalledProcessError):
        worker_hosts.Namespaces(3, prefix=prefix, net="10.202").open()
    assert not leftovers(prefix)
