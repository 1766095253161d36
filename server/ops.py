"""The request ops: one handler each, and the table (`OPS`) that routes a request to it.

A handler is `handler(service, envelope, request, now, wall)`. It changes the
service's memory at once, adds its writes to the turn's batch
(`service.group.batch`) and its story events to `service.group.events`, and
answers through `service.group`: `acknowledge` for a write (the reply goes out
only with its commit), `reply` or `reply_error` otherwise. It sends nothing,
commits nothing and reads no clock.

Each op's row in OPS says, besides its handler:
- `reads_committed`: whether a request must read the database as committed.
  Then, while writes of the turn wait for their commit, it waits too (the
  service defers it until the loop has committed: a client that pipelines
  create + get must find its story). None: the op never reads the database.
- `writes`: while the database refuses writes (an outage) the service answers
  it `unavailable` without calling the handler.

To add an op: its request and result Structs in protocol.py (and an example in
docs/protocol.md), a handler here, and its row in OPS.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

from storypulse import __version__, protocol
from storypulse.protocol import (
    BUSY,
    INVALID,
    NOT_FOUND,
    Completion,
    CreateStory,
    CreateStoryResult,
    DeleteStory,
    Empty,
    FlowResult,
    Forecast,
    GetStory,
    ListStories,
    Ping,
    PingResult,
    PoolResult,
    SetFlow,
    SetPool,
    Snapshot,
    SnapshotResult,
    StoryView,
    TaskView,
)

from .effects import Envelope, Resize

if TYPE_CHECKING:
    from .service import Service

log = logging.getLogger(__name__)


class Invalid(NamedTuple):
    """A frame that did not decode as a request: answered `invalid_request` in its turn."""

    id: Any  # the correlation id, when one could be read
    message: str


def invalid(service: Service, envelope: Envelope, req: Invalid, now: float, wall: float) -> None:
    service.group.reply_error(envelope, req.id, INVALID, req.message)


def ping(service: Service, envelope: Envelope, req: Ping, now: float, wall: float) -> None:
    service.group.reply(envelope, req.id, PingResult(__version__, protocol.PROTOCOL_VERSION))


def create_story(service: Service, envelope: Envelope, req: CreateStory, now: float,
                 wall: float) -> None:
    group = service.group
    tasks = req.tasks
    count = len(tasks)
    state = service.state
    if state.queued + count > service.config.queue_max:
        group.reply_error(envelope, req.id, BUSY,
                          f"{state.queued} tasks are queued (limit {service.config.queue_max}); "
                          "try again later")
        return
    if service.staged or any(t.stage is not None or t.blocked_ms for t in tasks):
        create_workflow_story(service, envelope, req, now, wall)
        return
    story_id = service.next_story_id
    first = service.next_task_id
    service.next_story_id += 1
    service.next_task_id += count
    batch = group.batch
    batch.stories.append((story_id, req.name, req.description, "open", wall, count))
    estimates = [t.estimate_ms for t in tasks]
    batch.tasks.extend([
        (first + i, story_id, t.name, t.estimate_ms, "queued", 0, wall)
        for i, t in enumerate(tasks)
    ])
    ids = state.add_story(story_id, first, estimates, wall)
    figures = service.figures
    figures.stories_in.add(now)
    figures.tasks_in.add(now, count)
    group.events.append(("created", story_id))
    group.acknowledge(envelope, req.id, CreateStoryResult(story_id, list(ids)), story_id)


def create_workflow_story(service: Service, envelope: Envelope, req: CreateStory, now: float,
                          wall: float) -> None:
    """create_story with stages or blocks: stage names become indexes (one the workflow lacks
    is refused, nothing stored); the rows are a plain story's, and flow rows (store/schema.py)
    carry the stage (by name, with several stages) and the blocks."""
    tasks, index, names = req.tasks, service.stage_index, service.stage_names
    stages = [0] * len(tasks)
    for i, task in enumerate(tasks):
        if task.stage is not None:
            found = index.get(task.stage)
            if found is None:
                service.group.reply_error(
                    envelope, req.id, INVALID, f"tasks[{i}].stage {task.stage!r}: not a stage of "
                    f"this server; the stages are {', '.join(names)}")
                return
            stages[i] = found
    blocks = [task.blocked_ms for task in tasks]
    story_id = service.next_story_id
    first = service.next_task_id
    service.next_story_id += 1
    service.next_task_id += len(tasks)
    batch = service.group.batch
    batch.stories.append((story_id, req.name, req.description, "open", wall, len(tasks)))
    batch.tasks.extend([(first + i, story_id, t.name, t.estimate_ms, "queued", 0, wall)
                        for i, t in enumerate(tasks)])
    if service.staged:  # every task named (with one stage, none: store/schema.py)
        batch.task_flows.extend([(first + i, names[stage], t.blocked_ms)
                                 for i, (t, stage) in enumerate(zip(tasks, stages))])
    else:
        batch.task_flows.extend([(first + i, None, t.blocked_ms)
                                 for i, t in enumerate(tasks) if t.blocked_ms])
    if any(blocks):
        batch.story_flows.append((story_id, sum(blocks)))
    ids = service.state.add_story(story_id, first, [t.estimate_ms for t in tasks], wall,
                                  stages if any(stages) else None,
                                  blocks if any(blocks) else None)
    figures = service.figures
    figures.stories_in.add(now)
    figures.tasks_in.add(now, len(tasks))
    if figures.stages:
        for stage in stages:
            figures.stages[stage].tasks_in.add(now)
    service.group.events.append(("created", story_id))
    service.group.acknowledge(envelope, req.id, CreateStoryResult(story_id, list(ids)), story_id)


def delete_story(service: Service, envelope: Envelope, req: DeleteStory, now: float,
                 wall: float) -> None:
    group = service.group
    story_id = req.story_id
    state, figures = service.state, service.figures
    story = state.delete_story(story_id)
    if story is not None:
        figures.tasks_completed -= story.total - story.remaining
    else:  # not in memory: done, or open in the backlog (committed: see OPS)
        row = service.store.story(story_id)
        if row is None:
            group.reply_error(envelope, req.id, NOT_FOUND, f"no story with story_id {story_id}")
            return
        if row[3] == "done":
            figures.completed_stories -= 1
            figures.tasks_completed -= row[6]
            figures.flow.discard(story_id)
        else:  # open, in the backlog: only counted
            queued = service.store.queued_of(story_id)  # (stage index, tasks, ms)
            count = sum(n for _, n, _ in queued)
            state.forget_backlog_story(count, sum(ms for _, _, ms in queued),
                                       service.by_stage(queued))
            figures.tasks_completed -= row[6] - count
    batch = group.batch
    batch.deleted_stories.append(story_id)
    batch.id_floors = service.id_floors()
    group.events.append(("deleted", story_id))
    group.acknowledge(envelope, req.id, Empty())


def get_story(service: Service, envelope: Envelope, req: GetStory, now: float,
              wall: float) -> None:
    row = service.store.story(req.story_id)
    if row is None:
        service.group.reply_error(envelope, req.id, NOT_FOUND,
                                  f"no story with story_id {req.story_id}")
        return
    live = service.state.live
    first_stage = service.stage_names[0]
    views = []
    done = 0
    for task_id, name, estimate, status, attempts, created, started, finished, stage, block, \
            until in service.store.tasks_of(req.story_id):
        task = live.get(task_id)
        if status == "done":
            done += 1
        elif task is not None:
            if task.running:
                status, started, attempts = "running", task.started_at, task.attempts
            until = task.blocked_until  # memory is ahead of the row for a block this turn
        views.append(TaskView(task_id, name, estimate, status, attempts, created, started,
                              finished, stage or first_stage, block or 0, until))
    view = story_view(service, row)
    view.tasks_done = done
    view.tasks = views
    service.group.reply(envelope, req.id, view)


def story_view(service: Service, row: tuple) -> StoryView:
    story_id, name, description, status, created, completed, total, started, stage, block = row
    lead = cycle = blocked_until = None
    if status == "done":
        done = total
        lead = completed - created
        cycle = None if started is None else completed - started
        stage = None  # it counts in no stage any more
    else:
        story = service.state.stories.get(story_id)
        done = total - story.remaining if story is not None else 0
        if story is not None:
            started = story.started_at  # memory is ahead of the row for a prefetched lease
            stage = story.counted.name if story.counted is not None else None
            blocked_until = story.blocked_until
        elif started is not None:
            stage = stage or service.stage_names[0]  # stored without a name: one stage
    return StoryView(story_id, name, description, status, created, total, done, completed,
                     started_at=started, lead_time_s=lead, cycle_time_s=cycle, stage=stage,
                     blocked_ms=block or None, blocked_until=blocked_until)


def list_stories(service: Service, envelope: Envelope, req: ListStories, now: float,
                 wall: float) -> None:
    rows = service.store.stories(req.status, req.offset, req.limit)
    open_stories, completed = service.state.open_stories, service.figures.completed_stories
    total = {None: open_stories + completed, "open": open_stories, "done": completed}[req.status]
    result = protocol.ListStoriesResult([story_view(service, r) for r in rows], total)
    service.group.reply(envelope, req.id, result)


def snapshot(service: Service, envelope: Envelope, req: Snapshot, now: float,
             wall: float) -> None:
    # Served after the commit whose events the loop has published (see OPS), so the
    # seq covers everything the snapshot shows.
    seq = service.effects.seq
    figures = service.figures
    completions = [Completion(c.story_id, c.completed_at, c.lead_s, c.cycle_s)
                   for c in figures.flow.recent(now, protocol.COMPLETIONS_MAX)]
    result = SnapshotResult(seq, service.stats(now, wall, seq),
                            figures.history.last(req.history_seconds), completions,
                            list(service.notes.recent))
    service.group.reply(envelope, req.id, result)


def set_pool(service: Service, envelope: Envelope, req: SetPool, now: float,
             wall: float) -> None:
    index = 0 if req.stage is None else service.stage_index.get(req.stage)
    if index is None:
        service.group.reply_error(envelope, req.id, INVALID, f"stage {req.stage!r}: not a stage "
                                  f"of this server; the stages are {', '.join(service.stage_names)}")
        return
    pool = service.pools.stages[index]
    low = pool.min_workers if req.min_workers is None else req.min_workers
    high = pool.max_workers if req.max_workers is None else req.max_workers
    if low > high:
        service.group.reply_error(envelope, req.id, INVALID,
                                  f"min_workers {low} is above max_workers {high}")
        return
    total = service.pools.max_workers - pool.max_workers + high
    if total > protocol.WORKERS_MAX:
        service.group.reply_error(envelope, req.id, INVALID,
                                  f"max_workers {high}: the stages' max workers would add up to "
                                  f"{total}; at most {protocol.WORKERS_MAX} in all")
        return
    old = (pool.min_workers, pool.max_workers)
    pool.set_bounds(low, high)
    log.info("pool bounds of stage %r set to min_workers=%d max_workers=%d", pool.stage, low, high)
    if (low, high) != old:
        service.notes.pool_bounds(pool.stage if service.staged else None, old, (low, high), wall)
    # Decide now so the reply shows the new target; the loop publishes and applies
    # this decision this turn instead of deciding again.
    service.effects.resize = Resize(pool.decide(service.load(now, index)), index)
    service.group.reply(envelope, req.id, PoolResult(low, high, pool.size, pool.target,
                                                     pool.stage if service.staged else None))


def set_flow(service: Service, envelope: Envelope, req: SetFlow, now: float,
             wall: float) -> None:
    # Held in memory: the server's --wip-limit, --stage-wip and --flow-window apply again
    # after a restart.
    state, flow = service.state, service.figures.flow
    limits = req.stage_wip_limits or {}
    unknown = [name for name in limits if name not in service.stage_index]
    if unknown:  # refused whole: nothing changes
        service.group.reply_error(
            envelope, req.id, INVALID, f"stage_wip_limits: {', '.join(map(repr, unknown))}: not "
            f"a stage of this server; the stages are {', '.join(service.stage_names)}")
        return
    notes = service.notes  # a note for each setting that changed
    if req.wip_limit is not None and req.wip_limit != state.wip_limit:
        notes.wip_limit(state.wip_limit, req.wip_limit, wall)
        state.set_wip_limit(req.wip_limit)
    for name, limit in limits.items():
        index = service.stage_index[name]
        old = state.stages[index].wip_limit
        if limit != old:
            notes.stage_wip_limit(name, old, limit, wall)
            state.set_stage_wip_limit(index, limit)
    if req.flow_window_s is not None and req.flow_window_s != flow.window:
        notes.flow_window(flow.window, req.flow_window_s, wall)
        flow.set_window(req.flow_window_s, now)
    in_force = {st.name: st.wip_limit for st in state.stages}
    log.info("flow set to wip_limit=%d flow_window_s=%g stage_wip_limits=%s", state.wip_limit,
             flow.window, in_force)
    service.group.reply(envelope, req.id, FlowResult(state.wip_limit, flow.window,
                                                     in_force if service.staged else None))


def forecast(service: Service, envelope: Envelope, req: Forecast, now: float,
             wall: float) -> None:
    # Simulated off the loop (forecast_runner.py): the reply comes in a later turn.
    answer = service.forecasts.ask(req, envelope, now)
    if isinstance(answer, str):
        service.group.reply_error(envelope, req.id, BUSY, answer)
    elif answer is not None:
        service.group.reply(envelope, req.id, answer)


# -- the table -------------------------------------------------------------------------
Handler = Callable[["Service", Envelope, Any, float, float], None]


class Op(NamedTuple):
    handler: Handler
    reads_committed: Callable[[Service, Any], bool] | None = None
    writes: bool = False  # refused `unavailable` while the database refuses writes


def always(service: Service, req: Any) -> bool:
    return True


def story_not_in_memory(service: Service, req: DeleteStory) -> bool:
    """A delete reads the story's row unless the story is open in memory."""
    return req.story_id not in service.state.stories


OPS: dict[type, Op] = {
    Invalid: Op(invalid),
    Ping: Op(ping),
    CreateStory: Op(create_story, writes=True),
    DeleteStory: Op(delete_story, story_not_in_memory, writes=True),
    GetStory: Op(get_story, always),
    ListStories: Op(list_stories, always),
    Snapshot: Op(snapshot, always),  # its seq must cover the turn's published events
    SetPool: Op(set_pool),
    SetFlow: Op(set_flow),
    Forecast: Op(forecast),
}
