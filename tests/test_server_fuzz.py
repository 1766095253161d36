"""The live server under fuzz: a real process on free ports, hostile frames on every port.

Each port gets batches of generated frames (fuzzing.py) in envelopes of random
shape; after every batch the server must still answer `ping` and complete a
valid story, and at the end must have counted no internal error (one would be
a bug that the guard caught). Every reply and every message to a worker must
itself be valid protocol.

Frames per port: STORYPULSE_FUZZ_FRAMES (10,000 by default; `make fuzz` sends
far more). Each batch draws from random.Random(f"{seed}/{port}/{batch}"); the
seed is printed, and STORYPULSE_FUZZ_SEED=<seed> replays a failing run exactly.
"""

from __future__ import annotations

import os
import random
import socket
import time

import pytest
import zmq

import fuzzing
from storypulse import protocol
from support import EventTap, wait_for

FRAMES = int(os.environ.get("STORYPULSE_FUZZ_FRAMES", "10000"))
SEED = int(os.environ.get("STORYPULSE_FUZZ_SEED", str(random.randrange(2**32))))
BATCH = 400  # frames between two checks
REQUEST_SOCKET_MAX = 2 * protocol.MAX_FRAME_BYTES  # the server's ZMQ_MAXMSGSIZE on requests
WORKER_SOCKET_MAX = 1 << 20  # and on the worker port
pytestmark = pytest.mark.timeout(max(300, FRAMES // 200))  # `make fuzz` runs far longer


@pytest.fixture(params=["one stage", "stages"])
def fuzzed(request, server_factory):
    # time_scale 0: the stories that fuzzed requests happen to create take no time to work off.
    # With stages, fuzzed requests name them (fuzzing.STAGE_NAMES: these, and others).
    extra = ["--stages", "analysis:1,build:1,test:1"] if request.param == "stages" else []
    server = server_factory(time_scale=0.0, stats_interval=0.05, extra=extra).start()
    print(f"fuzz seed {SEED} (replay: STORYPULSE_FUZZ_SEED={SEED}), {FRAMES} frames per port")
    return server


def batches(port: str):
    """(batch number, its own Random) until the caller has sent enough."""
    number = 0
    while True:
        yield number, random.Random(f"{SEED}/{port}/{number}")
        number += 1


def dealer(endpoint: str, identity: bytes | None = None) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.setsockopt(zmq.RCVHWM, 0)
    if identity is not None:
        sock.identity = identity
    sock.connect(endpoint)
    return sock


def hint(server, where: str) -> str:
    """Where a check failed, how to replay it, and whether (and how) the server died."""
    text = f"at {where} (replay: STORYPULSE_FUZZ_SEED={SEED})"
    if server.proc.poll() is not None:
        text += f"; the server died:\n{server.log()[-4000:]}"
    return text


def still_works(server, where: str, pump=lambda: None) -> None:
    """The server answers ping and works a valid story off; `pump` runs while it waits."""
    hint_ = hint(server, where)
    assert server.proc.poll() is None, hint_
    with server.client(timeout=5.0) as client:
        assert client.ping().protocol_version == protocol.PROTOCOL_VERSION, hint_
        story = client.create_story("fuzz check", [{"estimate_ms": 0}, {"estimate_ms": 1}])

        def done() -> bool:
            pump()
            return client.get_story(story.story_id).status == "done"
        wait_for(done, 15, interval=0.005, what=f"the check story to complete {hint_}")


def no_internal_errors(server) -> protocol.Stats:
    tap = EventTap(server)
    try:
        stats = tap.last_stats()
    finally:
        tap.close()
    assert stats.internal_errors == 0, f"the guard caught a bug:\n{server.log()[-6000:]}"
    return stats


def raw_tcp_garbage(r: random.Random, endpoint: str) -> None:
    """Bytes that are not ZMTP at all: libzmq must drop the connection, not the server."""
    host, port = endpoint.rsplit("/", 1)[1].rsplit(":", 1)
    try:
        conn = socket.create_connection((host, int(port)), timeout=2)
    except OSError:
        return  # nobody listening: the checks that follow say why
    with conn:
        conn.sendall(r.choice([b"\xff" + bytes(8) + b"\x7f\x03\x00NULL", b"GET / HTTP/1.0\r\n\r\n",
                               bytes(r.randrange(256) for _ in range(r.randrange(1, 200)))]))


# -- the request port -----------------------------------------------------------------------------
def safe_request(r: random.Random) -> bytes:
    """A fuzzed request, unless it is a valid set_pool that would grow the pool on this small machine."""
    frame = fuzzing.hostile(r, fuzzing.valid_request(r))
    try:
        request = protocol.decode_request(frame)
    except protocol.ProtocolError:
        return frame
    if isinstance(request, protocol.SetPool) and ((request.min_workers or 0) > 2 or (request.max_workers or 0) > 2):
        return fuzzing.garbage(r)
    return frame


def request_envelope(r: random.Random) -> list[bytes]:
    """What a DEALER sends: one frame mostly, else a random shape."""
    payload = safe_request(r)
    shape = r.randrange(12)
    if shape < 7:
        return [payload]
    if shape == 7:
        return [b"", payload]  # what a REQ socket sends
    if shape == 8:
        return [b""] * r.randint(2, 4) + [payload]
    if shape == 9:
        return [payload] * r.randint(2, 6)
    if shape == 10:
        return [r.choice([b"x", b"\x00", b"[" * 1000]), b"", payload]
    return [b""]


def owed(frames: list[bytes]) -> int:
    """Replies the server owes (docs/protocol.md): one for a DEALER's [payload] or a REQ's ['', payload]."""
    return 1 if len(frames) == 1 or (len(frames) == 2 and not frames[0]) else 0


def test_request_port_survives_fuzzing(fuzzed):
    server = fuzzed
    sock = dealer(server.endpoints.requests)
    sent = answered = 0
    try:
        for number, r in batches("requests"):
            if sent >= FRAMES:
                break
            expected = 0
            for _ in range(BATCH):
                frames = request_envelope(r)
                if sum(map(len, frames)) > REQUEST_SOCKET_MAX:
                    continue  # would cost this socket its connection: see the huge frames below
                sock.send_multipart(frames)
                sent += len(frames)
                expected += owed(frames)
            # At and over the frame limit, and over the socket's: refused, or the connection dropped.
            pad = protocol.MAX_FRAME_BYTES - len(b'{"op": "ping"}')
            for frame in (b'{"op": "ping"' + b" " * pad + b"}", b'{"op": "ping"' + b" " * (pad + 1) + b"}"):
                sock.send(frame)
                sent += 1
                expected += 1
            throwaway = dealer(server.endpoints.requests)
            throwaway.send(b"[" * (REQUEST_SOCKET_MAX + 1))
            sent += 1
            raw_tcp_garbage(r, server.endpoints.requests)

            got = 0
            deadline = time.monotonic() + 20
            while got < expected:
                assert sock.poll(max(0, deadline - time.monotonic()) * 1000), \
                    f"{got} of {expected} replies {hint(server, f'request batch {number}')}"
                reply = sock.recv_multipart()
                protocol.decode_reply(reply[-1])  # every reply is valid protocol
                got += 1
            answered += got
            throwaway.close(linger=0)
            still_works(server, f"request batch {number}")
    finally:
        sock.close(linger=0)
    stats = no_internal_errors(server)
    assert stats.dropped_messages > 0  # the bad envelopes were counted
    print(f"request port: {sent} frames sent, {answered} replies, {stats.dropped_messages} dropped")
    assert sent >= FRAMES


# -- the worker port ------------------------------------------------------------------------------
class FuzzWorker:
    """One DEALER on the worker port that, besides the fuzz, acts like a worker: whatever
    lease it is given it reports done, so the check story never waits on it."""

    def __init__(self, endpoint: str):
        self.sock = dealer(endpoint, identity=b"fuzz-worker")
        self.received = 0

    def pump(self) -> None:
        while self.sock.poll(0):
            frames = self.sock.recv_multipart()
            assert len(frames) == 1, frames
            message = protocol.decode_to_worker(frames[0])  # what the server sends is valid
            self.received += 1
            if isinstance(message, protocol.Work):
                self.sock.send(protocol.encode(protocol.Done([t for t, _ in message.tasks])))

    def close(self) -> None:
        self.sock.close(linger=0)


def says_ready(frame: bytes) -> bool:
    try:
        return isinstance(protocol.decode_worker_message(frame), protocol.Ready)
    except protocol.ProtocolError:
        return False


def worker_envelope(r: random.Random) -> list[bytes]:
    payload = fuzzing.hostile(r, fuzzing.valid_worker_message(r))
    shape = r.randrange(10)
    if shape < 6:
        return [payload]
    if shape == 6:
        return [b"", payload]
    if shape == 7:
        return [payload] * r.randint(2, 5)
    if shape == 8:
        return [b""]
    return [b"x" * r.choice([1, 1000, 300_000])]


def test_worker_port_survives_fuzzing(fuzzed):
    server = fuzzed
    worker = FuzzWorker(server.endpoints.workers)
    sent = 0
    try:
        for number, r in batches("workers"):
            if sent >= FRAMES:
                break
            # Others come and go; none may say Ready, or it would hold leases after it left.
            passer_by = dealer(server.endpoints.workers)
            for _ in range(BATCH):
                frames = worker_envelope(r)
                if sum(map(len, frames)) > WORKER_SOCKET_MAX:
                    continue
                if r.random() < 0.8 or any(says_ready(f) for f in frames):
                    worker.sock.send_multipart(frames)
                else:
                    passer_by.send_multipart(frames)
                sent += len(frames)
                worker.pump()
            throwaway = dealer(server.endpoints.workers)
            throwaway.send(b"x" * (WORKER_SOCKET_MAX + 1))
            sent += 1
            raw_tcp_garbage(r, server.endpoints.workers)
            still_works(server, f"worker batch {number}", worker.pump)
            passer_by.close(linger=0)
            throwaway.close(linger=0)
    finally:
        worker.close()
    stats = no_internal_errors(server)
    assert stats.dropped_messages > 0
    print(f"worker port: {sent} frames sent, {worker.received} messages back, "
          f"{stats.dropped_messages} dropped")
    assert sent >= FRAMES


# -- the events port ---------------------------------------------------------------------------------
def subscription(r: random.Random) -> bytes:
    return r.choice([b"", b"s", b"stats", b"story", b"pool", b"\x00", b"\xff" * 3,
                     bytes(r.randrange(256) for _ in range(r.randrange(40))), b"t" * 65_536])


@pytest.mark.parametrize("fuzzed", ["one stage"], indirect=True)  # stages change no event port
def test_events_port_survives_random_subscriptions(fuzzed):
    server = fuzzed
    context = zmq.Context.instance()
    sent = 0
    for number, r in batches("events"):
        if sent >= FRAMES:
            break
        # An XSUB speaks subscriptions as frames: \x01 subscribe, \x00 unsubscribe, others anything.
        raw = context.socket(zmq.XSUB)
        raw.linger = 0
        raw.connect(server.endpoints.events)
        subs = []
        for _ in range(BATCH):
            kind = r.randrange(10)
            if kind < 5:
                raw.send(r.choice([b"\x01", b"\x00"]) + subscription(r))
            elif kind < 7:
                raw.send(r.choice([b"", b"\x02junk", b"\x01", fuzzing.garbage(r)]))
            elif kind == 7:
                raw.send_multipart([b"\x01" + subscription(r), fuzzing.garbage(r), b""])
            else:
                if not subs or r.random() < 0.3:
                    sub = context.socket(zmq.SUB)
                    sub.linger = 0
                    sub.setsockopt(zmq.RCVHWM, 10)
                    sub.connect(server.endpoints.events)
                    subs.append(sub)
                sub = r.choice(subs)
                sub.setsockopt(r.choice([zmq.SUBSCRIBE, zmq.UNSUBSCRIBE]), subscription(r))
            sent += 1
        raw_tcp_garbage(r, server.endpoints.events)
        # A plain subscriber still gets the figures, and the rest of the server works.
        tap = EventTap(server)
        tap.close()
        still_works(server, f"events batch {number}")
        raw.close(linger=0)
        for sub in subs:
            sub.close(linger=0)
    no_internal_errors(server)
    print(f"events port: {sent} subscription frames sent")
    assert sent >= FRAMES
