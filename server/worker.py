"""The worker process: connect, say Ready, run leases, report Done, heartbeat.

A lease is "run" by sleeping the sum of its scaled estimates. The sleep is a
poll on the socket, so the worker keeps answering heartbeats and hears Stop
while it works. A worker that hears nothing from the server for
HEARTBEAT_LIVENESS beats gives up: a local worker exits (its server is gone),
a remote one (`storypulse worker`) reconnects with a back-off.

This module is preloaded by the forkserver, so it imports little.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import multiprocessing.context
import os
import signal
import socket
import time
from collections import deque

import zmq

from storypulse import protocol
from storypulse.security import ClientSecurity

from . import logs

log = logging.getLogger(__name__)

HEARTBEAT_LIVENESS = 3
_encode = protocol.encode


def process_context(preload: list[str]) -> multiprocessing.context.BaseContext:
    """How worker processes start: never `fork` (the server runs ZeroMQ threads);
    a forkserver with the worker's modules preloaded starts one in milliseconds,
    `spawn` (Windows) in about a tenth of a second."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(preload)
        return context
    return multiprocessing.get_context("spawn")


def run_local(endpoint: str, identity: bytes, heartbeat: float,
              security: ClientSecurity | None = None, stage: str | None = None) -> None:
    """Entry point of a pool worker process (started by the server), of the pool of `stage`."""
    # Ctrl-C in a terminal reaches the whole process group: the server decides
    # when its workers stop (it sends Stop), so ignore it here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if os.environ.get(logs.ENV_FORMAT) == "json":  # the server logs JSON: so do its workers
        logs.setup_from_environ("warning")
    run(endpoint, identity, heartbeat, reconnect=False, security=security, stage=stage)


def run(endpoint: str, identity: bytes | None, heartbeat: float, *, reconnect: bool,
        security: ClientSecurity | None = None, stage: str | None = None) -> str:
    """Serve one server (the tasks of its stage `stage`; None: its first) until Stop (returns
    "stop"; "refused" when the Stop gave a reason), or until it is lost and not `reconnect`."""
    context = zmq.Context()
    backoff = heartbeat
    try:
        while True:
            sock = context.socket(zmq.DEALER)
            sock.linger = 0
            if identity is not None:
                sock.identity = identity
            if "[" in endpoint:  # an IPv6 address
                sock.ipv6 = True
            if security is not None:  # CURVE: the server listens beyond loopback
                security.apply(sock)
            sock.connect(endpoint)
            try:
                outcome = _serve(sock, heartbeat, stage)
            finally:
                sock.close(linger=0)
            if outcome != "lost" or not reconnect:
                return outcome
            log.warning("server at %s is silent; reconnecting in %.1f s", endpoint, backoff)
            time.sleep(backoff)
            backoff = min(backoff * 2, 30.0)
    finally:
        context.term()


def _serve(sock: zmq.Socket, heartbeat: float, stage: str | None = None) -> str:
    send = sock.send
    send(_encode(protocol.Ready(pid=os.getpid(), host=socket.gethostname(), stage=stage)))
    beat = _encode(protocol.Heartbeat())
    patience = heartbeat * HEARTBEAT_LIVENESS
    now = time.monotonic()
    last_heard = now
    next_beat = now + heartbeat
    leases: deque[protocol.Work] = deque()
    lease_ids: list[int] | None = None
    lease_ends = 0.0
    stopping = False
    outcome = "stop"
    while True:
        now = time.monotonic()
        if lease_ids is None and leases:
            work = leases.popleft()
            lease_ids = [task_id for task_id, _ in work.tasks]
            lease_ends = now + sum(est for _, est in work.tasks) * work.time_scale / 1000.0
        if lease_ids is not None and now >= lease_ends:
            send(_encode(protocol.Done(task_ids=lease_ids)))
            lease_ids = None
            next_beat = now + heartbeat  # Done shows we are alive
            if leases:
                continue
            if stopping:
                return outcome
        if now >= next_beat:
            send(beat)
            next_beat = now + heartbeat
        if now - last_heard > patience:
            return "lost"
        wake = min(next_beat, last_heard + patience)
        if lease_ids is not None:
            wake = min(wake, lease_ends)
        wait = wake - now
        if lease_ids is not None and wait < 0.002:
            # zmq polls in whole milliseconds: sleep the last bit precisely instead.
            time.sleep(max(0.0, wait))
            continue
        if not sock.poll(math.floor(wait * 1000) if lease_ids is not None else math.ceil(wait * 1000)):
            continue
        last_heard = time.monotonic()
        while True:
            try:
                frame = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            try:
                message = protocol.decode_to_worker(frame)
            except Exception as exc:  # a newer server, or garbage: keep working
                log.warning("ignoring a message from the server: %s", exc)
                continue
            if isinstance(message, protocol.Work):
                leases.append(message)
            elif isinstance(message, protocol.Stop):
                stopping = True
                if message.reason:  # refused: say why, and do not come back
                    log.error("the server refused this worker: %s", message.reason)
                    outcome = "refused"
        if stopping and lease_ids is None and not leases:
            return outcome

