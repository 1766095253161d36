"""A small HTTP/1.1 endpoint for operators (`/metrics`, `/livez`, `/readyz`), bounded against abuse.

It runs in one thread of the server process with a selector: no thread per
connection, so a thousand connections cost a thousand sockets, not a thousand
threads, and the loop thread is never waited on (the routes read the newest
snapshot and the heartbeat, which the loop publishes). Every connection is
bounded: at most `max_connections` open (a new one pushes out the oldest that has
not finished sending its request: a slow-loris client holds nothing for long), a
request head of at most `request_max` bytes (431 beyond), `read_timeout`
seconds from accept to the end of the head, `write_timeout` to take the
reply. One request a connection (`Connection: close`): a scraper reconnects each
time, which costs microseconds on loopback and keeps the state machine small.
Only GET and HEAD; a path not routed is 404.
"""

from __future__ import annotations

import errno
import logging
import selectors
import socket
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, NamedTuple

from .faults import RateLimitedLog
from .wakeup import WakePair

log = logging.getLogger(__name__)

REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           408: "Request Timeout", 431: "Request Header Fields Too Large",
           500: "Internal Server Error", 503: "Service Unavailable"}
TEXT = "text/plain; charset=utf-8"


class Response(NamedTuple):
    status: int
    content_type: str
    body: bytes


Route = Callable[[], Response]


@dataclass(frozen=True)
class Limits:
    max_connections: int = 128
    request_max: int = 8192  # bytes of request line and headers
    read_timeout: float = 5.0  # seconds from accept to the end of the head
    write_timeout: float = 10.0  # seconds to take the whole reply
    accepts_per_round: int = 64  # so a flood of connects does not starve the reads


class _Connection:
    __slots__ = ("sock", "inbox", "outbox", "deadline", "writing")

    def __init__(self, sock: socket.socket, deadline: float):
        self.sock = sock
        self.inbox = bytearray()
        self.outbox = memoryview(b"")
        self.deadline = deadline
        self.writing = False


