"""One server per database: a second one would hand out the same queued tasks again.

SQLite here; PostgreSQL in claim_postgres.py (an advisory lock and a holder's row).

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
    """Another server holds the database (a file, or a URL without its password)."""

    def __init__(self, path: Path | str, pid: str, host: str | None = None, since: str | None = None,
                 note: str = ""):
        self.path, self.pid, self.host, self.since, self.note = path, pid, host, since, note
        super().__init__(f"{path} is held by another storypulse server ({self.holder})")

    @property
    def holder(self) -> str:
        """`host H, pid P, since T`, as far as they are known (and a note on them)."""
        return ", ".join(part for part in (
            f"host {self.host}" if self.host else "", f"pid {self.pid or 'unknown'}",
            f"since {self.since}" if self.since else "", self.note) if part)


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
    def take(cls, db: peewee.Database, where: str = ""):
        """Claim `db` for this process; raises InUse when another server has it. On PostgreSQL
        this connects (the claim is the connection's), and `record` must follow once the
        store's tables are there."""
        if isinstance(db, peewee.PostgresqlDatabase):
            from .claim_postgres import PostgresClaim

            return PostgresClaim.take(db, where or db.database)
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

    def record(self, db: peewee.Database) -> None:
        """The holder's pid is in the lock file already."""

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock; the file stays for the next holder
            self._fd = None
