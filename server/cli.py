"""`storypulse server` and `storypulse worker`: parse options, wire the parts, run.

Each command takes the argument list (without the subcommand's name) and
returns the exit code.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
from typing import Sequence

from storypulse import __version__, protocol
from storypulse.endpoints import parse_server
from storypulse.security import (ClientSecurity, MissingKey, client_security_for, curve_required,
                             default_key_dir)

from storypulse.workflow import check_stage_name

from . import logs
from .config import (DEFAULTS, DURABILITY_LEVELS, LOG_FORMATS, LOG_LEVELS, ConfigError, ServerConfig,
                     meaning_of_choices)

log = logging.getLogger("storypulse.server")


def server_parser() -> argparse.ArgumentParser:
    d = DEFAULTS
    parser = argparse.ArgumentParser(
        prog="storypulse server",
        description="The storypulse server: stores stories and tasks, works the tasks off "
                    "with a pool of worker processes, publishes live statistics. Logs to stderr.",
    )
    add = parser.add_argument
    add("--config", metavar="FILE",
        help="a TOML file of these settings (keys as the options, with _ for -); the "
             "environment (STORYPULSE_MIN_WORKERS, ...) overrides it and the options override "
             "both; default: $STORYPULSE_CONFIG, else no file")
    add("--db", metavar="PATH-or-URL",
        help="SQLite file, or a database URL (sqlite:///file.db, postgresql://user@host/db); "
             "default: storypulse.db in the user's data directory")
    add("--bind", metavar="ADDR", help=f"address to listen on (default {d['bind']})")
    add("--port", type=int, metavar="P",
        help=f"requests on P, events on P+1, workers on P+2 (default {d['port']})")
    add("--min-workers", type=int, metavar="N", help=f"smallest pool (default {d['min_workers']})")
    add("--max-workers", type=int, metavar="N", help=f"largest pool (default {d['max_workers']})")
    add("--time-scale", type=float, metavar="F",
        help=f"multiplies every estimate: 0.01 runs a 1 s task in 10 ms (default {d['time_scale']:g})")
    add("--stats-interval", type=float, metavar="S",
        help=f"seconds between `stats` events (default {d['stats_interval']:g})")
    add("--rate-window", type=float, metavar="S",
        help="every rate (stories/s, tasks/s) is the count over a sliding window of the last "
             f"S seconds, divided by S (default {d['rate_window']:g})")
    add("--scale-interval", type=float, metavar="S",
        help=f"seconds between pool-size decisions (default {d['scale_interval']:g})")
    add("--quiet-window", type=float, metavar="S",
        help=f"the pool shrinks only after S seconds of lower load (default {d['quiet_window']:g})")
    add("--heartbeat", type=float, metavar="S",
        help=f"heartbeat interval; a worker is dead after 3 missed beats (default {d['heartbeat']:g})")
    add("--shutdown-grace", type=float, metavar="S",
        help=f"on SIGTERM, how long busy workers may take to finish (default {d['shutdown_grace']:g})")
    add("--queue-max", type=int, metavar="N",
        help=f"create_story gets `busy` above N queued tasks (default {d['queue_max']})")
    add("--queue-window", type=int, metavar="N",
        help="queued tasks held in memory; the rest of the backlog stays in the database and is "
             f"read in as memory runs low (default {d['queue_window']})")
    add("--durability", choices=DURABILITY_LEVELS,
        help=f"{meaning_of_choices('durability')} (default {d['durability']})")
    add("--flow-window", type=float, metavar="S",
        help="lead and cycle times (p50, p85, p95) are taken over the stories completed in the "
             f"last S seconds (default {d['flow_window']:g})")
    add("--wip-limit", type=int, metavar="N",
        help="at most N stories in progress: a story's tasks start only while fewer are; "
             f"0: no limit (default {d['wip_limit']})")
    add("--stages", metavar="NAME:MIN-MAX,...",
        help="a workflow: stages in order, each with its own pool of workers, e.g. "
             "analysis:1-2,build:1-6,test:1-2 (NAME:N for a fixed pool); a story's tasks of a "
             "later stage start only when those of its earlier stages are done. Not with "
             "--min-workers/--max-workers (each stage has its bounds). Default: one stage, "
             "'work', with --min-workers/--max-workers")
    add("--stage-wip", metavar="NAME=N,...",
        help="WIP limits per stage: at most N stories in the stage at once (a story counts in "
             "a stage until it starts its next one), e.g. build=3,test=2; 0: none")
    add("--scenario", metavar="NAME-or-FILE",
        help="take the workflow (stages, pools, WIP limits) from a scenario: one that comes "
             "with storypulse (bottleneck, single) or a TOML file; --stage-wip and --wip-limit "
             "override its limits")
    add("--forecast-history", type=float, metavar="S",
        help="forecasts resample the stories completed per second over the last S seconds the "
             f"server ran (default {d['forecast_history']:g})")
    add("--log-level", choices=LOG_LEVELS, help=f"default {d['log_level']}")
    add("--log-format", choices=LOG_FORMATS,
        help="text: a line for people; json: one JSON object a line (time, level, logger, "
             f"message and the record's fields), for log shippers (default {d['log_format']})")
    add("--http-port", type=int, metavar="P",
        help="serve Prometheus metrics on http://BIND:P/metrics, and /livez and /readyz for "
             f"probes; 0: no HTTP (default {d['http_port']})")
    add("--http-bind", metavar="ADDR",
        help=f"the address of --http-port (default {d['http_bind']}); the endpoint has no "
             "authentication, so beyond loopback anyone who reaches it can read it")
    add("--parent-pipe", type=int, metavar="FD",
        help="stop (as on SIGTERM) when this file descriptor, the read end of a pipe whose write "
             "end only the starting process holds, reaches end of file: the server goes "
             "whichever way that process dies (the demo uses it)")
    add("--version", action="version",
        version=f"storypulse {__version__} (protocol {protocol.PROTOCOL_VERSION})")
    return parser


def command(argv: Sequence[str] | None = None) -> int:
    from .configfile import server_config

    parser = server_parser()
    args = parser.parse_args(argv)
    if args.parent_pipe is not None:
        try:
            os.fstat(args.parent_pipe)
        except OSError:
            parser.error(f"--parent-pipe {args.parent_pipe}: not an open file descriptor")
    not_settings = ("config", "parent_pipe")
    options = {k: v for k, v in vars(args).items() if v is not None and k not in not_settings}
    try:
        config = server_config(args.config, os.environ, options)
    except ConfigError as exc:
        print(f"storypulse server: {exc}", file=sys.stderr)
        return 2
    logs.setup(config.log_level, config.log_format)
    return serve(config, args.parent_pipe)


def serve(config: ServerConfig, parent_pipe: int | None = None) -> int:
    from .dberrors import database_errors, startup_failure
    from .daemon import Daemon
    from .loop import Server
    from .sockets import listen
    from .store import Store, WorkflowMismatch, describe

    if curve_required(config.bind):
        log.warning("listening on %s beyond loopback: CURVE on, only clients whose keys are "
                    "in %s get in", config.bind, default_key_dir() / "authorized")
    try:
        store = Store.open(config.db, config.durability, exclusive=True)
    except Exception as exc:  # anything the file, the URL or the database server can do
        log.debug("opening the database failed", exc_info=True)
        failure = startup_failure(config.db, exc)
        log.critical("cannot start: %s", failure.message,
                     extra=_start_failed(failure.message, failure.exit_code))
        return failure.exit_code
    in_force = store.durability_in_force()
    log.info("storypulse %s: database %s, durability %s (%s in force)", __version__,
             describe(store.db), config.durability, in_force,
             extra={"event": "start", "version": __version__, "database": describe(store.db),
                    "durability": config.durability, "in_force": in_force})
    sockets = daemon = None
    try:
        sockets = listen(config)
        daemon = Daemon.open(config)
        server = Server(config, store, sockets, parent_pipe, daemon=daemon)
    except Exception as exc:  # typically: a port is taken
        log.critical("cannot start: %s", exc, extra=_start_failed(str(exc), 1))
        for part in (daemon, sockets, store):
            if part is not None:
                part.close()
        return 1
    server.install_signal_handlers()
    try:
        return server.run()
    except WorkflowMismatch as exc:  # the database's stages are not this workflow's
        log.critical("cannot start: %s", exc)
        return 1
    except database_errors() as exc:  # e.g. damage deep in the file, met while restoring
        log.debug("the database failed", exc_info=True)
        failure = startup_failure(config.db, exc)
        log.critical("stopped: %s", failure.message, extra={
            "event": "stopped", "cause": failure.message, "exit_code": failure.exit_code})
        return failure.exit_code


def _start_failed(cause: str, code: int) -> dict:
    """The structured fields of the line that says why the server did not start."""
    return {"event": "start.failed", "cause": cause, "exit_code": code}


# -- storypulse worker ---------------------------------------------------------------
def worker_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="storypulse worker",
        description="A worker host: runs worker processes that connect to a storypulse server "
                    "(on this or another machine) and work off its tasks. They reconnect if "
                    "the server goes away, and exit when the server retires them.",
    )
    parser.add_argument("--server", metavar="HOST[:PORT]", default=None,
                        help="the server's request port; workers connect to PORT+2 "
                             "(default 127.0.0.1:5555)")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1, metavar="N",
                        help="worker processes to run (default: one per CPU)")
    parser.add_argument("--heartbeat", type=float, default=DEFAULTS["heartbeat"], metavar="S",
                        help="must match the server's --heartbeat (default %(default)g)")
    parser.add_argument("--stage", metavar="NAME",
                        help="with a server that runs a workflow (--stages), the stage whose "
                             "tasks these workers take; a stage the server lacks is refused, "
                             "naming its stages (default: the first stage)")
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    parser.add_argument("--log-format", choices=LOG_FORMATS, default="text",
                        help="text, or json: one JSON object a line (default %(default)s)")
    parser.add_argument("--version", action="version", version=f"storypulse {__version__}")
    return parser


def worker_command(argv: Sequence[str] | None = None) -> int:
    parser = worker_parser()
    args = parser.parse_args(argv)
    try:
        endpoints = parse_server(args.server)
        security = client_security_for(endpoints.host)
    except (ValueError, MissingKey) as exc:
        parser.error(str(exc))
    if not 1 <= args.processes <= protocol.WORKERS_MAX:
        parser.error(f"--processes must be within 1-{protocol.WORKERS_MAX}")
    if args.heartbeat <= 0:
        parser.error("--heartbeat must be > 0")
    if args.stage is not None:
        try:
            check_stage_name(args.stage, "--stage")
        except ValueError as exc:
            parser.error(str(exc))
    logs.setup(args.log_level, args.log_format)
    from .worker import process_context

    endpoint = endpoints.workers
    context = process_context(["storypulse.server.worker"])
    processes = [
        context.Process(target=_remote_worker, args=(endpoint, args.heartbeat, security, args.stage),
                        name=f"storypulse-worker-{i}")
        for i in range(args.processes)
    ]
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    for process in processes:
        process.start()
    log.info("%d worker process(es) connecting to %s%s", len(processes), endpoint,
             f" for stage {args.stage!r}" if args.stage else "")
    while any(p.is_alive() for p in processes) and not stopping:
        multiprocessing.connection.wait([p.sentinel for p in processes if p.is_alive()], 0.5)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(5)
    refused = sum(1 for p in processes if p.exitcode == REFUSED_EXIT)
    if refused:
        log.error("the server refused %d worker process(es) (each logged why)", refused)
        return 1
    return 0


REFUSED_EXIT = 3  # a worker process the server refused (a Stop with a reason)


def _remote_worker(endpoint: str, heartbeat: float, security: ClientSecurity | None,
                   stage: str | None = None) -> None:
    from . import worker

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logs.setup_from_environ("info")
    if worker.run(endpoint, None, heartbeat, reconnect=True, security=security,
                  stage=stage) == "refused":
        sys.exit(REFUSED_EXIT)
