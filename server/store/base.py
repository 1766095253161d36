"""What every backend is: the `Store` interface, the batch of one turn's writes it applies,
and what start-up reads back. A backend is one subclass (sqlite.py, postgres.py).

Shared here, since the SQL is the same on every backend: opening (claim, check,
make and migrate the tables), start-up's `load`, and the reads of requests. Each
backend writes a turn its own way (`_write`), reads the queue's next window its
own way (`window`), and knows how to get its connection back after a failure.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar, Iterable, Sequence

import peewee

from storypulse.workflow import DEFAULT_STAGE, check_stage_name

from ..claim import Claim
from ..config import DEFAULTS
from ..dberrors import FULL, IN_USE, Cause, classify, hide_password, outage_message
from . import schema
from .schema import MODELS, STORY_SELECT, TALLY_COLUMNS, TASK_SELECT

DEFAULT_DURABILITY = DEFAULTS["durability"]
IN_CHUNK = 500  # ids in one `IN (...)`: far below SQLite's variable limit


class WorkflowMismatch(Exception):
    """The database holds unfinished work in stages that the server's workflow lacks; the
    message names them and the workflow's stages (a start-up error: never a silent mix)."""


class Unavailable(Exception):
    """The database refused a statement; `cause` says why, for people, with the file or URL."""

    def __init__(self, cause: str):
        super().__init__(cause)
        self.cause = cause


@dataclass
class Startup:
    """What the server needs in memory, read once when it starts.

    Stages are given by their index in the workflow the store was told of (`use_workflow`):
    a task or story of a stage stored without a name (null) is in the first."""

    next_story_id: int
    next_task_id: int
    completed_stories: int
    tasks_completed: int
    # story_id -> (tasks_total, created_at, started_at, stage index it counts in or None) of
    # every open story in progress (started); the others stay on disk, counted below, and are
    # read in windows (`window`)
    open_stories: dict[int, tuple[int, float, float | None, int | None]]
    # (task_id, story_id, estimate_ms, attempts, stage index, blocked_ms, blocked_until) of
    # every unfinished task of those, by id
    queued_tasks: list[tuple[int, int, int, int, int, int, float | None]]
    open_count: int = 0  # open stories, all of them
    queued_count: int = 0  # queued tasks, all of them (running ones are queued on disk)
    queued_ms: int = 0  # their estimates
    backlog_after: int = 0  # no queued task of an open story has an id at or below it
    # (story_id, created_at, started_at, completed_at, work_s) of the stories completed since
    # the `done_since` given to load(), oldest completion first
    recent_done: list[tuple[int, float, float | None, float, float | None]] = field(default_factory=list)
    # (tasks, estimates) queued in each stage of the workflow, in its order: the totals split
    queued_by_stage: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class Batch:
    """The writes of one loop turn; applied in one transaction."""

    stories: list[tuple] = field(default_factory=list)  # see schema.STORY_COLUMNS
    tasks: list[tuple] = field(default_factory=list)  # see schema.TASK_COLUMNS
    # (attempts, started_at, finished_at, task ids)
    completions: list[tuple[int, float, float, list[int]]] = field(default_factory=list)
    # (started_at, story ids): stories whose first task went to a worker
    started_stories: list[tuple[float, list[int]]] = field(default_factory=list)
    # (completed_at, story ids): a batch held through an outage spans many turns
    done_stories: list[tuple[float, list[int]]] = field(default_factory=list)
    deleted_stories: list[int] = field(default_factory=list)
    id_floors: dict[str, int] = field(default_factory=dict)  # set when stories are deleted
    # -- stages and blocks (schema.py: flow rows only for what has them) ----------------
    # (task_id, stage name or None, blocked_ms) of the new tasks with a stage name or a block
    task_flows: list[tuple] = field(default_factory=list)
    story_flows: list[tuple] = field(default_factory=list)  # (story_id, blocked_ms): with blocks
    stage_entries: list[tuple[str, list[int]]] = field(default_factory=list)  # (stage, story ids)
    blocks: list[tuple[int, float]] = field(default_factory=list)  # (task_id, blocked_until)
    work_times: list[tuple[int, float]] = field(default_factory=list)  # (story_id, work_s) when done

    def __bool__(self) -> bool:
        return bool(self.stories or self.tasks or self.completions or self.started_stories
                    or self.done_stories or self.deleted_stories
                    or self.stage_entries or self.blocks or self.work_times)


def chunks(ids: Sequence[int], size: int = IN_CHUNK) -> Iterable[Sequence[int]]:
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


def describe(db: peewee.Database) -> str:
    return f"{type(db).__name__}({db.database})"


