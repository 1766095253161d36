"""A database the server cannot use stops it at start: one line that names the file or URL (never
its password) and says what to do, a non-zero exit, no traceback. And the durability level asked
for is the one the database has in force.

Each case runs the real `python -m storypulse.server` on a real bad file or URL. The cases about permissions
need an unprivileged process: run as root, the server gets one without the capabilities that let
root write anything (its owner is still root, so it can still read the repository and Python).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from storypulse.server.dberrors import EXIT_LASTING
from support import REPO, free_port_block

SECRET = "s3cret-pw"
PG_URL = os.environ.get("STORYPULSE_TEST_POSTGRES")
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER = 1, 2, 3
PR_CAPBSET_DROP = 24


def _drop_root_powers() -> None:
    """In the child before exec: without these, root obeys file modes like any owner."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def start(db: str | Path, *extra: str, unprivileged: bool = False, timeout: float = 30):
    """Run the server on `db`; it must exit by itself within `timeout` seconds."""
    drop = _drop_root_powers if unprivileged and os.geteuid() == 0 else None
    proc = subprocess.Popen(
        [sys.executable, "-m", "storypulse.server", "--db", str(db), "--port", str(free_port_block()), *extra],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True, preexec_fn=drop,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"the server did not stop by itself on {db}:\n{err}")
    return proc.returncode, out, err


def one_line(result, *words: str, passing: bool = False) -> str:
    """The one line the server said; it exited 1 for a cause that can pass by itself, else 78."""
    code, out, err = result
    lines = [line for line in (out + err).splitlines() if line.strip()]
    assert code == (1 if passing else EXIT_LASTING), (code, err)
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    assert SECRET not in err
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def storypulse_db(path: Path) -> Path:
    from storypulse.server.store import Store

    Store.open(str(path)).close()
    return path


# -- files that are not a storypulse database -----------------------------------------------
def test_a_text_file(tmp_path):
    db = tmp_path / "notes.db"
    db.write_text("shopping: milk, eggs\n")
    one_line(start(db), str(db), "is not a SQLite database", "point --db at")
    assert db.read_text() == "shopping: milk, eggs\n"  # left as it was


def test_a_sqlite_database_of_another_program(tmp_path):
    db = tmp_path / "other.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE invoice (id INTEGER PRIMARY KEY, amount REAL)")
    one_line(start(db), str(db), "not a storypulse database", "invoice")
    with sqlite3.connect(db) as con:  # nothing of ours was added to it
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    assert tables == ["invoice"]


def test_a_conflicting_story_table(tmp_path):
    db = tmp_path / "stories.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE story (title TEXT, body TEXT)")
    one_line(start(db), str(db), "not a storypulse database", "table story has no column id")


def test_a_damaged_file(tmp_path):
    db = storypulse_db(tmp_path / "damaged.db")
    data = bytearray(db.read_bytes())
    data[100:4096] = b"\xee" * (4096 - 100)  # the schema page, after the header
    db.write_bytes(data)
    one_line(start(db), str(db), "is damaged", "backup")


def test_damage_deep_in_the_file_found_while_restoring(tmp_path):
    """The schema reads fine; the damage shows only when the queued tasks are read back."""
    from storypulse.server.store import Batch, Store

    db = tmp_path / "deep.db"
    store = Store.open(str(db))
    batch, now = Batch(), time.time()
    for sid in range(1, 3001):
        batch.stories.append((sid, f"s{sid}", "", "open", now, 3))
        batch.tasks += [(3 * sid + j, sid, "", 10, "queued", 0, now) for j in range(3)]
    store.apply(batch)
    store.db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    data = bytearray(db.read_bytes())
    middle = len(data) // 4 // 4096 * 4096
    data[middle:middle * 3] = bytes(middle * 2)
    db.write_bytes(data)
    code, out, err = start(db)
    assert code == EXIT_LASTING and "Traceback" not in err, (code, err)
    bad = [line for line in err.splitlines() if "CRITICAL" in line or "ERROR" in line]
    assert len(bad) == 1 and "is damaged" in bad[0] and str(db) in bad[0], err


