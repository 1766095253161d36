"""PostgreSQL: a database server, reached through psycopg2.

A statement is a round trip, and psycopg2's executemany sends one per row, so a
turn is one query of a few statements (pgsql.py builds them): a table's new rows
in one INSERT from arrays, and updates that name their rows with one array
(`WHERE id = ANY(...)`), each moving the tally by the rows it changed.

The task table has no foreign key to story: the check runs per inserted row (a
trigger and a lookup each), about 40% of the database's work for a turn of new
tasks. The server is the only writer and keeps the reference itself: a story's
tasks go in with it, in one transaction, and are deleted with it, explicitly.
"""

from __future__ import annotations

import logging

import peewee

from ..dberrors import (CONNECTION_LOST, IN_USE, LOGIN_REFUSED, NO_DATABASE, NOT_OURS,
                       NOT_PERMITTED, POOLED, READ_ONLY, SERVER_TROUBLE, BadURL)
from .base import Batch, Store
from .pgsql import (QUEUED_BY_STAGE_GONE, STORY_TYPES, TASK_TYPES, array, insert_rows,
                    stage_tally_moved, tallied)
from .schema import STORY_COLUMNS, TASK_COLUMNS

log = logging.getLogger(__name__)

# How each durability level (config.DURABILITY_LEVELS says what it promises) is kept.
SYNCHRONOUS_COMMIT = {"power-loss": "on", "crash": "off"}
CONNECT_TIMEOUT_S = 2  # seconds, unless the URL says otherwise
# Task pages are filled to this much, so that the one update of a task's life
# (queued -> done, which adds two times) finds room on its page: a HOT update.
TASK_FILLFACTOR = 50


