"""The SQL text of PostgreSQL's bulk writes: rows as arrays, and writes that move the tally.

A turn's writes go as one query string (postgres.py), so everything here is text
and parameters for psycopg2 to fill in on the client side: arrays are formatted
as PostgreSQL array literals at C speed (str.join), one parameter each.
"""

from __future__ import annotations

from typing import Iterable, Sequence

# The PostgreSQL types of schema.STORY_COLUMNS and TASK_COLUMNS, for the arrays the bulk INSERT reads.
STORY_TYPES = ("bigint", "text", "text", "text", "float8", "int")
TASK_TYPES = ("bigint", "bigint", "text", "int", "text", "int", "float8")

# How a write moves the tally, from the rows it returns (`w`, summed up as `d`).
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


def tallied(writes: Sequence[str], move: str) -> str:
    """INSERTs, UPDATEs or DELETEs of one table as one statement that also moves the tally by
    the rows they changed (TALLY_MOVES). The writes must not touch the same rows."""
    returning, sums, change = TALLY_MOVES[move]
    ctes = [f"w{i} AS ({write} RETURNING {returning})" for i, write in enumerate(writes)]
    union = " UNION ALL ".join(f"SELECT {returning} FROM w{i}" for i in range(len(writes)))
    return f"WITH {', '.join(ctes)}, w AS ({union}) UPDATE tally SET {change} FROM ({sums}) d"


def stage_tally_moved(rows: str) -> str:
    """A statement that adds the (stage, tasks, ms) rows of the query `rows` (one per stage at
    most, named ones only) to the stages' tally."""
    return ("INSERT INTO stage_tally (stage, tasks_queued, queued_ms) " + rows +
            " ON CONFLICT (stage) DO UPDATE SET "
            "tasks_queued = stage_tally.tasks_queued + EXCLUDED.tasks_queued, "
            "queued_ms = stage_tally.queued_ms + EXCLUDED.queued_ms")


# The queued tasks (of the ids, or of the stories, in a parameter) by named stage, taken away:
# run before the write that completes or deletes them (a retried write finds none queued).
QUEUED_BY_STAGE_GONE = ("SELECT f.stage, -count(*), -sum(t.estimate_ms) FROM task t "
                        "JOIN task_flow f ON f.task_id = t.id WHERE t.{key} = ANY(%s::bigint[]) "
                        "AND t.status = 'queued' AND f.stage IS NOT NULL GROUP BY f.stage")


def array(values: Iterable, kind: str = "bigint") -> str:
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


def insert_rows(table: str, columns: Sequence[str], types: Sequence[str],
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
            arrays.append(array(column, kind))
    unnest = ", ".join(f"%s::{types[columns.index(name)]}[]" for name in names)
    sql = (f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(select)} "
           f"FROM unnest({unnest}) AS u({', '.join(names)})")
    return sql, scalars + arrays


def _quote(value: str | None) -> str:
    if value is None:
        return "NULL"
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
