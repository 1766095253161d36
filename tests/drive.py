"""Driving the Service alone, as the loop does but with no socket: settle a turn, read its effects.

The loop's end of a turn (`Server._settle`) is: commit, carry the effects out,
and while requests wait for a commit (`service.deferred`), serve them and
commit again. `settle` does the same and returns what would have gone out,
decoded; the effects are emptied as the loop empties them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from storypulse import protocol


@dataclass
class Out:
    """What a turn's effects would have sent, decoded."""

    committed: bool = True  # every commit of the turn succeeded
    replies: list[tuple[list[bytes], protocol.Reply]] = field(default_factory=list)
    events: list = field(default_factory=list)  # StoryEvent, PoolEvent, Stats in seq order
    to_workers: list[tuple[bytes, object]] = field(default_factory=list)  # Work, Stop, ...

    @property
    def answers(self) -> list[protocol.Reply]:
        return [reply for _, reply in self.replies]

    def story_events(self) -> list[tuple]:
        """(event, story_id[, lead_time_s, cycle_time_s]) of the story events."""
        return [(e.event, e.story_id, *((e.lead_time_s, e.cycle_time_s)
                                        if e.event == "completed" else ()))
                for e in self.events if isinstance(e, protocol.StoryEvent)]

    def leases(self) -> list[tuple[bytes, list[int]]]:
        return [(identity, [task_id for task_id, _ in m.tasks])
                for identity, m in self.to_workers if isinstance(m, protocol.Work)]


def take(service, out: Out | None = None) -> Out:
    """Empty the service's effects (as `Server._carry_out` does) into `out`, decoded."""
    out = out or Out()
    effects = service.effects
    out.to_workers += [(identity, protocol.decode_to_worker(payload))
                       for identity, payload in effects.to_workers]
    out.replies += [(envelope, protocol.decode_reply(payload))
                    for envelope, payload in effects.replies]
    out.events += [protocol.decode_event(topic, payload) for topic, payload in effects.published]
    effects.to_workers.clear()
    effects.replies.clear()
    effects.published.clear()
    return out


def settle(service, now: float, wall: float, force: bool = False) -> Out:
    """The end of a turn, as the loop's `_settle`: commit, and serve what waited for it."""
    out = Out()
    while True:
        out.committed &= service.commit(now, wall, force=force)
        take(service, out)
        if not service.deferred:
            return out
        service.resume(now, wall)
