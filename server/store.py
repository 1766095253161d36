"""Durable storage: Peewee models Story and Task, opened from a path or a URL.

The server is the only writer. It assigns ids itself (a story's tasks get a
contiguous range), so one turn's stories and tasks go in with a few bulk
statements and nothing has to be read back. Task states on disk are only
`queued` and `done`: "running" lives in memory, since a running task is
queued again after a crash anyway. A story's `started_at` is written with the
turn that hands out its first task: a story in progress stays so across a restart.

The hot path (`apply`) is plain SQL, one way per database over the same models and
the same `Batch`: on SQLite the driver's executemany and `WHERE id IN (...)` (in
process, a statement costs microseconds); on PostgreSQL a statement is a round trip
and psycopg2's executemany sends one per row, so a turn is one query of a few
statements: a table's new rows in one INSERT from arrays, and updates that name
their rows with one array (`WHERE id = ANY(...)`).

On PostgreSQL the task table has no foreign key to story: the check runs per inserted
row (a trigger and a lookup each), about 40% of the database's work for a turn of new
tasks. The server is the only writer and keeps the reference itself: a story's tasks
go in with it, in one transaction, and are deleted with it, explicitly (SQLite keeps
the key; there it costs little).

Counts that start-up needs (open and done stories, queued and done tasks, the queued
work) live in a one-row table, `tally`, moved by every write in the same transaction
by what the write changed: start-up reads one row instead of counting whole tables,
and task has no index on its status, so marking a task done touches no index (on
PostgreSQL, with room left on each page, a HOT update).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence
from urllib.parse import urlparse

import peewee
from peewee import (
    BigIntegerField,
    CharField,
    DatabaseProxy,
    DoubleField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)

from .claim import Claim

log = logging.getLogger(__name__)

database = DatabaseProxy()

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "cache_size": -64_000,  # KiB: 64 MiB page cache
    "busy_timeout": 500,  # ms: a longer lock by another process is an outage, not a stall
}
# What each durability level (the server's --durability) asks of the database.
# power-loss: a commit returns only once it is flushed to disk (group commit makes
#   that one flush per loop turn, so nearly free); crash: a commit is in the OS (SQLite)
#   or the database server (PostgreSQL) when it returns, so it survives a crash of
#   this process but the last commits may be lost if the machine loses power.
SQLITE_SYNCHRONOUS = {"power-loss": "full", "crash": "normal"}
POSTGRES_SYNCHRONOUS_COMMIT = {"power-loss": "on", "crash": "off"}
DEFAULT_DURABILITY = "power-loss"
PG_CONNECT_TIMEOUT_S = 2  # seconds, unless the URL says otherwise
IN_CHUNK = 500  # ids in one `IN (...)`: far below SQLite's variable limit


class BaseModel(Model):
    class Meta:
        database = database


class Story(BaseModel):
    id = BigIntegerField(primary_key=True)  # assigned by the server
    name = CharField(max_length=200)
    description = TextField(default="")
    status = CharField(max_length=8, default="open")  # open | done
    created_at = DoubleField()
    completed_at = DoubleField(null=True)
    tasks_total = IntegerField()
    # when its first task was handed to a worker; written with the turn that did it, so
    # it survives a restart (null: not started, or done by a version that did not record it)
    started_at = DoubleField(null=True)

    class Meta:
        table_name = "story"
        # completed_at: the flow window's recent completions, read back at start-up;
        # (status, started_at): the open stories in progress, read back whole at start-up
        indexes = ((("status", "id"), False), (("completed_at",), False),
                   (("status", "started_at"), False))


class Task(BaseModel):
    id = BigIntegerField(primary_key=True)  # assigned by the server
    story = ForeignKeyField(Story, on_delete="CASCADE", index=True, column_name="story_id")
    name = CharField(max_length=200, default="")
    estimate_ms = IntegerField()
    status = CharField(max_length=8, default="queued")  # queued | done (indexed below)
    attempts = IntegerField(default=0)
    created_at = DoubleField()
    started_at = DoubleField(null=True)
    finished_at = DoubleField(null=True)

    class Meta:
        table_name = "task"
        # No index on status (see the module's docstring): the counts are in Tally.


class Counter(BaseModel):
    """High-water marks, so that ids of deleted stories are never handed out again."""

    name = CharField(max_length=32, primary_key=True)
    value = BigIntegerField()

    class Meta:
        table_name = "counter"


class Tally(BaseModel):
    """One row: what the rows add up to, kept in step by every write (see the module docstring)."""

    stories_open = BigIntegerField()
    stories_done = BigIntegerField()
    tasks_queued = BigIntegerField()
    tasks_done = BigIntegerField()
    queued_ms = BigIntegerField()  # the estimates of the queued tasks

    class Meta:
        table_name = "tally"
        primary_key = False


MODELS = (Story, Task, Counter, Tally)
TALLY_COLUMNS = ("stories_open", "stories_done", "tasks_queued", "tasks_done", "queued_ms")
# Task pages are filled to this much on PostgreSQL, so that the one update of a task's life
# (queued -> done, which adds two times) finds room on its page: a HOT update.
TASK_FILLFACTOR = 50


# Columns that databases made by earlier versions lack; opened, they get them (null in old rows).
ADDED_LATER = {"story": ("started_at",)}
# Indexes of earlier versions that a newer one replaced (task_status: by task_status_estimate_ms,
# and that by the tally). An earlier version makes them again whenever it opens the database.
REPLACED_INDEXES = ("task_status", "task_status_estimate_ms")


def _add_missing_columns(db: peewee.Database) -> bool:
    """Also drops the replaced indexes; True if there were any (an earlier version wrote here,
    without keeping the tally)."""
    from playhouse.migrate import SchemaMigrator, migrate

    ours = {model._meta.table_name: model for model in MODELS}
    for table, columns in ADDED_LATER.items():
        have = {column.name for column in db.get_columns(table)}
        for name in columns:
            if name not in have:
                log.info("adding the column %s.%s to a database from an earlier version",
                         table, name)
                kind = type(ours[table]._meta.columns[name])  # a fresh field, nullable
                migrate(SchemaMigrator.from_database(db).add_column(table, name, kind(null=True)))
    replaced = {index.name for index in db.get_indexes("task")} & set(REPLACED_INDEXES)
    for name in sorted(replaced):
        log.info("dropping the index %s of an earlier version", name)
        db.execute_sql(f"DROP INDEX IF EXISTS {name}")
    if isinstance(db, peewee.PostgresqlDatabase):
        _drop_task_foreign_keys(db)
        options = db.execute_sql("SELECT reloptions FROM pg_class WHERE oid = 'task'::regclass"
                                 ).fetchone()[0] or []
        if f"fillfactor={TASK_FILLFACTOR}" not in options:  # new pages only: old rows stay put
            db.execute_sql(f"ALTER TABLE task SET (fillfactor = {TASK_FILLFACTOR})")
    return bool(replaced)


def _count_tally(db: peewee.Database, recount: bool) -> None:
    """Fill the tally by counting, once: for a new database, one of an earlier version, or one
    an earlier version wrote to since (`recount`)."""
    if not recount and len(db.execute_sql("SELECT 1 FROM tally").fetchall()) == 1:
        return
    log.info("counting the stories and tasks into the tally")
    with db.atomic():
        db.execute_sql("DELETE FROM tally")
        db.execute_sql(
            f"INSERT INTO tally ({', '.join(TALLY_COLUMNS)}) SELECT "
            "(SELECT COUNT(*) FROM story WHERE status = 'open'), "
            "(SELECT COUNT(*) FROM story WHERE status = 'done'), "
            "(SELECT COUNT(*) FROM task WHERE status = 'queued'), "
            "(SELECT COUNT(*) FROM task WHERE status = 'done'), "
            "(SELECT COALESCE(SUM(estimate_ms), 0) FROM task WHERE status = 'queued')")


def _drop_task_foreign_keys(db: peewee.Database) -> None:
    """New tables get the key from the model, and earlier versions made it: drop it (see above)."""
    for (name,) in db.execute_sql(
            "SELECT conname FROM pg_constraint WHERE conrelid = 'task'::regclass AND contype = 'f'"
    ).fetchall():
        log.info("dropping the foreign key %s of the task table (the server keeps it)", name)
        db.execute_sql(f'ALTER TABLE task DROP CONSTRAINT "{name}"')


def default_db_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("storypulse")) / "storypulse.db"


def connect(spec: str | None, durability: str = DEFAULT_DURABILITY) -> peewee.Database:
    """A path (SQLite) or a URL (`sqlite:///...`, `postgresql://...`); None: the default file.

    Every connection the database object makes gets the pragmas or session
    settings of `durability`. Raises ValueError for a URL it cannot use.
    """
    if spec and "://" in spec:
        from playhouse import db_url

        kind = db_url.schemes.get(urlparse(spec).scheme)
        if kind is not None and issubclass(kind, peewee.SqliteDatabase):
            return db_url.connect(spec, pragmas=sqlite_pragmas(durability))
        if kind is not None and issubclass(kind, peewee.PostgresqlDatabase):
            _require_psycopg2()
            # libpq's `options` sets it for the session of every connection, reconnections too.
            setting = f"-c synchronous_commit={POSTGRES_SYNCHRONOUS_COMMIT[durability]}"
            parsed = db_url.parse(spec)
            given = parsed.get("options")
            # A bounded connect: the loop reconnects in line after an outage, and an
            # unreachable host must not stall `ping` for the TCP timeout.
            timeout = parsed.get("connect_timeout", PG_CONNECT_TIMEOUT_S)
            return db_url.connect(spec, options=f"{given} {setting}" if given else setting,
                                  connect_timeout=timeout)
        raise ValueError(f"scheme {urlparse(spec).scheme!r}: storypulse runs on SQLite or PostgreSQL")
    path = Path(spec).expanduser() if spec else default_db_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    return peewee.SqliteDatabase(str(path), pragmas=sqlite_pragmas(durability))


def _require_psycopg2() -> None:
    """The PostgreSQL write path sends one turn as one query of several statements with
    parameters filled in by the client, which is psycopg2's way; peewee would pick psycopg 3
    where psycopg2 is missing, and psycopg 3 binds on the server, one statement a query."""
    try:
        import psycopg2  # noqa: F401
    except ImportError as exc:
        raise peewee.ImproperlyConfigured(
            "psycopg2 postgres driver not found (storypulse writes to PostgreSQL through it)"
        ) from exc


def sqlite_pragmas(durability: str) -> dict:
    return {**SQLITE_PRAGMAS, "synchronous": SQLITE_SYNCHRONOUS[durability]}


class NotStorypulse(Exception):
    """The database holds tables that are not storypulse's; the message says which."""


