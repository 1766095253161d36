"""Where the server listens: one base port, three sockets (requests P, events P+1, workers P+2)."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5555


@dataclass(frozen=True)
class Endpoints:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT

    @property
    def ipv6(self) -> bool:
        return ":" in self.host

    @property
    def _address(self) -> str:
        return f"[{self.host}]" if self.ipv6 else self.host

    @property
    def requests(self) -> str:
        return f"tcp://{self._address}:{self.port}"

    @property
    def events(self) -> str:
        return f"tcp://{self._address}:{self.port + 1}"

    @property
    def workers(self) -> str:
        return f"tcp://{self._address}:{self.port + 2}"

    def __str__(self) -> str:
        return f"{self._address}:{self.port}"


def parse_server(text: str | None) -> Endpoints:
    """Parse HOST[:PORT] (IPv6 as [::1]:PORT); raises ValueError naming what is wrong."""
    if not text:
        return Endpoints()
    host, port = text, DEFAULT_PORT
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"--server {text!r}: missing ']' after an IPv6 address")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"--server {text!r}: expected ':PORT' after ']'")
            port = _port(text, rest[1:])
    elif text.count(":") == 1:
        host, raw = text.split(":")
        port = _port(text, raw)
    if not host:
        raise ValueError(f"--server {text!r}: the host is empty")
    return Endpoints(host, port)


def _port(text: str, raw: str) -> int:
    try:
        port = int(raw)
    except ValueError:
        raise ValueError(f"--server {text!r}: port {raw!r} is not a number") from None
    if not 1 <= port <= 65533:  # P+2 must be a valid port too
        raise ValueError(f"--server {text!r}: port must be within 1-65533")
    return port
