"""What the server says happened: the `note` events, and the recent ones a snapshot carries.

A note marks a change in how the server works — a WIP limit, a stage's limit,
the flow window or a pool's bounds set by any client, the database refusing
writes and accepting them again, the server starting (with its workflow) or
restarting onto stored work — so that every client can draw it on its charts.
Each goes out on the `note` topic numbered in the one seq of every event (the
Clone pattern: `Effects.publish`), and the newest NOTES_MAX stay here for the
snapshot, so that a client that joins late sees past markers too. They live
in memory: a restart starts afresh with its `restored` note.

Pure: the service calls these with the wall clock; nothing here reads one.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from storypulse import protocol
from storypulse.protocol import NoteEvent

from .effects import Effects


def _limit(value: int) -> str:
    return f"{value:,}" if value else "none"


def _window(seconds: float) -> str:
    return f"{seconds:g} s"


class Notes:
    def __init__(self, effects: Effects, keep: int = protocol.NOTES_MAX):
        self.effects = effects
        self.recent: deque[NoteEvent] = deque(maxlen=keep)

    def _note(self, kind: str, text: str, wall: float, **values: Any) -> None:
        note = NoteEvent(seq=0, ts=wall, kind=kind, text=text, **values)
        self.effects.publish(protocol.TOPIC_NOTE, note)  # numbers it
        self.recent.append(note)

    def started(self, wall: float, stages: list[str], scenario: str | None,
                restored: tuple[int, int] | None) -> None:
        """The server is serving: on a new database (`restored` None), or onto stored work
        (open and completed stories)."""
        flow = " → ".join(stages) if len(stages) > 1 else None
        if scenario is not None:
            how = f" with scenario {scenario}" + (f" ({flow})" if flow else "")
        else:
            how = f" with stages {flow}" if flow else ""
        if restored is None:
            self._note("started", f"server started{how}", wall, stages=stages, scenario=scenario)
            return
        open_, done = restored
        self._note("restored", f"server restarted{how}: {open_:,} open and {done:,} completed "
                   "stories restored", wall, stages=stages, scenario=scenario)

    def wip_limit(self, old: int, new: int, wall: float) -> None:
        text = f"WIP limit set to {new:,} (was {_limit(old)})" if new else \
            f"WIP limit lifted (was {old:,})"
        self._note("wip_limit", text, wall, old=old, new=new)

    def stage_wip_limit(self, stage: str, old: int, new: int, wall: float) -> None:
        text = f"WIP limit of {stage} set to {new:,} (was {_limit(old)})" if new else \
            f"WIP limit of {stage} lifted (was {old:,})"
        self._note("stage_wip_limit", text, wall, stage=stage, old=old, new=new)

    def flow_window(self, old: float, new: float, wall: float) -> None:
        self._note("flow_window", f"flow window set to {_window(new)} (was {_window(old)})", wall,
                   old=old, new=new)

    def pool_bounds(self, stage: str | None, old: tuple[int, int], new: tuple[int, int],
                    wall: float) -> None:
        whose = f"pool of {stage}" if stage else "pool"
        self._note("pool_bounds", f"{whose}: bounds set to {new[0]}–{new[1]} workers (was "
                   f"{old[0]}–{old[1]})", wall, stage=stage, old=list(old), new=list(new))

    def outage_began(self, cause: str, wall: float) -> None:
        self._note("outage_began", f"database refuses writes: {cause}", wall, cause=cause)

    def outage_ended(self, lasted_s: float, wall: float) -> None:
        self._note("outage_ended", f"database accepts writes again after {lasted_s:.1f} s", wall,
                   lasted_s=round(lasted_s, 3))