def check_schema(db: peewee.Database) -> None:
    """Refuse a database whose tables are not ours, before writing anything to it.

    A SQLite file may hold only our tables (a new file holds none); a PostgreSQL
    database may hold others too (it is often shared), but a `story`, `task` or
    `counter` table in it must have our columns.
    """
    ours = {model._meta.table_name: model for model in MODELS}
    tables = set(db.get_tables())
    if isinstance(db, peewee.SqliteDatabase):
        foreign = sorted(t for t in tables - set(ours) if not t.startswith("sqlite_"))
        if foreign:
            raise NotStorypulse(f"it holds other tables: {', '.join(foreign)}")
    for name in sorted(tables & set(ours)):
        have = {column.name for column in db.get_columns(name)}
        missing = [c for c in ours[name]._meta.columns
                   if c not in have and c not in ADDED_LATER.get(name, ())]
        if missing:
            raise NotStorypulse(f"its table {name} has no column {', '.join(missing)}")


def check_writable(db: peewee.Database) -> None:
    """A write that changes nothing: a read-only file, folder, role or replica fails here, not at
    the first acknowledged story."""
    with db.atomic():
        db.execute_sql("UPDATE counter SET value = value WHERE 1 = 0")


def describe(db: peewee.Database) -> str:
    return f"{type(db).__name__}({db.database})"


