"""Durable storage: one class per database behind one small interface (base.Store).

    store = Store.open(spec, durability, exclusive=True)  # a path or a URL picks the backend
    store.use_workflow(names)  # the stages served; WorkflowMismatch if the database's differ
    store.load()            # what start-up keeps in memory
    store.apply(batch)      # one turn's writes, one transaction; Unavailable if not committed
    store.window(after, n)  # the queue's next whole stories, read in as memory runs low
    store.story(id), store.tasks_of(id), store.stories(...), store.queued_of(id),
    store.open_story_ids()  # the reads of requests
    store.recover(), store.durability_in_force(), store.integrity_ok(), store.close()

Modules: `base` (the interface, `Batch`, `Startup`, and what every backend shares:
opening, start-up's reads, the reads of requests), `schema` (the tables, their
migrations and the tally, for every backend), `sqlite`, `postgres` (and `pgsql`,
the SQL text of its bulk writes). Why a database refused is `dberrors.classify`'s
business, one level up.

Adding a backend is one module with one subclass of `Store`, listed in BACKENDS
below, plus its tests (tests/test_store.py runs its interface tests on every
backend it can reach). The subclass names its `title` and the peewee
`database_class` that the URL schemes of its database map to, and writes
`connect` (the database object for a URL, with the settings of each durability
level), `durability_setting` and `durability_in_force`, `location`, `_write`
(a turn's batch in one transaction, moving the tally as it goes), `window`,
`recover` and `integrity_ok`. It may add `foreign_tables` (tables that make a
database not ours), `migrate` (what it changes in an earlier version's tables)
and `STARTUP_WORDS` (what to tell a person when its database stops the server at
start; dberrors.RULES, if its driver words its errors in a way of its own).
config.DURABILITY_LEVELS then needs its settings in words (a test says so).
"""

from __future__ import annotations

from ..dberrors import BadURL, NotStorypulse
from .base import Batch, Startup, Store, Unavailable, WorkflowMismatch, describe
from .postgres import PostgresStore
from .sqlite import SqliteStore, default_db_path

# Tried in order against the peewee class a URL's scheme names; a path is the first's.
BACKENDS: tuple[type[Store], ...] = (SqliteStore, PostgresStore)

__all__ = ["BACKENDS", "BadURL", "Batch", "NotStorypulse", "PostgresStore", "SqliteStore",
           "Startup", "Store", "Unavailable", "WorkflowMismatch", "backend_for", "default_db_path",
           "describe"]


def backend_for(spec: str | None) -> type[Store]:
    """The backend of a path (SQLite), a URL, or None (the default SQLite file)."""
    if not spec or "://" not in spec:
        return BACKENDS[0]
    from playhouse import db_url

    scheme = spec.partition("://")[0].lower()
    kind = db_url.schemes.get(scheme)
    for backend in BACKENDS:
        if kind is not None and issubclass(kind, backend.database_class):
            return backend
    names = " or ".join(backend.title for backend in BACKENDS)
    raise BadURL(f"scheme {scheme!r}: storypulse runs on {names}")