class PostgresStore(Store):
    title = "PostgreSQL"
    database_class = peewee.PostgresqlDatabase
    INTERVAL_OF = "FLOOR(completed_at / {p})"

    @classmethod
    def connect(cls, spec: str | None, durability: str) -> peewee.Database:
        from playhouse import db_url

        _require_psycopg2()
        # libpq's `options` sets it for the session of every connection, reconnections too.
        setting = f"-c synchronous_commit={SYNCHRONOUS_COMMIT[durability]}"
        try:
            parsed = db_url.parse(spec)
            given = parsed.get("options")
            # A bounded connect: the loop reconnects in line after an outage, and an
            # unreachable host must not stall `ping` for the TCP timeout.
            timeout = parsed.get("connect_timeout", CONNECT_TIMEOUT_S)
            return db_url.connect(spec, options=f"{given} {setting}" if given else setting,
                                  connect_timeout=timeout)
        except (ValueError, RuntimeError) as exc:
            raise BadURL(str(exc)) from exc

    @classmethod
    def durability_setting(cls, durability: str) -> str:
        return f"synchronous_commit={SYNCHRONOUS_COMMIT[durability]}"

    @staticmethod
    def location(db: peewee.Database) -> str:
        params = getattr(db, "connect_params", {}) or {}
        user = f"{params['user']}@" if params.get("user") else ""
        host = params.get("host") or "localhost"
        port = f":{params['port']}" if params.get("port") else ""
        return f"postgresql://{user}{host}{port}/{db.database}"

    def migrate(self) -> None:
        db = self.db
        # New tables get the key from the model, and earlier versions made it: drop it (see above).
        for (name,) in db.execute_sql(
                "SELECT conname FROM pg_constraint WHERE conrelid = 'task'::regclass AND contype = 'f'"
        ).fetchall():
            log.info("dropping the foreign key %s of the task table (the server keeps it)", name)
            db.execute_sql(f'ALTER TABLE task DROP CONSTRAINT "{name}"')
        options = db.execute_sql("SELECT reloptions FROM pg_class WHERE oid = 'task'::regclass"
                                 ).fetchone()[0] or []
        if f"fillfactor={TASK_FILLFACTOR}" not in options:  # new pages only: old rows stay put
            db.execute_sql(f"ALTER TABLE task SET (fillfactor = {TASK_FILLFACTOR})")

    # -- the group commit -------------------------------------------------------
    def _write(self, batch: Batch, again: bool) -> None:
        """The whole batch in one round trip: one query string of a few statements, which
        PostgreSQL runs as one transaction (a query of several statements without BEGIN
        is one), committed -- or, on any error, rolled back whole -- before it answers.

        Whatever the batch holds, a table's new rows are one INSERT from arrays
        (`unnest`) and each group of rows that get the same values is one UPDATE with
        `WHERE id = ANY(array)`; the array literals are formatted here at C speed. Every
        write that changes a count is a statement that moves the tally too (`tallied`)."""
        skip = " ON CONFLICT DO NOTHING" if again else ""
        parts: list[str] = []
        params: list = []
        for table, columns, types, rows, move in (
                ("story", STORY_COLUMNS, STORY_TYPES, batch.stories, "stories added"),
                ("task", TASK_COLUMNS, TASK_TYPES, batch.tasks, "tasks added")):
            if rows:
                sql, values = insert_rows(table, columns, types, rows)
                parts.append(tallied([sql + skip], move))
                params += values
        inserts = len(parts)
        staged = self.staged  # the stages' tally moves with the named tasks (schema.py)
        if batch.task_flows or batch.story_flows or batch.stage_entries or batch.blocks:
            self._write_flows(batch, skip, parts, params)
        for started, ids in batch.started_stories:
            parts.append("UPDATE story SET started_at = %s WHERE id = ANY(%s::bigint[])")
            params += [started, array(ids)]
        # Each group of rows is a write of its own, but a kind of change is one statement
        # (and one move of the tally). Only the rows still queued (open) change: a retried
        # batch finds the ones a lost commit did, and does not count them again.
        if batch.completions:
            if staged:
                parts.append(stage_tally_moved(QUEUED_BY_STAGE_GONE.format(key="id")))
                params.append(array([i for *_, ids in batch.completions for i in ids]))
            parts.append(tallied(["UPDATE task SET status = 'done', attempts = %s, "
                                  "started_at = %s, finished_at = %s "
                                  "WHERE id = ANY(%s::bigint[]) AND status = 'queued'"]
                                 * len(batch.completions), "tasks done"))
            for attempts, started, finished, ids in batch.completions:
                params += [attempts, started, finished, array(ids)]
        if batch.done_stories:
            parts.append(tallied(["UPDATE story SET status = 'done', completed_at = %s "
                                  "WHERE id = ANY(%s::bigint[]) AND status = 'open'"]
                                 * len(batch.done_stories), "stories done"))
            for completed_at, ids in batch.done_stories:
                params += [completed_at, array(ids)]
        if batch.work_times:
            ids, values = zip(*batch.work_times)
            parts.append("INSERT INTO story_flow (story_id, work_s) SELECT * FROM unnest("
                         "%s::bigint[], %s::float8[]) ON CONFLICT (story_id) DO UPDATE SET "
                         "work_s = EXCLUDED.work_s")
            params += [array(ids), array(values)]
        if batch.deleted_stories:
            ids = array(batch.deleted_stories)
            if staged:
                parts.append(stage_tally_moved(QUEUED_BY_STAGE_GONE.format(key="story_id")))
                params.append(ids)
            if self.has_flows:  # before the tasks: their ids find their flow rows
                parts.append("DELETE FROM task_flow WHERE task_id IN (SELECT id FROM task "
                             "WHERE story_id = ANY(%s::bigint[]))")
                parts.append("DELETE FROM story_flow WHERE story_id = ANY(%s::bigint[])")
                params += [ids, ids]
            # Explicit: there is no foreign key to cascade (see the module docstring).
            parts.append(tallied(["DELETE FROM task WHERE story_id = ANY(%s::bigint[])"],
                                 "tasks removed"))
            parts.append(tallied(["DELETE FROM story WHERE id = ANY(%s::bigint[])"],
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

    def _write_flows(self, batch: Batch, skip: str, parts: list[str], params: list) -> None:
        """The flow rows (schema.py) of new tasks and stories, the stages stories now count in,
        and the ends of the blocks that started: after the new tasks (whose estimates the
        stages' tally takes)."""
        if batch.task_flows:
            ids, stages, blocks = zip(*batch.task_flows)
            insert = ("INSERT INTO task_flow (task_id, stage, blocked_ms) SELECT * FROM unnest("
                      f"%s::bigint[], %s::text[], %s::int[]){skip}")
            if self.staged:  # what was inserted (not what a lost commit stored) is counted
                insert = f"WITH w AS ({insert} RETURNING task_id, stage) " + stage_tally_moved(
                    "SELECT w.stage, count(*), sum(t.estimate_ms) FROM w JOIN task t "
                    "ON t.id = w.task_id WHERE w.stage IS NOT NULL GROUP BY w.stage")
            parts.append(insert)
            params += [array(ids), array(stages, "text"), array(blocks)]
        if batch.story_flows:
            ids, blocks = zip(*batch.story_flows)
            parts.append("INSERT INTO story_flow (story_id, blocked_ms) SELECT * FROM unnest("
                         f"%s::bigint[], %s::bigint[]){skip}")
            params += [array(ids), array(blocks)]
        for stage, ids in batch.stage_entries:
            parts.append("INSERT INTO story_flow (story_id, stage) SELECT u, %s FROM unnest("
                         "%s::bigint[]) AS u ON CONFLICT (story_id) DO UPDATE SET stage = EXCLUDED.stage")
            params += [stage, array(ids)]
        if batch.blocks:
            ids, untils = zip(*batch.blocks)
            parts.append("UPDATE task_flow SET blocked_until = u.v FROM unnest(%s::bigint[], "
                         "%s::float8[]) AS u(id, v) WHERE task_flow.task_id = u.id")
            params += [array(ids), array(untils)]
        self.has_flows = True

    # -- the queue's next window -------------------------------------------------
    def window(self, after: int, limit: int) -> tuple[list[tuple], bool]:
        # The tasks first, by themselves, then their stories: on tables the planner has no
        # statistics for yet (a busy new database) the plain join was planned as a nested
        # loop over every open story, 4.5 s for a window of 20,000 out of 50,000 tasks,
        # against 0.05 s this way. A queued task's story is open by construction (both
        # change in one transaction), so the stories need no filter.
        if self.has_flows:
            flows = f"{self._stage_index}, COALESCE(f.blocked_ms, 0)"
            join = "LEFT JOIN task_flow f ON f.task_id = t.id "
        else:  # no flow rows at all: the first stage, no blocks
            flows, join = "0, 0", ""

        def read(where: str, params: tuple, tail: str) -> list[tuple]:
            return [tuple(r) for r in self._read(
                "SELECT t.id, t.story_id, t.estimate_ms, t.attempts, s.tasks_total, s.created_at, "
                f"s.started_at, {flows} FROM (SELECT id, story_id, estimate_ms, attempts FROM task "
                f"WHERE {where} AND status = 'queued' ORDER BY id{tail}) t "
                f"JOIN story s ON s.id = t.story_id {join}ORDER BY t.id", params).fetchall()]

        rows = read("id > %s", (after, limit), " LIMIT %s")
        if len(rows) < limit:
            return rows, True
        last_task, last_story = rows[-1][0], rows[-1][1]
        rows += read("story_id = %s AND id > %s", (last_story, last_task), "")
        return rows, False

    # -- failures and health -------------------------------------------------------
    def recover(self) -> None:
        # The connection may be gone (restart, failover): drop it, so the next statement
        # connects afresh (peewee connects on demand).
        try:
            self.db.close()
        except Exception:
            self.db.dispose()

    def durability_in_force(self) -> str:
        return f"synchronous_commit={self.db.execute_sql('SHOW synchronous_commit').fetchone()[0]}"

    def integrity_ok(self) -> bool:
        """PostgreSQL checks its pages as it reads them (and their checksums, if enabled);
        there is no cheap whole-database check to ask for."""
        return True

    # -- at start --------------------------------------------------------------------
    _UNREACHABLE = ("cannot reach PostgreSQL at {where} ({text}): start PostgreSQL, or fix the "
                    "host and port in the URL")
    STARTUP_WORDS = {
        **Store.STARTUP_WORDS,
        NOT_OURS: "the database {where} is not storypulse's ({text}): give storypulse a database "
                  "of its own (createdb), or drop the table that is in the way",
        LOGIN_REFUSED: "PostgreSQL refused the login to {where} ({text}): check the user and "
                       "password in the URL, and that pg_hba.conf lets this host in",
        NO_DATABASE: "the database {where} does not exist ({text}): create it (createdb -O USER "
                     "NAME), or fix its name in the URL",
        NOT_PERMITTED: "the PostgreSQL user of {where} may not create or write storypulse's "
                       "tables ({text}): grant it those rights, or use a database it owns",
        READ_ONLY: "the database {where} is read-only ({text}): point the URL at the primary, "
                   "not a standby",
        CONNECTION_LOST: _UNREACHABLE,
        SERVER_TROUBLE: _UNREACHABLE,
        IN_USE: "the database {where} is in use by another storypulse server ({holder}): stop "
                "that one, or point --db at another database",
        POOLED: "{text}: connect to PostgreSQL directly, or through a pooler in session mode "
                "(PgBouncer: pool_mode = session)",
    }


def _require_psycopg2() -> None:
    """The write path sends one turn as one query of several statements with parameters
    filled in by the client, which is psycopg2's way; peewee would pick psycopg 3 where
    psycopg2 is missing, and psycopg 3 binds on the server, one statement a query."""
    try:
        import psycopg2  # noqa: F401
    except ImportError as exc:
        raise peewee.ImproperlyConfigured(
            "psycopg2 postgres driver not found (storypulse writes to PostgreSQL through it)"
        ) from exc