class Store(ABC):
    """One database, opened by the server for its whole run.

    `Store.open(spec)` picks the backend from the path or URL (`backend_for`); on a
    backend's class it opens that backend. The abstract methods are what a backend
    must write; the rest it inherits.
    """

    title: ClassVar[str]  # the database's name, for people: "SQLite"
    # The peewee class a URL's scheme must map to (playhouse.db_url) for this backend.
    database_class: ClassVar[type[peewee.Database]]
    # What to say when a cause (dberrors) stops the server at start: a template of {where}
    # (`shown`), {text} (the error's own words) and {pid} (the holder's), by cause; a
    # backend adds its own to these. Any other cause: "cannot use the database ...".
    STARTUP_WORDS: ClassVar[dict[str, str]] = {
        IN_USE: "the database {where} is in use by another storypulse server ({holder}): stop "
                "that one, or point --db at another database",
        FULL: "no room for the database {where} ({text}): free some disk space",
    }

    def __init__(self, db: peewee.Database):
        self.db = db
        self.where = self.location(db)
        schema.database.initialize(db)
        self.p = db.param  # the driver's placeholder: ? on SQLite, %s on PostgreSQL
        self.claim = Claim(None)
        self.stages: tuple[str, ...] = (DEFAULT_STAGE,)  # the workflow served (use_workflow)
        self.staged = False  # several stages: tasks are named and stage_tally is kept
        # SQL: a task's stage index from its flow row `f` (use_workflow); none: the first
        self._stage_index = "0"
        # Whether any flow row may exist (schema.py): else reads and deletes leave them out.
        self.has_flows = False

    # -- what a backend must write ---------------------------------------------
    @classmethod
    @abstractmethod
    def connect(cls, spec: str | None, durability: str) -> peewee.Database:
        """The database object for `spec` (not connected yet); every connection it makes
        gets the settings of `durability`. Raises BadURL for a URL it cannot use."""

    @classmethod
    @abstractmethod
    def durability_setting(cls, durability: str) -> str:
        """What `durability` asks of this database, as `durability_in_force` words it:
        `synchronous=FULL`."""

    @staticmethod
    @abstractmethod
    def location(db: peewee.Database) -> str:
        """The file or URL of the database, for messages; never a password."""

    @abstractmethod
    def _write(self, batch: Batch, again: bool) -> None:
        """The whole batch in one transaction, committed before it returns (see `apply`)."""

    @abstractmethod
    def window(self, after: int, limit: int) -> tuple[list[tuple], bool]:
        """The next whole stories of the queue: (task_id, story_id, estimate_ms, attempts,
        tasks_total, created_at, started_at, stage index, blocked_ms) of the queued tasks of
        open stories with ids above `after`, in id order; at least `limit` tasks unless the table ends first, and
        then the last story's other tasks. Also whether the table ended. Keyset paging: one
        primary key range each, whatever the backlog's size."""

    @abstractmethod
    def recover(self) -> None:
        """After a failed statement: leave the connection usable for the next try."""

    @abstractmethod
    def durability_in_force(self) -> str:
        """What the database itself reports for the setting that durability depends on."""

    @abstractmethod
    def integrity_ok(self) -> bool:
        """Whether the database finds itself sound (as far as it can tell cheaply)."""

    # -- what a backend may change ---------------------------------------------
    def foreign_tables(self, tables: set[str]) -> list[str]:
        """The tables that make the database not ours: none by default (a database served to
        many may hold others' tables; ours are checked column by column anyway)."""
        return []

    def migrate(self) -> None:
        """What this backend changes in a database made by an earlier version, or by peewee's
        defaults; runs after the columns are added and before the indexes are made."""

    @classmethod
    def shown(cls, spec: str | None) -> str:
        """The database given as `spec`, for a message at start: never a password."""
        return hide_password(spec or "")

    @classmethod
    def startup_words(cls, cause: Cause, spec: str | None, text: str) -> str:
        """The line the server logs when `cause` stops it at start: what is wrong with the
        database and what to do. `text` is the error's own words, without a password."""
        template = cls.STARTUP_WORDS.get(cause.what, "cannot use the database {where} ({text})")
        return template.format(where=cls.shown(spec), text=text,
                               holder=getattr(cause.error, "holder", "") or "pid unknown")

    # -- opening and closing ---------------------------------------------------
    @classmethod
    def open(cls, spec: str | None, durability: str = DEFAULT_DURABILITY,
             exclusive: bool = False) -> Store:
        """Open, check that the database is ours and writable, create missing tables (and the
        columns an earlier version lacked). `exclusive` (the server): claim the database
        first (claim.py: a lock file; claim_postgres.py: an advisory lock and a holder row),
        raising `claim.InUse` while another server has it."""
        if cls is Store:
            from . import backend_for

            return backend_for(spec).open(spec, durability, exclusive)
        store = cls(cls.connect(spec, durability))
        try:
            if exclusive:
                store.claim = Claim.take(store.db, store.where)
            store.db.connect(reuse_if_open=True)
            store._prepare()
            store.claim.record(store.db)  # the holder's row (PostgreSQL), once the tables are there
        except BaseException:
            store.close()
            raise
        return store

    def _prepare(self) -> None:
        db = self.db
        tables = set(db.get_tables())
        schema.check_schema(db, self.foreign_tables(tables))
        # A tally is only good for the tables it was kept with (they may have been dropped).
        made = not {"story", "task"} <= tables
        # Tables first, indexes once the columns they cover are there: PostgreSQL refuses
        # an index on a missing column, and SQLite takes the unknown "name" for a string.
        for model in MODELS:
            model._schema.create_table(safe=True)
        schema.check_writable(db)
        recount = schema.add_missing_columns(db)
        self.migrate()
        for model in MODELS:
            model._schema.create_indexes(safe=True)
        schema.count_tally(db, recount or made)
        self.has_flows = bool(db.execute_sql(
            "SELECT EXISTS (SELECT 1 FROM task_flow) OR EXISTS (SELECT 1 FROM story_flow)"
        ).fetchone()[0])

    def close(self) -> None:
        if not self.db.is_closed():
            self.db.close()
        self.claim.release()  # after the database: the next server finds it closed

    # -- the group commit -------------------------------------------------------
    def apply(self, batch: Batch, *, again: bool = False) -> None:
        """All of one turn's writes in one transaction; raises Unavailable if it did not commit.

        `again`: the batch was refused before. A refusal can hide a commit that did
        happen (the connection dropped before the answer), so inserts then skip rows
        that are already there; every other statement is idempotent anyway.
        """
        try:
            self._write(batch, again)
        except Exception as exc:
            raise self._unavailable(exc) from exc

    # -- start-up --------------------------------------------------------------
    def use_workflow(self, stages: Sequence[str]) -> None:
        """Serve the database with these stages (in order), or raise WorkflowMismatch naming the
        stages of its unfinished tasks that they lack: a task never silently changes stage.

        Null-stage tasks (written by a server with one stage, or before stages) are in the
        first stage. A server with one stage writes no names: the tasks still queued under
        its stage's name (from a server that had several) are written back as null, once.
        Adding, removing (when nothing is left in it) and reordering stages is fine: a task's
        stage is its name."""
        names = tuple(check_stage_name(name) for name in stages)
        assert names, "a workflow has at least one stage"
        sql = self.db.execute_sql
        named = {stage: (int(n), int(ms)) for stage, n, ms in sql(
            "SELECT stage, tasks_queued, queued_ms FROM stage_tally WHERE tasks_queued > 0")}
        missing = sorted(set(named) - set(names))
        if missing:
            left = ", ".join(f"{stage!r} ({named[stage][0]} tasks)" for stage in missing)
            raise WorkflowMismatch(
                f"the database {self.where} holds unfinished tasks of stages this server's "
                f"workflow lacks: {left}; its stages are {', '.join(names)}. Start it with a "
                "workflow that has them (--stages or --scenario), or let a server with that "
                "workflow finish them first")
        if len(names) == 1 and named:
            with self.db.atomic():  # one stage writes no names: see the docstring
                sql(f"UPDATE task_flow SET stage = NULL WHERE stage = {self.p}", (names[0],))
                sql("UPDATE stage_tally SET tasks_queued = 0, queued_ms = 0")
        self.stages, self.staged = names, len(names) > 1
        # Names are letters, digits, _ and - (checked above): safe as SQL literals.
        cases = " ".join(f"WHEN '{name}' THEN {i}" for i, name in enumerate(names) if i)
        self._stage_index = f"CASE f.stage {cases} ELSE 0 END" if cases else "0"

    def load(self, done_since: float | None = None, done_max: int = 250_000) -> Startup:
        """What the server keeps in memory; with `done_since` (wall clock), also the newest
        `done_max` stories completed since then. Stages as `use_workflow` was told."""
        sql, p = self.db.execute_sql, self.p
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
            f"SELECT MIN(id) FROM task WHERE story_id = {p}", (oldest,)).fetchone()[0]
        index = {name: i for i, name in enumerate(self.stages)}
        open_stories = {
            sid: (total, created, started, index.get(stage))
            for sid, total, created, started, stage in sql(
                "SELECT s.id, s.tasks_total, s.created_at, s.started_at, f.stage FROM story s "
                "LEFT JOIN story_flow f ON f.story_id = s.id "
                "WHERE s.status = 'open' AND s.started_at IS NOT NULL"
            )
        }
        queued: list[tuple] = []
        for chunk in chunks(sorted(open_stories)):
            queued += [tuple(row) for row in sql(
                f"SELECT t.id, t.story_id, t.estimate_ms, t.attempts, {self._stage_index}, "
                "COALESCE(f.blocked_ms, 0), f.blocked_until FROM task t "
                "LEFT JOIN task_flow f ON f.task_id = t.id "
                f"WHERE t.status = 'queued' AND t.story_id IN ({', '.join([p] * len(chunk))})",
                tuple(chunk))]
        queued.sort()
        recent: list[tuple] = []
        if done_since is not None:
            recent = [tuple(row) for row in sql(
                "SELECT s.id, s.created_at, s.started_at, s.completed_at, f.work_s FROM story s "
                f"LEFT JOIN story_flow f ON f.story_id = s.id WHERE s.status = 'done' AND "
                f"s.completed_at >= {p} ORDER BY s.completed_at DESC, s.id DESC LIMIT {p}",
                (done_since, done_max))]
            recent.reverse()
        # Per stage: the named ones from the stages' tally, and the rest (null) in the first.
        by_stage = [[0, 0] for _ in self.stages]
        if self.staged:
            for stage, n, ms in sql("SELECT stage, tasks_queued, queued_ms FROM stage_tally "
                                    "WHERE tasks_queued > 0"):
                by_stage[index[stage]] = [int(n), int(ms)]  # use_workflow: every one is ours
        by_stage[0][0] += queued_count - sum(n for n, _ in by_stage)
        by_stage[0][1] += int(queued_ms) - sum(ms for _, ms in by_stage)
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
            queued_by_stage=[(n, ms) for n, ms in by_stage],
        )

    # -- reads --------------------------------------------------------------------
    def _read(self, sql: str, params: tuple) -> peewee.CursorWrapper:
        try:
            return self.db.execute_sql(sql, params)
        except Exception as exc:
            raise self._unavailable(exc) from exc

    def story(self, story_id: int) -> tuple | None:
        """The story's row (schema.STORY_SELECT: its stage and blocks last)."""
        return self._read(f"SELECT {STORY_SELECT} WHERE s.id = {self.p}", (story_id,)).fetchone()

    def tasks_of(self, story_id: int) -> list[tuple]:
        """Its tasks' rows by id (schema.TASK_SELECT: the stage name and the block last)."""
        return self._read(f"SELECT {TASK_SELECT} WHERE t.story_id = {self.p} ORDER BY t.id",
                          (story_id,)).fetchall()

    def stories(self, status: str | None, offset: int, limit: int) -> list[tuple]:
        """Newest first."""
        p = self.p
        where, params = ("", ()) if status is None else (f"WHERE s.status = {p} ", (status,))
        return self._read(
            f"SELECT {STORY_SELECT} {where}ORDER BY s.id DESC LIMIT {p} OFFSET {p}",
            (*params, limit, offset),
        ).fetchall()

    def queued_of(self, story_id: int) -> list[tuple[int, int, int]]:
        """(stage index, count, estimates) of a story's queued tasks, by stage."""
        rows = self._read(
            f"SELECT {self._stage_index} AS i, COUNT(*), COALESCE(SUM(t.estimate_ms), 0) FROM task t "
            f"LEFT JOIN task_flow f ON f.task_id = t.id WHERE t.story_id = {self.p} "
            "AND t.status = 'queued' GROUP BY i ORDER BY i", (story_id,)).fetchall()
        return [(i, n, int(ms)) for i, n, ms in rows]

    def open_story_ids(self) -> list[int]:
        return [row[0] for row in self._read(
            "SELECT id FROM story WHERE status = 'open' ORDER BY id", ()).fetchall()]

    # The interval of a completion time, as a whole number: SQLite's CAST truncates (the
    # floor, for times after 1970); PostgreSQL's rounds, so its backend says FLOOR.
    INTERVAL_OF: ClassVar[str] = "CAST(completed_at / {p} AS INTEGER)"

    def done_per_interval(self, since: float, interval_s: float) -> list[tuple[int, int]]:
        """(floor(completed_at / interval_s), stories) of the intervals since `since` (wall
        clock) in which stories were completed, oldest first: the forecasts' throughput history."""
        p = self.p
        rows = self._read(
            f"SELECT {self.INTERVAL_OF.format(p=p)} AS b, COUNT(*) FROM story "
            f"WHERE status = 'done' AND completed_at >= {p} GROUP BY b ORDER BY b", (interval_s, since))
        return [(int(b), int(n)) for b, n in rows]

    # -- failures -------------------------------------------------------------------
    def _unavailable(self, exc: BaseException) -> Unavailable:
        """Leave the connection usable for the next try and say in words what went wrong."""
        self.recover()
        return Unavailable(outage_message(classify(exc), self.where))
