"""What the service hands the loop to do: the only way its decisions reach a socket.

The service sends, publishes and spawns nothing itself. It appends what must
happen here, in the order it must happen, and the loop carries it out in one
place (`Server._carry_out`), emptying the lists as it goes:

  to_workers  (worker identity, payload): leases, and Stop for a worker the
              pool no longer knows
  replies     (routing envelope, payload), in the order the requests came;
              only what a commit released (commit.py): nothing is acknowledged
              before it is stored
  published   (topic, payload) in seq order: story events (after their
              commit), pool events, stats
  resize      set_pool's decision, for the loop's scaler to apply this turn

Plain lists of tuples: a create costs one reply tuple here, as it always has.

The service numbers every message it publishes (`seq`: the Clone pattern's one
authority), so a snapshot knows the seq that covers it without asking the loop,
and the loop publishes them in the order they were numbered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from storypulse import protocol

Envelope = list[bytes]  # the routing frames a reply goes back with


@dataclass(frozen=True)
class Resize:
    """set_pool asks the loop to resize a pool this turn: to `change` (old, new, reason),
    decided so that the reply could show the new target; None: the target stays, decide again.
    `stage`: whose pool (its index in the workflow)."""

    change: tuple[int, int, str] | None
    stage: int = 0


class Effects:
    __slots__ = ("to_workers", "replies", "published", "resize", "seq")

    def __init__(self) -> None:
        self.to_workers: list[tuple[bytes, bytes]] = []
        self.replies: list[tuple[Envelope, bytes]] = []
        self.published: list[tuple[bytes, bytes]] = []
        self.resize: Resize | None = None
        self.seq = 0  # of the last message numbered for publishing

    def send_worker(self, identity: bytes, payload: bytes) -> None:
        self.to_workers.append((identity, payload))

    def publish(self, topic: bytes, message: Any) -> None:
        """Number an event (a Stats, StoryEvent or PoolEvent) and queue it for publishing."""
        self.seq += 1
        message.seq = self.seq
        self.published.append((topic, protocol.encode(message)))

    def story(self, event: str, story_id: int, wall: float, lead_time_s: float | None = None,
              cycle_time_s: float | None = None) -> None:
        self.seq += 1
        self.published.append((protocol.TOPIC_STORY, protocol.encode(protocol.StoryEvent(
            seq=self.seq, ts=wall, event=event, story_id=story_id,
            lead_time_s=lead_time_s, cycle_time_s=cycle_time_s))))

    def pool(self, old: int, new: int, reason: str, wall: float, stage: str | None = None) -> None:
        self.publish(protocol.TOPIC_POOL, protocol.PoolEvent(
            seq=0, ts=wall, old_size=old, new_size=new, reason=reason, stage=stage))
