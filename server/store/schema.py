"""The tables, in one place for every backend: the Peewee models, what earlier versions
lacked, the tally and its recount, and the checks that a database is ours.

The server is the only writer. It assigns ids itself (a story's tasks get a
contiguous range), so one turn's stories and tasks go in with a few bulk
statements and nothing has to be read back. Task states on disk are only
`queued` and `done`: "running" lives in memory, since a running task is
queued again after a crash anyway. A story's `started_at` is written with the
turn that hands out its first task: a story in progress stays so across a restart.

**Stages** (docs/flow.md) live in tables of their own, beside story and task, so
that a server with one stage writes and rewrites the very rows it always did (a
column more in task, even null, costs every insert and update of it: 5-8 % of a
turn's writes, measured). `task_flow` holds a task's stage by *name* (so that a
server started with another workflow can tell: base.Store.use_workflow), its
block and the block's end; `story_flow` the stage a story counts in, its tasks'
blocks summed and its work time. A row exists only for what has them: a server
with one stage names no stage (no row: the first stage of whatever workflow serves
the database, as for a database from before stages), so a task of it has a row
only if it has a block; a server with several names every task, and keeps
`stage_tally`, the queued tasks and work of each named stage, in step as `tally` is.

Counts that start-up needs (open and done stories, queued and done tasks, the queued
work) live in a one-row table, `tally`, moved by every write in the same transaction
by what the write changed: start-up reads one row instead of counting whole tables,
and task has no index on its status, so marking a task done touches no index (on
PostgreSQL, with room left on each page, a HOT update).
"""

from __future__ import annotations

import logging

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

from storypulse import protocol

from ..dberrors import NotStorypulse

log = logging.getLogger(__name__)

# The models are bound to the database of the store opened last (they serve only to make
# and migrate the tables: the reads and writes are SQL of the backend's own).
database = DatabaseProxy()


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
        # (status, id): the open stories in id order, and the list of stories by status;
        # completed_at: the flow window's recent completions, read back at start-up;
        # (status, started_at): the open stories in progress, read back whole at start-up
        indexes = ((("status", "id"), False), (("completed_at",), False),
                   (("status", "started_at"), False))


class Task(BaseModel):
    id = BigIntegerField(primary_key=True)  # assigned by the server
    # PostgreSQL drops this key after making the table (postgres.py says why)
    story = ForeignKeyField(Story, on_delete="CASCADE", index=True, column_name="story_id")
    name = CharField(max_length=200, default="")
    estimate_ms = IntegerField()
    status = CharField(max_length=8, default="queued")  # queued | done; not indexed: see Tally
    attempts = IntegerField(default=0)
    created_at = DoubleField()
    started_at = DoubleField(null=True)
    finished_at = DoubleField(null=True)

    class Meta:
        table_name = "task"


class TaskFlow(BaseModel):
    """A task's stage and block (see above); no row: the first stage, no block. Deleted with
    its task by the server (no foreign key: it checks per row)."""

    task_id = BigIntegerField(primary_key=True)
    stage = CharField(max_length=protocol.STAGE_NAME_MAX, null=True)  # null: the first stage
    blocked_ms = IntegerField(default=0)  # blocked this long when it first starts
    blocked_until = DoubleField(null=True)  # wall clock, once its block has started

    class Meta:
        table_name = "task_flow"


class StoryFlow(BaseModel):
    """What a story has of stages (see above); no row: none of it."""

    story_id = BigIntegerField(primary_key=True)
    stage = CharField(max_length=protocol.STAGE_NAME_MAX, null=True)  # the stage it counts in
    blocked_ms = BigIntegerField(null=True)  # its tasks' blocks, summed
    work_s = DoubleField(null=True)  # time one of its tasks was on a worker (written when done)

    class Meta:
        table_name = "story_flow"


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


class StageTally(BaseModel):
    """The queued tasks of each named stage (see the module docstring), kept in step with the
    task rows by every write of a server with several stages; null-stage tasks are the rest
    of `tally`."""

    stage = CharField(max_length=protocol.STAGE_NAME_MAX, primary_key=True)
    tasks_queued = BigIntegerField()
    queued_ms = BigIntegerField()

    class Meta:
        table_name = "stage_tally"