# -- files this user may not write ---------------------------------------------------------
def test_a_folder_this_user_may_not_write(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    one_line(start(folder / "new.db", unprivileged=True), str(folder), "may not write there")
    assert list(folder.iterdir()) == []


def test_a_database_in_a_folder_this_user_may_not_write(tmp_path):
    """The file is writable, but WAL needs its -wal and -shm files beside it."""
    folder = tmp_path / "locked"
    folder.mkdir()
    db = storypulse_db(folder / "sp.db")
    folder.chmod(0o555)
    one_line(start(db, unprivileged=True), str(folder), "-wal and -shm", "may not write there")


def test_a_read_only_database(tmp_path):
    db = storypulse_db(tmp_path / "sp.db")
    db.chmod(0o444)
    one_line(start(db, unprivileged=True), str(db), "is read-only for this user")


def test_a_path_through_a_file(tmp_path):
    (tmp_path / "plain").write_text("")
    one_line(start(tmp_path / "plain" / "sp.db"), str(tmp_path / "plain"), "is a file, not a folder")


# -- URLs ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("url", [
    f"postgresql://sp:{SECRET}@[::1/storypulse",  # unclosed IPv6 bracket
    f"postgresql://sp:{SECRET}@localhost:port/storypulse",
    f"postgresql://sp:{SECRET}@localhost",  # no database name
    f"mysql://sp:{SECRET}@localhost/storypulse",
    "nosuch://somewhere",
])
def test_a_malformed_or_unsupported_url(url):
    line = one_line(start(url), "cannot be used", "postgresql://user:password@host")
    assert url.split("@")[-1] in line


def test_a_postgresql_that_is_not_running():
    url = f"postgresql://sp:{SECRET}@127.0.0.1:{free_port_block(1)}/storypulse"
    one_line(start(url), "cannot reach PostgreSQL", url.replace(SECRET, "***"), "start PostgreSQL", passing=True)


def test_a_postgresql_url_without_its_driver():
    code = ("import sys; sys.modules['psycopg2'] = sys.modules['psycopg'] = None  # not installed\n"
            "from storypulse.server.cli import command; sys.exit(command(sys.argv[1:]))")
    url = f"postgresql://sp:{SECRET}@127.0.0.1:{free_port_block(1)}/storypulse"
    done = subprocess.run([sys.executable, "-c", code, "--db", url, "--port", str(free_port_block())],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    one_line((done.returncode, done.stdout, done.stderr), "pip install 'storypulse[postgres]'")


@pytest.mark.skipif(not PG_URL, reason="set STORYPULSE_TEST_POSTGRES to a database URL")
def test_a_postgresql_that_refuses_the_login():
    from urllib.parse import urlsplit

    parts = urlsplit(PG_URL)
    url = parts._replace(netloc=f"{parts.username}:{SECRET}@{parts.hostname}:{parts.port or 5432}").geturl()
    one_line(start(url), "PostgreSQL refused the login", url.replace(SECRET, "***"), "password")


# -- durability -------------------------------------------------------------------------------
@pytest.mark.parametrize("option, in_force", [
    ([], "durability power-loss (synchronous=FULL in force)"),
    (["--durability", "crash"], "durability crash (synchronous=NORMAL in force)"),
])
def test_the_server_runs_with_the_synchronous_level_asked_for(server_factory, option, in_force):
    """The server logs what SQLite reports for its own connection, not what was asked."""
    server = server_factory(extra=option).start()
    assert server.stop() == 0
    assert in_force in server.log(), server.log()


@pytest.mark.skipif(not PG_URL, reason="set STORYPULSE_TEST_POSTGRES to a database URL")
@pytest.mark.parametrize("level, expected", [("power-loss", "on"), ("crash", "off")])
def test_postgresql_sessions_get_the_synchronous_commit_asked_for(level, expected):
    from storypulse.server.store import Store

    store = Store.open(PG_URL, level)
    try:
        assert store.durability_in_force() == f"synchronous_commit={expected}"
        store.db.close()  # a new connection (as after a reconnect) gets it too
        store.db.connect()
        assert store.db.execute_sql("SHOW synchronous_commit").fetchone()[0] == expected
    finally:
        store.close()


def test_no_password_from_a_url_in_any_message():
    from storypulse.server.dberrors import hide_password, startup_failure

    url = f"postgresql://sp:{SECRET}@db.example/storypulse?password={SECRET}&sslmode=require"
    assert SECRET not in hide_password(url)
    assert hide_password(url).startswith("postgresql://sp:***@db.example/")
    message = startup_failure(url, RuntimeError(f"invalid dsn: password={SECRET}")).message
    assert SECRET not in message and "db.example" in message


def test_a_database_another_process_holds_locked_exits_1_for_a_retry(tmp_path):
    """A lock passes when its holder lets go: the service may try again (exit 1, not 78)."""
    db = tmp_path / "held.db"
    from storypulse.server.store import Store

    Store.open(str(db)).close()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("PRAGMA journal_mode=DELETE")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        one_line(start(db), str(db), "locked by another process", passing=True)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_second_server_on_the_same_file_says_who_has_it_and_the_first_goes_on(server_factory):
    """Two servers on one file would both hand out its queued tasks: the second refuses."""
    first = server_factory().start()
    line = one_line(start(first.db), str(first.db), "in use by another storypulse server",
                    f"pid {first.proc.pid}", passing=True)
    assert "stop that one" in line
    with first.client() as client:
        client.ping()
    first.kill9()  # the lock goes with the process: a restart after kill -9 gets it at once
    first.start()
    assert first.stop() == 0
