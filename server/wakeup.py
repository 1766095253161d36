"""A wake-up pair: a byte written from another thread (or a signal handler) wakes a poll.

The loop polls `fd` beside its sockets; whoever has news for it calls `wake()`, and
the loop calls `drain()` when the fd was readable, so one byte does not wake every
later poll too. Both ends are non-blocking: a full pair already wakes the poll, so a
byte that does not fit is not needed.
"""

from __future__ import annotations

import socket


class WakePair:
    def __init__(self) -> None:
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)
        self.fd = self._r.fileno()  # readable after a wake() until drain()
        self.write_fd = self._w.fileno()  # for signal.set_wakeup_fd

    def wake(self) -> None:
        """Make `fd` readable (from any thread). An OSError other than a full pair
        (the pair closed, say) is the caller's to handle."""
        try:
            self._w.send(b"\0")
        except (BlockingIOError, InterruptedError):
            pass  # the pair is full: the poll wakes anyway

    def drain(self) -> None:
        """Read every byte waiting, so the next poll waits again."""
        try:
            while self._r.recv(512):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def close(self) -> None:
        self._r.close()
        self._w.close()
