"""SQLite: a file beside the server, in WAL mode, written in process.

In process a statement costs microseconds, so a turn is the driver's executemany
for new rows and `WHERE id IN (...)` in chunks for changed ones, in one
transaction; the tally's move is summed up here, from the batch and from reads of
the rows about to change, and written once. The task table keeps its foreign key
to story (here it costs little).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import peewee

from ..dberrors import (CANNOT_OPEN, DAMAGED, IN_USE, LOCKED, NO_ACCESS, NOT_A_DATABASE, NOT_OURS,
                       READ_ONLY, BadURL, Cause)
from .base import Batch, Store, chunks
from .schema import (MODELS, STORY_COLUMNS, STORY_FLOW_COLUMNS, STORY_TALLY, TALLY_COLUMNS,
                     TASK_COLUMNS, TASK_FLOW_COLUMNS, TASK_TALLY)

log = logging.getLogger(__name__)

PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "cache_size": -64_000,  # KiB: 64 MiB page cache
    "busy_timeout": 500,  # ms: a longer lock by another process is an outage, not a stall
}
# How each durability level (config.DURABILITY_LEVELS says what it promises) is kept.
SYNCHRONOUS = {"power-loss": "full", "crash": "normal"}
SYNCHRONOUS_NAMES = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


def default_db_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("storypulse")) / "storypulse.db"


def pragmas(durability: str) -> dict:
    return {**PRAGMAS, "synchronous": SYNCHRONOUS[durability]}


class SqliteStore(Store):
    title = "SQLite"
    database_class = peewee.SqliteDatabase

    def __init__(self, db: peewee.Database):
        super().__init__(db)
        self._insert_story, self._insert_task, self._insert_task_flow, self._insert_story_flow = (
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([self.p] * len(columns))})"
            for table, columns in (("story", STORY_COLUMNS), ("task", TASK_COLUMNS),
                                   ("task_flow", TASK_FLOW_COLUMNS), ("story_flow", STORY_FLOW_COLUMNS)))

    @classmethod
    def connect(cls, spec: str | None, durability: str) -> peewee.Database:
        """A path, a `sqlite:///...` URL, or None: the default file (its folder is made)."""
        if spec and "://" in spec:
            from playhouse import db_url

            try:
                return db_url.connect(spec, pragmas=pragmas(durability))
            except (ValueError, RuntimeError) as exc:
                raise BadURL(str(exc)) from exc
        path = cls.path_of(spec)
        path.parent.mkdir(parents=True, exist_ok=True)
        return peewee.SqliteDatabase(str(path), pragmas=pragmas(durability))

    @staticmethod
    def path_of(spec: str | None) -> Path:
        if not spec:
            return default_db_path()
        if "://" in spec:
            from playhouse.db_url import parse

            return Path(parse(spec)["database"]).expanduser()
        return Path(spec).expanduser()

    @classmethod
    def durability_setting(cls, durability: str) -> str:
        return f"synchronous={SYNCHRONOUS[durability].upper()}"

    @staticmethod
    def location(db: peewee.Database) -> str:
        return str(db.database)

    def foreign_tables(self, tables: set[str]) -> list[str]:
        """A file holds only our tables (a new file holds none)."""
        ours = {model._meta.table_name for model in MODELS}
        return sorted(t for t in tables - ours if not t.startswith("sqlite_"))

    # -- the group commit -------------------------------------------------------
    def _write(self, batch: Batch, again: bool) -> None:
        with self.db.atomic():
            self._write_rows(batch, again)

    def _write_rows(self, batch: Batch, again: bool) -> None:
        p = self.p
        cursor = self.db.cursor()
        move = dict.fromkeys(TALLY_COLUMNS, 0)
        # With several stages, the move of each named stage's queued tasks and work
        staged: dict[str, list[int]] | None = {} if self.staged else None
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
        if batch.task_flows or batch.story_flows:
            self._insert_flows(cursor, batch, again, staged)
        for started, ids in batch.started_stories:
            for chunk in chunks(ids):
                cursor.execute(
                    f"UPDATE story SET started_at = {p} WHERE id IN ({', '.join([p] * len(chunk))})",
                    (started, *chunk),
                )
        if batch.stage_entries or batch.blocks:
            self._write_stage_rows(cursor, batch)
        for attempts, started, finished, ids in batch.completions:
            for chunk in chunks(ids):
                marks = ", ".join([p] * len(chunk))
                if staged is None:
                    done, work = cursor.execute(
                        "SELECT COUNT(*), TOTAL(estimate_ms) FROM task "
                        f"WHERE id IN ({marks}) AND status = 'queued'", tuple(chunk)).fetchone()
                else:
                    done = work = 0
                    for stage, n, ms in cursor.execute(
                            "SELECT f.stage, COUNT(*), TOTAL(t.estimate_ms) FROM task t LEFT JOIN "
                            f"task_flow f ON f.task_id = t.id WHERE t.id IN ({marks}) AND "
                            "t.status = 'queued' GROUP BY f.stage", tuple(chunk)).fetchall():
                        done, work = done + n, work + ms
                        _move(staged, stage, -n, -ms)
                cursor.execute(
                    f"UPDATE task SET status = 'done', attempts = {p}, started_at = {p}, "
                    f"finished_at = {p} WHERE id IN ({marks}) AND status = 'queued'",
                    (attempts, started, finished, *chunk),
                )
                move["tasks_queued"] -= done
                move["tasks_done"] += done
                move["queued_ms"] -= int(work)
        for completed_at, ids in batch.done_stories:
            for chunk in chunks(ids):
                cursor.execute(
                    f"UPDATE story SET status = 'done', completed_at = {p} "
                    f"WHERE id IN ({', '.join([p] * len(chunk))}) AND status = 'open'",
                    (completed_at, *chunk),
                )
                move["stories_open"] -= cursor.rowcount
                move["stories_done"] += cursor.rowcount
        if batch.work_times:
            cursor.executemany(
                f"INSERT INTO story_flow (story_id, work_s) VALUES ({p}, {p}) ON CONFLICT (story_id) "
                "DO UPDATE SET work_s = excluded.work_s", batch.work_times)
        for chunk in chunks(batch.deleted_stories):
            marks = ", ".join([p] * len(chunk))
            if staged is None:
                for status, count, work in cursor.execute(
                        "SELECT status, COUNT(*), TOTAL(estimate_ms) FROM task "
                        f"WHERE story_id IN ({marks}) GROUP BY status", tuple(chunk)).fetchall():
                    move[TASK_TALLY[status]] -= count
                    if status == "queued":
                        move["queued_ms"] -= int(work)
            else:
                for status, stage, count, work in cursor.execute(
                        "SELECT t.status, f.stage, COUNT(*), TOTAL(t.estimate_ms) FROM task t "
                        f"LEFT JOIN task_flow f ON f.task_id = t.id WHERE t.story_id IN ({marks}) "
                        "GROUP BY t.status, f.stage", tuple(chunk)).fetchall():
                    move[TASK_TALLY[status]] -= count
                    if status == "queued":
                        move["queued_ms"] -= int(work)
                        _move(staged, stage, -count, -work)
            if self.has_flows:  # before the tasks: their ids find their flow rows
                cursor.execute(f"DELETE FROM task_flow WHERE task_id IN (SELECT id FROM task "
                               f"WHERE story_id IN ({marks}))", tuple(chunk))
                cursor.execute(f"DELETE FROM story_flow WHERE story_id IN ({marks})", tuple(chunk))
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
        if staged:
            cursor.executemany(
                f"INSERT INTO stage_tally (stage, tasks_queued, queued_ms) VALUES ({p}, {p}, {p}) "
                "ON CONFLICT (stage) DO UPDATE SET tasks_queued = tasks_queued + "
                "excluded.tasks_queued, queued_ms = queued_ms + excluded.queued_ms",
                [(stage, n, int(ms)) for stage, (n, ms) in staged.items() if n or ms])

    def _insert_flows(self, cursor, batch: Batch, again: bool,
                      staged: dict[str, list[int]] | None) -> None:
        """The flow rows of new tasks and stories (schema.py), and the stages' tally they move."""
        skip = " ON CONFLICT DO NOTHING" if again else ""
        tasks, stories = batch.task_flows, batch.story_flows
        if again:  # what a lost commit stored is neither stored nor counted again
            tasks = self._not_stored(cursor, "task_flow", tasks, "task_id")
            stories = self._not_stored(cursor, "story_flow", stories, "story_id")
        if tasks:
            cursor.executemany(self._insert_task_flow + skip, tasks)
            if staged is not None:
                estimates = {row[0]: row[3] for row in batch.tasks}
                for task_id, stage, _ in tasks:
                    _move(staged, stage, 1, estimates[task_id])
        if stories:
            cursor.executemany(self._insert_story_flow + skip, stories)
        self.has_flows = True

    def _write_stage_rows(self, cursor, batch: Batch) -> None:
        """The stage each story now counts in, and the end of each block that started."""
        p = self.p
        for stage, ids in batch.stage_entries:
            cursor.executemany(
                f"INSERT INTO story_flow (story_id, stage) VALUES ({p}, {p}) ON CONFLICT (story_id) "
                "DO UPDATE SET stage = excluded.stage", [(story_id, stage) for story_id in ids])
        if batch.blocks:
            cursor.executemany(f"UPDATE task_flow SET blocked_until = {p} WHERE task_id = {p}",
                               [(until, task_id) for task_id, until in batch.blocks])
        self.has_flows = True

    def _not_stored(self, cursor, table: str, rows: list[tuple], key: str = "id") -> list[tuple]:
        """The rows whose ids (the first value, `key` in the table) are not in `table` yet."""
        stored: set[int] = set()
        for chunk in chunks([row[0] for row in rows]):
            stored.update(r[0] for r in cursor.execute(
                f"SELECT {key} FROM {table} WHERE {key} IN ({', '.join([self.p] * len(chunk))})",
                tuple(chunk)).fetchall())
        return [row for row in rows if row[0] not in stored]

    def _set_counter(self, cursor, name: str, value: int) -> None:
        p = self.p
        cursor.execute(f"UPDATE counter SET value = {p} WHERE name = {p}", (value, name))
        if cursor.rowcount == 0:
            cursor.execute(f"INSERT INTO counter (name, value) VALUES ({p}, {p})", (name, value))

    # -- the queue's next window -------------------------------------------------
    def window(self, after: int, limit: int) -> tuple[list[tuple], bool]:
        p = self.p
        # CROSS JOIN keeps task as the outer loop and `+` keeps the planner off story's status
        # indexes: a primary key range of task, not every open story visited and sorted.
        if self.has_flows:
            select = ("SELECT t.id, t.story_id, t.estimate_ms, t.attempts, s.tasks_total, "
                      f"s.created_at, s.started_at, {self._stage_index}, COALESCE(f.blocked_ms, 0) "
                      "FROM task t CROSS JOIN story s ON s.id = t.story_id "
                      "LEFT JOIN task_flow f ON f.task_id = t.id ")
        else:  # no flow rows at all: the first stage, no blocks
            select = ("SELECT t.id, t.story_id, t.estimate_ms, t.attempts, s.tasks_total, "
                      "s.created_at, s.started_at, 0, 0 FROM task t CROSS JOIN story s "
                      "ON s.id = t.story_id ")
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

    # -- failures and health -------------------------------------------------------
    def recover(self) -> None:
        db = self.db
        conn = None if db.is_closed() else db.connection()
        if conn is not None and conn.in_transaction:
            try:  # a statement failed inside the transaction without ending it
                conn.rollback()
            except Exception:
                log.debug("rollback after a failed write failed too", exc_info=True)

    def durability_in_force(self) -> str:
        level = self.db.execute_sql("PRAGMA synchronous").fetchone()[0]
        return f"synchronous={SYNCHRONOUS_NAMES.get(level, level)}"

    def integrity_ok(self) -> bool:
        return self.db.execute_sql("PRAGMA integrity_check").fetchone()[0] == "ok"

    # -- at start --------------------------------------------------------------------
    @classmethod
    def shown(cls, spec: str | None) -> str:
        return str(cls.path_of(spec))

    STARTUP_WORDS = {
        **Store.STARTUP_WORDS,
        IN_USE: "the database {where} is in use by another storypulse server ({holder}): stop "
                "that one, or point --db at another file",
        NOT_OURS: "the file {where} is not a storypulse database ({text}): point --db at a "
                  "storypulse database, or at a new file",
        NOT_A_DATABASE: "the file {where} is not a SQLite database ({text}): point --db at a "
                        "storypulse database, or at a new file",
        DAMAGED: "the database {where} is damaged ({text}): restore it from a backup, or point "
                 "--db at a new file (the sqlite3 shell's .recover may salvage what is left)",
        LOCKED: "the database {where} is locked by another process ({text}): stop it (another "
                "storypulse server?), or point --db at another file",
    }

    @classmethod
    def startup_words(cls, cause: Cause, spec: str | None, text: str) -> str:
        if cause.what in (NO_ACCESS, READ_ONLY, CANNOT_OPEN):  # which file or folder, and why
            return _no_access(cls.path_of(spec), text)
        return super().startup_words(cause, spec, text)


def _move(staged: dict[str, list[int]], stage: str | None, n: int, ms: float) -> None:
    """Add to a named stage's move of the stages' tally (a null stage has no row there)."""
    if stage is not None:
        counts = staged.setdefault(stage, [0, 0])
        counts[0] += n
        counts[1] += int(ms)


def _no_access(path: Path, text: str) -> str:
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
