"""A plain HTTP GET for tests (http.client: the status whatever it is, no exception for a 503)."""

from __future__ import annotations

import http.client
from typing import NamedTuple


class Reply(NamedTuple):
    status: int
    body: str
    headers: dict[str, str]


def get(port: int, path: str, host: str = "127.0.0.1", timeout: float = 5.0,
        method: str = "GET") -> Reply:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        body = response.read().decode("utf-8", errors="replace")
        return Reply(response.status, body, {k.lower(): v for k, v in response.getheaders()})
    finally:
        conn.close()


def status(port: int, path: str, **options) -> int | None:
    """The status, or None when nothing answers (not listening yet, or reset)."""
    try:
        return get(port, path, **options).status
    except (OSError, http.client.HTTPException):
        return None
