"""The request client that every client (CLI, simulator, desktop app, tests) uses.

A DEALER socket with correlation ids: replies are matched to requests, so a
late reply to a request that timed out is recognised and dropped. Not
thread-safe: use one Client per thread (ZeroMQ sockets belong to one thread).
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import zmq

from . import protocol
from .endpoints import Endpoints, parse_server
from .security import client_security_for


class RequestError(Exception):
    """The server answered with an error."""

    def __init__(self, code: str, message: str, request_id: int | str | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.request_id = request_id  # lets pipelined callers retry the right request


class ServerUnavailable(TimeoutError):
    """No reply within the timeout."""


class Client:
    def __init__(
        self,
        server: str | Endpoints | None = None,
        *,
        timeout: float = 5.0,
        context: zmq.Context | None = None,
    ):
        self.endpoints = server if isinstance(server, Endpoints) else parse_server(server)
        self.timeout = timeout
        self._context = context or zmq.Context.instance()
        self._ids = itertools.count(1)
        self._socket: zmq.Socket | None = None
        self._pending: dict[int, str] = {}  # request id -> op, for pipelined use
        self.bad_replies = 0  # malformed replies dropped (a broken or newer server)
        # Off loopback the server requires CURVE; fail now, clearly, if keys are missing.
        self._security = client_security_for(self.endpoints.host)

    # -- plumbing ------------------------------------------------------------
    @property
    def socket(self) -> zmq.Socket:
        if self._socket is None:
            sock = self._context.socket(zmq.DEALER)
            sock.linger = 0
            sock.ipv6 = self.endpoints.ipv6
            if self._security is not None:
                self._security.apply(sock)
            sock.connect(self.endpoints.requests)
            self._socket = sock
        return self._socket

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None
        self._pending.clear()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one request, one reply ---------------------------------------------
    def call(self, op: str, timeout: float | None = None, **fields: Any) -> Any:
        """Send one request and wait for its reply; returns the typed result."""
        pending = self.request(op, timeout, **fields)
        while True:
            done, result = pending.take(pending.remaining())
            if done:
                return result

    def request(self, op: str, timeout: float | None = None, **fields: Any) -> PendingRequest:
        """Send one request; its reply is awaited through the returned PendingRequest."""
        wait = self.timeout if timeout is None else timeout
        return PendingRequest(self, self.send(op, **fields), op, wait)

    # -- pipelined use (load generator, benchmarks) -------------------------
    def send(self, op: str, **fields: Any) -> int:
        request_id = next(self._ids)
        self._pending[request_id] = op
        self.socket.send(protocol.encode({"op": op, "id": request_id, **fields}))
        return request_id

    def receive(self, timeout: float | None = None) -> tuple[int, Any]:
        """The next reply to a `send`: (request id, result); raises RequestError.

        A malformed reply comes back as (None, None): dropped and counted in `bad_replies`."""
        wait = self.timeout if timeout is None else timeout
        if not self.socket.poll(wait * 1000):
            raise ServerUnavailable(f"no reply from {self.endpoints.requests} within {wait:g} s")
        return self._receive()

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def _receive(self) -> tuple[Any, Any]:
        try:
            reply = protocol.decode_reply(self.socket.recv())
        except protocol.ProtocolError:
            self.bad_replies += 1  # not ours to crash on; the caller's deadline still holds
            return None, None
        op = self._pending.get(reply.id) if isinstance(reply.id, int) else None
        if not reply.ok:
            self._pending.pop(reply.id, None)
            error = reply.error or protocol.ErrorInfo("internal", "error reply without details")
            if op is None:
                return reply.id, None  # an error for a request we gave up on
            raise RequestError(error.code, error.message, reply.id)
        result_type = protocol.RESULT_TYPES.get(op) if op else None
        try:
            result = protocol.convert_result(reply.result, result_type) if result_type else reply.result
        except protocol.ProtocolError:
            self.bad_replies += 1  # the request stays pending: its real reply may follow
            return None, None
        self._pending.pop(reply.id, None)
        return reply.id, result

    # -- the ops, typed ------------------------------------------------------
    def ping(self) -> protocol.PingResult:
        return self.call("ping")

    def create_story(
        self, name: str, tasks: list[dict[str, Any]], description: str = ""
    ) -> protocol.CreateStoryResult:
        return self.call("create_story", name=name, tasks=tasks, description=description)

    def delete_story(self, story_id: int) -> None:
        self.call("delete_story", story_id=story_id)

    def get_story(self, story_id: int) -> protocol.StoryView:
        return self.call("get_story", story_id=story_id)

    def list_stories(
        self, status: str | None = None, offset: int = 0, limit: int = 100
    ) -> protocol.ListStoriesResult:
        fields: dict[str, Any] = {"offset": offset, "limit": limit}
        if status:
            fields["status"] = status
        return self.call("list_stories", **fields)

    def snapshot(self, history_seconds: int = 600) -> protocol.SnapshotResult:
        return self.call("snapshot", history_seconds=history_seconds)

    def set_pool(
        self, min_workers: int | None = None, max_workers: int | None = None,
        stage: str | None = None,
    ) -> protocol.PoolResult:
        """The bounds of a stage's pool (None: the first stage's)."""
        fields = {k: v for k, v in (("min_workers", min_workers), ("max_workers", max_workers),
                                    ("stage", stage)) if v is not None}
        return self.call("set_pool", **fields)

    def set_flow(
        self, wip_limit: int | None = None, flow_window_s: float | None = None,
        stage_wip_limits: dict[str, int] | None = None,
    ) -> protocol.FlowResult:
        fields = {k: v for k, v in (("wip_limit", wip_limit), ("flow_window_s", flow_window_s),
                                    ("stage_wip_limits", stage_wip_limits)) if v is not None}
        return self.call("set_flow", **fields)


class PendingRequest:
    """One request awaiting its reply by a deadline: the one place a client gives up on a reply.

    Giving up drops the client's socket, so that a reply arriving later cannot be
    mistaken for the answer to the next request. `take` waits in whatever slices
    the caller likes (a blocking call, a loop that checks for a stop, a poller that
    also serves a SUB socket); the deadline holds across them.
    """

    def __init__(self, client: Client, request_id: int, op: str, timeout: float):
        self.client = client
        self.request_id = request_id
        self.op = op
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self._bad_before = client.bad_replies

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def take(self, wait: float) -> tuple[bool, Any]:
        """(True, result) once the reply came within `wait` s; (False, None) while the deadline holds.

        Past the deadline: the socket is dropped and ServerUnavailable raised. An error
        reply raises RequestError; replies to other, abandoned requests are dropped."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            self._give_up()
        if not self.client.socket.poll(min(wait, remaining) * 1000):
            return False, None
        reply_id, result = self.client._receive()
        if reply_id == self.request_id:
            return True, result
        return False, None

    def _give_up(self) -> None:
        client = self.client
        client.close()
        bad = client.bad_replies - self._bad_before
        raise ServerUnavailable(
            f"no reply from {client.endpoints.requests} to {self.op!r} within {self.timeout:g} s"
            + (f" ({bad} malformed repl{'y' if bad == 1 else 'ies'} dropped)" if bad else "")
        )
