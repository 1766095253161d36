"""server/dberrors.py: one classifier of database errors, and its two renderings.

Errors are made as the drivers make them (sqlite3's and psycopg2's classes, peewee's
wrapping), so that a rule keyed to a driver's words or class is tested on them. The
end-to-end cases (a real bad file or URL at start, a full disk or a held lock while
running) are in test_server_start.py and test_server_faults.py.
"""

from __future__ import annotations

import errno
import sqlite3

import peewee
import pytest

from storypulse.server import dberrors
from storypulse.server.claim import InUse
from storypulse.server.dberrors import (EXIT_LASTING, EXIT_PASSING, BadURL, NotStorypulse, classify,
                                        outage_message, startup_failure)


def wrapped(driver_error: BaseException) -> BaseException:
    """The error as peewee raises it: its own class, raised while handling the driver's."""
    try:
        try:
            raise driver_error
        except Exception as exc:
            raise getattr(peewee, type(exc).__name__, peewee.DatabaseError)(*exc.args)
    except peewee.PeeweeException as outer:
        return outer


def psycopg2_error(name: str, message: str) -> BaseException:
    psycopg2 = pytest.importorskip("psycopg2")
    return getattr(psycopg2, name)(message)


@pytest.mark.parametrize("make, what, passing", [
    (lambda: BadURL("Port could not be cast"), dberrors.BAD_URL, False),
    (lambda: ImportError("no module named psycopg2"), dberrors.NO_DRIVER, False),
    (lambda: InUse(__import__("pathlib").Path("/x.db"), "42"), dberrors.IN_USE, True),
    (lambda: NotStorypulse("it holds other tables: invoice"), dberrors.NOT_OURS, False),
    (lambda: wrapped(sqlite3.DatabaseError("file is not a database")), dberrors.NOT_A_DATABASE, False),
    (lambda: OSError(errno.ENOSPC, "No space left on device"), dberrors.FULL, True),
    (lambda: OSError(errno.EACCES, "Permission denied"), dberrors.NO_ACCESS, False),
    (lambda: wrapped(sqlite3.DatabaseError("database disk image is malformed")), dberrors.DAMAGED, False),
    (lambda: wrapped(sqlite3.OperationalError("database or disk is full")), dberrors.FULL, True),
    (lambda: wrapped(sqlite3.OperationalError("attempt to write a readonly database")),
     dberrors.READ_ONLY, False),
    (lambda: wrapped(sqlite3.OperationalError("database is locked")), dberrors.LOCKED, True),
    (lambda: wrapped(sqlite3.OperationalError("disk I/O error")), dberrors.IO_ERROR, False),
    (lambda: wrapped(sqlite3.OperationalError("unable to open database file")),
     dberrors.CANNOT_OPEN, False),
    (lambda: wrapped(sqlite3.OperationalError("no such table: story")), dberrors.UNKNOWN, False),
    (lambda: wrapped(psycopg2_error("OperationalError", 'connection to server at "h", port 5432 '
                                    "failed: FATAL:  password authentication failed for user")),
     dberrors.LOGIN_REFUSED, False),
    (lambda: wrapped(psycopg2_error("OperationalError", 'connection to server at "h", port 5432 '
                                    'failed: FATAL:  database "sp" does not exist')),
     dberrors.NO_DATABASE, False),
    (lambda: wrapped(psycopg2_error("ProgrammingError", "permission denied for schema public")),
     dberrors.NOT_PERMITTED, False),
    (lambda: wrapped(psycopg2_error("InternalError",
                                    "cannot execute CREATE TABLE in a read-only transaction")),
     dberrors.READ_ONLY, False),
    (lambda: wrapped(psycopg2_error("OperationalError", "could not extend file: No space left")),
     dberrors.FULL, True),
    (lambda: wrapped(psycopg2_error("OperationalError", 'connection to server at "h", port 1 '
                                    "failed: Connection refused")), dberrors.CONNECTION_LOST, True),
    (lambda: wrapped(psycopg2_error("OperationalError", "timeout expired")),
     dberrors.SERVER_TROUBLE, True),
    (lambda: wrapped(psycopg2_error("IntegrityError", "duplicate key value violates unique "
                                    'constraint "story_pkey"')), dberrors.UNKNOWN, False),
])
def test_each_cause_is_told_by_the_drivers_words_or_class(make, what, passing):
    cause = classify(make())
    assert (cause.what, cause.passing) == (what, passing)


def test_a_cause_is_found_behind_the_error_that_masked_it():
    try:
        try:
            raise sqlite3.OperationalError("database or disk is full")
        except Exception:
            raise RuntimeError("cannot rollback - no transaction is active")
    except RuntimeError as masked:
        cause = classify(masked)
    assert cause.what == dberrors.FULL and cause.detail == "database or disk is full"


def test_an_outage_names_the_cause_and_the_place():
    def outage(exc: BaseException, where: str) -> str:
        return outage_message(classify(exc), where)

    assert outage(sqlite3.OperationalError("database or disk is full"), "/data/s.db") == \
        "database is full: /data/s.db"
    assert outage(sqlite3.OperationalError("attempt to write a readonly database"), "/x.db") == \
        "database is read-only: /x.db"
    lost = outage(OSError("server closed the connection unexpectedly\n\tThis probably..."),
                  "postgresql://u@h:5432/d")
    assert lost == ("database connection lost: postgresql://u@h:5432/d "
                    "(server closed the connection unexpectedly)")
    assert outage(ValueError("odd"), "/x.db") == "database error on /x.db: ValueError: odd"
    assert outage(sqlite3.DatabaseError("database disk image is malformed"), "/x.db") == \
        "database is damaged: /x.db (database disk image is malformed)"


def test_at_start_a_cause_that_may_pass_exits_1_and_one_a_person_must_fix_exits_78(tmp_path):
    db = str(tmp_path / "s.db")
    locked = startup_failure(db, wrapped(sqlite3.OperationalError("database is locked")))
    assert locked.exit_code == EXIT_PASSING
    assert locked.message.startswith(f"the database {db} is locked by another process")
    damaged = startup_failure(db, wrapped(sqlite3.DatabaseError("database disk image is malformed")))
    assert damaged.exit_code == EXIT_LASTING and "is damaged" in damaged.message
    url = "postgresql://sp:pw@db.example:5432/sp"
    down = startup_failure(url, wrapped(psycopg2_error("OperationalError", "timeout expired")))
    assert down.exit_code == EXIT_PASSING
    assert down.message.startswith("cannot reach PostgreSQL at postgresql://sp:***@db.example:5432/sp")
    bad = startup_failure("mysql://sp:pw@h/sp", BadURL("scheme 'mysql': storypulse runs on ..."))
    assert bad.exit_code == EXIT_LASTING and "pw" not in bad.message
    assert "write a path, sqlite:///" in bad.message


def test_a_backend_without_words_of_its_own_still_says_what_and_where():
    from storypulse.server.store import Store

    held = classify(InUse(__import__("pathlib").Path("/x"), "7"))
    assert Store.startup_words(held, "other://u:pw@h/db", "t") == (
        "the database other://u:***@h/db is in use by another storypulse server (pid 7): "
        "stop that one, or point --db at another database")
    odd = classify(ValueError("odd"))
    assert Store.startup_words(odd, "other://h/db", "odd") == "cannot use the database other://h/db (odd)"
