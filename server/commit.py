"""The group commit: a turn's writes in one transaction, and what waits on them.

Handlers change memory at once and add their writes to `batch`. Their replies
wait in `replies`, in the order the requests came (a pipelining client reads
them in that order), those that acknowledge a write listed in `acks`; the
story events of the writes wait in `events`. The loop calls `commit` once a
turn; `release` then hands the replies to the loop either way and the events
only once stored, so nothing is acknowledged or announced before it is durable.

A database that refuses a commit starts an `Outage`. The refused batch's new
stories are taken back: their clients get `unavailable` at once (a definite
answer), and `refused` tells the service which stories to forget. The rest of
the batch stays pending with the delete replies that wait on it (`held`) and
is tried again, with what was added since (workers' completions), as the
backoff allows. Meanwhile writes are refused as `unavailable`.
"""

from __future__ import annotations

import logging
from typing import Any

from storypulse import protocol
from storypulse.protocol import UNAVAILABLE

from .effects import Effects, Envelope
from .outage import Outage
from .store import Batch, Store, Unavailable

log = logging.getLogger(__name__)

Reply = tuple[Envelope, bytes]
# (event, story_id[, lead_time_s, cycle_time_s]) of a story event, published after the commit
StoryNote = tuple


def unavailable(cause: str) -> str:
    """The message of an `unavailable` reply to a write."""
    return f"{cause}; writes are refused until it accepts them again"


class GroupCommit:
    def __init__(self, store: Store):
        self.store = store
        self.batch = Batch()
        self.replies: list[Reply] = []
        # (reply index, request id, id of the story it creates or 0) of the batch's write replies
        self.acks: list[tuple[int, Any, int]] = []
        self.events: list[StoryNote] = []
        self.held: list[Reply] = []  # replies that wait on a refused batch
        self.outage: Outage | None = None
        # The new stories a refused commit took back, for the service to forget:
        # story id -> (stage name or None, estimate ms) of each task row taken out of the batch.
        self.refused: dict[int, list[tuple[str | None, int]]] = {}

    # -- what handlers add ---------------------------------------------------------------
    def reply(self, envelope: Envelope, request_id: Any, result: Any) -> None:
        self.replies.append((envelope, protocol.ok(request_id, result)))

    def reply_error(self, envelope: Envelope, request_id: Any, code: str, message: str) -> None:
        self.replies.append((envelope, protocol.error(request_id, code, message)))

    def acknowledge(self, envelope: Envelope, request_id: Any, result: Any,
                    created: int = 0) -> None:
        """The reply to a write: it goes out only with its commit (see _refused)."""
        self.acks.append((len(self.replies), request_id, created))
        self.replies.append((envelope, protocol.ok(request_id, result)))

    def refuse_write(self, envelope: Envelope, request_id: Any) -> None:
        """The answer to a write while the database refuses writes (during an outage)."""
        self.reply_error(envelope, request_id, UNAVAILABLE, unavailable(self.outage.cause))

    # -- the commit ----------------------------------------------------------------------
    def commit(self, now: float, force: bool = False) -> bool:
        """Write the pending batch in one transaction; False while the database refuses it.

        During an outage the batch is tried only when the backoff allows (or `force`).
        """
        outage = self.outage
        if outage is not None and not (force or outage.due(now)):
            return False
        if self.batch:
            try:
                self.store.apply(self.batch, again=outage is not None)
            except Unavailable as exc:
                self._refused(exc.cause, now)
                return False
            self.batch = Batch()
        self.acks.clear()
        if outage is not None:
            log.warning("the database accepts writes again after %.1f s and %d tries; "
                        "%d held replies go out", outage.lasted(now), outage.failures,
                        len(self.held), extra={"event": "database.resumed", "cause": outage.cause,
                                               "outage_s": round(outage.lasted(now), 3),
                                               "tries": outage.failures})
            self.replies[:0] = self.held
            self.held = []
            self.outage = None
        return True

    def release(self, out: Effects, committed: bool, wall: float) -> None:
        """Hand the loop the replies that may go out now, and the events once committed."""
        if self.replies:
            if out.replies:
                out.replies.extend(self.replies)
            else:
                out.replies = self.replies
            self.replies = []
        if committed and self.events:
            story = out.story
            for event, story_id, *times in self.events:  # times: a completion's lead and cycle
                story(event, story_id, wall, *times)
            self.events = []

    # -- the outage path -----------------------------------------------------------------------
    def _refused(self, cause: str, now: float) -> None:
        if self.outage is None:
            log.error("the database refuses writes (%s): nothing of it is acknowledged, new "
                      "writes get `unavailable`, retrying", cause,
                      extra={"event": "database.outage", "cause": cause})
            self.outage = Outage(cause, now)
            self._answer_refused_batch(cause)
        else:
            self.outage.refused_again(cause, now)
            log.debug("the database still refuses writes (%s); try %d", cause,
                      self.outage.failures)

    def _answer_refused_batch(self, cause: str) -> None:
        """New stories: refused now and taken back. Deletes: their replies wait for the retry."""
        replies, message = self.replies, unavailable(cause)
        created: list[int] = []
        waiting: set[int] = set()
        for index, request_id, story_id in self.acks:
            if story_id:
                replies[index] = (replies[index][0], protocol.error(request_id, UNAVAILABLE, message))
                created.append(story_id)
            else:
                waiting.add(index)
        self.acks = []
        self.held.extend(replies[i] for i in sorted(waiting))
        self.replies = [entry for i, entry in enumerate(replies) if i not in waiting]
        if created:
            self._take_back(created)

    def _take_back(self, story_ids: list[int]) -> None:
        """The refused new stories leave the batch and the events (`refused` says what left)."""
        gone = set(story_ids)
        batch = self.batch
        batch.stories = [row for row in batch.stories if row[0] not in gone]
        batch.story_flows = [row for row in batch.story_flows if row[0] not in gone]
        refused = self.refused
        for story_id in story_ids:
            refused[story_id] = []
        stages = {}  # the stage named in the flow row of each refused task that has one
        if batch.task_flows:
            flows = batch.task_flows
            taken = {row[0] for row in batch.tasks if row[1] in gone}
            stages = {row[0]: row[1] for row in flows if row[0] in taken}
            batch.task_flows = [row for row in flows if row[0] not in taken]
        kept = []
        for row in batch.tasks:
            if row[1] in gone:
                refused[row[1]].append((stages.get(row[0]), row[3]))
            else:
                kept.append(row)
        batch.tasks = kept
        # Should the refused commit have happened after all (a connection lost during
        # COMMIT), the retry removes them, as their clients were told.
        batch.deleted_stories.extend(story_ids)
        self.events = [e for e in self.events if not (e[0] == "created" and e[1] in gone)]
