"""Why the server cannot use its database, in one line that names it and says what to do.

The server logs this line and exits instead of showing a traceback. A URL is
shown with its password as ***, and the password is taken out of the driver's
message too.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import peewee

from .claim import InUse
from .store import NotStorypulse, default_db_path

# Greedy up to the last "@": a password with an unescaped "@" or "/" is hidden whole.
PASSWORD_IN_URL = re.compile(r"^([a-z][a-z0-9+.-]*://[^/@:]*):(.*)@", re.IGNORECASE | re.DOTALL)
PASSWORD_IN_QUERY = re.compile(r"([?&]password=)([^&]*)", re.IGNORECASE)
# sysexits' EX_CONFIG: only a person can fix the cause, so the systemd unit does not
# restart on it (RestartPreventExitStatus); a cause that can pass by itself exits 1.
EXIT_LASTING = 78
URL_FORMS = "a path, sqlite:///path/to/file.db or postgresql://user:password@host[:port]/database"
MESSAGE_MAX = 300


class Passing(str):
    """A cause that can pass without anyone acting (a lock released, space freed, PostgreSQL
    started): a later start may well succeed."""


def exit_code(cause: str) -> int:
    """The exit status for a start-up that failed for `cause` (a line from `explain`)."""
    return 1 if isinstance(cause, Passing) else EXIT_LASTING


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


def hide_password(spec: str) -> str:
    spec = PASSWORD_IN_URL.sub(r"\1:***@", spec)
    return PASSWORD_IN_QUERY.sub(r"\1***", spec)


def _passwords(spec: str) -> list[str]:
    found = [m.group(2) for m in (PASSWORD_IN_URL.match(spec),) if m]
    found += [m.group(2) for m in PASSWORD_IN_QUERY.finditer(spec)]
    return [p for p in found if p]


def _is_url(spec: str | None) -> bool:
    return bool(spec) and "://" in spec


def _sqlite_path(spec: str | None) -> Path:
    if not spec:
        return default_db_path()
    if _is_url(spec):
        from playhouse.db_url import parse

        return Path(parse(spec)["database"]).expanduser()
    return Path(spec).expanduser()


def _one_line(exc: BaseException, spec: str | None) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    for secret in _passwords(spec or ""):
        text = text.replace(secret, "***")
    return text if len(text) <= MESSAGE_MAX else text[:MESSAGE_MAX] + "..."


def explain(spec: str | None, exc: BaseException) -> str:
    """The line to show for `exc`, raised while opening the database given as `spec`."""
    text = _one_line(exc, spec)
    url = _is_url(spec)
    if url and isinstance(exc, (ValueError, RuntimeError)):  # unparsable URL, unknown scheme
        return f"the database URL {hide_password(spec)} cannot be used ({text}): write {URL_FORMS}"
    if isinstance(exc, (peewee.ImproperlyConfigured, ImportError)):
        return (f"the database {hide_password(spec or '')} needs a driver that is not installed "
                f"({text}): for PostgreSQL, pip install 'storypulse[postgres]'")
    sqlite = not url or spec.lower().startswith("sqlite")
    if sqlite:
        return _sqlite(_sqlite_path(spec), exc, text)
    return _postgres(hide_password(spec), exc, text)


def _sqlite(path: Path, exc: BaseException, text: str) -> str:
    lower = text.lower()
    if isinstance(exc, InUse):
        return Passing(f"the database {path} is in use by another storypulse server ({exc.holder}): "
                       "stop that one, or point --db at another file")
    if isinstance(exc, OSError):  # from the file system, whose message holds paths: no word matching
        if exc.errno == errno.ENOSPC:
            return _no_room(path, text)
        return _sqlite_access(path, exc, text)
    if isinstance(exc, NotStorypulse) or "file is not a database" in lower:
        what = "storypulse" if isinstance(exc, NotStorypulse) else "SQLite"
        return (f"the file {path} is not a {what} database ({text}): point --db at a storypulse "
                "database, or at a new file")
    if "malformed" in lower or "corrupt" in lower:
        return (f"the database {path} is damaged ({text}): restore it from a backup, or point --db "
                "at a new file (the sqlite3 shell's .recover may salvage what is left)")
    if "locked" in lower:
        return Passing(f"the database {path} is locked by another process ({text}): stop it "
                       "(another storypulse server?), or point --db at another file")
    if "full" in lower:
        return _no_room(path, text)
    if isinstance(exc, OSError) or "readonly" in lower or "unable to open" in lower:
        return _sqlite_access(path, exc, text)
    return f"cannot use the database {path} ({text})"


def _no_room(path: Path, text: str) -> Passing:
    return Passing(f"no room for the database {path} ({text}): free some disk space")


def _sqlite_access(path: Path, exc: BaseException, text: str) -> str:
    """A file or folder this user may not create or write: say which."""
    if path.is_dir():
        return f"--db {path} is a folder: give the path of a database file"
    folder = next((p for p in (path.parent, *path.parent.parents) if p.exists()), None)
    if folder is not None and not folder.is_dir():
        return f"cannot create the database {path}: {folder} is a file, not a folder"
    if not path.parent.exists():
        return (f"cannot create the folder {path.parent} for the database ({text}): make it, or "
                "point --db at a folder this user may write")
    if path.exists() and not os.access(path, os.W_OK):
        return (f"the database {path} is read-only for this user ({text}): make it writable "
                "(chmod u+w, or run as its owner), or point --db at another file")
    if not os.access(path.parent, os.W_OK):
        verb = "write the database's -wal and -shm files in" if path.exists() else "create the database in"
        return (f"cannot {verb} the folder {path.parent}: this user may not write there; make it "
                "writable, or point --db at a folder this user may write")
    return f"cannot open the database {path} ({text}): check that this user may read and write it"


def _postgres(where: str, exc: BaseException, text: str) -> str:
    lower = text.lower()
    if isinstance(exc, InUse):
        return Passing(f"the database {where} is in use by another storypulse server ({exc.holder}): "
                       "stop that one, or point --db at another database")
    if type(exc).__name__ == "SessionNotKept":  # claim_postgres.py, imported only with PostgreSQL
        return (f"{text}: connect to PostgreSQL directly, or through a pooler in session mode "
                "(PgBouncer: pool_mode = session)")
    if isinstance(exc, NotStorypulse):
        return (f"the database {where} is not storypulse's ({text}): give storypulse a database "
                "of its own (createdb), or drop the table that is in the way")
    if ("authentication failed" in lower or "pg_hba.conf" in lower or "no password" in lower
            or re.search(r'role "[^"]*" does not exist', lower)):
        return (f"PostgreSQL refused the login to {where} ({text}): check the user and password in "
                "the URL, and that pg_hba.conf lets this host in")
    if re.search(r'database "[^"]*" does not exist', lower):
        return (f"the database {where} does not exist ({text}): create it (createdb -O USER NAME), "
                "or fix its name in the URL")
    if "permission denied" in lower or "must be owner" in lower:
        return (f"the PostgreSQL user of {where} may not create or write storypulse's tables "
                f"({text}): grant it those rights, or use a database it owns")
    if "read-only transaction" in lower:
        return (f"the database {where} is read-only ({text}): point the URL at the primary, "
                "not a standby")
    if isinstance(exc, peewee.OperationalError):
        return Passing(f"cannot reach PostgreSQL at {where} ({text}): start PostgreSQL, or fix the "
                       "host and port in the URL")
    return f"cannot use the database {where} ({text})"
