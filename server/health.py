"""`/livez` and `/readyz`: is the loop turning, and may traffic be sent here? Pure answers.

Liveness: the loop stamps a heartbeat every turn (`Heartbeat.beat`); it turns at
least once per timer interval even when idle, so a stamp older than
`stale_after` (ten of the longest interval, at least a second) means a loop stuck
in one turn. Until the first turn (restoring a large database can take a while)
the answer is "starting", and alive: a probe must not kill a server for loading.

Readiness: the server has started, its loop is alive, the database accepts writes
(no outage) and the pool has a worker when it should have one. The body says why not.
Both read only the heartbeat (one float) and the newest snapshot.
"""

from __future__ import annotations

from typing import NamedTuple

from .config import ServerConfig
from .metrics import Snapshot


class Answer(NamedTuple):
    ok: bool
    text: str  # one line: the body of the reply


def stale_after(config: ServerConfig) -> float:
    """Seconds without a turn after which the loop counts as stuck."""
    return max(1.0, 10 * max(config.stats_interval, config.scale_interval, config.heartbeat))


class Heartbeat:
    """Written by the loop (one float), read by the HTTP thread."""

    def __init__(self, stale_s: float):
        self.stale_s = stale_s
        self.last: float | None = None  # monotonic time of the last turn; None: not turning yet

    def beat(self, now: float) -> None:
        self.last = now

    def liveness(self, now: float) -> Answer:
        last = self.last
        if last is None:
            return Answer(True, "starting")
        quiet = now - last
        if quiet > self.stale_s:
            return Answer(False, f"the loop has not turned for {quiet:.1f} s "
                                 f"(limit {self.stale_s:g} s)")
        return Answer(True, "ok")


def readiness(alive: Answer, snapshot: Snapshot | None) -> Answer:
    if not alive.ok:
        return alive
    if snapshot is None or alive.text == "starting":
        return Answer(False, "starting")
    stats = snapshot.stats
    if stats.database != "ok":
        return Answer(False, f"database: {stats.database_error or 'refuses writes'}")
    if stats.workers == 0 and stats.workers_target > 0:
        return Answer(False, f"pool: none of {stats.workers_target} workers connected")
    return Answer(True, "ready")
