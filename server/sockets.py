"""The server's three sockets: made with the options the loop relies on, then bound.

`listen(config)` binds them on TCP as the command line asks (with CURVE beyond
loopback). A test binds the same sockets elsewhere (`inproc://` endpoints in
its own context) and hands them to the loop, which never binds anything.
"""

from __future__ import annotations

from dataclasses import dataclass

import zmq

from storypulse import protocol
from storypulse.endpoints import Endpoints
from storypulse.security import ServerSecurity, curve_required

from .config import ServerConfig

WORKER_FRAME_MAX = 1 << 20


@dataclass
class ServerSockets:
    context: zmq.Context
    requests: zmq.Socket  # ROUTER: clients' requests and their replies
    events: zmq.Socket  # PUB: story, pool and stats events
    workers: zmq.Socket  # ROUTER: the worker protocol
    worker_endpoint: str = ""  # where local worker processes connect (set once bound)
    security: ServerSecurity | None = None
    owns_context: bool = True  # close() terminates the context too

    @classmethod
    def make(cls, context: zmq.Context, *, owns_context: bool = True) -> ServerSockets:
        """The three sockets, unbound."""
        requests = context.socket(zmq.ROUTER)
        requests.setsockopt(zmq.ROUTER_MANDATORY, 0)  # unroutable replies are dropped
        requests.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_FRAME_BYTES * 2)
        requests.setsockopt(zmq.SNDHWM, 100_000)
        requests.setsockopt(zmq.RCVHWM, 100_000)
        requests.linger = 0
        events = context.socket(zmq.PUB)
        events.setsockopt(zmq.SNDHWM, 100_000)
        events.linger = 0
        workers = context.socket(zmq.ROUTER)
        workers.setsockopt(zmq.ROUTER_MANDATORY, 0)
        workers.setsockopt(zmq.MAXMSGSIZE, WORKER_FRAME_MAX)
        workers.linger = 0
        return cls(context, requests, events, workers, owns_context=owns_context)

    @property
    def all(self) -> tuple[zmq.Socket, zmq.Socket, zmq.Socket]:
        return self.requests, self.events, self.workers

    def close(self) -> None:
        for sock in self.all:
            sock.close(linger=0)
        if self.security is not None:
            self.security.stop()
        if self.owns_context:
            self.context.term()


def listen(config: ServerConfig) -> ServerSockets:
    """Bind on the configured address and ports (requests P, events P+1, workers P+2)."""
    host = config.bind
    listen_on = Endpoints(host, config.port)
    sockets = ServerSockets.make(zmq.Context())
    try:
        if listen_on.ipv6:
            for sock in sockets.all:
                sock.setsockopt(zmq.IPV6, 1)
        # Beyond loopback only clients with an authorised key get in (CURVE + ZAP);
        # ServerSecurity.load raises MissingKey, with what to do, if keys are missing.
        if curve_required(host):
            sockets.security = ServerSecurity.load()
            sockets.security.start(sockets.context)
            for sock in sockets.all:
                sockets.security.apply(sock)
        sockets.requests.bind(listen_on.requests)
        sockets.events.bind(listen_on.events)
        sockets.workers.bind(listen_on.workers)
    except BaseException:
        sockets.close()
        raise
    # Local workers connect to the loopback when the server listens on every address.
    worker_host = {"0.0.0.0": "127.0.0.1", "*": "127.0.0.1", "::": "::1"}.get(host, host)
    sockets.worker_endpoint = Endpoints(worker_host, config.port).workers
    return sockets
