"""Worker hosts, measured: the server beyond loopback with CURVE, `storypulse worker` hosts
in their own network namespaces, 20 ms tasks.

    sudo .venv/bin/python bench/worker_hosts.py [--runs 3] [--hosts 1,2,4] [--processes 4,16,64]

Set-up (as in production, on one machine): one network namespace per worker
host, each joined to the root namespace by a veth pair on a private /24
(10.200.K.0/24; the root end .1, the host end .2). The server runs in the root
namespace bound to 10.200.1.1, so it is off loopback and CURVE + ZAP are on:
a temporary key folder made with `storypulse keys init`, and every host gets
its own client pair, authorised with `storypulse keys authorize`. A host is
`ip netns exec spwh…K storypulse worker --server 10.200.1.1:P --processes N`
with its own key folder. Everything made is removed at the end, on failure too.
Where namespaces are refused (no root, no iproute2, a container without
CAP_NET_ADMIN), the hosts run on loopback with STORYPULSE_CURVE=always instead,
and the output says so.

The server's own pool takes no work: `--min-workers 0 --max-workers 1
--scale-interval 3600` makes its first pool decision at start, with nothing
queued (target 0), and the next an hour later; every sample checks that the
connected workers are exactly the remote ones and the pool target is 0.

One configuration: a fresh server on a fresh SQLite database; a backlog of
20 ms tasks (time scale 1; stories of 10 tasks) big enough for the whole
measurement, created before any worker connects; then the hosts start; once
every worker has said Ready and a second has passed, the window opens: tasks
completed (from `snapshot`) and the server process's CPU time (utime + stime
from /proc/PID/stat) over --seconds. Throughput = completed / window; pool
efficiency = throughput / (workers / 0.020 s); server CPU = its CPU seconds /
wall seconds (100 % = one core); beside it the time the server's loop thread
was ready to run but waited for a core (/proc/PID/schedstat), the worker
hosts' processes' CPU and the whole machine's (every job on it). The queue
must still be non-empty at the end of the window, or the run is refused.
Medians of --runs runs, configurations interleaved within each run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import zmq.auth

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tools")]

from storypulse.client import Client  # noqa: E402
from storypulse.endpoints import Endpoints  # noqa: E402
from support import create_pipelined, free_port_block, wait_for  # noqa: E402

TASK_MS = 20
SERVER_ADDR = "10.200.1.1"  # the root end of host 1's veth: the server's listening address
BIN = Path(sys.executable).parent


# -- network namespaces ----------------------------------------------------------------------
def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class Namespaces:
    """`count` network namespaces, each a veth pair away from the root namespace.

    Host K (1-based) is namespace `{prefix}h{K}`, address {net}.K.2/24 (10.200.K.2 by
    default), default route via {net}.K.1 in the root namespace. Every address of the
    root namespace is then reachable from every host, so a server bound to 10.200.1.1
    serves them all without forwarding. `close()` deletes what was made (a namespace
    takes its veth end with it).
    """

    def __init__(self, count: int, prefix: str | None = None, net: str = "10.200"):
        self.prefix = prefix or f"spw{os.getpid() % 100000}"
        self.count, self.net = count, net
        self.names: list[str] = []
        self.links: list[str] = []

    def name(self, k: int) -> str:
        return f"{self.prefix}h{k}"

    def open(self) -> Namespaces:
        try:
            for k in range(1, self.count + 1):
                ns, root_end, host_end = self.name(k), f"{self.prefix}r{k}", f"{self.prefix}n{k}"
                _ip("netns", "add", ns)
                self.names.append(ns)
                _ip("link", "add", root_end, "type", "veth", "peer", "name", host_end)
                self.links.append(root_end)
                _ip("link", "set", host_end, "netns", ns)
                _ip("addr", "add", f"{self.net}.{k}.1/24", "dev", root_end)
                _ip("link", "set", root_end, "up")
                for args in (("addr", "add", f"{self.net}.{k}.2/24", "dev", host_end),
                             ("link", "set", host_end, "up"), ("link", "set", "lo", "up"),
                             ("route", "add", "default", "via", f"{self.net}.{k}.1")):
                    _ip("-n", ns, *args)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        for link in self.links:
            subprocess.run(["ip", "link", "del", link], capture_output=True)
        for ns in self.names:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.links, self.names = [], []

    def __enter__(self) -> Namespaces:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


def namespaces_refused() -> str | None:
    """Why namespaces cannot be used here, or None if they can."""
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    if os.geteuid() != 0:
        return "not root"
    probe = Namespaces(1, prefix=f"spp{os.getpid() % 100000}", net="10.201")
    try:
        probe.open()
    except subprocess.CalledProcessError as exc:
        return f"`ip {' '.join(exc.cmd[1:])}` failed: {exc.stderr.strip()}"
    finally:
        probe.close()
    return None


# -- keys --------------------------------------------------------------------------------------
def storypulse(*args: str, env: dict[str, str] | None = None) -> None:
    subprocess.run([str(BIN / "storypulse"), *args], check=True, capture_output=True, env=env)


def make_keys(root: Path, hosts: int) -> tuple[Path, list[Path]]:
    """The server's key folder (with this machine's client pair, for the bench's own client)
    and one key folder per worker host: its own client pair plus the server's public key."""
    server_dir = root / "server"
    storypulse("keys", "init", "--dir", str(server_dir))
    host_dirs = []
    for k in range(1, hosts + 1):
        host_dir = root / f"host{k}"
        host_dir.mkdir()
        zmq.auth.create_certificates(str(host_dir), "client")
        shutil.copy(server_dir / "server.key", host_dir / "server.key")
        named = root / f"host{k}.key"
        shutil.copy(host_dir / "client.key", named)
        storypulse("keys", "authorize", str(named), "--dir", str(server_dir))
        host_dirs.append(host_dir)
    return server_dir, host_dirs


