"""Why the database refused: one classifier, two renderings.

`classify(exc)` reads an exception (and the ones it was raised from) and says
what went wrong as a `Cause`: a few words (`database is full`), whether it may
pass by itself (space freed, a lock let go, PostgreSQL back up), and the
driver's own words. The words come from the drivers' messages, so the rules
below are grouped by who says them; a new backend whose driver words its
errors its own way adds rules here.

Two renderings of a cause:
- `startup_failure(spec, exc)`: the one line the server logs when it cannot
  start, naming the file or URL (never its password) and saying what to do,
  with the exit code: 1 for a cause that may pass by itself (the systemd unit
  restarts), 78 (EX_CONFIG) for what only a person can fix (it does not). The
  words for a file or a server are the backend's (`Store.startup_words`).
- `outage_message(cause, where)`: the line of an outage while the server runs,
  for `unavailable` replies and `database_error` in stats.
"""

from __future__ import annotations

import errno
import re
from dataclasses import dataclass
from typing import Callable

import peewee

from .claim import InUse

# Greedy up to the last "@": a password with an unescaped "@" or "/" is hidden whole.
PASSWORD_IN_URL = re.compile(r"^([a-z][a-z0-9+.-]*://[^/@:]*):(.*)@", re.IGNORECASE | re.DOTALL)
PASSWORD_IN_QUERY = re.compile(r"([?&]password=)([^&]*)", re.IGNORECASE)
# sysexits' EX_CONFIG: only a person can fix the cause, so the systemd unit does not
# restart on it (RestartPreventExitStatus); a cause that can pass by itself exits 1.
EXIT_LASTING = 78
EXIT_PASSING = 1
URL_FORMS = "a path, sqlite:///path/to/file.db or postgresql://user:password@host[:port]/database"
MESSAGE_MAX = 300  # characters of a driver's message at start-up
DETAIL_MAX = 200  # characters of its first line in an outage's message


class NotStorypulse(Exception):
    """The database holds tables that are not storypulse's; the message says which."""


class BadURL(ValueError):
    """The database URL cannot be parsed, or names a database storypulse does not run on."""


@dataclass(frozen=True)
class Cause:
    what: str  # in a few words, one of the constants below: "database is full"
    passing: bool  # may pass by itself, so a later try may succeed
    detail: str  # the driver's words: the first line of the error that told
    error: BaseException  # that error (for a pid, an errno, the kind of a file)


# What a cause is, in words: the outage message starts with these.
BAD_URL = "the database URL cannot be used"
NO_DRIVER = "the database driver is not installed"
IN_USE = "the database is in use by another storypulse server"
POOLED = "the database connection does not keep its session"
NOT_OURS = "the database is not storypulse's"
NOT_A_DATABASE = "the file is not a database"
FULL = "database is full"
NO_ACCESS = "the database's file or folder may not be written"
DAMAGED = "database is damaged"
LOGIN_REFUSED = "the database refused the login"
NO_DATABASE = "the database does not exist"
NOT_PERMITTED = "the database user may not write storypulse's tables"
READ_ONLY = "database is read-only"
LOCKED = "database is locked by another connection"
IO_ERROR = "disk I/O error on the database"
CANNOT_OPEN = "the database cannot be opened"
CONNECTION_LOST = "database connection lost"
SERVER_TROUBLE = "the database server is unavailable"
UNKNOWN = "database error"


def _words(*needles: str) -> Callable[[BaseException], bool]:
    return lambda error: any(needle in str(error).lower() for needle in needles)


def _from_psycopg2(name: str) -> Callable[[BaseException], bool]:
    """An error of psycopg2's class `name` (without importing psycopg2: it may be missing)."""
    return lambda error: any(c.__name__ == name and c.__module__.startswith("psycopg2")
                             for c in type(error).__mro__)


def _file_system(error: BaseException) -> bool:
    # The file system's errors carry an errno; their messages hold paths, so no word matching.
    return isinstance(error, OSError) and error.errno is not None


