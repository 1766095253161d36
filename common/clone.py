"""The Clone pattern's seq bookkeeping, apart from any socket, for every live client.

A late joiner subscribes, takes a snapshot that carries the seq of the last
published message, then applies only messages with the next seq. A higher seq
means messages were lost (GAP: take a new snapshot). A seq at or below the
tracked one is normally a message queued before the snapshot (STALE: drop it);
it is a server that restarted and numbers from 1 again (RESTARTED) when it
cannot be such a message: once a message after the snapshot was applied (PUB
delivers in order, so nothing older can follow it), or when it is stamped
later than the snapshot (with some slack for the stats tick it was taken at).
"""

from __future__ import annotations

APPLY, STALE, GAP, RESTARTED = "apply", "stale", "gap", "restarted"


class SeqTracker:
    def __init__(self, restart_slack_s: float = 1.0):
        self.seq: int | None = None  # None until the first snapshot
        self.snapshot_ts = 0.0
        self.restart_slack_s = restart_slack_s
        self.gaps = 0
        self._applied_since_snapshot = False

    def reset(self, seq: int, ts: float) -> None:
        """A snapshot was taken: it covers everything up to `seq`, stamped `ts`."""
        self.seq = seq
        self.snapshot_ts = ts
        self._applied_since_snapshot = False

    def classify(self, seq: int, ts: float) -> str:
        """What to do with a message; APPLY advances the tracked seq."""
        if self.seq is None:
            return STALE
        if seq == self.seq + 1:
            self.seq = seq
            self._applied_since_snapshot = True
            return APPLY
        if seq <= self.seq:
            if self._applied_since_snapshot or ts > self.snapshot_ts + self.restart_slack_s:
                return RESTARTED
            return STALE
        self.gaps += 1
        return GAP

    def skip_to(self, seq: int) -> None:
        """Accept a gap for now (a new snapshot is on its way) and carry on from `seq`."""
        self.seq = seq
        self._applied_since_snapshot = True
