"""What the server does with requests, worker reports and timers: a state machine, no I/O.

Built alone from the settings, a store and the pools' bookkeeping
(`Service(config, store, pools, now)`: a pool per stage of the workflow,
pools.py); it reads no clock (every entry point
takes `now`, monotonic, and `wall`) and calls nothing back. What must happen
outside comes out as effects (effects.py) that the loop carries out: the loop
alone touches sockets and processes. The store is the one thing it calls, to
write a turn's batch (commit.py) and to read what memory does not hold.

  restore(now, wall)                    start-up: memory from the store
  handle_request(envelope, frame, ...)  a client's request (ops.py serves each op)
  worker_message(identity, frame, ...)  a worker's Ready, Done or heartbeat
  dispatch(now, wall)                   blocks that ended go back to their queue; leases to
                                        idle workers, just in time to busy ones, per stage
  lost(worker, leases, why, wall)       a worker died or went silent
  commit(now, wall)                     the turn's writes in one transaction, then
                                        the replies and events that waited on them
  resume(now, wall)                     right after a commit: the requests that waited
  pool_changed, publish_stats           from the loop's scaler and stats timer
  next_due(now, wall)                   when dispatch has something to do (a block ends, a
                                        worker is idle or about to be), for the loop's poll

Stages (docs/flow.md): the scheduling rules are the work state's (state.py); the
service translates — stage names to indexes on the way in, and what a lease or
a completion changed (stories started, stages entered, blocks started, work
time) into the turn's batch.

A request that must read committed data (get_story, list_stories, snapshot, a
delete of a story not in memory: see ops.OPS) while the turn's writes wait for
their commit is deferred, with every request after it so that each client's
replies stay in order. `deferred` tells the loop, which commits and then calls
`resume`: no handler ever commits from inside.
"""

from __future__ import annotations

import logging
from typing import Any

from storypulse import protocol
from storypulse.protocol import INTERNAL, INVALID, UNAVAILABLE, Stats

from .autoscale import Load
from .commit import GroupCommit
from .config import ServerConfig
from .effects import Effects, Envelope, Resize
from .faults import Faults
from .figures import Figures
from .metrics import Meters
from .forecasting import Forecasts
from .notes import Notes
from .ops import OPS, Invalid, Op
from .outage import Outage
from .pool import Lease, Pool, Worker
from .pools import Pools
from .state import OpenStory, WorkState
from .store import Store, Unavailable

log = logging.getLogger(__name__)

STOP = protocol.encode(protocol.Stop())


