"""One server per PostgreSQL database (server/claim_postgres.py), on a real PostgreSQL: the
second server refuses at start in one line naming the holder and the first goes on; the claim
goes with the session (kill -9); a server whose session was cut takes the claim again, or stops
if another server took it meanwhile; its own stale session is ended."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import peewee
import pytest

from storypulse.server import claim_postgres
from support import empty_postgres, free_port_block, wait_for
from test_server_start import one_line, start

PG_URL = os.environ.get("STORYPULSE_TEST_POSTGRES")
pytestmark = pytest.mark.skipif(not PG_URL, reason="set STORYPULSE_TEST_POSTGRES to a database URL")


def fresh() -> str:
    url = empty_postgres(PG_URL)
    from playhouse.db_url import connect

    db = connect(url)
    db.execute_sql(f"DROP TABLE IF EXISTS {claim_postgres.TABLE}")
    db.close()
    return url


def admin():
    """A plain connection of the test's own (no claim)."""
    from playhouse.db_url import connect

    return connect(PG_URL)


def sessions_of(pid: int) -> list[int]:
    db = admin()
    try:
        return [row[0] for row in db.execute_sql(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
            (f"storypulse {pid}@{socket.gethostname()}"[:63],)).fetchall()]
    finally:
        db.close()


def cut(pid: int) -> None:
    """End every PostgreSQL session of server `pid`, as a restart or a network cut would."""
    db = admin()
    try:
        for backend in sessions_of(pid):
            db.execute_sql("SELECT pg_terminate_backend(%s)", (backend,))
    finally:
        db.close()
    wait_for(lambda: not sessions_of(pid), 10, what="the sessions gone")


def test_a_second_server_refuses_naming_the_holder_and_the_first_goes_on(server_factory):
    first = server_factory(time_scale=0.01).use_db(fresh()).start()
    line = one_line(start(PG_URL), "in use by another storypulse server", f"pid {first.proc.pid}",
                    f"host {socket.gethostname()}", "since 20", "stop that one", passing=True)
    password = urlsplit(PG_URL).password
    assert not password or f":{password}@" not in line  # the URL, never its password
    with first.client() as client:
        story = client.create_story("still mine", [{"estimate_ms": 10}])
        wait_for(lambda: client.get_story(story.story_id).status == "done", 10, what="done")
    first.kill9()  # the claim goes with the session: a new server gets it at once
    first.start()
    with first.client() as client:
        assert client.get_story(story.story_id).status == "done"
    assert first.stop() == 0


def test_every_start_raises_the_epoch_and_the_row_names_the_session(server_factory):
    from storypulse.server.store import Store

    url = fresh()
    epochs = []
    for _ in range(3):
        store = Store.open(url, exclusive=True)
        epochs.append(store.claim.epoch)
        row = store.db.execute_sql(
            f"SELECT host, pid, backend_pid FROM {claim_postgres.TABLE}").fetchone()
        assert row == (socket.gethostname(), os.getpid(),
                       store.db.execute_sql("SELECT pg_backend_pid()").fetchone()[0])
        store.close()
    assert epochs == [1, 2, 3]


def test_a_server_whose_session_was_cut_takes_the_claim_again(server_factory):
    server = server_factory(time_scale=0.01).use_db(fresh()).start()
    before = sessions_of(server.proc.pid)
    cut(server.proc.pid)
    with server.client(timeout=10) as client:
        def stored() -> bool:
            try:
                client.create_story("after the cut", [{"estimate_ms": 1}])
                return True
            except Exception:  # refused as `unavailable` until the reconnect
                return False
        wait_for(stored, 20, interval=0.1, what="a write accepted after the reconnect")
    after = sessions_of(server.proc.pid)
    assert after and set(after).isdisjoint(before)
    assert "taken again after a reconnect" in server.log()
    assert server.stop() == 0


def test_a_server_that_finds_another_holding_the_claim_after_a_cut_stops(server_factory):
    url = fresh()
    first = server_factory(time_scale=0.01).use_db(url).start()
    cut(first.proc.pid)
    second = server_factory(time_scale=0.01).use_db(url).start()  # the claim was free: it is its
    with first.client(timeout=5) as client:
        try:
            client.create_story("from the first", [{"estimate_ms": 1}])  # it reconnects: taken
        except Exception:
            pass
    assert first.proc.wait(20) == 0  # it stopped by itself, cleanly
    assert f"another storypulse server (host {socket.gethostname()}, pid {second.proc.pid}" in first.log()
    with second.client() as client:  # the second goes on, untouched
        story = client.create_story("from the second", [{"estimate_ms": 1}])
        wait_for(lambda: client.get_story(story.story_id).status == "done", 10, what="done")
        assert client.list_stories().total == 1  # the first stored nothing after the cut
    assert second.stop() == 0


