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
# ... and of schema.WORKFLOW_STORY_COLUMNS and WORKFLOW_TASK_COLUMNS
WORKFLOW_STORY_TYPES = STORY_TYPES + ("bigint",)
WORKFLOW_TASK_TYPES = TASK_TYPES + ("text", "int")

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


# How a write of tasks moves the stages' tally (a server with several stages): the sign, and
# the rows that count (a done task's row comes back done: the update takes only queued ones).
STAGE_MOVES = {
    "tasks added": (1, "status = 'queued' AND stage IS NOT NULL"),
    "tasks removed": (-1, "status = 'queued' AND stage IS NOT NULL"),
    "tasks done": (-1, "stage IS NOT NULL"),
}


def tallied(writes: Sequence[str], move: str, staged: bool = False) -> str:
    """INSERTs, UPDATEs or DELETEs of one table as one statement that also moves the tally by
    the rows they changed (TALLY_MOVES), and with `staged` the stages' tally (STAGE_MOVES)
    too. The writes must not touch the same rows."""
    returning, sums, change = TALLY_MOVES[move]
    if staged:
        returning += ", stage"
    ctes = [f"w{i} AS ({write} RETURNING {returning})" for i, write in enumerate(writes)]
    union = " UNION ALL ".join(f"SELECT {returning} FROM w{i}" for i in range(len(writes)))
    tally = f"UPDATE tally SET {change} FROM ({sums}) d"
    if not staged:
        return f"WITH {', '.join(ctes)}, w AS ({union}) {tally}"
    sign, rows = STAGE_MOVES[move]
    # A data-modifying WITH runs whether or not anything reads it: both tallies move.
    return (f"WITH {', '.join(ctes)}, w AS ({union}), t AS ({tally}) "
            "INSERT INTO stage_tally (stage, tasks_queued, queued_ms) "
            f"SELECT stage, {sign} * count(*), {sign} * COALESCE(sum(estimate_ms), 0) FROM w "
            f"WHERE {rows} GROUP BY stage ON CONFLICT (stage) DO UPDATE SET "
            "tasks_queued = stage_tally.tasks_queued + EXCLUDED.tasks_queued, "
            "queued_ms = stage_tally.queued_ms + EXCLUDED.queued_ms")


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
