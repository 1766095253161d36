"""The Clone pattern's bookkeeping, apart from any socket so it can be tested directly.

A late joiner subscribes, takes a snapshot that carries the seq of the last
published message, then applies only messages with a higher seq. A gap means
messages were lost: take a new snapshot. A message at or below the snapshot's
seq is normally one that was queued before the snapshot; but one stamped well
after the snapshot means the server restarted and numbers from 1 again.
"""

from __future__ import annotations

APPLY, STALE, GAP, RESTARTED = "apply", "stale", "gap", "restarted"


class SeqTracker:
    def __init__(self, restart_slack_s: float = 1.0):
        self.seq: int | None = None  # None until the first snapshot
        self.snapshot_ts = 0.0
        self.restart_slack_s = restart_slack_s
        self.gaps = 0

    def reset(self, seq: int, ts: float) -> None:
        """A snapshot was taken: it covers everything up to `seq`, stamped `ts`."""
        self.seq = seq
        self.snapshot_ts = ts

    def classify(self, seq: int, ts: float) -> str:
        """What to do with a message; APPLY advances the tracked seq."""
        if self.seq is None:
            return STALE
        if seq == self.seq + 1:
            self.seq = seq
            return APPLY
        if seq <= self.seq:
            if ts > self.snapshot_ts + self.restart_slack_s:
                return RESTARTED
            return STALE
        self.gaps += 1
        return GAP

    def skip_to(self, seq: int) -> None:
        """Accept a gap for now (a new snapshot is on its way) and carry on from `seq`."""
        self.seq = seq
