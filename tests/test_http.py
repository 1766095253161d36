"""server/http.py on real sockets: what it answers, and that abuse costs it nothing lasting.

The endpoint alone (with small limits, so the timeouts pass quickly) for the
protocol and each kind of abuse; tests/test_daemon.py runs the same abuse against a
whole server and watches its ZeroMQ side.
"""

from __future__ import annotations

import resource
import socket
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from storypulse.server.http import HttpEndpoint, Limits, Response, listen
from httpget import get
from support import wait_for

SMALL = Limits(max_connections=16, request_max=1024, read_timeout=0.5, write_timeout=1.0)


@pytest.fixture
def endpoint():
    routes = {"/hello": lambda: Response(200, "text/plain", b"hello\n"),
              "/broken": lambda: 1 / 0}
    made = HttpEndpoint(listen("127.0.0.1", 0), routes, SMALL).start()
    yield made
    made.close()


def port_of(endpoint: HttpEndpoint) -> int:
    return endpoint.address[1]


def raw(endpoint: HttpEndpoint, data: bytes, timeout: float = 3.0) -> bytes:
    """Send `data`, read until the server closes."""
    with socket.create_connection(("127.0.0.1", port_of(endpoint)), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
        return b"".join(chunks)


def serves(endpoint: HttpEndpoint) -> bool:
    reply = get(port_of(endpoint), "/hello", timeout=3)
    return reply.status == 200 and reply.body == "hello\n"


def test_get_head_and_what_is_not_served(endpoint):
    port = port_of(endpoint)
    reply = get(port, "/hello?x=1")
    assert (reply.status, reply.body, reply.headers["connection"]) == (200, "hello\n", "close")
    head = get(port, "/hello", method="HEAD")
    assert head.status == 200 and head.body == "" and head.headers["content-length"] == "6"
    missing = get(port, "/nothing")
    assert missing.status == 404 and "/hello" in missing.body
    post = get(port, "/hello", method="POST")
    assert post.status == 405 and post.headers["allow"] == "GET, HEAD"
    assert get(port, "/broken").status == 500  # a route that raises: answered, logged
    assert serves(endpoint)


@pytest.mark.parametrize("garbage, status", [
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)) + b"\r\n\r\n", b"400"),  # TLS
    (b"GET\r\n\r\n", b"400"),
    (b"GET /hello HTTP/9.9\r\n\r\n", b"400"),
    (b"GET hello HTTP/1.1\r\n\r\n", b"400"),
    (b"GET /h\xffllo HTTP/1.1\r\n\r\n", b"400"),
    (b"GET /hello HTTP/1.1\r\nX: " + b"a" * 5000 + b"\r\n\r\n", b"431"),  # a huge header
    (b"GET /hello HTTP/1.1\r\n" + b"X-Many: b\r\n" * 2000, b"431"),  # headers without end
])
def test_garbage_gets_a_status_and_the_door(endpoint, garbage, status):
    answer = raw(endpoint, garbage)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 " + status), answer[:80]
    assert serves(endpoint)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(min_size=1, max_size=3000))
def test_any_bytes_at_all_leave_it_serving(endpoint, data):
    answer = raw(endpoint, data + b"\r\n\r\n", timeout=3)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 "), answer[:80]
    assert serves(endpoint)


def test_slow_clients_are_dropped_after_the_read_timeout_and_push_out_none_that_is_quick(endpoint):
    """Slow loris: connections that send a request head a byte at a time, more than the cap."""
    slow = []
    for _ in range(SMALL.max_connections * 2):
        sock = socket.create_connection(("127.0.0.1", port_of(endpoint)), timeout=3)
        sock.sendall(b"GET /hello HTTP/1.1\r\nX-")
        slow.append(sock)
    try:
        start = time.monotonic()
        for _ in range(5):
            assert serves(endpoint)  # a quick client pushes out the oldest slow one
        assert time.monotonic() - start < 1.0
        assert endpoint.open_connections <= SMALL.max_connections
        wait_for(lambda: endpoint.open_connections == 0, 5, what="the slow clients timed out")
        for sock in slow:
            sock.settimeout(2)
            try:
                assert sock.recv(100) == b""  # closed by the server
            except ConnectionResetError:
                pass
    finally:
        for sock in slow:
            sock.close()
    assert serves(endpoint)


def test_a_thousand_connections_at_once(endpoint):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    held = []
    try:
        for _ in range(1000):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port_of(endpoint)))
            held.append(sock)
        assert serves(endpoint)
        assert endpoint.open_connections <= SMALL.max_connections
    finally:
        for sock in held:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert serves(endpoint)


def test_a_client_that_never_reads_its_reply_is_dropped_after_the_write_timeout():
    big = b"x" * (8 << 20)  # far more than the socket buffers hold
    made = HttpEndpoint(listen("127.0.0.1", 0), {"/big": lambda: Response(200, "text/plain", big),
                                                 "/hello": lambda: Response(200, "text/plain", b"hello\n")},
                        SMALL).start()
    try:
        sock = socket.create_connection(("127.0.0.1", made.address[1]))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(b"GET /big HTTP/1.1\r\n\r\n")
        wait_for(lambda: made.open_connections == 1, 2, what="the reply under way")
        wait_for(lambda: made.open_connections == 0, 5, what="the stuck reader dropped")
        assert serves(made)
        sock.close()
    finally:
        made.close()


def test_a_port_in_use_is_an_error_at_once():
    first = listen("127.0.0.1", 0)
    try:
        with pytest.raises(OSError):
            listen("127.0.0.1", first.getsockname()[1])
    finally:
        first.close()


def test_ipv6_loopback():
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    try:
        sock = listen("::1", 0)
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    made = HttpEndpoint(sock, {"/hello": lambda: Response(200, "text/plain", b"hello\n")}).start()
    try:
        assert get(made.address[1], "/hello", host="::1").status == 200
    finally:
        made.close()
