"""Free local ports, and the sockets of a stand-in server bound where a server's would be.

Shared by the tests, the benchmarks and the stand-in (tools/standin.py).
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

import zmq

from storypulse.endpoints import Endpoints


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # the usual start elsewhere


def free_port_block(count: int = 3) -> int:
    """A base port P such that P..P+count-1 are all free on 127.0.0.1.

    Below the ephemeral range: a client reconnecting to a port in that range
    while nothing listens can be handed that very port as its own source and
    connect to itself (TCP simultaneous open), then read its own request back.
    """
    for _ in range(200):
        base = random.randrange(20000, max(21000, _ephemeral_start() - count))
        sockets = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                s.bind(("127.0.0.1", port))
                sockets.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free block of ports")


def bind_server_sockets(endpoints: Endpoints, sndhwm: int = 1000) -> tuple[zmq.Socket, zmq.Socket]:
    """A stand-in server's request ROUTER and events PUB, bound where a server's would be."""
    context = zmq.Context.instance()
    router = context.socket(zmq.ROUTER)
    router.linger = 0
    router.bind(endpoints.requests)
    pub = context.socket(zmq.PUB)
    pub.linger = 0
    pub.sndhwm = sndhwm
    pub.bind(endpoints.events)
    return router, pub
