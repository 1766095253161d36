"""What the server does with requests and worker reports; no sockets here.

Handlers change the in-memory state at once and add their writes to the
turn's `Batch`; their replies and events wait in `outbox`/`events` until the
loop has committed the batch (`commit()`), so nothing is acknowledged or
announced before it is durable. A request that must read the database first
asks the loop to flush the turn so far (`self.flush()`), which also keeps
each client's replies in order.

A database that refuses a commit starts an `Outage`. The refused batch's new
stories are taken back (their clients get `unavailable` at once: a definite
answer), the rest of it stays pending with the delete replies that wait on it
(`held`) and is tried again, with what was added since (workers' completions),
as the backoff allows. Meanwhile writes are refused as `unavailable`; reads
are answered as far as the database and memory allow.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from common import __version__, protocol
from common.protocol import (
    BUSY,
    INTERNAL,
    INVALID,
    NOT_FOUND,
    UNAVAILABLE,
    CreateStory,
    CreateStoryResult,
    DeleteStory,
    Empty,
    GetStory,
    ListStories,
    Ping,
    PingResult,
    PoolResult,
    SetPool,
    Snapshot,
    SnapshotResult,
    Stats,
    StoryView,
    TaskView,
)

from .config import ServerConfig
from .outage import Outage
from .faults import Faults
from .pool import Load, Pool, Worker
from .state import WorkState
from .stats import History, MeanWindow, RateWindow
from .store import Batch, Startup, Store, Unavailable

log = logging.getLogger(__name__)

Envelope = list[bytes]  # the routing frames a reply goes back with


class Service:
    def __init__(self, config: ServerConfig, store: Store, pool: Pool, now: float):
        self.config = config
        self.store = store
        self.pool = pool
        self.state = WorkState()
        self.batch = Batch()
        self.outbox: list[tuple[Envelope, bytes]] = []
        self.held: list[tuple[Envelope, bytes]] = []  # replies that wait on a refused batch
        # (outbox index, request id, id of the story it creates or 0) of the batch's write replies
        self._acks: list[tuple[int, Any, int]] = []
        self.outage: Outage | None = None
        self.events: list[tuple] = []  # ("story", event, story_id), published after the commit
        self.flush: Callable[[], None] = lambda: None  # set by the loop
        self.seq: Callable[[], int] = lambda: 0  # last published seq; set by the loop
        self.scale_now = False  # set_pool asks the loop to resize this turn
        self.decided: tuple[int, int, str] | None = None  # set_pool's decision, for the loop to apply
        self.faults = Faults()  # what was dropped or failed, for the logs and the stats
        window = config.rate_window
        self.stories_in = RateWindow(window, now)
        self.stories_out = RateWindow(window, now)
        self.tasks_in = RateWindow(window, now)
        self.tasks_out = RateWindow(window, now)
        self.task_seconds = MeanWindow(window, now)
        self.history: History[Stats] = History(protocol.HISTORY_SECONDS_MAX)
        self.completed_stories = 0
        self.tasks_completed = 0
        self.next_story_id = 1
        self.next_task_id = 1
        self._handlers: dict[type, Callable[[Envelope, Any, float, float], None]] = {
            Ping: self._ping,
            CreateStory: self._create_story,
            DeleteStory: self._delete_story,
            GetStory: self._get_story,
            ListStories: self._list_stories,
            Snapshot: self._snapshot,
            SetPool: self._set_pool,
        }

    # -- start-up -----------------------------------------------------------------
    def restore(self, startup: Startup, wall: float) -> None:
        self.next_story_id = startup.next_story_id
        self.next_task_id = startup.next_task_id
        self.completed_stories = startup.completed_stories
        self.tasks_completed = startup.tasks_completed
        by_story: dict[int, list[tuple[int, int, int]]] = {}
        for task_id, story_id, estimate, attempts in startup.queued_tasks:
            by_story.setdefault(story_id, []).append((task_id, estimate, attempts))
        for story_id, tasks in by_story.items():
            total, _ = startup.open_stories[story_id]
            self.state.restore_story(story_id, total, tasks)
        # Task ids rise in creation order: that is the queue's order.
        self.state.queue = type(self.state.queue)(sorted(self.state.queue))
        # An open story with nothing left cannot arise from our own writes; repair it anyway.
        for story_id in startup.open_stories.keys() - by_story.keys():
            log.warning("story %d was open with no unfinished task: marking it done", story_id)
            self.batch.done_stories.append((wall, [story_id]))
            self.completed_stories += 1

    # -- requests -------------------------------------------------------------------
    def handle_request(self, envelope: Envelope, frame: bytes, now: float, wall: float) -> None:
        try:
            request = protocol.decode_request(frame)
        except protocol.ProtocolError as exc:
            self.reply_error(envelope, protocol.correlation_id(frame), INVALID, str(exc))
            return
        handler = self._handlers.get(type(request))
        if handler is None:  # an op the protocol knows and this server does not serve (yet)
            self.reply_error(envelope, request.id, INVALID,
                             f"op {request.__struct_config__.tag!r} is not served by this server")
            return
        try:
            handler(envelope, request, now, wall)
        except Unavailable as exc:  # a read the database did not answer
            self.reply_error(envelope, request.id, UNAVAILABLE, exc.cause)
        except Exception as exc:
            self.faults.internal(type(request).__name__, exc)
            self.reply_error(envelope, request.id, INTERNAL, f"{type(exc).__name__}: {exc}")

    def reply(self, envelope: Envelope, request_id: Any, result: Any) -> None:
        self.outbox.append((envelope, protocol.ok(request_id, result)))

    def reply_error(self, envelope: Envelope, request_id: Any, code: str, message: str) -> None:
        self.outbox.append((envelope, protocol.error(request_id, code, message)))

    def _acknowledge(self, envelope: Envelope, request_id: Any, result: Any,
                     created: int = 0) -> None:
        """The reply to a write: it goes out only with its commit (see _refused)."""
        self._acks.append((len(self.outbox), request_id, created))
        self.reply(envelope, request_id, result)

    def _refuse_writes(self, envelope: Envelope, request_id: Any) -> bool:
        """True (and the reply sent) while the database refuses writes."""
        if self.outage is None:
            return False
        self.reply_error(envelope, request_id, UNAVAILABLE, self._unavailable(self.outage.cause))
        return True

    @staticmethod
    def _unavailable(cause: str) -> str:
        return f"{cause}; writes are refused until it accepts them again"

    def _ping(self, envelope: Envelope, req: Ping, now: float, wall: float) -> None:
        self.reply(envelope, req.id, PingResult(__version__, protocol.PROTOCOL_VERSION))

    def _create_story(self, envelope: Envelope, req: CreateStory, now: float, wall: float) -> None:
        if self._refuse_writes(envelope, req.id):
            return
        tasks = req.tasks
        count = len(tasks)
        state = self.state
        if state.queued + count > self.config.queue_max:
            self.reply_error(envelope, req.id, BUSY,
                             f"{state.queued} tasks are queued (limit {self.config.queue_max}); "
                             "try again later")
            return
        story_id = self.next_story_id
        first = self.next_task_id
        self.next_story_id += 1
        self.next_task_id += count
        batch = self.batch
        batch.stories.append((story_id, req.name, req.description, "open", wall, count))
        estimates = [t.estimate_ms for t in tasks]
        batch.tasks.extend([
            (first + i, story_id, t.name, t.estimate_ms, "queued", 0, wall)
            for i, t in enumerate(tasks)
        ])
        ids = state.add_story(story_id, first, estimates)
        self.stories_in.add(now)
        self.tasks_in.add(now, count)
        self.events.append(("story", "created", story_id))
        self._acknowledge(envelope, req.id, CreateStoryResult(story_id, list(ids)), story_id)

    def _delete_story(self, envelope: Envelope, req: DeleteStory, now: float, wall: float) -> None:
        if self._refuse_writes(envelope, req.id):
            return
        story_id = req.story_id
        story = self.state.delete_story(story_id)
        if story is not None:
            self.tasks_completed -= story.total - story.remaining
        else:
            self.flush()  # the row may be written in this turn
            row = self.store.story(story_id)
            if row is None:
                self.reply_error(envelope, req.id, NOT_FOUND, f"no story with story_id {story_id}")
                return
            if row[3] == "done":
                self.completed_stories -= 1
                self.tasks_completed -= row[6]
        self.batch.deleted_stories.append(story_id)
        self.batch.id_floors = {"story_id": self.next_story_id - 1, "task_id": self.next_task_id - 1}
        self.events.append(("story", "deleted", story_id))
        self._acknowledge(envelope, req.id, Empty())

    def _get_story(self, envelope: Envelope, req: GetStory, now: float, wall: float) -> None:
        self.flush()
        row = self.store.story(req.story_id)
        if row is None:
            self.reply_error(envelope, req.id, NOT_FOUND, f"no story with story_id {req.story_id}")
            return
        live = self.state.live
        views = []
        done = 0
        for task_id, name, estimate, status, attempts, created, started, finished in \
                self.store.tasks_of(req.story_id):
            task = live.get(task_id)
            if status == "done":
                done += 1
            elif task is not None and task.running:
                status, started, attempts = "running", task.started_at, task.attempts
            views.append(TaskView(task_id, name, estimate, status, attempts, created, started,
                                  finished))
        view = self._story_view(row)
        view.tasks_done = done
        view.tasks = views
        self.reply(envelope, req.id, view)

    def _story_view(self, row: tuple) -> StoryView:
        story_id, name, description, status, created, completed, total = row
        if status == "done":
            done = total
        else:
            story = self.state.stories.get(story_id)
            done = total - story.remaining if story is not None else 0
        return StoryView(story_id, name, description, status, created, total, done, completed)

    def _list_stories(self, envelope: Envelope, req: ListStories, now: float, wall: float) -> None:
        self.flush()
        rows = self.store.stories(req.status, req.offset, req.limit)
        total = {
            None: len(self.state.stories) + self.completed_stories,
            "open": len(self.state.stories),
            "done": self.completed_stories,
        }[req.status]
        result = protocol.ListStoriesResult([self._story_view(r) for r in rows], total)
        self.reply(envelope, req.id, result)

    def _snapshot(self, envelope: Envelope, req: Snapshot, now: float, wall: float) -> None:
        # Publish this turn's events first, so the snapshot's seq covers everything it shows.
        self.flush()
        seq = self.seq()
        result = SnapshotResult(seq, self.stats(now, wall, seq), self.history.last(req.history_seconds))
        self.reply(envelope, req.id, result)

    def _set_pool(self, envelope: Envelope, req: SetPool, now: float, wall: float) -> None:
        low = self.pool.min_workers if req.min_workers is None else req.min_workers
        high = self.pool.max_workers if req.max_workers is None else req.max_workers
        if low > high:
            self.reply_error(envelope, req.id, INVALID,
                             f"min_workers {low} is above max_workers {high}")
            return
        self.pool.set_bounds(low, high)
        log.info("pool bounds set to min_workers=%d max_workers=%d", low, high)
        # Decide now so the reply shows the new target; the loop publishes and applies
        # this decision this turn instead of deciding again.
        self.decided = self.pool.decide(self.load(now))
        self.scale_now = True
        self.reply(envelope, req.id, PoolResult(low, high, self.pool.size, self.pool.target))

    # -- workers ----------------------------------------------------------------------
    def dispatch(self, now: float, wall: float, send: Callable[[bytes, bytes], None]) -> None:
        """Give a lease to every idle worker while tasks are queued; then, just in time, the
        next lease to busy workers about to finish (see pool.PREFETCH_S)."""
        state, pool = self.state, self.pool
        while pool.idle and state.queued > 0:
            if not self._lease_to(next(iter(pool.idle.values())), now, wall, send):
                return
        if state.queued > 0:
            for worker in pool.prefetch_candidates(now):
                if not self._lease_to(worker, now, wall, send):
                    return

    def _lease_to(self, worker: Worker, now: float, wall: float,
                  send: Callable[[bytes, bytes], None]) -> bool:
        config = self.config
        scale = config.time_scale
        tasks = self.state.take_lease(scale, config.lease_max_tasks, config.lease_max_s)
        if not tasks:
            return False
        work_s = sum(est for _, est in tasks) * scale / 1000.0
        lease = self.pool.give_lease(worker, [task_id for task_id, _ in tasks], work_s, now, wall)
        self.state.mark_started(tasks, lease.wall)
        send(worker.identity, protocol.encode(protocol.Work(tasks, scale)))
        return True

    def complete(self, worker: Worker | None, task_ids: list[int], now: float, wall: float) -> None:
        """A Done: record each task once; a story is done with its last task, in the same batch."""
        if worker is not None:
            lease = self.pool.finish_lease(worker, task_ids, now, wall)
            if lease is not None and lease.task_ids:
                self.task_seconds.add(now, max(0.0, now - lease.started), len(lease.task_ids))
            if worker.leases:  # a prefetched lease starts now: keep its tasks' times true
                nxt = worker.leases[0]
                live = self.state.live
                for task_id in nxt.task_ids:
                    task = live.get(task_id)
                    if task is not None:
                        task.started_at = nxt.wall
        state = self.state
        groups: dict[tuple[int, float], list[int]] = {}
        finished_stories = []
        count = 0
        for task_id in task_ids:
            task, story_done = state.complete(task_id)
            if task is None:
                continue  # unknown, already done, or its story was deleted
            count += 1
            key = (task.attempts, task.started_at)
            group = groups.get(key)
            if group is None:
                groups[key] = [task_id]
            else:
                group.append(task_id)
            if story_done:
                finished_stories.append(task.story_id)
        if not count:
            return
        batch = self.batch
        for (attempts, started), ids in groups.items():
            batch.completions.append((attempts, started or wall, wall, ids))
        self.tasks_completed += count
        self.tasks_out.add(now, count)
        if finished_stories:
            batch.done_stories.append((wall, finished_stories))
            self.completed_stories += len(finished_stories)
            self.stories_out.add(now, len(finished_stories))
            self.events.extend(("story", "completed", sid) for sid in finished_stories)

    def lost(self, worker: Worker, lease: list[int], why: str) -> None:
        back = self.state.requeue_front(lease)
        log.warning("worker %s %s; %d task(s) of its lease back at the front of the queue",
                    worker.describe(), why, back)

    # -- commit ---------------------------------------------------------------------------
    def commit(self, now: float, *, force: bool = False) -> bool:
        """Write the pending batch in one transaction; False while the database refuses it.

        During an outage the batch is tried only when the backoff allows (or `force`).
        Replies in `outbox` may go out either way; `events` only after a True.
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
        self._acks.clear()
        if outage is not None:
            log.warning("the database accepts writes again after %.1f s and %d tries; "
                        "%d held replies go out", outage.lasted(now), outage.failures,
                        len(self.held))
            self.outbox[:0] = self.held
            self.held = []
            self.outage = None
        return True

    def _refused(self, cause: str, now: float) -> None:
        if self.outage is None:
            log.error("the database refuses writes (%s): nothing of it is acknowledged, new "
                      "writes get `unavailable`, retrying", cause)
            self.outage = Outage(cause, now)
            self._answer_refused_batch(cause, now)
        else:
            self.outage.refused_again(cause, now)
            log.debug("the database still refuses writes (%s); try %d", cause,
                      self.outage.failures)

    def _answer_refused_batch(self, cause: str, now: float) -> None:
        """New stories: refused now and forgotten. Deletes: their replies wait for the retry."""
        outbox, message = self.outbox, self._unavailable(cause)
        created: list[int] = []
        waiting: set[int] = set()
        for index, request_id, story_id in self._acks:
            if story_id:
                outbox[index] = (outbox[index][0], protocol.error(request_id, UNAVAILABLE, message))
                created.append(story_id)
            else:
                waiting.add(index)
        self._acks = []
        self.held.extend(outbox[i] for i in sorted(waiting))
        self.outbox = [entry for i, entry in enumerate(outbox) if i not in waiting]
        if created:
            self._forget_created(created, now)

    def _forget_created(self, story_ids: list[int], now: float) -> None:
        gone = set(story_ids)
        batch = self.batch
        batch.stories = [row for row in batch.stories if row[0] not in gone]
        tasks = len(batch.tasks)
        batch.tasks = [row for row in batch.tasks if row[1] not in gone]
        # Should the refused commit have happened after all (a connection lost during
        # COMMIT), the retry removes them, as their clients were told.
        batch.deleted_stories.extend(story_ids)
        batch.id_floors = {"story_id": self.next_story_id - 1, "task_id": self.next_task_id - 1}
        for story_id in story_ids:
            self.state.delete_story(story_id)  # tasks already leased: their reports are ignored
        self.events = [e for e in self.events if not (e[1] == "created" and e[2] in gone)]
        self.stories_in.add(now, -len(story_ids))
        self.tasks_in.add(now, -(tasks - len(batch.tasks)))

    # -- figures --------------------------------------------------------------------------
    def load(self, now: float) -> Load:
        pool = self.pool
        return Load(
            now=now,
            queued_tasks=self.state.queued,
            queued_work_s=self.state.queued_ms * self.config.time_scale / 1000.0,
            busy=pool.busy,
            idle=len(pool.idle),
            starting=pool.count("starting"),
            arrival_rate=self.tasks_in.rate(now),
            completion_rate=self.tasks_out.rate(now),
            mean_task_s=self.task_seconds.mean(now),
        )

    def stats(self, now: float, wall: float, seq: int) -> Stats:
        state, pool = self.state, self.pool
        return Stats(
            seq=seq,
            ts=wall,
            stories_produced_per_s=self.stories_in.rate(now),
            stories_completed_per_s=self.stories_out.rate(now),
            open_stories=len(state.stories),
            completed_stories=self.completed_stories,
            tasks_produced_per_s=self.tasks_in.rate(now),
            tasks_completed_per_s=self.tasks_out.rate(now),
            tasks_queued=state.queued,
            tasks_running=state.running,
            tasks_completed=self.tasks_completed,
            queued_work_s=state.queued_ms * self.config.time_scale / 1000.0,
            workers=pool.connected,
            workers_busy=pool.busy,
            workers_target=pool.target,
            min_workers=pool.min_workers,
            max_workers=pool.max_workers,
            rate_window_s=self.config.rate_window,
            database="ok" if self.outage is None else "unavailable",
            database_error=None if self.outage is None else self.outage.cause,
            internal_errors=self.faults.internal_errors,
            dropped_messages=self.faults.dropped_messages,
        )
