"""The core's request wait and load loop (storypulse.client, storypulse.loadrun) on real sockets.

A stand-in server (support.StandInServer) answers as each test needs: busy for a
while, or not at all. `storypulse load` and the desktop simulator both run this
loop; their own tests (test_cli.py, test_desktop_simulator.py) drive it end to end.
"""

from __future__ import annotations

import time

import pytest

from storypulse import protocol
from storypulse.client import Client, ServerUnavailable
from storypulse.endpoints import Endpoints
from storypulse.loadgen import StoryGenerator
from storypulse.loadrun import BACKOFF_FIRST, LoadRun, LoadSettings
from support import StandInServer, free_port_block, wait_for


class BusyAtFirst:
    """Refuses the first `refusals` create_story requests as busy, then stores every story."""

    def __init__(self, refusals: int):
        self.refusals = refusals
        self.refused_at: list[float] = []

    def answer(self, request: protocol.Request) -> list[bytes]:
        if not isinstance(request, protocol.CreateStory):
            return [protocol.error(request.id, protocol.INVALID, "only create_story here")]
        if len(self.refused_at) < self.refusals:
            self.refused_at.append(time.monotonic())
            return [protocol.error(request.id, protocol.BUSY, "the queue is full")]
        return [protocol.ok(request.id, protocol.CreateStoryResult(7, [70] * len(request.tasks)))]


def drive(loop: LoadRun, until) -> None:
    """The callers' loop in miniature: send what is due, take the replies, until `until()` holds."""
    def turn() -> bool:
        now = time.monotonic()
        loop.send_due(now)
        loop.receive(min(loop.next_wakeup(now), now + 0.05))
        return until()
    wait_for(turn, 15, interval=0, what="the load loop to get there")


def test_busy_replies_are_resent_with_a_backoff_and_counted():
    server = BusyAtFirst(refusals=3)
    with StandInServer(server.answer) as stand_in, Client(stand_in.endpoints, timeout=5) as client:
        loop = LoadRun(client, StoryGenerator(tasks=(2, 2), seed=1), rate=20, max_in_flight=10,
                       start=time.monotonic())
        drive(loop, lambda: loop.tally.acked >= 6)
        tally = loop.finish()
    assert (tally.busy, tally.errors) == (3, 0)
    assert tally.resent >= 3  # every refused story went out again
    assert tally.tasks_acked == 2 * tally.acked
    assert tally.acked + len(loop.pending) + len(loop.retry) == tally.sent  # none lost, none twice
    assert loop.backoff == BACKOFF_FIRST  # a stored story ends the backoff
    assert len(tally.latencies) == tally.acked


def test_a_silent_server_is_noticed_and_its_requests_abandoned():
    with StandInServer(lambda request: []) as stand_in, Client(stand_in.endpoints, timeout=5) as client:
        loop = LoadRun(client, StoryGenerator(), rate=50, max_in_flight=5, start=time.monotonic(),
                       keep_latencies=False)
        drive(loop, lambda: len(loop.pending) == 5)
        assert loop.tally.sent == 5  # the bound held: the stories due beyond it were skipped
        wait_for(lambda: loop.silent_for(time.monotonic()) > 0.3, 5, 0.02, "0.3 s of silence")
        socket = client.socket
        loop.abandon("no reply from the server")
        assert not loop.pending and loop.silent_for(time.monotonic()) == 0.0
        assert (loop.tally.errors, loop.tally.last_error) == (5, "no reply from the server")
        assert client.socket is not socket  # a late reply cannot reach the next requests
        assert loop.tally.latencies is None


def test_retune_changes_the_stories_and_the_pace_from_now_on():
    client = Client(Endpoints("127.0.0.1", free_port_block()))  # never used: nothing is sent
    loop = LoadRun(client, StoryGenerator(tasks=(1, 1)), rate=1, max_in_flight=1, start=0.0)
    loop.retune(LoadSettings(rate=100, tasks=(3, 3), estimate_ms=(5, 5), arrivals="poisson",
                             estimates="lognormal"), now=10.0)
    assert (loop.pacer.rate, loop.pacer.arrivals) == (100, "poisson") and loop.pacer.next_due >= 10.0
    story = loop.generator.story()
    assert [t["estimate_ms"] for t in story["tasks"]] == [5, 5, 5]
    pacer = loop.pacer
    loop.retune(LoadSettings(rate=4, arrivals="poisson"), now=20.0)  # same arrivals: the same pacer
    assert loop.pacer is pacer and pacer.rate == 4
    loop.retune(LoadSettings(rate=4), now=30.0)  # back to steady: a steady pacer from now
    assert loop.pacer.arrivals == "steady" and loop.pacer.next_due == 30.0
    client.close()


def test_a_pending_request_waits_in_slices_and_drops_the_socket_at_its_deadline():
    with StandInServer(lambda request: []) as stand_in, Client(stand_in.endpoints, timeout=5) as client:
        pending = client.request("ping", timeout=0.5)
        socket = client.socket
        assert pending.take(0.05) == (False, None) and pending.remaining() > 0
        with pytest.raises(ServerUnavailable, match="no reply from .* to 'ping' within 0.5 s"):
            while True:
                pending.take(0.05)
        assert pending.remaining() == 0
        assert client.socket is not socket and client.in_flight == 0