def location(db: peewee.Database) -> str:
    """The file or URL of a database, for messages; never a password."""
    if isinstance(db, peewee.SqliteDatabase):
        return str(db.database)
    params = getattr(db, "connect_params", {}) or {}
    user = f"{params['user']}@" if params.get("user") else ""
    host = params.get("host") or "localhost"
    port = f":{params['port']}" if params.get("port") else ""
    return f"postgresql://{user}{host}{port}/{db.database}"


class Unavailable(Exception):
    """The database refused a statement; `cause` says why, for people, with the file or URL."""

    def __init__(self, cause: str):
        super().__init__(cause)
        self.cause = cause


# (what the driver says, in lower case) -> what we tell people
_CAUSES = (
    (("database or disk is full", "no space left", "could not extend file", "disk quota"),
     "database is full"),
    (("readonly database", "read-only", "read only"), "database is read-only"),
    (("database is locked", "database table is locked"),
     "database is locked by another connection"),
    (("disk i/o error",), "disk I/O error on the database"),
    (("server closed the connection", "connection already closed", "terminating connection",
      "could not connect", "connection refused", "connection to server", "shutting down",
      "starting up", "no connection to the server", "ssl connection has been closed",
      "recovery mode", "connection not open", "connection is closed"),
     "database connection lost"),
)


