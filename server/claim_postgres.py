"""One server per PostgreSQL database: a session advisory lock held by every connection the
store writes through, and a row that says who holds it.

- Exclusion: each connection the store opens takes `pg_try_advisory_lock(KEY)` before it is
  used (a wrapper around peewee's `_connect`), so writes only ever go through a session that
  holds the lock. The lock lives as long as that session: a server killed with -9, crashed or
  cut off leaves nothing behind once PostgreSQL sees the connection gone. No lease to renew,
  no clock to trust.
- The holder's row (`storypulse_claim`, one row): host, pid, since (the database's clock),
  the session that holds the lock, and an `epoch` that every new holder raises by one -- the
  fencing token a standby server will use. A second server reads it to name the holder; it is
  cross-checked with pg_locks (a row left by a holder that died names nobody), and each session
  sets `application_name` to `storypulse PID@HOST`, so `pg_stat_activity` names the holder too.
- A lost connection (PostgreSQL restarted, a network cut) loses the lock with its session; the
  store's next statement reconnects and takes it again. If another server took it meanwhile,
  this one stops (SIGTERM to itself: the same clean shutdown as `systemctl stop`): its memory
  no longer matches the database, and two servers must never write one. If the lock is still
  held by this server's own earlier session (PostgreSQL has not noticed it is gone, as after a
  network cut), that session is ended (`pg_terminate_backend`) and the lock taken.
- Behind a pooler in transaction mode (PgBouncer's pool_mode=transaction and the like) a
  session lock means nothing: each transaction may run on another server connection, and the
  lock stays on whichever took it. The claim checks, in a second transaction, that the session
  holding the lock is the one answering; where the pooler switched sessions the start is refused
  (use a direct connection or session pooling). A pool that happens to hand back the same
  session every time cannot be told apart: docs/install.md says so.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import time
from dataclasses import dataclass

import peewee

from .claim import InUse

log = logging.getLogger(__name__)

KEY = int.from_bytes(b"stpulsev", "big")  # 64 bits, below 2**63: the advisory lock's key
KEY_HIGH, KEY_LOW = KEY >> 32, KEY & 0xFFFFFFFF  # as pg_locks shows a bigint key: classid, objid
TABLE = "storypulse_claim"
APPLICATION = re.compile(r"^storypulse (\d+)@(.+)$")
OWN_SESSION_TRIES = 20  # ending our own earlier session: PostgreSQL takes a moment


class SessionNotKept(Exception):
    """The connection does not keep one PostgreSQL session: the advisory lock cannot hold."""


@dataclass(frozen=True)
class Holder:
    backend: int | None  # the PostgreSQL session (backend pid) holding the lock
    host: str | None
    pid: str
    since: str | None
    epoch: int | None = None

    def describe(self) -> str:
        return ", ".join(part for part in (
            f"host {self.host}" if self.host else "", f"pid {self.pid}",
            f"since {self.since}" if self.since else "") if part)


_LOCK_HOLDER = ("SELECT l.pid, a.application_name, "
                "to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC' "
                "FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.classid::bigint = %s "
                "AND l.objid::bigint = %s AND l.objsubid = 1")
_ROW = (f"SELECT host, pid, to_char(since AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC', "
        f"backend_pid, epoch FROM {TABLE} WHERE id = 1")


class PostgresClaim:
    """Installed on the store's database object before its first connection (`take`)."""

    def __init__(self, db: peewee.PostgresqlDatabase, where: str):
        if not callable(getattr(db, "_connect", None)):  # tests/test_claim_postgres.py watches it
            raise RuntimeError("peewee's PostgresqlDatabase has no _connect: the claim needs it")
        self.db, self.where = db, where
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.application_name = f"storypulse {self.pid}@{self.host}"[:63]
        self.epoch: int | None = None
        self.backend: int | None = None
        self.held = False  # taken once: a later failure to take it means it was lost
        self._stopping = False
        self._plain_connect = db._connect
        db._connect = self._connect_and_claim

    @classmethod
    def take(cls, db: peewee.PostgresqlDatabase, where: str) -> PostgresClaim:
        claim = cls(db, where)
        try:
            db.connect(reuse_if_open=True)
        except BaseException:
            claim.release()
            raise
        return claim

    def _connect_and_claim(self):
        conn = self._plain_connect()
        try:
            self._lock(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _lock(self, conn) -> None:
        cursor = conn.cursor()
        cursor.execute("SET application_name = %s", (self.application_name,))
        for _ in range(OWN_SESSION_TRIES):
            # One transaction, so one session even behind a pooler: did this session hold the
            # lock already? A new connection's session cannot, unless a pooler handed us a
            # session that someone else's claim left behind.
            cursor.execute("BEGIN")
            cursor.execute(_LOCK_HOLDER + " AND l.pid = pg_backend_pid()", (KEY_HIGH, KEY_LOW))
            held_before = cursor.fetchone() is not None
            cursor.execute("SELECT pg_try_advisory_lock(%s), pg_backend_pid()", (KEY,))
            got, backend = cursor.fetchone()
            cursor.execute("COMMIT")
            if held_before:
                cursor.execute("SELECT pg_advisory_unlock(%s)", (KEY,))  # our count only
                raise SessionNotKept(
                    f"the connection to {self.where} was handed a PostgreSQL session that "
                    "already holds the claim of a storypulse server (a pooler in transaction "
                    "mode shares sessions between clients), so no lock can keep a second "
                    "server out")
            if got:
                break
            holder = _holder(cursor)
            if not (self.held and holder.epoch == self.epoch and holder.host == self.host
                    and holder.pid == str(self.pid) and holder.backend is not None):
                if self.held:
                    self._lost(holder)
                raise InUse(self.where, holder.pid, holder.host, holder.since, self._gone(holder))
            # Our own earlier session, still open as far as PostgreSQL knows: end it.
            log.warning("ending this server's earlier PostgreSQL session %d, which still holds the "
                        "claim", holder.backend)
            cursor.execute("SELECT pg_terminate_backend(%s)", (holder.backend,))
            time.sleep(0.05)
        else:
            raise InUse(self.where, str(self.pid), self.host, "its own earlier session would not end")
        # In a transaction of its own: the session that holds the lock must be the one answering.
        cursor.execute(_LOCK_HOLDER + " AND l.pid = pg_backend_pid()", (KEY_HIGH, KEY_LOW))
        if cursor.fetchone() is None:
            raise SessionNotKept(
                f"the connection to {self.where} does not keep its PostgreSQL session from one "
                "transaction to the next (a pooler in transaction mode?), so no lock can keep a "
                "second server out")
        self.backend = backend
        if self.held:
            self._after_reconnect(cursor)
        self.held = True

    def _after_reconnect(self, cursor) -> None:
        """Taken again on a new connection: the row points at this session now."""
        if self.epoch is None:
            return
        cursor.execute(f"UPDATE {TABLE} SET backend_pid = %s WHERE id = 1 AND epoch = %s",
                       (self.backend, self.epoch))
        if cursor.rowcount == 1:
            log.info("claim on %s taken again after a reconnect (epoch %d)", self.where, self.epoch,
                     extra={"event": "claim.retaken", "epoch": self.epoch})
            return
        holder = _holder(cursor)
        self._lost(holder)
        raise InUse(self.where, holder.pid, holder.host, holder.since)

    def _gone(self, holder: Holder) -> str:
        """A note when the holder is a process of this host that no longer runs: its session
        outlived it, which a pooler in transaction mode does (it keeps server sessions)."""
        if holder.host != self.host or not holder.pid.isdigit() or holder.backend is None:
            return ""
        try:
            os.kill(int(holder.pid), 0)
            return ""
        except ProcessLookupError:
            return (f"which no longer runs, but its PostgreSQL session {holder.backend} still holds "
                    "the claim: a pooler in transaction mode keeps sessions (connect directly); "
                    f"SELECT pg_terminate_backend({holder.backend}) ends it")
        except OSError:
            return ""

    def record(self, db: peewee.Database) -> None:
        """Write the holder's row, once the store's tables are there: a new epoch."""
        db.execute_sql(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (id integer PRIMARY KEY CHECK (id = 1), "
            "epoch bigint NOT NULL, host text NOT NULL, pid integer NOT NULL, "
            "backend_pid integer NOT NULL, version text NOT NULL, since timestamptz NOT NULL)")
        from storypulse import __version__

        self.epoch, since = db.execute_sql(
            f"INSERT INTO {TABLE} (id, epoch, host, pid, backend_pid, version, since) "
            "VALUES (1, 1, %s, %s, %s, %s, now()) ON CONFLICT (id) DO UPDATE SET "
            f"epoch = {TABLE}.epoch + 1, host = EXCLUDED.host, pid = EXCLUDED.pid, "
            "backend_pid = EXCLUDED.backend_pid, version = EXCLUDED.version, since = EXCLUDED.since "
            "RETURNING epoch, since", (self.host, self.pid, self.backend, __version__)).fetchone()
        log.info("claimed %s: epoch %d", self.where, self.epoch,
                 extra={"event": "claim.taken", "epoch": self.epoch, "since": str(since)})

    def _lost(self, holder: Holder) -> None:
        """Another server took the database while this one's session was gone: stop."""
        if self._stopping:
            return
        self._stopping = True
        log.critical("another storypulse server (%s) took the database %s while this one's "
                     "connection was down: stopping, since two servers must never write one "
                     "database", holder.describe(), self.where,
                     extra={"event": "claim.lost", "holder": holder.describe()})
        if signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN, None):
            os.kill(os.getpid(), signal.SIGTERM)  # the loop's own way out, as on `systemctl stop`

    def release(self) -> None:
        """Closing the connection let go of the lock; connections made after this take none."""
        self.db._connect = self._plain_connect


def _holder(cursor) -> Holder:
    """Who holds the lock: the row if it names the session that does, else what
    pg_stat_activity says of that session."""
    cursor.execute(_LOCK_HOLDER, (KEY_HIGH, KEY_LOW))
    found = cursor.fetchone()
    if found is None:  # let go of meanwhile
        return Holder(None, None, "unknown", None)
    backend, application, started = found
    cursor.execute("SELECT to_regclass(%s) IS NOT NULL", (TABLE,))
    if cursor.fetchone()[0]:
        cursor.execute(_ROW)
        row = cursor.fetchone()
        if row is not None and row[3] == backend:
            host, pid, since, _, epoch = row
            return Holder(backend, host, str(pid), since, epoch)
    named = APPLICATION.match(application or "")
    if named:
        return Holder(backend, named.group(2), named.group(1), started)
    return Holder(backend, None, f"unknown: PostgreSQL session {backend}", started)
