"""CURVE encryption and authentication for a server reachable beyond loopback.

On a loopback address nothing is needed (unless STORYPULSE_CURVE=always). On any other address the server
requires CURVE: it holds a key pair, and only clients whose public key sits in
its `authorized/` folder get in (ZAP). Keys are the ZeroMQ certificate files that
`zmq.auth.create_certificates` writes; `storypulse keys` makes and lists them.

Layout of a key folder (default: the user config dir, `keys/`):
    server.key, server.key_secret     the server's pair
    client.key, client.key_secret     this machine's client pair
    authorized/*.key                  public keys of the clients the server admits
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import platformdirs
import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

ENV_KEYS = "STORYPULSE_KEYS"
ENV_CURVE = "STORYPULSE_CURVE"  # "always": CURVE on loopback too (shared hosts, tests)


def default_key_dir() -> Path:
    return Path(os.environ.get(ENV_KEYS) or Path(platformdirs.user_config_dir("storypulse")) / "keys")


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        try:
            return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
        except OSError:
            return False


class MissingKey(RuntimeError):
    """A key file that CURVE needs is missing; the message says how to make it."""


def _load(path: Path, secret: bool) -> tuple[bytes, bytes | None]:
    if not path.exists():
        raise MissingKey(f"missing key file {path}; run `storypulse keys init` to make one")
    public, secret_key = zmq.auth.load_certificate(path)
    if secret and not secret_key:
        raise MissingKey(f"{path} holds no secret key")
    return public, secret_key


class _AuthorizedKeys:
    """ZAP credentials: the public keys in `authorized/` (re-read when the folder
    changes, so a key added at run time is admitted without a restart) plus
    the keys the server made for its own local workers."""

    def __init__(self, folder: Path, extra: set[bytes]):
        self.folder, self.extra = folder, extra
        self._mtime: float | None = None
        self._keys: set[bytes] = set()

    def callback(self, domain: str, key: bytes) -> bool:
        if key in self.extra:
            return True
        mtime = self.folder.stat().st_mtime if self.folder.is_dir() else None
        if mtime != self._mtime:
            self._mtime = mtime
            self._keys = {zmq.auth.load_certificate(p)[0] for p in self.folder.glob("*.key")}
        return key in self._keys


@dataclass
class ServerSecurity:
    """Makes server sockets CURVE servers and runs the ZAP handler that admits clients."""

    public: bytes
    secret: bytes
    authorized: Path
    local_worker: ClientSecurity = None  # type: ignore[assignment]  # set in __post_init__
    _auth: ThreadAuthenticator | None = None

    def __post_init__(self) -> None:
        # The server's own worker processes get a pair made at start, in memory.
        public, secret = zmq.curve_keypair()
        self.local_worker = ClientSecurity(public, secret, self.public)

    @classmethod
    def load(cls, key_dir: Path | None = None) -> ServerSecurity:
        key_dir = key_dir or default_key_dir()
        public, secret = _load(key_dir / "server.key_secret", secret=True)
        authorized = key_dir / "authorized"
        if not authorized.is_dir() or not any(authorized.glob("*.key")):
            raise MissingKey(
                f"no authorised client keys in {authorized}; copy clients' *.key files there "
                "(`storypulse keys init` authorises this machine's own client key)"
            )
        return cls(public, secret, authorized)  # type: ignore[arg-type]

    def start(self, context: zmq.Context) -> None:
        self._auth = ThreadAuthenticator(context)
        self._auth.start()
        provider = _AuthorizedKeys(self.authorized, {self.local_worker.public})
        self._auth.configure_curve_callback(domain="*", credentials_provider=provider)

    def apply(self, sock: zmq.Socket) -> None:
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_server = True

    def stop(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None


@dataclass(frozen=True)
class ClientSecurity:
    public: bytes
    secret: bytes
    server_public: bytes

    @classmethod
    def load(cls, key_dir: Path | None = None) -> ClientSecurity:
        key_dir = key_dir or default_key_dir()
        public, secret = _load(key_dir / "client.key_secret", secret=True)
        server_public, _ = _load(key_dir / "server.key", secret=False)
        return cls(public, secret, server_public)  # type: ignore[arg-type]

    def apply(self, sock: zmq.Socket) -> None:
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_serverkey = self.server_public


def curve_required(host: str) -> bool:
    return os.environ.get(ENV_CURVE, "").lower() == "always" or not is_loopback(host)


def client_security_for(host: str) -> ClientSecurity | None:
    """CURVE settings for a client of `host`: none on loopback, required elsewhere."""
    return ClientSecurity.load() if curve_required(host) else None
