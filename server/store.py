"""Durable storage: Peewee models Story and Task, opened from a path or a URL.

The server is the only writer. It assigns ids itself (a story's tasks get a
contiguous range), so one turn's stories and tasks go in with a few bulk
statements and nothing has to be read back. Task states on disk are only
`queued` and `done`: "running" lives in memory, since a running task is
queued again after a crash anyway. A story's `started_at` is written with the
turn that hands out its first task: a story in progress stays so across a restart.

The hot paths (`apply`) use plain SQL through the driver's executemany with
the database's own placeholder, so the same code runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

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

log = logging.getLogger(__name__)

database = DatabaseProxy()

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": "normal",  # with WAL: durable against process crashes, fast commits
    "foreign_keys": 1,
    "cache_size": -64_000,  # KiB: 64 MiB page cache
    "busy_timeout": 500,  # ms: a longer lock by another process is an outage, not a stall
}
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
        # completed_at: the flow window's recent completions, read back at start-up
        indexes = ((("status", "id"), False), (("completed_at",), False))


class Task(BaseModel):
    id = BigIntegerField(primary_key=True)  # assigned by the server
    story = ForeignKeyField(Story, on_delete="CASCADE", index=True, column_name="story_id")
    name = CharField(max_length=200, default="")
    estimate_ms = IntegerField()
    status = CharField(max_length=8, default="queued", index=True)  # queued | done
    attempts = IntegerField(default=0)
    created_at = DoubleField()
    started_at = DoubleField(null=True)
    finished_at = DoubleField(null=True)

    class Meta:
        table_name = "task"


class Counter(BaseModel):
    """High-water marks, so that ids of deleted stories are never handed out again."""

    name = CharField(max_length=32, primary_key=True)
    value = BigIntegerField()

    class Meta:
        table_name = "counter"


MODELS = (Story, Task, Counter)


def _add_missing_columns(db: peewee.Database) -> None:
    """A database made by an earlier version lacks story.started_at: add it (null for old rows)."""
    if "started_at" not in {column.name for column in db.get_columns("story")}:
        from playhouse.migrate import SchemaMigrator, migrate

        log.info("adding the column story.started_at to a database from an earlier version")
        migrate(SchemaMigrator.from_database(db).add_column(
            "story", "started_at", DoubleField(null=True)))


def default_db_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("storypulse")) / "storypulse.db"


def connect(spec: str | None) -> peewee.Database:
    """A path (SQLite) or a URL (`sqlite:///...`, `postgresql://...`); None: the default file."""
    if spec and "://" in spec:
        from playhouse.db_url import connect as connect_url

        if spec.startswith("sqlite"):
            db = connect_url(spec, pragmas=SQLITE_PRAGMAS)
        else:
            db = connect_url(spec)
    else:
        path = Path(spec).expanduser() if spec else default_db_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        db = peewee.SqliteDatabase(str(path), pragmas=SQLITE_PRAGMAS)
    return db


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
    # story_id -> (tasks_total, created_at, started_at) for every open story
    open_stories: dict[int, tuple[int, float, float | None]]
    # (task_id, story_id, estimate_ms, attempts) of every unfinished task of an open story, by id
    queued_tasks: list[tuple[int, int, int, int]]
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
STORY_SELECT = "id, name, description, status, created_at, completed_at, tasks_total, started_at"
TASK_SELECT = "id, name, estimate_ms, status, attempts, created_at, started_at, finished_at"


def _chunks(ids: Sequence[int], size: int = IN_CHUNK) -> Iterable[Sequence[int]]:
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


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

    @classmethod
    def open(cls, spec: str | None) -> Store:
        db = connect(spec)
        store = cls(db)
        db.connect(reuse_if_open=True)
        db.create_tables(MODELS, safe=True)
        _add_missing_columns(db)
        return store

    def close(self) -> None:
        if not self.db.is_closed():
            self.db.close()

    # -- start-up --------------------------------------------------------------
    def load(self, done_since: float | None = None, done_max: int = 250_000) -> Startup:
        """What the server keeps in memory; with `done_since` (wall clock), also the newest
        `done_max` stories completed since then."""
        sql = self.db.execute_sql
        max_story = sql("SELECT COALESCE(MAX(id), 0) FROM story").fetchone()[0]
        max_task = sql("SELECT COALESCE(MAX(id), 0) FROM task").fetchone()[0]
        floors = dict(sql("SELECT name, value FROM counter").fetchall())
        completed = sql("SELECT COUNT(*) FROM story WHERE status = 'done'").fetchone()[0]
        tasks_done = sql("SELECT COUNT(*) FROM task WHERE status = 'done'").fetchone()[0]
        open_stories = {
            sid: (total, created, started)
            for sid, total, created, started in sql(
                "SELECT id, tasks_total, created_at, started_at FROM story WHERE status = 'open'"
            )
        }
        queued = [
            tuple(row) for row in sql(
                "SELECT t.id, t.story_id, t.estimate_ms, t.attempts FROM task t "
                "JOIN story s ON s.id = t.story_id "
                "WHERE t.status = 'queued' AND s.status = 'open' ORDER BY t.id"
            )
        ]
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
        )

    # -- the group commit -------------------------------------------------------
    def apply(self, batch: Batch, *, again: bool = False) -> None:
        """All of one turn's writes in one transaction; raises Unavailable if it did not commit.

        `again`: the batch was refused before. A refusal can hide a commit that did
        happen (the connection dropped before the answer), so inserts then skip rows
        that are already there; every other statement is idempotent anyway.
        """
        try:
            with self.db.atomic():
                self._write(batch, again)
        except Exception as exc:
            raise self._unavailable(exc) from exc

    def _write(self, batch: Batch, again: bool) -> None:
        p = self.p
        cursor = self.db.cursor()
        skip = " ON CONFLICT DO NOTHING" if again else ""
        if batch.stories:
            cursor.executemany(self._insert_story + skip, batch.stories)
        if batch.tasks:
            cursor.executemany(self._insert_task + skip, batch.tasks)
        for started, ids in batch.started_stories:
            for chunk in _chunks(ids):
                cursor.execute(
                    f"UPDATE story SET started_at = {p} WHERE id IN ({', '.join([p] * len(chunk))})",
                    (started, *chunk),
                )
        for attempts, started, finished, ids in batch.completions:
            for chunk in _chunks(ids):
                cursor.execute(
                    f"UPDATE task SET status = 'done', attempts = {p}, started_at = {p}, "
                    f"finished_at = {p} WHERE id IN ({', '.join([p] * len(chunk))})",
                    (attempts, started, finished, *chunk),
                )
        for completed_at, ids in batch.done_stories:
            for chunk in _chunks(ids):
                cursor.execute(
                    f"UPDATE story SET status = 'done', completed_at = {p} "
                    f"WHERE id IN ({', '.join([p] * len(chunk))})",
                    (completed_at, *chunk),
                )
        for chunk in _chunks(batch.deleted_stories):
            marks = ", ".join([p] * len(chunk))
            # Explicit, so it does not depend on the database enforcing the cascade.
            cursor.execute(f"DELETE FROM task WHERE story_id IN ({marks})", tuple(chunk))
            cursor.execute(f"DELETE FROM story WHERE id IN ({marks})", tuple(chunk))
        for name, value in batch.id_floors.items():
            self._set_counter(cursor, name, value)

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
