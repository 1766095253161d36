"""The loop's guard around each message, on a real Server in this process (tests/inproc.py).

No input we know of makes a handler raise any more (the fuzz tests look for one),
so a fault is planted where a bug would be: the guard must catch it at that
message, count it, answer `internal` where it can, and go on serving.
"""

from __future__ import annotations

import os

import pytest
import zmq

from inproc import InprocServer
from storypulse import protocol
from storypulse.server.loop import Server
from storypulse.server.ops import Op
from storypulse.server.pool import Worker
from support import wait_for


class Boom(RuntimeError):
    pass


def boom(*args, **kwargs):
    raise Boom("planted fault \udc80")  # a lone surrogate too: the error path must not choke on it


@pytest.fixture
def loop(tmp_path):
    harness = InprocServer(tmp_path / "guard.db", workers=0, max_workers=1, stats_interval=0.05)
    yield harness.server
    harness.close()


def dealer(endpoint: str) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(endpoint)
    return sock


def turn_until(server: Server, condition, what: str):
    def step():
        server.turn()
        return condition()
    return wait_for(step, 10, interval=0, what=what)


def ask(server: Server, sock: zmq.Socket, frame: bytes) -> protocol.Reply:
    sock.send(frame)
    turn_until(server, lambda: sock.poll(0), "a reply")
    return protocol.decode_reply(sock.recv())


def test_a_request_that_raises_is_answered_internal_and_the_loop_goes_on(loop):
    sock = dealer(loop.requests.LAST_ENDPOINT.decode())
    try:
        healthy = loop.service.handle_request
        loop.service.handle_request = boom
        reply = ask(loop, sock, b'{"op": "ping", "id": "p-1"}')
        assert reply.error.code == protocol.INTERNAL and reply.id == "p-1"
        assert "Boom" in reply.error.message
        loop.service.handle_request = healthy
        assert ask(loop, sock, b'{"op": "ping", "id": 2}').ok
        assert loop.service.stats(0.0, 0.0, 0).internal_errors == 1
    finally:
        sock.close(linger=0)


def test_a_handler_that_raises_is_counted_too(loop):
    sock = dealer(loop.requests.LAST_ENDPOINT.decode())
    try:
        loop.service.ops[protocol.Ping] = Op(boom)
        reply = ask(loop, sock, b'{"op": "ping", "id": 3}')
        assert (reply.error.code, reply.id) == (protocol.INTERNAL, 3)
        assert "\\udc80" in reply.error.message  # escaped, not a reply that failed to encode
        assert loop.service.faults.internal_errors == 1
    finally:
        sock.close(linger=0)


def test_a_worker_message_that_raises_is_dropped_and_counted(loop):
    sock = dealer(loop.workers.LAST_ENDPOINT.decode())
    try:
        loop.pool.on_ready = boom
        sock.send(protocol.encode(protocol.Ready(pid=1)))
        turn_until(loop, lambda: loop.service.faults.internal_errors == 1, "the fault to be counted")
        sock.send(b"not a worker message")
        turn_until(loop, lambda: loop.service.faults.dropped_messages == 1, "the drop to be counted")
        stats = loop.service.stats(0.0, 0.0, 0)
        assert (stats.internal_errors, stats.dropped_messages) == (1, 1)
    finally:
        sock.close(linger=0)


def test_a_sentinel_whose_handling_raises_is_unregistered(loop):
    read_end, write_end = os.pipe()
    try:
        worker = Worker(b"w-planted", None)
        loop.pool.by_sentinel[read_end] = worker
        loop._sentinels.add(read_end)
        loop.poller.register(read_end, zmq.POLLIN)
        loop._lose = boom
        os.write(write_end, b"x")  # the "process" ended: its sentinel is readable
        turn_until(loop, lambda: loop.service.faults.internal_errors == 1, "the fault to be counted")
        # Left registered, a readable sentinel would wake every poll at once for ever.
        assert read_end not in loop._sentinels
        assert read_end not in dict(loop.poller.sockets)
    finally:
        os.close(read_end)
        os.close(write_end)