# (what, may pass by itself, test of one error of the chain), first match wins: a rule is
# tried on every error of the chain before the next rule (so a rollback that failed after
# a full disk still says "full").
RULES: tuple[tuple[str, bool, Callable[[BaseException], bool]], ...] = (
    # raised by storypulse itself
    (BAD_URL, False, lambda e: isinstance(e, BadURL)),
    (NO_DRIVER, False, lambda e: isinstance(e, (peewee.ImproperlyConfigured, ImportError))),
    (IN_USE, True, lambda e: isinstance(e, InUse)),
    # claim_postgres.SessionNotKept (by name: that module is imported only with PostgreSQL)
    (POOLED, False, lambda e: type(e).__name__ == "SessionNotKept"),
    (NOT_OURS, False, lambda e: isinstance(e, NotStorypulse)),
    (NOT_A_DATABASE, False, _words("file is not a database")),
    # the file system
    (FULL, True, lambda e: _file_system(e) and e.errno == errno.ENOSPC),
    (NO_ACCESS, False, _file_system),
    # the drivers' words: SQLite's, PostgreSQL's, both
    (DAMAGED, False, _words("malformed", "corrupt")),
    (LOGIN_REFUSED, False, lambda e: _words("authentication failed", "pg_hba.conf", "no password")(e)
     or re.search(r'role "[^"]*" does not exist', str(e).lower()) is not None),
    (NO_DATABASE, False, lambda e: re.search(r'database "[^"]*" does not exist',
                                             str(e).lower()) is not None),
    (NOT_PERMITTED, False, _words("permission denied", "must be owner")),
    (FULL, True, _words("database or disk is full", "no space left", "could not extend file",
                        "disk quota")),
    (READ_ONLY, False, _words("readonly", "read-only", "read only")),
    (LOCKED, True, _words("locked")),
    (IO_ERROR, False, _words("disk i/o error")),
    (CANNOT_OPEN, False, _words("unable to open")),
    (CONNECTION_LOST, True, _words(
        "server closed the connection", "connection already closed", "terminating connection",
        "could not connect", "connection refused", "connection to server", "shutting down",
        "starting up", "no connection to the server", "ssl connection has been closed",
        "recovery mode", "connection not open", "connection is closed")),
    # any other refusal by a PostgreSQL server (a timeout, an operator's intervention)
    (SERVER_TROUBLE, True, _from_psycopg2("OperationalError")),
)


def classify(exc: BaseException) -> Cause:
    """What went wrong, from `exc` and the errors it was raised from or while handling."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain and len(chain) < 10:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    for what, passing, test in RULES:
        for error in chain:
            if test(error):
                return Cause(what, passing, first_line(error), error)
    original = chain[-1]
    return Cause(UNKNOWN, False, f"{type(original).__name__}: {first_line(original)}", original)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:DETAIL_MAX] if text else type(exc).__name__


# -- while running -------------------------------------------------------------------
# Causes that say all in their words; the others add the driver's.
_SAID_IN_FULL = (FULL, READ_ONLY, LOCKED, IO_ERROR)


def outage_message(cause: Cause, where: str) -> str:
    """One line for an `unavailable` reply and the stats: the cause and the file or URL."""
    if cause.what == UNKNOWN:
        return f"database error on {where}: {cause.detail}"
    if cause.what in _SAID_IN_FULL:
        return f"{cause.what}: {where}"
    return f"{cause.what}: {where} ({cause.detail})"


# -- at start ------------------------------------------------------------------------
@dataclass(frozen=True)
class StartupFailure:
    message: str
    exit_code: int  # EXIT_PASSING or EXIT_LASTING


def startup_failure(spec: str | None, exc: BaseException) -> StartupFailure:
    """What to log and exit with when `exc` stopped the server on the database given as
    `spec` (a path, a URL, None for the default file)."""
    cause = classify(exc)
    text = one_line(exc, spec)
    if cause.what == BAD_URL:
        message = f"the database URL {hide_password(spec or '')} cannot be used ({text}): write {URL_FORMS}"
    elif cause.what == NO_DRIVER:
        message = (f"the database {hide_password(spec or '')} needs a driver that is not installed "
                   f"({text}): for PostgreSQL, pip install 'storypulse[postgres]'")
    else:
        from .store import Store, backend_for

        try:
            backend = backend_for(spec)
        except BadURL:  # not from opening it: say what there is to say without the backend
            backend = Store
        message = backend.startup_words(cause, spec, text)
    return StartupFailure(message, EXIT_PASSING if cause.passing else EXIT_LASTING)


def one_line(exc: BaseException, spec: str | None) -> str:
    """The whole message of `exc` on one line, without the password of `spec`."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    for secret in _passwords(spec or ""):
        text = text.replace(secret, "***")
    return text if len(text) <= MESSAGE_MAX else text[:MESSAGE_MAX] + "..."


def hide_password(spec: str) -> str:
    spec = PASSWORD_IN_URL.sub(r"\1:***@", spec)
    return PASSWORD_IN_QUERY.sub(r"\1***", spec)


def _passwords(spec: str) -> list[str]:
    found = [m.group(2) for m in (PASSWORD_IN_URL.match(spec),) if m]
    found += [m.group(2) for m in PASSWORD_IN_QUERY.finditer(spec)]
    return [p for p in found if p]


def database_errors() -> tuple[type[BaseException], ...]:
    """What a database can raise; the drivers' own classes too, since rows fetched from a
    cursor after peewee's execute raise them unwrapped."""
    import sqlite3

    errors: tuple[type[BaseException], ...] = (peewee.DatabaseError, sqlite3.DatabaseError)
    try:
        import psycopg2
    except ImportError:
        return errors
    return (*errors, psycopg2.Error)
