"""Clients against a broken server: malformed replies and events are dropped and counted, never fatal.

A stand-in server (support.StandInServer) on real sockets answers each request
with garbage first (fuzzing.broken_replies) and publishes garbage events
(fuzzing.BROKEN_EVENTS) between valid ones; the client must still take the
valid reply or event that follows.
"""

from __future__ import annotations

import io
import json
import time

import pytest

import fuzzing
from storypulse import protocol
from storypulse.cli import commands
from storypulse.cli import watch as live
from storypulse.cli.figures import Figures, render
from storypulse.client import Client, ServerUnavailable
from support import StandInServer, wait_for


@pytest.fixture
def broken():
    behaviour = fuzzing.BrokenServer()
    with StandInServer(behaviour.answer, behaviour.cycle) as stand_in:
        stand_in.behaviour = behaviour
        yield stand_in


def test_the_client_drops_malformed_replies_and_takes_the_valid_one(broken):
    with Client(broken.endpoints, timeout=5) as client:
        assert client.ping().server_version == "stand-in"
        assert client.bad_replies == len(fuzzing.broken_replies(1))
        page = client.list_stories()
        assert page.total == 1 and page.stories[0].story_id == 7
        assert client.bad_replies == 2 * len(fuzzing.broken_replies(1))


def test_only_garbage_is_no_reply_and_says_so(broken):
    broken.behaviour.mute = True
    with Client(broken.endpoints, timeout=1) as client, pytest.raises(ServerUnavailable) as caught:
        client.ping()
    assert f"{len(fuzzing.broken_replies(1))} malformed replies dropped" in str(caught.value)


def test_the_pipelined_receive_drops_garbage_too(broken):
    with Client(broken.endpoints, timeout=5) as client:
        request_id = client.send("ping")
        got = []
        while not got:
            reply_id, result = client.receive()
            if reply_id == request_id:
                got.append(result)
        assert isinstance(got[0], protocol.PingResult) and client.bad_replies > 0


def test_watch_drops_garbage_events_and_keeps_the_figures(broken):
    figures = Figures()
    feed = live.Feed(broken.endpoints, figures, timeout=2)
    try:
        def seen() -> bool:
            feed.pump(time.monotonic() + 0.05)
            return (figures.stats is not None and figures.seq >= 3
                    and feed.bad_events >= 2 * len(fuzzing.BROKEN_EVENTS))
        wait_for(seen, 15, interval=0, what="valid stats past the garbage")
        # The valid stats carry absurd but legal figures (2**62 tasks, 1e300 per second): they draw.
        lines = render(figures, "stand-in", feed.state(time.monotonic()), time.time())
        assert any("stories produced" in line for line in lines)
    finally:
        feed.close()


def test_watch_once_prints_through_garbage(broken):
    out = io.StringIO()
    assert live.run(broken.endpoints, once=True, duration=None, refresh=1.0, timeout=3.0,
                    as_json=True, out=out) == 0
    printed = json.loads(out.getvalue())
    assert printed["seq"] >= 1 and printed["completed_stories"] >= 0


def test_the_list_command_survives_garbage_replies(broken, capsys):
    assert commands.list_(["--server", f"127.0.0.1:{broken.endpoints.port}", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stories"][0]["story_id"] == 7


def test_add_wait_survives_garbage_replies_and_events(broken, capsys):
    broken.behaviour.story_done = True
    code = commands.add(["--server", f"127.0.0.1:{broken.endpoints.port}", "--task", "1", "--wait",
                         "--json", "a story"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["status"] == "done"