def listen(bind: str, port: int, backlog: int = 128) -> socket.socket:
    """A listening socket on `bind` (a name, an IPv4 or an IPv6 address); OSError if taken."""
    family, kind, proto, _, address = socket.getaddrinfo(
        bind, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class HttpEndpoint:
    """Serves `routes` (path -> a function that answers) on a bound socket, in its own thread."""

    def __init__(self, listener: socket.socket, routes: dict[str, Route], limits: Limits = Limits()):
        self.listener = listener
        self.routes = routes
        self.limits = limits
        self.address = listener.getsockname()[:2]
        self._selector = selectors.DefaultSelector()
        self._connections: OrderedDict[socket.socket, _Connection] = OrderedDict()  # oldest first
        self._wake = WakePair()  # close() wakes the thread's select
        self._stopping = False
        self._accept_paused_until = 0.0
        self._thread: threading.Thread | None = None
        self.warn = RateLimitedLog()
        self.served = 0  # requests answered (any status), for tests and logs

    def start(self) -> HttpEndpoint:
        self._selector.register(self.listener, selectors.EVENT_READ, "accept")
        self._selector.register(self._wake.fd, selectors.EVENT_READ, "wake")
        self._thread = threading.Thread(target=self._serve, name="storypulse-http", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stopping = True
        try:
            self._wake.wake()
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(5)
        for conn in list(self._connections.values()):
            conn.sock.close()
        self._connections.clear()
        self._selector.close()
        self.listener.close()
        self._wake.close()

    # -- the thread ------------------------------------------------------------------------
    def _serve(self) -> None:
        while not self._stopping:
            try:
                self._round()
            except Exception as exc:  # a bug here must not end the endpoint, nor the server
                self.warn.log(logging.ERROR, "http", "the HTTP endpoint failed: %s", exc, exc_info=exc)
                time.sleep(0.05)

    def _round(self) -> None:
        # Idle (nothing open, accepting): sleep until a connection or close(), not wake to sweep.
        idle = not self._connections and not self._accept_paused_until
        for key, mask in self._selector.select(timeout=None if idle else 0.25):
            if key.data == "accept":
                self._accept(time.monotonic())
            elif key.data == "wake":
                self._wake.drain()
            else:
                conn = self._connections.get(key.fileobj)
                if conn is None:
                    continue
                if mask & selectors.EVENT_READ and not conn.writing:
                    self._read(conn)
                elif mask & selectors.EVENT_WRITE and conn.writing:
                    self._write(conn)
        now = time.monotonic()
        for conn in [c for c in self._connections.values() if c.deadline <= now]:
            self._drop(conn)
        if self._accept_paused_until and now >= self._accept_paused_until:
            self._accept_paused_until = 0.0
            self._selector.register(self.listener, selectors.EVENT_READ, "accept")

    def _accept(self, now: float) -> None:
        limits = self.limits
        for _ in range(limits.accepts_per_round):
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Out of descriptors: the listener stays readable, so stop polling it a while.
                    self.warn.warning("http-accept", "HTTP endpoint cannot accept: %s", exc)
                    self._selector.unregister(self.listener)
                    self._accept_paused_until = now + 0.1
                    return
                continue  # ECONNABORTED and the like: that client is gone
            if len(self._connections) >= limits.max_connections and not self._make_room():
                sock.close()
                continue
            sock.setblocking(False)
            conn = _Connection(sock, now + limits.read_timeout)
            self._connections[sock] = conn
            self._selector.register(sock, selectors.EVENT_READ, "conn")

    def _make_room(self) -> bool:
        """Close the oldest connection still sending its request; False if every one is writing."""
        for conn in self._connections.values():
            if not conn.writing:
                self._drop(conn)
                return True
        return False

    def _read(self, conn: _Connection) -> None:
        try:
            data = conn.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(conn)
            return
        if not data:
            self._drop(conn)
            return
        conn.inbox += data
        end = conn.inbox.find(b"\r\n\r\n")
        if end < 0:
            end = conn.inbox.find(b"\n\n")  # tolerated, as most servers do
        if end < 0:
            if len(conn.inbox) > self.limits.request_max:
                self._reply(conn, _plain(431, "request head too large"), head_only=False)
            return
        if end > self.limits.request_max:
            self._reply(conn, _plain(431, "request head too large"), head_only=False)
            return
        method, response = self._answer(bytes(conn.inbox[:end]))
        self._reply(conn, response, head_only=method == "HEAD")

    def _answer(self, head: bytes) -> tuple[str, Response]:
        line = head.split(b"\n", 1)[0].rstrip(b"\r")
        parts = line.split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1.") or not parts[1].startswith(b"/"):
            return "", _plain(400, "bad request line")
        try:
            method = parts[0].decode("ascii")
            path = parts[1].split(b"?", 1)[0].decode("ascii")
        except UnicodeDecodeError:
            return "", _plain(400, "bad request line")
        if method not in ("GET", "HEAD"):
            return method, _plain(405, "only GET and HEAD")
        route = self.routes.get(path)
        if route is None:
            return method, _plain(404, f"no such path; try {', '.join(sorted(self.routes))}")
        try:
            return method, route()
        except Exception as exc:
            self.warn.log(logging.ERROR, f"http-route:{path}", "answering %s failed: %s", path, exc,
                          exc_info=exc)
            return method, _plain(500, f"{type(exc).__name__}; it was logged")

    def _reply(self, conn: _Connection, response: Response, head_only: bool) -> None:
        status, content_type, body = response
        head = (f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                "Cache-Control: no-store\r\nConnection: close\r\n"
                + ("Allow: GET, HEAD\r\n" if status == 405 else "") + "\r\n").encode("ascii")
        conn.outbox = memoryview(head if head_only else head + body)
        conn.inbox = bytearray()
        conn.writing = True
        conn.deadline = time.monotonic() + self.limits.write_timeout
        self.served += 1
        self._selector.modify(conn.sock, selectors.EVENT_WRITE, "conn")
        self._write(conn)

    def _write(self, conn: _Connection) -> None:
        try:
            sent = conn.sock.send(conn.outbox)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(conn)
            return
        conn.outbox = conn.outbox[sent:]
        if not conn.outbox:
            try:
                conn.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            self._drop(conn)

    def _drop(self, conn: _Connection) -> None:
        if self._connections.pop(conn.sock, None) is None:
            return
        try:
            self._selector.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()

    @property
    def open_connections(self) -> int:
        return len(self._connections)


def _plain(status: int, text: str) -> Response:
    return Response(status, TEXT, (text + "\n").encode())