# -- one configuration ---------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def runqueue_wait_seconds(pid: int) -> float:
    """Seconds the process's main thread (the server's loop) was runnable but waited for a CPU."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return float("nan")  # no schedstats in this kernel


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of `pid` and all its descendants (a worker host and its processes)."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += cpu_seconds(p)
            for task in Path(f"/proc/{p}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
    return total


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle (every namespace, every user of the machine)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    hosts: int
    processes: int
    tasks_per_s: float
    server_cpu: float  # share of one core
    hosts_cpu: float  # the worker hosts' processes together, share of one core
    machine_cpu: float  # every core busy, share of one core (2 cores: at most 200 %)
    server_wait: float  # share of the window the server's loop was ready to run but had no CPU

    @property
    def workers(self) -> int:
        return self.hosts * self.processes

    @property
    def efficiency(self) -> float:
        return self.tasks_per_s / (self.workers * 1000 / TASK_MS)


def peers(addr: str, port: int) -> dict[str, int]:
    """Established TCP connections to addr:port, counted by peer address."""
    out = subprocess.run(["ss", "-Htn", "state", "established", "src", f"{addr}:{port}"],
                         capture_output=True, text=True, check=True).stdout
    counts: dict[str, int] = {}
    for line in out.splitlines():
        peer = line.split()[-1].rsplit(":", 1)[0]
        counts[peer] = counts.get(peer, 0) + 1
    return counts


def stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def create_backlog(client: Client, tasks: int, window: int = 200) -> None:
    story = [{"estimate_ms": TASK_MS}] * 10
    create_pipelined(client, -(-tasks // len(story)), story, window)


def measure(tmp: Path, label: str, hosts: int, processes: int, *, addr: str,
            server_keys: Path, host_dirs: list[Path], ns: Namespaces | None,
            seconds: float, warmup: float) -> Result:
    port = free_port_block()
    env = dict(os.environ, STORYPULSE_KEYS=str(server_keys))
    if ns is None:
        env["STORYPULSE_CURVE"] = "always"
    log = open(tmp / f"{label}-server.log", "wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "storypulse.server", "--db", str(tmp / f"{label}.db"), "--bind", addr,
         "--port", str(port), "--min-workers", "0", "--max-workers", "1",
         "--scale-interval", "3600", "--time-scale", "1", "--stats-interval", "0.25",
         "--log-level", "warning"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    workers = hosts * processes
    host_procs: list[subprocess.Popen] = []
    saved = {k: os.environ.get(k) for k in ("STORYPULSE_KEYS", "STORYPULSE_CURVE")}
    os.environ.update({k: env[k] for k in saved if k in env})
    try:
        client = Client(Endpoints(addr, port), timeout=30)

        def answers() -> bool:
            assert server.poll() is None, (tmp / f"{label}-server.log").read_text()
            try:
                client.call("ping", timeout=0.5)
                return True
            except Exception:
                client.close()  # a fresh socket for the next try
                return False
        wait_for(answers, 30, interval=0.1, what="the server to answer ping")
        # Enough work that the queue cannot run dry, even at the ideal rate.
        create_backlog(client, int(workers * 1000 / TASK_MS * (seconds + warmup + 8) * 1.2))
        for k in range(1, hosts + 1):
            cmd = [str(BIN / "storypulse"), "worker", "--server", f"{addr}:{port}",
                   "--processes", str(processes), "--log-level", "warning"]
            if ns is not None:
                cmd = ["ip", "netns", "exec", ns.name(k), *cmd]
            host_env = dict(env, STORYPULSE_KEYS=str(host_dirs[k - 1]))
            host_log = open(tmp / f"{label}-host{k}.log", "wb")
            host_procs.append(subprocess.Popen(cmd, env=host_env, stdout=host_log,
                                               stderr=subprocess.STDOUT, start_new_session=True))
            host_log.close()

        def stats():
            return client.snapshot(history_seconds=0).stats
        wait_for(lambda: stats().workers >= workers, 60, interval=0.1,
                 what=f"{workers} remote workers ready")
        time.sleep(warmup)
        first, t0 = stats(), time.monotonic()
        cpu0, busy0 = cpu_seconds(server.pid), machine_busy_seconds()
        hosts0 = sum(tree_cpu_seconds(p.pid) for p in host_procs)
        wait0 = runqueue_wait_seconds(server.pid)
        deadline = t0 + seconds
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(0.5, left))
            s = stats()
            if s.workers != workers or s.workers_target != 0:
                raise RuntimeError(f"{label}: {s.workers} workers connected (want {workers} "
                                   f"remote), pool target {s.workers_target} (want 0)")
        cpu1, busy1 = cpu_seconds(server.pid), machine_busy_seconds()
        hosts1 = sum(tree_cpu_seconds(p.pid) for p in host_procs)
        wait1 = runqueue_wait_seconds(server.pid)
        last, t1 = stats(), time.monotonic()
        if ns is not None and shutil.which("ss"):  # every worker came in over its host's veth
            want = {f"10.200.{k}.2": processes for k in range(1, hosts + 1)}
            if (got := peers(addr, port + 2)) != want:
                raise RuntimeError(f"{label}: worker connections by peer {got}, want {want}")
        if last.tasks_queued == 0:
            raise RuntimeError(f"{label}: the queue ran dry inside the window")
        client.close()
        return Result(hosts, processes, (last.tasks_completed - first.tasks_completed) / (t1 - t0),
                      (cpu1 - cpu0) / (t1 - t0), (hosts1 - hosts0) / (t1 - t0),
                      (busy1 - busy0) / (t1 - t0), (wait1 - wait0) / (t1 - t0))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        for proc in host_procs:
            stop(proc)
        stop(server)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--hosts", default="1,2,4", help="host counts, comma-separated")
    parser.add_argument("--processes", default="4,16,64", help="worker processes per host")
    parser.add_argument("--seconds", type=float, default=4.0, help="measurement window")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--loopback", action="store_true", help="hosts on loopback, no namespaces")
    args = parser.parse_args()
    host_counts = [int(x) for x in args.hosts.split(",")]
    per_host = [int(x) for x in args.processes.split(",")]
    refused = "--loopback given" if args.loopback else namespaces_refused()
    results: dict[tuple[int, int], list[Result]] = {}
    with (tempfile.TemporaryDirectory(prefix="storypulse-hosts-") as name,
          contextlib.ExitStack() as stack):
        tmp = Path(name)
        server_keys, host_dirs = make_keys(tmp / "keys", max(host_counts))
        if refused is None:
            ns = stack.enter_context(Namespaces(max(host_counts)))
            addr = SERVER_ADDR
            print(f"worker hosts in network namespaces {ns.name(1)}..{ns.name(max(host_counts))}; "
                  f"server on {addr} with CURVE", file=sys.stderr)
        else:
            ns, addr = None, "127.0.0.1"
            print(f"network namespaces refused ({refused}): hosts on loopback, "
                  "CURVE on (STORYPULSE_CURVE=always)", file=sys.stderr)
        for run in range(args.runs):
            for hosts in host_counts:
                for processes in per_host:
                    label = f"r{run}-h{hosts}-p{processes}"
                    r = measure(tmp, label, hosts, processes, addr=addr, server_keys=server_keys,
                                host_dirs=host_dirs, ns=ns, seconds=args.seconds,
                                warmup=args.warmup)
                    results.setdefault((hosts, processes), []).append(r)
                    print(f"run {run + 1}: {hosts} host(s) x {processes}: {r.tasks_per_s:,.0f} "
                          f"tasks/s, efficiency {r.efficiency:.1%}, server CPU {r.server_cpu:.0%}, "
                          f"hosts CPU {r.hosts_cpu:.0%}, machine {r.machine_cpu:.0%}, "
                          f"server waiting for a CPU {r.server_wait:.0%}",
                          file=sys.stderr)
    print()
    where = ("in network namespaces, one veth each, server off loopback with CURVE"
             if refused is None else f"on loopback with CURVE (namespaces refused: {refused})")
    print(f"machine: {os.cpu_count()} CPUs (shared), Python {sys.version.split()[0]}; worker hosts "
          f"{where}; {TASK_MS} ms tasks; {args.seconds:g} s windows; median of {args.runs} runs")
    print()
    print("| hosts | workers per host | workers | tasks/s | ideal tasks/s | pool efficiency "
          "| server CPU | server CPU per task | server loop waiting for a CPU | worker hosts' CPU "
          "| machine busy |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for (hosts, processes), rs in results.items():
        tps = statistics.median(r.tasks_per_s for r in rs)
        eff = statistics.median(r.efficiency for r in rs)
        cpu = statistics.median(r.server_cpu for r in rs)
        per_task = statistics.median(r.server_cpu / r.tasks_per_s * 1e6 for r in rs)
        hosts_cpu = statistics.median(r.hosts_cpu for r in rs)
        machine = statistics.median(r.machine_cpu for r in rs)
        wait = statistics.median(r.server_wait for r in rs)
        workers = hosts * processes
        print(f"| {hosts} | {processes} | {workers} | {tps:,.0f} | {workers * 1000 // TASK_MS:,} "
              f"| {eff:.1%} | {cpu:.0%} | {per_task:.0f} µs | {wait:.0%} | {hosts_cpu:.0%} "
              f"| {machine:.0%} |")
    print()
    print("CPU figures: 100 % = one core, so the machine has 200 % (machine busy counts every "
          "job on it, not only this benchmark's); server CPU per task = server CPU seconds / "
          "tasks completed; waiting for a CPU = the loop thread's run-queue time "
          "(/proc/PID/schedstat) / the window")
    return 0


if __name__ == "__main__":
    sys.exit(main())