def explain(exc: BaseException, where: str) -> str:
    """One line: the cause of a database failure, from the whole exception chain."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain and len(chain) < 10:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    for needles, cause in _CAUSES:
        for error in chain:
            text = str(error).lower()
            if any(needle in text for needle in needles):
                detail = "" if cause != "database connection lost" else f" ({_first_line(error)})"
                return f"{cause}: {where}{detail}"
    original = chain[-1]
    return f"database error on {where}: {type(original).__name__}: {_first_line(original)}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


@dataclass
class Startup:
    """What the server needs in memory, read once when it starts."""

    next_story_id: int
    next_task_id: int
    completed_stories: int
    tasks_completed: int
    # story_id -> (tasks_total, created_at, started_at) of every open story in progress
    # (started); the others stay on disk, counted below, and are read in windows (`window`)
    open_stories: dict[int, tuple[int, float, float | None]]
    # (task_id, story_id, estimate_ms, attempts) of every unfinished task of those, by id
    queued_tasks: list[tuple[int, int, int, int]]
    open_count: int = 0  # open stories, all of them
    queued_count: int = 0  # queued tasks, all of them (running ones are queued on disk)
    queued_ms: int = 0  # their estimates
    backlog_after: int = 0  # no queued task of an open story has an id at or below it
    # (story_id, created_at, started_at, completed_at) of the stories completed since the
    # `done_since` given to load(), oldest completion first
    recent_done: list[tuple[int, float, float | None, float]] = field(default_factory=list)


@dataclass
class Batch:
    """The writes of one loop turn; applied in one transaction."""

    stories: list[tuple] = field(default_factory=list)  # see STORY_COLUMNS
    tasks: list[tuple] = field(default_factory=list)  # see TASK_COLUMNS
    # (attempts, started_at, finished_at, task ids)
    completions: list[tuple[int, float, float, list[int]]] = field(default_factory=list)
    # (started_at, story ids): stories whose first task went to a worker
    started_stories: list[tuple[float, list[int]]] = field(default_factory=list)
    # (completed_at, story ids): a batch held through an outage spans many turns
    done_stories: list[tuple[float, list[int]]] = field(default_factory=list)
    deleted_stories: list[int] = field(default_factory=list)
    id_floors: dict[str, int] = field(default_factory=dict)  # set when stories are deleted

    def __bool__(self) -> bool:
        return bool(self.stories or self.tasks or self.completions or self.started_stories
                    or self.done_stories or self.deleted_stories)


STORY_COLUMNS = ("id", "name", "description", "status", "created_at", "tasks_total")
TASK_COLUMNS = ("id", "story_id", "name", "estimate_ms", "status", "attempts", "created_at")
# The PostgreSQL types of those columns, for the arrays the bulk INSERT reads.
STORY_TYPES = ("bigint", "text", "text", "text", "float8", "int")
TASK_TYPES = ("bigint", "bigint", "text", "int", "text", "int", "float8")
STORY_SELECT = "id, name, description, status, created_at, completed_at, tasks_total, started_at"
TASK_SELECT = "id, name, estimate_ms, status, attempts, created_at, started_at, finished_at"


# The tally's column for a task's or a story's status.
TASK_TALLY = {"queued": "tasks_queued", "done": "tasks_done"}
STORY_TALLY = {"open": "stories_open", "done": "stories_done"}
# PostgreSQL: how a write moves the tally, from the rows it returns (`w`, summed up as `d`).
_TASKS_BY_STATE = ("SELECT count(*) FILTER (WHERE status = 'queued') AS queued, "
                   "count(*) FILTER (WHERE status = 'done') AS done, "
                   "COALESCE(sum(estimate_ms) FILTER (WHERE status = 'queued'), 0) AS ms FROM w")
_STORIES_BY_STATE = ("SELECT count(*) FILTER (WHERE status = 'open') AS open, "
                     "count(*) FILTER (WHERE status = 'done') AS done FROM w")
TALLY_MOVES = {  # what a write returns, how that is summed up, and what the sums change
    "tasks added": ("status, estimate_ms", _TASKS_BY_STATE,
                    "tasks_queued = tasks_queued + d.queued, tasks_done = tasks_done + d.done, "
                    "queued_ms = queued_ms + d.ms"),
    "tasks removed": ("status, estimate_ms", _TASKS_BY_STATE,
                      "tasks_queued = tasks_queued - d.queued, tasks_done = tasks_done - d.done, "
                      "queued_ms = queued_ms - d.ms"),
    "tasks done": ("status, estimate_ms",  # queued ones only: the update says so
                   "SELECT count(*) AS n, COALESCE(sum(estimate_ms), 0) AS ms FROM w",
                   "tasks_queued = tasks_queued - d.n, tasks_done = tasks_done + d.n, "
                   "queued_ms = queued_ms - d.ms"),
    "stories added": ("status", _STORIES_BY_STATE,
                      "stories_open = stories_open + d.open, stories_done = stories_done + d.done"),
    "stories removed": ("status", _STORIES_BY_STATE,
                        "stories_open = stories_open - d.open, stories_done = stories_done - d.done"),
    "stories done": ("status", "SELECT count(*) AS n FROM w",  # open ones only
                     "stories_open = stories_open - d.n, stories_done = stories_done + d.n"),
}


def _tallied(writes: Sequence[str], move: str) -> str:
    """INSERTs, UPDATEs or DELETEs of one table as one statement that also moves the tally by
    the rows they changed (TALLY_MOVES). The writes must not touch the same rows."""
    returning, sums, change = TALLY_MOVES[move]
    ctes = [f"w{i} AS ({write} RETURNING {returning})" for i, write in enumerate(writes)]
    union = " UNION ALL ".join(f"SELECT {returning} FROM w{i}" for i in range(len(writes)))
    return f"WITH {', '.join(ctes)}, w AS ({union}) UPDATE tally SET {change} FROM ({sums}) d"


def _chunks(ids: Sequence[int], size: int = IN_CHUNK) -> Iterable[Sequence[int]]:
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


def _array(values: Iterable, kind: str = "bigint") -> str:
    """A PostgreSQL array literal, to pass as one parameter (`%s::bigint[]`), however many
    values: formatted with str.join at C speed, where psycopg2 adapts a list value by value.

    `str` of an int or a float is its exact text (a float's repr); a text element is
    double-quoted with its backslashes and quotes escaped, once per distinct value."""
    values = values if isinstance(values, (list, tuple)) else list(values)
    if kind == "text":
        quoted = {value: _quote(value) for value in set(values)}
        return "{" + ",".join(map(quoted.__getitem__, values)) + "}"
    if None in values:
        return "{" + ",".join("NULL" if v is None else str(v) for v in values) + "}"
    return "{" + ",".join(map(str, values)) + "}"


def _insert_rows(table: str, columns: Sequence[str], types: Sequence[str],
                 rows: Sequence[tuple]) -> tuple[str, list]:
    """INSERT ... SELECT from one array a column; a column whose value is the same in every
    row (a turn's tasks share their status, attempts and time) is one value instead, so the
    database parses it once. The first column (the id) is always an array."""
    select, scalars, arrays, names = [], [], [], []
    for index, (name, kind, column) in enumerate(zip(columns, types, zip(*rows))):
        first = column[0]
        if index and first is not None and column.count(first) == len(column):
            select.append(f"%s::{kind}")
            scalars.append(first)
        else:
            select.append(f"u.{name}")
            names.append(name)
            arrays.append(_array(column, kind))
    unnest = ", ".join(f"%s::{types[columns.index(name)]}[]" for name in names)
    sql = (f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(select)} "
           f"FROM unnest({unnest}) AS u({', '.join(names)})")
    return sql, scalars + arrays


def _quote(value: str | None) -> str:
    if value is None:
        return "NULL"
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Store:
    def __init__(self, db: peewee.Database):
        self.db = db
        self.where = location(db)
        database.initialize(db)
        self.p = db.param  # placeholder: ? for SQLite, %s for PostgreSQL
        self._insert_story = (
            f"INSERT INTO story ({', '.join(STORY_COLUMNS)}) "
            f"VALUES ({', '.join([self.p] * len(STORY_COLUMNS))})"
        )
        self._insert_task = (
            f"INSERT INTO task ({', '.join(TASK_COLUMNS)}) "
            f"VALUES ({', '.join([self.p] * len(TASK_COLUMNS))})"
        )
        self._postgres = isinstance(db, peewee.PostgresqlDatabase)
        self.claim = Claim(None)

    @classmethod
    def open(cls, spec: str | None, durability: str = DEFAULT_DURABILITY, exclusive: bool = False) -> Store:
        """Open, check that the database is ours and writable, create missing tables (and the
        columns an earlier version lacked). `exclusive` (the server): claim a SQLite file
        first, raising `claim.InUse` while another server has it."""
        store = cls(connect(spec, durability))
        try:
            if exclusive:
                store.claim = Claim.take(store.db, store.where)
            store.db.connect(reuse_if_open=True)
            check_schema(store.db)
            # A tally is only good for the tables it was kept with (they may have been dropped).
            made = not {"story", "task"} <= set(store.db.get_tables())
            # Tables first, indexes once the columns they cover are there: PostgreSQL refuses
            # an index on a missing column, and SQLite takes the unknown "name" for a string.
            for model in MODELS:
                model._schema.create_table(safe=True)
            check_writable(store.db)
            recount = _add_missing_columns(store.db)
            for model in MODELS:
                model._schema.create_indexes(safe=True)
            _count_tally(store.db, recount or made)
            store.claim.record(store.db)  # the holder's row (PostgreSQL): server/claim_postgres.py
        except BaseException:
            store.close()
            raise
        return store

    def durability_in_force(self) -> str:
        """What the database itself reports for the setting that durability depends on."""
        if isinstance(self.db, peewee.SqliteDatabase):
            level = self.db.execute_sql("PRAGMA synchronous").fetchone()[0]
            names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
            return f"synchronous={names.get(level, level)}"
        if isinstance(self.db, peewee.PostgresqlDatabase):
            return f"synchronous_commit={self.db.execute_sql('SHOW synchronous_commit').fetchone()[0]}"
        return "unknown"

    def close(self) -> None:
        if not self.db.is_closed():
            self.db.close()
        self.claim.release()  # after the database: the next server finds it closed

    # -- start-up --------------------------------------------------------------
    def load(self, done_since: float | None = None, done_max: int = 250_000) -> Startup:
        """What the server keeps in memory; with `done_since` (wall clock), also the newest
        `done_max` stories completed since then."""
        sql = self.db.execute_sql
        max_story = sql("SELECT COALESCE(MAX(id), 0) FROM story").fetchone()[0]
        max_task = sql("SELECT COALESCE(MAX(id), 0) FROM task").fetchone()[0]
        floors = dict(sql("SELECT name, value FROM counter").fetchall())
        # Counts from the tally; the backlog itself stays on disk.
        open_count, completed, queued_count, tasks_done, queued_ms = sql(
            f"SELECT {', '.join(TALLY_COLUMNS)} FROM tally").fetchone()
        # Where the backlog starts: before the first task of the oldest open story (ids rise
        # with creation), so that the first window skips the history of done tasks.
        oldest = sql("SELECT MIN(id) FROM story WHERE status = 'open'").fetchone()[0]
        first = None if oldest is None else sql(
            f"SELECT MIN(id) FROM task WHERE story_id = {self.p}", (oldest,)).fetchone()[0]
        open_stories = {
            sid: (total, created, started)
            for sid, total, created, started in sql(
                "SELECT id, tasks_total, created_at, started_at FROM story "
                "WHERE status = 'open' AND started_at IS NOT NULL"
            )
        }
        queued: list[tuple] = []
        for chunk in _chunks(sorted(open_stories)):
            queued += [tuple(row) for row in sql(
                "SELECT id, story_id, estimate_ms, attempts FROM task "
                f"WHERE status = 'queued' AND story_id IN ({', '.join([self.p] * len(chunk))})",
                tuple(chunk))]
        queued.sort()
        recent: list[tuple] = []
        if done_since is not None:
            p = self.p
            recent = [tuple(row) for row in sql(
                "SELECT id, created_at, started_at, completed_at FROM story "
                f"WHERE status = 'done' AND completed_at >= {p} "
                f"ORDER BY completed_at DESC, id DESC LIMIT {p}", (done_since, done_max))]
            recent.reverse()
        return Startup(
            recent_done=recent,
            next_story_id=max(max_story, floors.get("story_id", 0)) + 1,
            next_task_id=max(max_task, floors.get("task_id", 0)) + 1,
            completed_stories=completed,
            tasks_completed=tasks_done,
            open_stories=open_stories,
            queued_tasks=queued,
            open_count=open_count,
            queued_count=queued_count,
            queued_ms=int(queued_ms),
            backlog_after=max(0, (first or 1) - 1),
        )

    def window(self, after: int, limit: int) -> tuple[list[tuple], bool]:
        """The next whole stories of the queue: (task_id, story_id, estimate_ms, attempts,
        tasks_total, created_at, started_at) of the queued tasks of open stories with ids above
        `after`, in id order; at least `limit` tasks unless the table ends first, and then
        the last story's other tasks. Also whether the table ended. Keyset paging: one
        primary key range each, whatever the backlog's size."""
        if not isinstance(self.db, peewee.SqliteDatabase):
            return self._window_postgres(after, limit)
        p = self.p
        # On SQLite, CROSS JOIN keeps task as the outer loop and `+` keeps the planner off the
        # status indexes: a primary key range, not every queued task visited and sorted.
        select = ("SELECT t.id, t.story_id, t.estimate_ms, t.attempts, s.tasks_total, "
                  "s.created_at, s.started_at FROM task t CROSS JOIN story s ON s.id = t.story_id ")
        rows = [tuple(r) for r in self._read(
            f"{select}WHERE t.id > {p} AND +t.status = 'queued' AND +s.status = 'open' "
            f"ORDER BY t.id LIMIT {p}", (after, limit)).fetchall()]
        if len(rows) < limit:
            return rows, True
        last_task, last_story = rows[-1][0], rows[-1][1]
        rows += [tuple(r) for r in self._read(
            f"{select}WHERE t.story_id = {p} AND t.id > {p} AND +t.status = 'queued' "
            f"AND +s.status = 'open' ORDER BY t.id", (last_story, last_task)).fetchall()]
        return rows, False

    def _window_postgres(self, after: int, limit: int) -> tuple[list[tuple], bool]:
        # The tasks first, by themselves, then their stories: on tables the planner has no
        # statistics for yet (a busy new database) the plain join was planned as a nested
        # loop over every open story, 4.5 s for a window of 20,000 out of 50,000 tasks,
        # against 0.05 s this way. A queued task's story is open by construction (both
        # change in one transaction), so the stories need no filter.
        def read(where: str, params: tuple, tail: str) -> list[tuple]:
            return [tuple(r) for r in self._read(
                "SELECT t.id, t.story_id, t.estimate_ms, t.attempts, s.tasks_total, s.created_at, "
                "s.started_at FROM (SELECT id, story_id, estimate_ms, attempts FROM task "
                f"WHERE {where} AND status = 'queued' ORDER BY id{tail}) t "
                "JOIN story s ON s.id = t.story_id ORDER BY t.id", params).fetchall()]

        rows = read("id > %s", (after, limit), " LIMIT %s")
        if len(rows) < limit:
            return rows, True
        last_task, last_story = rows[-1][0], rows[-1][1]
        rows += read("story_id = %s AND id > %s", (last_story, last_task), "")
        return rows, False

    def queued_of(self, story_id: int) -> tuple[int, int]:
        """(count, estimates) of a story's queued tasks."""
        count, work = self._read(
            "SELECT COUNT(*), COALESCE(SUM(estimate_ms), 0) FROM task "
            f"WHERE story_id = {self.p} AND status = 'queued'", (story_id,)).fetchone()
        return count, int(work)

    def open_story_ids(self) -> list[int]:
        return [row[0] for row in self._read(
            "SELECT id FROM story WHERE status = 'open' ORDER BY id", ()).fetchall()]

    # -- the group commit -------------------------------------------------------
    def apply(self, batch: Batch, *, again: bool = False) -> None:
        """All of one turn's writes in one transaction; raises Unavailable if it did not commit.

        `again`: the batch was refused before. A refusal can hide a commit that did
        happen (the connection dropped before the answer), so inserts then skip rows
        that are already there; every other statement is idempotent anyway.
        """
        try:
            if self._postgres:
                self._write_postgres(batch, again)
            else:
                with self.db.atomic():
                    self._write_sqlite(batch, again)
        except Exception as exc:
            raise self._unavailable(exc) from exc

    def _write_sqlite(self, batch: Batch, again: bool) -> None:
        """In process, so the tally's move is summed up here, from the batch and from reads of
        the rows about to change, and written once."""
        p = self.p
        cursor = self.db.cursor()
        move = dict.fromkeys(TALLY_COLUMNS, 0)
        skip = " ON CONFLICT DO NOTHING" if again else ""
        stories, tasks = batch.stories, batch.tasks
        if again:  # what a lost commit stored is neither stored nor counted again
            stories = self._not_stored(cursor, "story", stories)
            tasks = self._not_stored(cursor, "task", tasks)
        if stories:
            cursor.executemany(self._insert_story + skip, stories)
            for row in stories:
                move[STORY_TALLY[row[3]]] += 1
        if tasks:
            cursor.executemany(self._insert_task + skip, tasks)
            queued = [row[3] for row in tasks if row[4] == "queued"]
            move["tasks_queued"] += len(queued)
            move["queued_ms"] += sum(queued)
            move["tasks_done"] += len(tasks) - len(queued)
        for started, ids in batch.started_stories:
            for chunk in _chunks(ids):
                cursor.execute(
                    f"UPDATE story SET started_at = {p} WHERE id IN ({', '.join([p] * len(chunk))})",
                    (started, *chunk),
                )
        for attempts, started, finished, ids in batch.completions:
            for chunk in _chunks(ids):
                marks = ", ".join([p] * len(chunk))
                done, work = cursor.execute(
                    "SELECT COUNT(*), TOTAL(estimate_ms) FROM task "
                    f"WHERE id IN ({marks}) AND status = 'queued'", tuple(chunk)).fetchone()
                cursor.execute(
                    f"UPDATE task SET status = 'done', attempts = {p}, started_at = {p}, "
                    f"finished_at = {p} WHERE id IN ({marks}) AND status = 'queued'",
                    (attempts, started, finished, *chunk),
                )
                move["tasks_queued"] -= done
                move["tasks_done"] += done
                move["queued_ms"] -= int(work)
        for completed_at, ids in batch.done_stories:
            for chunk in _chunks(ids):
                cursor.execute(
                    f"UPDATE story SET status = 'done', completed_at = {p} "
                    f"WHERE id IN ({', '.join([p] * len(chunk))}) AND status = 'open'",
                    (completed_at, *chunk),
                )
                move["stories_open"] -= cursor.rowcount
                move["stories_done"] += cursor.rowcount
        for chunk in _chunks(batch.deleted_stories):
            marks = ", ".join([p] * len(chunk))
            for status, count, work in cursor.execute(
                    "SELECT status, COUNT(*), TOTAL(estimate_ms) FROM task "
                    f"WHERE story_id IN ({marks}) GROUP BY status", tuple(chunk)).fetchall():
                move[TASK_TALLY[status]] -= count
                if status == "queued":
                    move["queued_ms"] -= int(work)
            for status, count in cursor.execute(
                    f"SELECT status, COUNT(*) FROM story WHERE id IN ({marks}) GROUP BY status",
                    tuple(chunk)).fetchall():
                move[STORY_TALLY[status]] -= count
            # Explicit, so it does not depend on the database enforcing the cascade.
            cursor.execute(f"DELETE FROM task WHERE story_id IN ({marks})", tuple(chunk))
            cursor.execute(f"DELETE FROM story WHERE id IN ({marks})", tuple(chunk))
        for name, value in batch.id_floors.items():
            self._set_counter(cursor, name, value)
        moved = {name: change for name, change in move.items() if change}
        if moved:
            cursor.execute(
                "UPDATE tally SET " + ", ".join(f"{name} = {name} + {p}" for name in moved),
                tuple(moved.values()))

    def _not_stored(self, cursor, table: str, rows: list[tuple]) -> list[tuple]:
        """The rows whose ids are not in `table` yet."""
        stored: set[int] = set()
        for chunk in _chunks([row[0] for row in rows]):
            stored.update(r[0] for r in cursor.execute(
                f"SELECT id FROM {table} WHERE id IN ({', '.join([self.p] * len(chunk))})",
                tuple(chunk)).fetchall())
        return [row for row in rows if row[0] not in stored]

    def _write_postgres(self, batch: Batch, again: bool) -> None:
        """The whole batch in one round trip: one query string of a few statements, which
        PostgreSQL runs as one transaction (a query of several statements without BEGIN
        is one), committed -- or, on any error, rolled back whole -- before it answers.

        Whatever the batch holds, a table's new rows are one INSERT from arrays
        (`unnest`) and each group of rows that get the same values is one UPDATE with
        `WHERE id = ANY(array)`; the array literals are formatted here at C speed. Every
        write that changes a count is a statement that moves the tally too (`_tallied`)."""
        skip = " ON CONFLICT DO NOTHING" if again else ""
        parts: list[str] = []
        params: list = []
        for table, columns, types, rows, move in (
                ("story", STORY_COLUMNS, STORY_TYPES, batch.stories, "stories added"),
                ("task", TASK_COLUMNS, TASK_TYPES, batch.tasks, "tasks added")):
            if rows:
                sql, values = _insert_rows(table, columns, types, rows)
                parts.append(_tallied([sql + skip], move))
                params += values
        inserts = len(parts)
        for started, ids in batch.started_stories:
            parts.append("UPDATE story SET started_at = %s WHERE id = ANY(%s::bigint[])")
            params += [started, _array(ids)]
        # Each group of rows is a write of its own, but a kind of change is one statement
        # (and one move of the tally). Only the rows still queued (open) change: a retried
        # batch finds the ones a lost commit did, and does not count them again.
        if batch.completions:
            parts.append(_tallied(["UPDATE task SET status = 'done', attempts = %s, "
                                   "started_at = %s, finished_at = %s "
                                   "WHERE id = ANY(%s::bigint[]) AND status = 'queued'"]
                                  * len(batch.completions), "tasks done"))
            for attempts, started, finished, ids in batch.completions:
                params += [attempts, started, finished, _array(ids)]
        if batch.done_stories:
            parts.append(_tallied(["UPDATE story SET status = 'done', completed_at = %s "
                                   "WHERE id = ANY(%s::bigint[]) AND status = 'open'"]
                                  * len(batch.done_stories), "stories done"))
            for completed_at, ids in batch.done_stories:
                params += [completed_at, _array(ids)]
        if batch.deleted_stories:
            ids = _array(batch.deleted_stories)
            # Explicit: there is no foreign key to cascade (see the module docstring).
            parts.append(_tallied(["DELETE FROM task WHERE story_id = ANY(%s::bigint[])"],
                                  "tasks removed"))
            parts.append(_tallied(["DELETE FROM story WHERE id = ANY(%s::bigint[])"],
                                  "stories removed"))
            params += [ids, ids]
        for name, value in batch.id_floors.items():
            parts.append("INSERT INTO counter (name, value) VALUES (%s, %s) "
                         "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value")
            params += [name, value]
        if len(parts) > inserts:
            # Every UPDATE and DELETE here finds its rows by an index. A table the planner has
            # no statistics for yet (new, or grown since autovacuum last analysed it) gets
            # sequential scans instead, one a statement: on a fresh database, time per turn
            # grew with the table. This turn only (the transaction is the query). The tally
            # has no index: its scan then costs so much on paper that the planner compiled
            # each statement (JIT, 0.1 s a statement), hence no JIT either.
            parts.insert(0, "SET LOCAL enable_seqscan = off; SET LOCAL jit = off")
        if parts:
            cursor = self.db.cursor()
            cursor.execute(";\n".join(parts), params)
            if not cursor.connection.autocommit:  # peewee's are; else the driver opened a transaction
                cursor.connection.commit()

    def _set_counter(self, cursor, name: str, value: int) -> None:
        p = self.p
        cursor.execute(f"UPDATE counter SET value = {p} WHERE name = {p}", (value, name))
        if cursor.rowcount == 0:
            cursor.execute(f"INSERT INTO counter (name, value) VALUES ({p}, {p})", (name, value))

    # -- reads --------------------------------------------------------------------
    def _read(self, sql: str, params: tuple) -> peewee.CursorWrapper:
        try:
            return self.db.execute_sql(sql, params)
        except Exception as exc:
            raise self._unavailable(exc) from exc

    def story(self, story_id: int) -> tuple | None:
        return self._read(f"SELECT {STORY_SELECT} FROM story WHERE id = {self.p}",
                          (story_id,)).fetchone()

    def tasks_of(self, story_id: int) -> list[tuple]:
        return self._read(f"SELECT {TASK_SELECT} FROM task WHERE story_id = {self.p} ORDER BY id",
                          (story_id,)).fetchall()

    def stories(self, status: str | None, offset: int, limit: int) -> list[tuple]:
        """Newest first."""
        p = self.p
        where, params = ("", ()) if status is None else (f"WHERE status = {p} ", (status,))
        return self._read(
            f"SELECT {STORY_SELECT} FROM story {where}ORDER BY id DESC LIMIT {p} OFFSET {p}",
            (*params, limit, offset),
        ).fetchall()

    # -- failures -------------------------------------------------------------------
    def _unavailable(self, exc: BaseException) -> Unavailable:
        """Leave the connection usable for the next try and say in words what went wrong."""
        self._recover_connection()
        return Unavailable(explain(exc, self.where))

    def _recover_connection(self) -> None:
        db = self.db
        if isinstance(db, peewee.SqliteDatabase):
            conn = None if db.is_closed() else db.connection()
            if conn is not None and conn.in_transaction:
                try:  # a statement failed inside the transaction without ending it
                    conn.rollback()
                except Exception:
                    log.debug("rollback after a failed write failed too", exc_info=True)
            return
        # A server connection may be gone (restart, failover): drop it, so the next
        # statement connects afresh (peewee connects on demand).
        try:
            db.close()
        except Exception:
            db.dispose()

    def integrity_ok(self) -> bool:
        if not isinstance(self.db, peewee.SqliteDatabase):
            return True
        return self.db.execute_sql("PRAGMA integrity_check").fetchone()[0] == "ok"