class Service:
    def __init__(self, config: ServerConfig, store: Store, pools: Pools | Pool, now: float):
        self.config = config
        self.store = store
        # The workers' bookkeeping, a pool per stage: the loop starts and ends their processes.
        self.pools = pools if isinstance(pools, Pools) else Pools([pools])
        workflow = config.workflow
        assert len(self.pools) == len(workflow), "a pool per stage"
        self.stage_names = workflow.names
        self.stage_index = {name: i for i, name in enumerate(workflow.names)}
        self.staged = len(workflow) > 1  # tasks are stored with their stage's name
        self.state = WorkState(config.queue_window, workflow.names)
        self.state.set_wip_limit(config.wip_limit)
        for i, stage in enumerate(workflow.stages):
            self.state.set_stage_wip_limit(i, stage.wip_limit)
        self.group = GroupCommit(store)  # the turn's writes and what waits on them
        self.figures = Figures(config, now, len(workflow))
        self.meters = Meters(workflow.names)  # daemon: counts since start and histograms, for /metrics
        self.forecasts = Forecasts(config.forecast_history, now)  # forecasting.py, forecast_runner.py
        self.effects = Effects()
        self.notes = Notes(self.effects)  # the `note` events, and the recent ones for snapshots
        self.ops: dict[type, Op] = dict(OPS)
        self.deferred: list[tuple[Envelope, Any]] = []  # requests waiting for a commit
        self.next_story_id = 1
        self.next_task_id = 1

    @property
    def outage(self) -> Outage | None:
        """Why and since when the database refuses writes; None while it accepts them."""
        return self.group.outage

    @property
    def faults(self) -> Faults:
        return self.figures.faults

    def id_floors(self) -> dict[str, int]:
        """The ids handed out so far: deleting their rows must not let the database reuse them."""
        return {"story_id": self.next_story_id - 1, "task_id": self.next_task_id - 1}

    # -- start-up -----------------------------------------------------------------
    def restore(self, now: float, wall: float) -> None:
        """Memory holds the stories in progress (they go first) and a window of the backlog;
        the rest of the backlog is only counted, from the aggregates the store read. A
        database whose unfinished work is in stages the workflow lacks raises
        store.WorkflowMismatch (a start-up error naming them)."""
        self.store.use_workflow(self.stage_names)
        startup = self.store.load(done_since=wall - self.config.flow_window)
        self.next_story_id = startup.next_story_id
        self.next_task_id = startup.next_task_id
        figures = self.figures
        figures.completed_stories = startup.completed_stories
        figures.tasks_completed = startup.tasks_completed
        # (task_id, estimate, attempts, stage index, blocked_ms, blocked_until) by story
        by_story: dict[int, list[tuple]] = {}
        in_memory = [[0, 0] for _ in self.stage_names]  # tasks and estimates, per stage
        for task_id, story_id, estimate, attempts, index, block, until in startup.queued_tasks:
            by_story.setdefault(story_id, []).append((task_id, estimate, attempts, index, block,
                                                      until))
            in_memory[index][0] += 1
            in_memory[index][1] += estimate
        state = self.state
        for story_id, tasks in by_story.items():
            total, created, started, stage = startup.open_stories[story_id]
            if stage is not None and stage > min(task[3] for task in tasks):
                stage = None  # the stages were reordered: it counts where its work is now
            # A story started before the restart stays in progress (its started_at was
            # stored), even if the tasks that ran then run again now; a block that has not
            # ended by `wall` goes on.
            state.restore_story(story_id, total, tasks, created, started, stage, wall)
        # Started stories' tasks first, then by id (creation order).
        state.order_queue()
        backlog_by_stage = [(n - mem_n, ms - mem_ms) for (n, ms), (mem_n, mem_ms)
                            in zip(startup.queued_by_stage, in_memory)]
        state.set_backlog(startup.open_count - len(startup.open_stories),
                          startup.queued_count - len(startup.queued_tasks),
                          startup.queued_ms - sum(ms for _, ms in in_memory),
                          startup.backlog_after, backlog_by_stage)
        for story_id, created, started, completed, work in startup.recent_done:
            if started is None:
                continue  # done by an earlier version, which kept no started_at: no cycle time
            # back on the monotonic clock the window expires by
            figures.flow.add(now - (wall - completed), story_id, completed, completed - created,
                             completed - started, work)
        # The window's count runs back as far as the database shows a server at work: the
        # oldest story read, open or completed in the window (every completion since is stored).
        created = [row[1] for row in startup.recent_done if row[2] is not None] + \
                  [story[1] for story in startup.open_stories.values()]
        if created:
            figures.flow.counted_from(now - (wall - min(created)))
        self.forecasts.restore(self.store.done_per_interval(
            wall - self.config.forecast_history, self.forecasts.throughput.interval))
        # An open story with nothing left cannot arise from our own writes; repair it anyway
        # (a waiting one is found when the backlog's end is read: see refill).
        empty = [story_id for story_id in startup.open_stories.keys() - by_story.keys()]
        if empty:
            self._repair_empty(empty, wall)
        self.refill(wall)
        restored = startup.next_story_id > 1  # the database has held stories
        self.notes.started(wall, list(self.stage_names), self.config.scenario_name,
                           (state.open_stories, figures.completed_stories) if restored else None)

    def _repair_empty(self, story_ids: list[int], wall: float) -> None:
        for story_id in story_ids:
            log.warning("story %d was open with no unfinished task: marking it done", story_id)
        self.group.batch.done_stories.append((wall, list(story_ids)))
        self.figures.completed_stories += len(story_ids)

    def refill(self, wall: float) -> None:
        """Read the next stories of the backlog into memory if it runs low. Only with no write
        pending (after a commit, or at start-up): a window read before its batch commits would
        see neither that batch's new stories nor its completions and deletes."""
        state = self.state
        if self.group.batch or self.group.outage is not None:
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

    def stop_handing_out(self) -> None:
        """Shutting down: nothing more is handed out or read in (it all stays queued on disk)."""
        self.state.clear_queue()

    # -- requests -------------------------------------------------------------------
    def handle_request(self, envelope: Envelope, frame: bytes, now: float, wall: float) -> None:
        try:
            request: Any = protocol.decode_request(frame)
        except protocol.ProtocolError as exc:
            request = Invalid(protocol.correlation_id(frame), str(exc))
        op = self.ops.get(type(request))
        if self.deferred or (op is not None and op.reads_committed is not None
                             and self._must_wait(op, request)):
            self.deferred.append((envelope, request))
            return
        self._serve(envelope, request, op, now, wall)

    def _must_wait(self, op: Op, request: Any) -> bool:
        """The request reads committed data while writes wait for their commit."""
        return bool(self.group.batch) and op.reads_committed(self, request)

    def resume(self, now: float, wall: float) -> None:
        """Right after a commit: serve the deferred requests in order, until one must wait for
        the next commit (the writes of those before it come first)."""
        waiting, self.deferred = self.deferred, []
        ops = self.ops
        for i, (envelope, request) in enumerate(waiting):
            op = ops.get(type(request))
            if i and op is not None and op.reads_committed is not None \
                    and self._must_wait(op, request):
                self.deferred = waiting[i:]
                return
            self._serve(envelope, request, op, now, wall)

    def _serve(self, envelope: Envelope, request: Any, op: Op | None, now: float,
               wall: float) -> None:
        if op is None:  # an op the protocol knows and this server does not serve (yet)
            self.reply_error(envelope, request.id, INVALID,
                             f"op {request.__struct_config__.tag!r} is not served by this server")
            return
        if op.writes and self.group.outage is not None:
            self.group.refuse_write(envelope, request.id)
            return
        try:
            op.handler(self, envelope, request, now, wall)
        except Unavailable as exc:  # a read the database did not answer
            self.reply_error(envelope, request.id, UNAVAILABLE, exc.cause)
        except Exception as exc:
            self.faults.internal(type(request).__name__, exc, now=now)
            self.reply_error(envelope, request.id, INTERNAL, f"{type(exc).__name__}: {exc}")

    def reply_error(self, envelope: Envelope, request_id: Any, code: str, message: str) -> None:
        """An error reply, in its place among the turn's replies."""
        self.group.reply_error(envelope, request_id, code, message)

    # -- workers ----------------------------------------------------------------------
    def worker_message(self, identity: bytes, frame: bytes, now: float, wall: float) -> None:
        pool = self.pools
        try:
            message = protocol.decode_worker_message(frame)
        except protocol.ProtocolError as exc:
            self.faults.dropped("worker-message", "dropped a bad worker message: %s", exc,
                                now=now)
            return
        if isinstance(message, protocol.Done):
            worker = pool.on_heard(identity, now)
            self.complete(worker, message.task_ids, now, wall)
            if worker is None:
                self.effects.send_worker(identity, STOP)
        elif isinstance(message, protocol.Ready):
            pool.on_ready(identity, message, now, self.effects.send_worker)
        elif pool.on_heard(identity, now) is None:
            # A worker we gave up on (or from a previous server run): it must go.
            self.effects.send_worker(identity, STOP)

    def dispatch(self, now: float, wall: float) -> None:
        """Put the tasks whose block ended back at the front of their stage's queue; then, per
        stage, give a lease to every idle worker of its pool while its tasks may start, and
        just in time the next lease to its busy workers about to finish (pool.PREFETCH_S)."""
        state = self.state
        state.release_blocks(wall)  # nothing to do (a look at an empty heap) without blocks
        # The last stage first: a story that starts its next stage frees its place in the one
        # before, which may then pull another in the same turn (a pull system).
        for index in range(len(self.pools.stages) - 1, -1, -1):
            pool = self.pools.stages[index]
            while pool.idle and state.dispatchable_in(index):
                if not self._lease_to(next(iter(pool.idle.values())), index, now, wall):
                    break
            if state.dispatchable_in(index):
                for worker in pool.prefetch_candidates(now):
                    if not self._lease_to(worker, index, now, wall):
                        break

    def _lease_to(self, worker: Worker, stage: int, now: float, wall: float) -> bool:
        config, state = self.config, self.state
        scale = config.time_scale
        starts = wall + (self.pools.next_start(worker, now) - now)  # later if prefetched
        tasks = state.take_lease(scale, config.lease_max_tasks, config.lease_max_s, starts, stage)
        if state.started:
            self._record_started(starts, state.started)
            state.started = []
        if state.entered or state.blocks_started:  # a lease with nothing in it may block tasks
            self._record_stages(state)
        if not tasks:
            return False
        self.meters.leased(state, tasks, starts, self.stage_names[stage])  # daemon: task queue wait
        work_s = sum(est for _, est in tasks) * scale / 1000.0
        lease = self.pools.give_lease(worker, [task_id for task_id, _ in tasks], work_s, now, wall)
        lease.stories = state.leased
        self.effects.to_workers.append((worker.identity, protocol.encode(protocol.Work(tasks, scale))))
        return True

    def _record_stages(self, state: WorkState) -> None:
        """The stages stories now count in, and the ends of the blocks that started: to disk."""
        batch = self.group.batch
        if state.entered:
            names = self.stage_names
            by_stage: dict[int, list[int]] = {}
            for story_id, index in state.entered:
                by_stage.setdefault(index, []).append(story_id)
            batch.stage_entries += [(names[index], ids) for index, ids in by_stage.items()]
            state.entered = []
        if state.blocks_started:
            batch.blocks += state.blocks_started
            state.blocks_started = []

    def _record_started(self, started_at: float, story_ids: list[int]) -> None:
        started = self.group.batch.started_stories
        if started and started[-1][0] == started_at:  # leases of one turn share the time
            started[-1][1].extend(story_ids)
        else:
            started.append((started_at, story_ids))

    def complete(self, worker: Worker | None, task_ids: list[int], now: float, wall: float) -> None:
        """A Done: record each task once; a story is done with its last task, in the same batch."""
        figures = self.figures
        state = self.state
        if worker is not None:
            lease = self.pools.finish_lease(worker, task_ids, now, wall)
            if lease is not None:
                if lease.stories:
                    state.lease_ended(lease.stories, wall)
                if lease.task_ids:
                    figures.task_seconds.add(now, max(0.0, now - lease.started), len(lease.task_ids))
                    if figures.stages:
                        figures.stages[worker.stage].task_seconds.add(
                            now, max(0.0, now - lease.started), len(lease.task_ids))
            if worker.leases:  # a prefetched lease starts now: keep its tasks' times true
                self._started_now(worker.leases[0].task_ids, worker.leases[0].wall)
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
        batch = self.group.batch
        for (attempts, started), ids in groups.items():
            batch.completions.append((attempts, started or wall, wall, ids))
        figures.tasks_completed += count
        self.meters.tasks_completed += count  # daemon
        figures.tasks_out.add(now, count)
        if figures.stages and worker is not None:  # a lease is of its worker's stage
            figures.stages[worker.stage].tasks_out.add(now, count)
        if finished_stories:
            batch.done_stories.append((wall, finished_stories))
            figures.completed_stories += len(finished_stories)
            figures.stories_out.add(now, len(finished_stories))
            self.forecasts.completed(now, len(finished_stories))

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
        # Work time: since this server started (a story in progress across a restart counts
        # only the work after it); stored with several stages, for flow efficiency after one.
        self.figures.flow.add(now, story_id, wall, lead, cycle, story.work_s)
        if self.staged:
            self.group.batch.work_times.append((story_id, story.work_s))
        self.group.events.append(("completed", story_id, lead, cycle))

    def lost(self, worker: Worker, leases: list[Lease], why: str, wall: float) -> None:
        """A worker died, hung or went away (the loop removed it): its leases go back to the
        front of their stage's queue."""
        state = self.state
        for lease in leases:
            if lease.stories:
                state.lease_ended(lease.stories, wall)
        back = state.requeue_front([task_id for lease in leases for task_id in lease.task_ids])
        log.warning("worker %s %s; %d task(s) of its lease back at the front of the queue",
                    worker.describe(), why, back)

    # -- commit ---------------------------------------------------------------------------
    def commit(self, now: float, wall: float, *, force: bool = False) -> bool:
        """Write the turn's batch in one transaction (see commit.py); False while the database
        refuses it. The replies go to the effects either way, the story events (stamped
        `wall`) only after a True; then the backlog is read in if memory runs low."""
        group = self.group
        before = group.outage
        committed = group.commit(now, force)
        if group.outage is not before:  # an outage began or ended: a note for every chart
            if before is None:
                self.notes.outage_began(group.outage.cause, wall)
            else:
                self.notes.outage_ended(before.lasted(now), wall)
        if group.refused:
            self._forget_refused(now)
        if committed:
            self.meters.published(group.events)  # daemon: the story events, now stored
        group.release(self.effects, committed, wall)
        if committed and self.state.wants_refill():
            self.refill(wall)
        return committed

    def _forget_refused(self, now: float) -> None:
        """New stories whose commit was refused (their clients were told): out of memory."""
        refused, self.group.refused = self.group.refused, {}
        state = self.state
        tasks = 0
        for story_id, rows in refused.items():  # (stage name or None, estimate) of its tasks
            tasks += len(rows)
            # tasks already leased: their reports are ignored
            if state.delete_story(story_id) is None:  # it went to the backlog
                by_stage = self.by_stage([(self.stage_index.get(stage, 0), 1, estimate)
                                          for stage, estimate in rows])
                state.forget_backlog_story(len(rows), sum(ms for _, ms in rows), by_stage)
        self.group.batch.id_floors = self.id_floors()
        self.figures.stories_in.add(now, -len(refused))
        self.figures.tasks_in.add(now, -tasks)

    def by_stage(self, rows: list[tuple[int, int, int]]) -> list[tuple[int, int, int]] | None:
        """(stage index, tasks, ms) rows summed per stage, for the work state's per-stage
        counts; None with one stage (it keeps none)."""
        if not self.staged:
            return None
        sums: dict[int, list[int]] = {}
        for index, n, ms in rows:
            counts = sums.setdefault(index, [0, 0])
            counts[0] += n
            counts[1] += ms
        return [(index, n, ms) for index, (n, ms) in sorted(sums.items())]

    # -- figures and timers ---------------------------------------------------------------
    def load(self, now: float, stage: int = 0) -> Load:
        """What the autoscaler of `stage`'s pool decides from."""
        return self.figures.load(now, self.state, self.pools.stages[stage], stage)

    def stats(self, now: float, wall: float, seq: int | None = None) -> Stats:
        """The figures now; `seq` defaults to that of the last message numbered for publishing."""
        stats = self.figures.stats(now, wall, self.effects.seq if seq is None else seq,
                                   self.state, self.pools, self.group.outage)
        for name, value in self.forecasts.figures(now).items():  # the forecast_... fields
            setattr(stats, name, value)
        return stats

    def next_due(self, now: float, wall: float) -> float:
        """When `dispatch` next has something to do (monotonic): now if a stage's worker is idle
        while its tasks may start, else when a block ends or a busy worker may take its next
        lease (the poll waits until then, or for a message)."""
        state = self.state
        soonest = float("inf")
        until = state.next_unblock()
        if until is not None:
            soonest = now + max(0.0, until - wall)
        for index, pool in enumerate(self.pools.stages):
            if state.dispatchable_in(index):  # else a due prefetch would spin the poll
                if pool.idle:  # a refill after this turn's dispatch: hand it out at once
                    return now
                soonest = min(soonest, pool.next_prefetch_at())
        return soonest

    def publish_stats(self, now: float, wall: float) -> Stats:
        """The stats timer: publish the figures, and keep one a second for snapshots."""
        stats = self.stats(now, wall)
        self.effects.publish(protocol.TOPIC_STATS, stats)
        self.figures.history.offer(now, stats)
        return stats

    def pool_changed(self, old: int, new: int, reason: str, wall: float, stage: int = 0) -> None:
        """A pool's target or size changed (the loop's scaler, a lost worker): publish it."""
        self.effects.pool(old, new, reason, wall, self.stage_names[stage] if self.staged else None)

    def take_resize(self) -> Resize | None:
        resize, self.effects.resize = self.effects.resize, None
        return resize
