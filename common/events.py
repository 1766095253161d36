"""The server's events as every client takes them: a SUB socket on the PUB endpoint, decoded.

The request socket's counterpart (client.py): the same CURVE rule off loopback,
the same IPv6 switch. `ready_events` drains what is waiting without blocking,
bounded so a flood cannot starve the caller's other work; `wait_for_input` is
a live client's one wait, on its events and on the reply it awaits.
"""

from __future__ import annotations

from typing import Iterator

import zmq

from . import protocol
from .client import PendingRequest
from .endpoints import Endpoints
from .security import client_security_for

# OtherEvent: a topic this client does not know (a newer server's), kept only for its seq
Event = protocol.Stats | protocol.StoryEvent | protocol.PoolEvent | protocol.NoteEvent | protocol.OtherEvent


def subscriber(endpoints: Endpoints, topic: bytes, context: zmq.Context | None = None,
               *, rcvhwm: int | None = None) -> zmq.Socket:
    """A SUB socket on the events endpoint (CURVE off loopback, like the request socket)."""
    sub = (context or zmq.Context.instance()).socket(zmq.SUB)
    sub.linger = 0
    if rcvhwm is not None:
        sub.rcvhwm = rcvhwm
    security = client_security_for(endpoints.host)
    if security is not None:
        security.apply(sub)
    sub.setsockopt(zmq.SUBSCRIBE, topic)
    sub.ipv6 = endpoints.ipv6
    sub.connect(endpoints.events)
    return sub


def ready_events(sub: zmq.Socket, limit: int = 10_000) -> Iterator[Event | None]:
    """The events waiting on `sub` now, at most `limit`, decoded in order.

    None stands for a malformed message, dropped (a broken or newer server):
    not ours to crash on, and the seq check catches what it cost. A well-formed
    message of a topic this client does not know comes as an OtherEvent: its
    seq counts (it is no lost message), and what it says is not ours to read.
    """
    for _ in range(limit):
        try:
            frames = sub.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return
        try:
            event = protocol.decode_event_frames(frames)
        except protocol.ProtocolError:
            event = _other(frames)
        yield event


def _other(frames: list[bytes]) -> protocol.OtherEvent | None:
    """An event of a topic not in the protocol this client knows, else None (malformed)."""
    if len(frames) != 2 or frames[0] in protocol.EVENT_TYPES:
        return None
    try:
        return protocol.decode_other_event(frames[0], frames[1])
    except protocol.ProtocolError:
        return None


def wait_for_input(sub: zmq.Socket, request: PendingRequest | None, timeout: float) -> bool:
    """Wait up to `timeout` s (no longer than `request`'s deadline) for events on `sub` or a
    reply to `request`; True when events are waiting."""
    poller = zmq.Poller()
    poller.register(sub, zmq.POLLIN)
    if request is not None:
        poller.register(request.client.socket, zmq.POLLIN)
        timeout = min(timeout, request.remaining())
    return sub in dict(poller.poll(max(0.0, timeout) * 1000))
