"""CURVE + ZAP: beyond loopback only clients with an authorised key get in.

The server decides by its bind address; STORYPULSE_CURVE=always turns the same
path on for loopback, so these tests need no other address.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import zmq.auth

from storypulse.client import Client, ServerUnavailable
from storypulse.cli.keys import keys_command
from support import wait_for


@pytest.fixture
def keys(tmp_path, monkeypatch):
    key_dir = tmp_path / "keys"
    assert keys_command(["init", "--dir", str(key_dir)]) == 0
    monkeypatch.setenv("STORYPULSE_KEYS", str(key_dir))
    monkeypatch.setenv("STORYPULSE_CURVE", "always")
    return key_dir


def test_an_authorised_client_gets_in_and_local_workers_still_work(keys, server_factory):
    server = server_factory(time_scale=0.001).start()  # inherits the environment
    assert "CURVE on" in server.log()
    with server.client() as client:
        assert client.ping().protocol_version >= 1
        story = client.create_story("secure", [{"estimate_ms": 10}] * 3)
        wait_for(lambda: client.get_story(story.story_id).status == "done", 20,
                 what="the story to be done by CURVE-authenticated workers")


def test_a_client_with_an_unknown_key_gets_no_answer(keys, server_factory, tmp_path, monkeypatch):
    server = server_factory().start()
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    zmq.auth.create_certificates(str(stranger), "client")
    (stranger / "server.key").write_bytes((keys / "server.key").read_bytes())
    monkeypatch.setenv("STORYPULSE_KEYS", str(stranger))
    with Client(server.endpoints, timeout=1.0) as client, pytest.raises(ServerUnavailable):
        client.ping()
    monkeypatch.setenv("STORYPULSE_KEYS", str(keys))
    with server.client() as client:  # the server is unharmed
        assert client.ping()


def test_a_server_without_keys_refuses_to_start_and_says_why(server_factory, tmp_path, monkeypatch):
    monkeypatch.setenv("STORYPULSE_KEYS", str(tmp_path / "nowhere"))
    monkeypatch.setenv("STORYPULSE_CURVE", "always")
    server = server_factory().start(wait=False)
    assert server.proc.wait(20) == 1
    assert "storypulse keys init" in server.log()


def test_ipv6_loopback_works_end_to_end(server_factory):
    if not os.path.exists("/proc/net/if_inet6"):
        pytest.skip("no IPv6 on this machine")
    server = server_factory(extra=["--bind", "::1"]).start(wait=False)
    with Client(f"[::1]:{server.port}", timeout=1.0) as client:
        def answers():
            try:
                return client.ping()
            except ServerUnavailable:
                return None
        assert wait_for(answers, 20, what="a ping over IPv6").protocol_version >= 1
    out = subprocess.run([sys.executable, "-m", "storypulse", "watch", "--once", "--json",
                          "--server", f"[::1]:{server.port}"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert '"open_stories"' in out.stdout
