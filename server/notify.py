"""systemd's notify protocol (`Type=notify`), written out: a datagram on a unix socket.

systemd passes the socket's address in NOTIFY_SOCKET (a path, or `@name` for the
abstract namespace) and, with `WatchdogSec=`, the watchdog's period in
WATCHDOG_USEC (for the process WATCHDOG_PID, when set). The server says
`READY=1` once its sockets are bound, the database is open and its state is
restored; `STATUS=...` with a one-line summary now and then; `WATCHDOG=1` from
the loop at half the period, so a loop that hangs stops kicking and systemd
restarts the service; `STOPPING=1` when it starts to shut down. Without
NOTIFY_SOCKET nothing is sent at all (`from_environ` returns None). A message
that cannot be sent is dropped: systemd gone must not stop the server.

A library (sdnotify, systemd-python) would do the same in more code, or with a C
extension to build; the protocol is these few lines (sd_notify(3)).
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Mapping

log = logging.getLogger(__name__)

STATUS_MAX = 200  # characters of a STATUS= line: one line, short enough for `systemctl status`


def address(value: str) -> str | bytes:
    """A NOTIFY_SOCKET value as a socket address: `@name` is `\\0name` (the abstract namespace)."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    return value


def watchdog_period(environ: Mapping[str, str], pid: int) -> float | None:
    """WatchdogSec in seconds, if systemd asked this process to kick the watchdog."""
    usec = environ.get("WATCHDOG_USEC", "").strip()
    owner = environ.get("WATCHDOG_PID", "").strip()
    if not usec.isdigit() or int(usec) == 0:
        return None
    if owner and owner != str(pid):
        return None  # meant for another process (a wrapper that started us)
    return int(usec) / 1e6


class Notifier:
    """Sends to systemd's notify socket; the watchdog kicks come from the loop (`kick`)."""

    def __init__(self, where: str, watchdog_s: float | None = None):
        self.where = where
        self._address = address(where)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._sock.setblocking(False)
        self.watchdog_s = watchdog_s
        # Half the period, as sd_watchdog_enabled(3) advises: a late turn still makes it.
        self.kick_every = watchdog_s / 2 if watchdog_s else None
        self._last_kick: float | None = None
        self._failed = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Notifier | None:
        environ = os.environ if environ is None else environ
        where = environ.get("NOTIFY_SOCKET", "").strip()
        if not where or not (where.startswith("/") or where.startswith("@")):
            return None
        return cls(where, watchdog_period(environ, os.getpid()))

    def send(self, *fields: str) -> bool:
        """One datagram of `KEY=value` lines; False if it could not be sent."""
        message = "\n".join(fields).encode()
        try:
            self._sock.sendto(message, self._address)
        except OSError as exc:
            if not self._failed:  # once: systemd may be restarting, and the next one may pass
                log.warning("cannot notify systemd at %s: %s", self.where, exc)
                self._failed = True
            return False
        self._failed = False
        return True

    def ready(self, status: str) -> None:
        self.send("READY=1", _status(status), f"MAINPID={os.getpid()}")

    def status(self, status: str) -> None:
        self.send(_status(status))

    def stopping(self, status: str) -> None:
        self.send("STOPPING=1", _status(status))

    def kick(self, now: float) -> bool:
        """WATCHDOG=1 if half the period has passed since the last one (`now`: monotonic)."""
        if self.kick_every is None:
            return False
        if self._last_kick is not None and now - self._last_kick < self.kick_every:
            return False
        self._last_kick = now
        return self.send("WATCHDOG=1")

    def close(self) -> None:
        self._sock.close()


def _status(text: str) -> str:
    line = " ".join(text.split())  # one line, whatever the text held
    return "STATUS=" + (line if len(line) <= STATUS_MAX else line[:STATUS_MAX - 3] + "...")