MODELS = (Story, Task, Counter, Tally, TaskFlow, StoryFlow, StageTally)
TALLY_COLUMNS = ("stories_open", "stories_done", "tasks_queued", "tasks_done", "queued_ms")
# The tally's column for a task's or a story's status.
TASK_TALLY = {"queued": "tasks_queued", "done": "tasks_done"}
STORY_TALLY = {"open": "stories_open", "done": "stories_done"}

# The columns a turn writes (the rows of a Batch hold them in this order) and reads back.
STORY_COLUMNS = ("id", "name", "description", "status", "created_at", "tasks_total")
TASK_COLUMNS = ("id", "story_id", "name", "estimate_ms", "status", "attempts", "created_at")
TASK_FLOW_COLUMNS = ("task_id", "stage", "blocked_ms")
STORY_FLOW_COLUMNS = ("story_id", "blocked_ms")
# Reads of a story (`s`) or a task (`t`) with what its flow row (`f`) adds.
STORY_SELECT = ("s.id, s.name, s.description, s.status, s.created_at, s.completed_at, s.tasks_total, "
                "s.started_at, f.stage, COALESCE(f.blocked_ms, 0) FROM story s "
                "LEFT JOIN story_flow f ON f.story_id = s.id")
TASK_SELECT = ("t.id, t.name, t.estimate_ms, t.status, t.attempts, t.created_at, t.started_at, "
               "t.finished_at, f.stage, COALESCE(f.blocked_ms, 0), f.blocked_until FROM task t "
               "LEFT JOIN task_flow f ON f.task_id = t.id")

# Columns that databases made by earlier versions lack; opened, they get them (null in old rows).
ADDED_LATER = {"story": ("started_at",)}
# Indexes of earlier versions that a newer one replaced (task_status: by task_status_estimate_ms,
# and that by the tally). An earlier version makes them again whenever it opens the database.
REPLACED_INDEXES = ("task_status", "task_status_estimate_ms")


def check_schema(db: peewee.Database, foreign: list[str]) -> None:
    """Refuse a database whose tables are not ours, before writing anything to it: `foreign`
    are the tables that may not be there (the backend says which: a SQLite file may hold
    only ours), and a `story`, `task`, `counter` or `tally` table must have our columns."""
    if foreign:
        raise NotStorypulse(f"it holds other tables: {', '.join(foreign)}")
    ours = {model._meta.table_name: model for model in MODELS}
    for name in sorted(set(db.get_tables()) & set(ours)):
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


def add_missing_columns(db: peewee.Database) -> bool:
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
    return bool(replaced)


def count_tally(db: peewee.Database, recount: bool) -> None:
    """Fill the tally (and the stages' tally) by counting, once: for a new database, one of an
    earlier version, or one an earlier version wrote to since (`recount`)."""
    if not recount and len(db.execute_sql("SELECT 1 FROM tally").fetchall()) == 1:
        return
    log.info("counting the stories and tasks into the tally")
    with db.atomic():
        db.execute_sql("DELETE FROM stage_tally")
        db.execute_sql(
            "INSERT INTO stage_tally (stage, tasks_queued, queued_ms) SELECT f.stage, COUNT(*), "
            "COALESCE(SUM(t.estimate_ms), 0) FROM task_flow f JOIN task t ON t.id = f.task_id "
            "WHERE t.status = 'queued' AND f.stage IS NOT NULL GROUP BY f.stage")
        db.execute_sql("DELETE FROM tally")
        db.execute_sql(
            f"INSERT INTO tally ({', '.join(TALLY_COLUMNS)}) SELECT "
            "(SELECT COUNT(*) FROM story WHERE status = 'open'), "
            "(SELECT COUNT(*) FROM story WHERE status = 'done'), "
            "(SELECT COUNT(*) FROM task WHERE status = 'queued'), "
            "(SELECT COUNT(*) FROM task WHERE status = 'done'), "
            "(SELECT COALESCE(SUM(estimate_ms), 0) FROM task WHERE status = 'queued')")