def test_its_own_earlier_session_still_holding_the_claim_is_ended():
    """After a network cut PostgreSQL may keep the old session (and its lock) for a while."""
    from storypulse.server.store import Store

    store = Store.open(fresh(), exclusive=True)
    old = admin()
    try:
        # A session that holds the lock and that the row names as this server's own.
        store.db.close()  # our session ends; the lock is free for a moment...
        old.execute_sql("SELECT pg_advisory_lock(%s)", (claim_postgres.KEY,))  # ...the "old" takes it
        backend = old.execute_sql("SELECT pg_backend_pid()").fetchone()[0]
        fix = admin()
        fix.execute_sql(f"UPDATE {claim_postgres.TABLE} SET backend_pid = %s", (backend,))
        fix.close()
        store.db.connect()  # the claim ends that session and takes the lock
        assert store.db.execute_sql(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
            "AND objid::bigint = %s", (claim_postgres.KEY_LOW,)).fetchone()[0] == store.claim.backend
        with pytest.raises(peewee.DatabaseError):
            old.execute_sql("SELECT 1")  # terminated
    finally:
        store.close()
        old.close()


def test_the_claim_still_finds_peewees_connect_hook():
    """The claim wraps PostgresqlDatabase._connect (peewee has no public hook for a new
    connection): this fails the day peewee renames it."""
    assert callable(getattr(peewee.PostgresqlDatabase, "_connect", None))


# -- behind a pooler in transaction mode ---------------------------------------------------------
PGBOUNCER = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")


class PgBouncer:
    """PgBouncer in transaction mode in front of the test database: sessions are shared."""

    def __init__(self, sessions: int):
        parts = urlsplit(PG_URL)
        self.folder = Path(tempfile.mkdtemp(prefix="storypulse-pgbouncer-"))
        self.folder.chmod(0o755)  # pgbouncer runs as another user than root
        self.port = free_port_block(1)
        (self.folder / "userlist.txt").write_text(f'"{parts.username}" "{parts.password}"\n')
        (self.folder / "pgbouncer.ini").write_text(
            f"[databases]\nclaim = host={parts.hostname} port={parts.port or 5432} "
            f"dbname={parts.path.lstrip('/')}\n"
            f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.folder / 'userlist.txt'}\n"
            "pool_mode = transaction\nserver_round_robin = 1\n"
            f"min_pool_size = {sessions}\ndefault_pool_size = {sessions}\n"
            "ignore_startup_parameters = options\n"
            f"logfile = {self.folder / 'pgbouncer.log'}\n")
        user = "postgres" if os.geteuid() == 0 else None  # it will not run as root
        (self.folder / "pgbouncer.log").touch()
        for path in (self.folder, *self.folder.iterdir()):
            if user:
                shutil.chown(path, user)
        self.proc = subprocess.Popen([PGBOUNCER, *(["-u", user] if user else []),
                                      str(self.folder / "pgbouncer.ini")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self.url = parts._replace(netloc=f"{parts.username}:{parts.password}@127.0.0.1:{self.port}",
                                  path="/claim").geturl()
        wait_for(self._listening, 10, what="pgbouncer listening")

    def _listening(self) -> bool:
        assert self.proc.poll() is None, (self.folder / "pgbouncer.log").read_text()
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.mark.skipif(PGBOUNCER is None and not os.environ.get("STORYPULSE_CI"),
                    reason="no pgbouncer here (apt-get install pgbouncer; CI installs it)")
@pytest.mark.parametrize("sessions", [1, 4])
def test_behind_a_pooler_in_transaction_mode_a_second_server_is_refused_all_the_same(
        server_factory, sessions):
    """A session lock means nothing where sessions are shared. With one pooled session, the
    second server is handed the session that holds the first one's claim: refused (78, the
    pooler named). With several, it gets another session, where the lock is taken: refused as
    in use (1); or the first is refused at once, its lock seen on another session than the one
    answering."""
    fresh()
    pooler = PgBouncer(sessions)
    try:
        first = server_factory(time_scale=0.01).use_db(pooler.url)
        first.start(wait=False)
        try:
            first.wait_ready(20)
        except AssertionError:  # refused at once: the pooler switched sessions under the claim
            assert sessions > 1 and first.proc.wait(10) == 78 and "pooler" in first.log(), first.log()
            return
        codes = set()
        for _ in range(4):
            code, out, err = start(pooler.url)
            codes.add(code)
            assert ("in use by another storypulse server" in err if code == 1 else
                    code == 78 and "already holds the claim" in err and "pool_mode = session" in err), err
        if sessions == 1:
            assert codes == {78}
        with first.client() as client:
            client.ping()
        assert first.stop() == 0
    finally:
        pooler.close()
