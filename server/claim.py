"""One server per SQLite database: a second one would hand out the same queued tasks again.

The server holds an exclusive lock on a file beside the database
(`storypulse.db.lock`) for as long as it runs; the lock goes with the process,
so a server killed with -9 leaves nothing to clean up. The file holds the
holder's pid, for the message the second server prints. A lock on a file of
its own, not on the database: closing any other descriptor of the database
would drop SQLite's own POSIX locks.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import peewee


class InUse(Exception):
    """Another server holds the database."""

    def __init__(self, path: Path, pid: str):
        super().__init__(f"{path} is held by another storypulse server (pid {pid or 'unknown'})")
        self.path, self.pid = path, pid


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class Claim:
    """Held while the server runs; `release()` (or the process ending) lets the next one in."""

    def __init__(self, fd: int | None):
        self._fd = fd

    @classmethod
    def take(cls, db: peewee.Database) -> Claim:
        """Claim `db` for this process; raises InUse when another server has it."""
        if not isinstance(db, peewee.SqliteDatabase) or db.database in ("", ":memory:"):
            return cls(None)
        path = Path(db.database).with_name(Path(db.database).name + ".lock")
        # No O_TRUNC: a server that fails to take the lock must not wipe the holder's pid.
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(fd):
            try:
                pid = os.read(fd, 32).decode(errors="replace").strip()
            except OSError:  # Windows: the holder's lock covers the byte read
                pid = ""
            os.close(fd)
            raise InUse(Path(db.database), pid)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        return cls(fd)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock; the file stays for the next holder
            self._fd = None
