"""What the server does with requests and worker reports; no sockets here.

Handlers change the in-memory state at once and add their writes to the
turn's `Batch`. What they want done outside (replies, story events, a pool
resize) are effects that wait here until the loop takes them
(`take_replies`, `take_events`, `take_resize`) and turns them into I/O: the
loop commits the batch first (`commit()`), so nothing is acknowledged or
announced before it is durable. A request that must read the database first
has the loop flush the turn so far (the `flush` it was built with), which
also keeps each client's replies in order.

A database that refuses a commit starts an `Outage`. The refused batch's new
stories are taken back (their clients get `unavailable` at once: a definite
answer), the rest of it stays pending with the delete replies that wait on it
(`held`) and is tried again, with what was added since (workers' completions),
as the backoff allows. Meanwhile writes are refused as `unavailable`; reads
are answered as far as the database and memory allow.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

from storypulse import __version__, protocol
from storypulse.protocol import (
    BUSY,
    Completion,
    INTERNAL,
    INVALID,
    NOT_FOUND,
    UNAVAILABLE,
    CreateStory,
    CreateStoryResult,
    DeleteStory,
    Empty,
    FlowResult,
    GetStory,
    ListStories,
    Ping,
    PingResult,
    PoolResult,
    SetFlow,
    SetPool,
    Snapshot,
    SnapshotResult,
    Stats,
    StoryView,
    TaskView,
)

from .config import ServerConfig
from .flow import FlowWindow
from .outage import Outage
from .faults import Faults
from .pool import Load, Pool, Worker
from .state import OpenStory, WorkState
from .stats import History, MeanWindow, RateWindow
from .store import Batch, Startup, Store, Unavailable

log = logging.getLogger(__name__)

Envelope = list[bytes]  # the routing frames a reply goes back with
Reply = tuple[Envelope, bytes]
# (event, story_id[, lead_time_s, cycle_time_s]) of a story event, published after the commit
StoryNote = tuple


@dataclass(frozen=True)
class Resize:
    """set_pool asks the loop to resize the pool this turn: to `change` (old, new, reason),
    decided so that the reply could show the new target; None: the target stays, decide again."""

    change: tuple[int, int, str] | None


class Service:
    def __init__(self, config: ServerConfig, store: Store, pool: Pool, now: float, *,
                 flush: Callable[[], None], published_seq: Callable[[], int]):
        """`flush`: the loop commits the turn so far and sends what waited on it (a handler that
        reads the database calls it first). `published_seq`: the seq of the last event published."""
        self.config = config
        self.store = store
        self.pool = pool
        self.flush = flush
        self._published_seq = published_seq
        self.state = WorkState(config.queue_window)
        self.batch = Batch()
        self._replies: list[Reply] = []
        self.held: list[Reply] = []  # replies that wait on a refused batch
        # (reply index, request id, id of the story it creates or 0) of the batch's write replies
        self._acks: list[tuple[int, Any, int]] = []
        self.outage: Outage | None = None
        self._events: list[StoryNote] = []
        self._resize: Resize | None = None
        self.faults = Faults()  # what was dropped or failed, for the logs and the stats
        window = config.rate_window
        self.stories_in = RateWindow(window, now)
        self.stories_out = RateWindow(window, now)
        self.tasks_in = RateWindow(window, now)
        self.tasks_out = RateWindow(window, now)
        self.task_seconds = MeanWindow(window, now)
        self.history: History[Stats] = History(protocol.HISTORY_SECONDS_MAX)
        self.flow = FlowWindow(config.flow_window)
        self.state.set_wip_limit(config.wip_limit)
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
            SetFlow: self._set_flow,
        }

    # -- start-up -----------------------------------------------------------------
    def restore(self, startup: Startup, wall: float, now: float = 0.0) -> None:
        """Memory holds the stories in progress (they go first) and a window of the backlog;
        the rest of the backlog is only counted, from the aggregates the store read."""
        self.next_story_id = startup.next_story_id
        self.next_task_id = startup.next_task_id
        self.completed_stories = startup.completed_stories
        self.tasks_completed = startup.tasks_completed
        by_story: dict[int, list[tuple[int, int, int]]] = {}
        for task_id, story_id, estimate, attempts, *_ in startup.queued_tasks:
            by_story.setdefault(story_id, []).append((task_id, estimate, attempts))
        state = self.state
        for story_id, tasks in by_story.items():
            total, created, started, _ = startup.open_stories[story_id]
            # A story started before the restart stays in progress (its started_at was
            # stored), even if the tasks that ran then run again now.
            state.restore_story(story_id, total, tasks, created, started)
        # Started stories' tasks first, then by id (creation order).
        state.order_queue()
        in_memory_ms = sum(row[2] for row in startup.queued_tasks)
        state.set_backlog(startup.open_count - len(startup.open_stories),
                          startup.queued_count - len(startup.queued_tasks),
                          startup.queued_ms - in_memory_ms, startup.backlog_after)
        for story_id, created, started, completed, _ in startup.recent_done:
            if started is None:
                continue  # done by an earlier version, which kept no started_at: no cycle time
            # back on the monotonic clock the window expires by
            self.flow.add(now - (wall - completed), story_id, completed, completed - created,
                          completed - started)
        # An open story with nothing left cannot arise from our own writes; repair it anyway
        # (a waiting one is found when the backlog's end is read: see refill).
        empty = [story_id for story_id in startup.open_stories.keys() - by_story.keys()]
        if empty:
            self._repair_empty(empty, wall)
        self.refill(wall)

    def _repair_empty(self, story_ids: list[int], wall: float) -> None:
        for story_id in story_ids:
            log.warning("story %d was open with no unfinished task: marking it done", story_id)
        self.batch.done_stories.append((wall, list(story_ids)))
        self.completed_stories += len(story_ids)

    def refill(self, wall: float) -> None:
        """Read the next stories of the backlog into memory if it runs low. Only with no write
        pending (after a commit, or at start-up): a window read before its batch commits would
        see neither that batch's new stories nor its completions and deletes."""
        state = self.state
        if self.batch or self.outage is not None:
            return
        while state.wants_refill():
            try:
                rows, complete = self.store.window(state.cursor, state.window)
            except Unavailable as exc:  # the next commit or refill tries again
                log.warning("could not read the backlog: %s", exc.cause)
                return
            _, missing = state.refill(rows, complete)
            if missing:
                # Open stories without a queued task are counted but read by no window.
                empty = [sid for sid in self.store.open_story_ids() if sid not in state.stories]
                self._repair_empty(empty, wall)
            if complete or not rows:
                return

    # -- effects, for the loop to carry out ------------------------------------------------
    def take_replies(self) -> list[Reply]:
        """The replies that may go out now (after a commit, or not waiting on one)."""
        replies, self._replies = self._replies, []
        return replies

    def take_events(self) -> list[StoryNote]:
        """The story events of the writes; take them only after `commit()` returned True."""
        events, self._events = self._events, []
        return events

    def take_resize(self) -> Resize | None:
        resize, self._resize = self._resize, None
        return resize

    def stop_handing_out(self) -> None:
        """Shutting down: nothing more is handed out or read in (it all stays queued on disk)."""
        self.state.clear_queue()

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
        self._replies.append((envelope, protocol.ok(request_id, result)))

    def reply_error(self, envelope: Envelope, request_id: Any, code: str, message: str) -> None:
        self._replies.append((envelope, protocol.error(request_id, code, message)))

    def _acknowledge(self, envelope: Envelope, request_id: Any, result: Any,
                     created: int = 0) -> None:
        """The reply to a write: it goes out only with its commit (see _refused)."""
        self._acks.append((len(self._replies), request_id, created))
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
        ids = state.add_story(story_id, first, estimates, wall)
        self.stories_in.add(now)
        self.tasks_in.add(now, count)
        self._events.append(("created", story_id))
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
                self.flow.discard(story_id)
            elif story_id not in self.state.stories:  # open, in the backlog: only counted
                count, work = (sum(c) for c in list(zip(*self.store.queued_of(story_id)))[1:] or ((), ()))
                self.state.forget_backlog_story(count, work)
                self.tasks_completed -= row[6] - count
            else:  # read into memory by the refill of the flush: as above
                story = self.state.delete_story(story_id)
                self.tasks_completed -= story.total - story.remaining
        self.batch.deleted_stories.append(story_id)
        self.batch.id_floors = {"story_id": self.next_story_id - 1, "task_id": self.next_task_id - 1}
        self._events.append(("deleted", story_id))
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
        for task_id, name, estimate, status, attempts, created, started, finished, *_ in \
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
        story_id, name, description, status, created, completed, total, started, *_ = row
        lead = cycle = None
        if status == "done":
            done = total
            lead = completed - created
            cycle = None if started is None else completed - started
        else:
            story = self.state.stories.get(story_id)
            done = total - story.remaining if story is not None else 0
            if story is not None:
                started = story.started_at  # memory is ahead of the row for a prefetched lease
        return StoryView(story_id, name, description, status, created, total, done, completed,
                         started_at=started, lead_time_s=lead, cycle_time_s=cycle)

    def _list_stories(self, envelope: Envelope, req: ListStories, now: float, wall: float) -> None:
        self.flush()
        rows = self.store.stories(req.status, req.offset, req.limit)
        total = {
            None: self.state.open_stories + self.completed_stories,
            "open": self.state.open_stories,
            "done": self.completed_stories,
        }[req.status]
        result = protocol.ListStoriesResult([self._story_view(r) for r in rows], total)
        self.reply(envelope, req.id, result)

    def _snapshot(self, envelope: Envelope, req: Snapshot, now: float, wall: float) -> None:
        # Publish this turn's events first, so the snapshot's seq covers everything it shows.
        self.flush()
        seq = self._published_seq()
        completions = [Completion(c.story_id, c.completed_at, c.lead_s, c.cycle_s)
                       for c in self.flow.recent(now, protocol.COMPLETIONS_MAX)]
        result = SnapshotResult(seq, self.stats(now, wall, seq),
                                self.history.last(req.history_seconds), completions)
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
        self._resize = Resize(self.pool.decide(self.load(now)))
        self.reply(envelope, req.id, PoolResult(low, high, self.pool.size, self.pool.target))

    def _set_flow(self, envelope: Envelope, req: SetFlow, now: float, wall: float) -> None:
        # Held in memory: the server's --wip-limit and --flow-window apply again after a restart.
        if req.wip_limit is not None:
            self.state.set_wip_limit(req.wip_limit)
        if req.flow_window_s is not None:
            self.flow.set_window(req.flow_window_s, now)
        log.info("flow set to wip_limit=%d flow_window_s=%g", self.state.wip_limit, self.flow.window)
        self.reply(envelope, req.id, FlowResult(self.state.wip_limit, self.flow.window))

    # -- workers ----------------------------------------------------------------------
    def dispatch(self, now: float, wall: float, send: Callable[[bytes, bytes], None]) -> None:
        """Give a lease to every idle worker while tasks are queued; then, just in time, the
        next lease to busy workers about to finish (see pool.PREFETCH_S)."""
        state, pool = self.state, self.pool
        while pool.idle and state.dispatchable:
            if not self._lease_to(next(iter(pool.idle.values())), now, wall, send):
                return
        if state.dispatchable:
            for worker in pool.prefetch_candidates(now):
                if not self._lease_to(worker, now, wall, send):
                    return

    def _lease_to(self, worker: Worker, now: float, wall: float,
                  send: Callable[[bytes, bytes], None]) -> bool:
        config, state = self.config, self.state
        scale = config.time_scale
        starts = wall + (self.pool.next_start(worker, now) - now)  # later if prefetched
        tasks = state.take_lease(scale, config.lease_max_tasks, config.lease_max_s, starts)
        if not tasks:
            return False
        if state.started:
            self._record_started(starts, state.started)
            state.started = []
        work_s = sum(est for _, est in tasks) * scale / 1000.0
        self.pool.give_lease(worker, [task_id for task_id, _ in tasks], work_s, now, wall)
        send(worker.identity, protocol.encode(protocol.Work(tasks, scale)))
        return True

    def _record_started(self, started_at: float, story_ids: list[int]) -> None:
        started = self.batch.started_stories
        if started and started[-1][0] == started_at:  # leases of one turn share the time
            started[-1][1].extend(story_ids)
        else:
            started.append((started_at, story_ids))

    def complete(self, worker: Worker | None, task_ids: list[int], now: float, wall: float) -> None:
        """A Done: record each task once; a story is done with its last task, in the same batch."""
        if worker is not None:
            lease = self.pool.finish_lease(worker, task_ids, now, wall)
            if lease is not None and lease.task_ids:
                self.task_seconds.add(now, max(0.0, now - lease.started), len(lease.task_ids))
            if worker.leases:  # a prefetched lease starts now: keep its tasks' times true
                self._started_now(worker.leases[0].task_ids, worker.leases[0].wall)
        state = self.state
        groups: dict[tuple[int, float], list[int]] = {}
        finished_stories = []
        count = 0
        for task_id in task_ids:
            task, finished = state.complete(task_id)
            if task is None:
                continue  # unknown, already done, or its story was deleted
            count += 1
            key = (task.attempts, task.started_at)
            group = groups.get(key)
            if group is None:
                groups[key] = [task_id]
            else:
                group.append(task_id)
            if finished is not None:
                finished_stories.append(task.story_id)
                self._finished(task.story_id, finished, now, wall)
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

    def _started_now(self, task_ids: list[int], wall: float) -> None:
        """A prefetched lease began at `wall`: its tasks, and a story it started, began then."""
        live, stories = self.state.live, self.state.stories
        for task_id in task_ids:
            task = live.get(task_id)
            if task is None:
                continue
            story = stories.get(task.story_id)
            if story is not None and story.started_at == task.started_at != wall:
                story.started_at = wall  # this lease started the story
                self._record_started(wall, [task.story_id])
            task.started_at = wall

    def _finished(self, story_id: int, story: OpenStory, now: float, wall: float) -> None:
        started = story.started_at
        if started is None:  # done by a worker of an earlier run before it started in this one
            started = wall
            self._record_started(wall, [story_id])
        lead, cycle = wall - story.created_at, wall - started
        self.flow.add(now, story_id, wall, lead, cycle)
        self._events.append(("completed", story_id, lead, cycle))

    def lost(self, worker: Worker, lease: list[int], why: str) -> None:
        back = self.state.requeue_front(lease)
        log.warning("worker %s %s; %d task(s) of its lease back at the front of the queue",
                    worker.describe(), why, back)

    # -- commit ---------------------------------------------------------------------------
    def commit(self, now: float, *, force: bool = False) -> bool:
        """Write the pending batch in one transaction; False while the database refuses it.

        During an outage the batch is tried only when the backoff allows (or `force`).
        The replies taken may go out either way; the events only after a True.
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
            self._replies[:0] = self.held
            self.held = []
            self.outage = None
        if self.state.wants_refill():
            self.refill(time.time())
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
        replies, message = self._replies, self._unavailable(cause)
        created: list[int] = []
        waiting: set[int] = set()
        for index, request_id, story_id in self._acks:
            if story_id:
                replies[index] = (replies[index][0], protocol.error(request_id, UNAVAILABLE, message))
                created.append(story_id)
            else:
                waiting.add(index)
        self._acks = []
        self.held.extend(replies[i] for i in sorted(waiting))
        self._replies = [entry for i, entry in enumerate(replies) if i not in waiting]
        if created:
            self._forget_created(created, now)

    def _forget_created(self, story_ids: list[int], now: float) -> None:
        gone = set(story_ids)
        batch = self.batch
        batch.stories = [row for row in batch.stories if row[0] not in gone]
        tasks = len(batch.tasks)
        refused: dict[int, list[int]] = {}  # story id -> [tasks, work] of the refused rows
        kept = []
        for row in batch.tasks:
            if row[1] in gone:
                counts = refused.setdefault(row[1], [0, 0])
                counts[0] += 1
                counts[1] += row[3]
            else:
                kept.append(row)
        batch.tasks = kept
        # Should the refused commit have happened after all (a connection lost during
        # COMMIT), the retry removes them, as their clients were told.
        batch.deleted_stories.extend(story_ids)
        batch.id_floors = {"story_id": self.next_story_id - 1, "task_id": self.next_task_id - 1}
        for story_id in story_ids:
            # tasks already leased: their reports are ignored
            if self.state.delete_story(story_id) is None:  # it went to the backlog
                self.state.forget_backlog_story(*refused.get(story_id, (0, 0)))
        self._events = [e for e in self._events if not (e[0] == "created" and e[1] in gone)]
        self.stories_in.add(now, -len(story_ids))
        self.tasks_in.add(now, -(tasks - len(batch.tasks)))

    # -- figures --------------------------------------------------------------------------
    def load(self, now: float) -> Load:
        pool, state = self.pool, self.state
        # Work the WIP limit holds back needs no more workers: they would only stand idle.
        held = state.held()
        return Load(
            now=now,
            queued_tasks=0 if held else state.queued,
            queued_work_s=0.0 if held else state.queued_ms * self.config.time_scale / 1000.0,
            busy=pool.busy,
            idle=len(pool.idle),
            starting=pool.count("starting"),
            arrival_rate=self.tasks_in.rate(now),
            completion_rate=self.tasks_out.rate(now),
            mean_task_s=self.task_seconds.mean(now),
        )

    def stats(self, now: float, wall: float, seq: int) -> Stats:
        state, pool = self.state, self.pool
        flow = self.flow.figures(now)
        return Stats(
            seq=seq,
            ts=wall,
            stories_produced_per_s=self.stories_in.rate(now),
            stories_completed_per_s=self.stories_out.rate(now),
            open_stories=state.open_stories,
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
            stories_in_progress=state.in_progress,
            stories_completed_in_window=flow.count,
            lead_time_mean_s=flow.lead_mean_s,
            lead_time_p50_s=flow.lead_p50_s,
            lead_time_p85_s=flow.lead_p85_s,
            lead_time_p95_s=flow.lead_p95_s,
            cycle_time_p50_s=flow.cycle_p50_s,
            cycle_time_p85_s=flow.cycle_p85_s,
            cycle_time_p95_s=flow.cycle_p95_s,
            flow_window_s=self.flow.window,
            wip_limit=state.wip_limit,
        )
