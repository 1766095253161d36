"""The wire protocol: every message that crosses a socket, with its schema and limits.

Everything is UTF-8 JSON, one object per frame. Requests are decoded straight
into the tagged union `Request` (tag field `op`); msgspec rejects wrong types,
missing or unknown fields and out-of-range values with a message that names the
field and the limit (e.g. ``Expected `int` <= 3600000 - at `$.tasks[0].estimate_ms` ``).

docs/protocol.md documents this module for third-party clients; a test decodes
every example in that document against these schemas.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

import msgspec
from msgspec import Meta, Struct

from .json_depth import too_deep

PROTOCOL_VERSION = 1

# -- limits ---------------------------------------------------------------
MAX_FRAME_BYTES = 256 * 1024  # a request frame larger than this is refused unread
NAME_MAX = 200  # characters in a story or task name
DESCRIPTION_MAX = 4_000  # characters in a story description
TASKS_MAX = 500  # tasks in one story
ESTIMATE_MS_MAX = 3_600_000  # one hour
LIST_LIMIT_MAX = 1_000  # stories in one list_stories page
HISTORY_SECONDS_MAX = 3_600  # stats history a snapshot can carry
WORKERS_MAX = 256  # upper bound for max_workers
ID_MAX = 2**53 - 1  # ids stay exact in every JSON implementation
CORRELATION_MAX = 128  # characters in a string correlation id
WIP_LIMIT_MAX = 100_000  # stories in progress at once, at most, when a limit is set
FLOW_WINDOW_MAX_S = 86_400.0  # lead and cycle times are taken over at most a day
COMPLETIONS_MAX = 2_000  # recent completions a snapshot carries
NOTES_MAX = 100  # recent notes a snapshot carries
MAX_DEPTH = 32  # levels of JSON nesting in any frame; deeper is refused before it is parsed
MESSAGE_MAX = 1_000  # characters of an error message (msgspec's can quote a whole field name)
TIMESTAMP_MAX = 32_503_680_000  # 3000-01-01: a later time from a server is broken, not news
# -- workflow stages (issue 16) --
STAGES_MAX = 16  # stages in one workflow
STAGE_NAME_MAX = 32  # characters in a stage name
STAGE_NAME_PATTERN = "^[A-Za-z][A-Za-z0-9_-]*$"  # a letter, then letters, digits, _ and -
# -- end workflow stages --

Name = Annotated[str, Meta(min_length=1, max_length=NAME_MAX)]
TaskName = Annotated[str, Meta(max_length=NAME_MAX)]
Description = Annotated[str, Meta(max_length=DESCRIPTION_MAX)]
EstimateMs = Annotated[int, Meta(ge=0, le=ESTIMATE_MS_MAX)]
StoryId = Annotated[int, Meta(ge=1, le=ID_MAX)]
WorkerCount = Annotated[int, Meta(ge=0, le=WORKERS_MAX)]
# Clients check the times they are sent, so a broken server cannot make them format the year 1e300.
Timestamp = Annotated[float, Meta(ge=0, le=TIMESTAMP_MAX)]
CorrelationId = Union[int, Annotated[str, Meta(max_length=CORRELATION_MAX)], None]
StoryStatus = Literal["open", "done"]
TaskState = Literal["queued", "running", "done"]
# -- workflow stages (issue 16) --
StageName = Annotated[str, Meta(min_length=1, max_length=STAGE_NAME_MAX, pattern=STAGE_NAME_PATTERN)]
BlockedMs = Annotated[int, Meta(ge=0, le=ESTIMATE_MS_MAX)]  # a block lasts at most as long as an estimate may
StageWip = Annotated[int, Meta(ge=0, le=WIP_LIMIT_MAX)]  # 0: no limit
# -- end workflow stages --


# -- requests: client DEALER/REQ -> server ROUTER ---------------------------
class TaskSpec(Struct, forbid_unknown_fields=True):
    estimate_ms: EstimateMs
    name: TaskName = ""
    # -- workflow stages (issue 16) --
    stage: StageName | None = None  # a stage of the server's workflow; None: the first
    blocked_ms: BlockedMs = 0  # blocked this long when it first starts (its worker is free meanwhile)
    # -- end workflow stages --


class _Request(Struct, tag_field="op", forbid_unknown_fields=True, kw_only=True):
    id: CorrelationId = None


class Ping(_Request, tag="ping"):
    pass


class CreateStory(_Request, tag="create_story", kw_only=True):
    name: Name
    tasks: Annotated[list[TaskSpec], Meta(min_length=1, max_length=TASKS_MAX)]
    description: Description = ""


class DeleteStory(_Request, tag="delete_story", kw_only=True):
    story_id: StoryId


class GetStory(_Request, tag="get_story", kw_only=True):
    story_id: StoryId


class ListStories(_Request, tag="list_stories", kw_only=True):
    status: StoryStatus | None = None
    offset: Annotated[int, Meta(ge=0, le=ID_MAX)] = 0
    limit: Annotated[int, Meta(ge=1, le=LIST_LIMIT_MAX)] = 100


class Snapshot(_Request, tag="snapshot", kw_only=True):
    history_seconds: Annotated[int, Meta(ge=0, le=HISTORY_SECONDS_MAX)] = 600


class SetPool(_Request, tag="set_pool", kw_only=True):
    min_workers: WorkerCount | None = None
    max_workers: Annotated[int, Meta(ge=1, le=WORKERS_MAX)] | None = None
    # -- workflow stages (issue 16) --
    stage: StageName | None = None  # whose pool; None: the first stage's
    # -- end workflow stages --


class SetFlow(_Request, tag="set_flow", kw_only=True):
    wip_limit: Annotated[int, Meta(ge=0, le=WIP_LIMIT_MAX)] | None = None  # 0: no limit
    flow_window_s: Annotated[float, Meta(gt=0, le=FLOW_WINDOW_MAX_S)] | None = None
    # -- workflow stages (issue 16) --
    # per stage: stories in the stage at once (0 lifts that stage's limit); stages left out keep theirs
    stage_wip_limits: Annotated[dict[StageName, StageWip], Meta(max_length=STAGES_MAX)] | None = None
    # -- end workflow stages --


# -- forecasts (docs/forecasts.md) -------------------------------------------
FORECAST_STORIES_MAX = 1_000_000_000  # "when will N more be done": N at most
FORECAST_WITHIN_MAX_S = 31_536_000.0  # "how many within T": T at most a year
FORECAST_TRIALS_MIN = 100
FORECAST_TRIALS_MAX = 100_000
FORECAST_TRIALS_DEFAULT = 10_000


class Forecast(_Request, tag="forecast", kw_only=True):
    """Exactly one of `stories` (when will N more be done?) and `within_s` (how many in T?)."""

    stories: Annotated[int, Meta(ge=1, le=FORECAST_STORIES_MAX)] | None = None
    within_s: Annotated[float, Meta(gt=0, le=FORECAST_WITHIN_MAX_S)] | None = None
    trials: Annotated[int, Meta(ge=FORECAST_TRIALS_MIN, le=FORECAST_TRIALS_MAX)] = FORECAST_TRIALS_DEFAULT

    def __post_init__(self) -> None:
        if (self.stories is None) == (self.within_s is None):
            given = "neither" if self.stories is None else "both"
            raise ValueError(f"`stories` or `within_s`: exactly one of the two is needed, {given} given")


class ForecastResult(Struct, kw_only=True):
    """The answer to `forecast`, with what it was based on. Percentiles null (and `reason`
    set) when the history cannot answer; the pair for the other question is always null."""

    stories: int | None  # the question, echoed
    within_s: float | None
    p50_s: float | None = None  # seconds from now by which `stories` are done, 50/85/95 % sure
    p85_s: float | None = None
    p95_s: float | None = None
    stories_p50: int | None = None  # at least this many done within `within_s`, 50/85/95 % sure
    stories_p85: int | None = None
    stories_p95: int | None = None
    method: Literal["simulated", "normal"] | None = None
    trials: int = 0  # trials simulated (0 for the normal method: no draws)
    history_s: float = 0.0  # seconds of throughput history resampled
    samples: int = 0  # intervals in it
    interval_s: float = 1.0  # length of one
    completions: int = 0  # stories completed in it
    reason: str | None = None  # why the percentiles are null


Request = Union[Ping, CreateStory, DeleteStory, GetStory, ListStories, Snapshot, SetPool, SetFlow,
                Forecast]
OPS = tuple(t.__struct_config__.tag for t in Request.__args__)


# -- results -----------------------------------------------------------------
class PingResult(Struct):
    server_version: str
    protocol_version: int


class CreateStoryResult(Struct):
    story_id: int
    task_ids: list[int]


class TaskView(Struct):
    task_id: int
    name: str
    estimate_ms: int
    state: TaskState
    attempts: int
    created_at: Timestamp
    started_at: Timestamp | None = None
    finished_at: Timestamp | None = None
    # -- workflow stages (issue 16) --
    stage: str | None = None  # its stage (a server older than stages leaves it out)
    blocked_ms: int = 0  # the block it was created with
    # when its block ends (or ended); null until it first started. While it is in the future the
    # task is blocked (`state` stays "queued": the states older clients know)
    blocked_until: Timestamp | None = None
    # -- end workflow stages --


class StoryView(Struct, omit_defaults=True):
    story_id: int
    name: str
    description: str
    status: StoryStatus
    created_at: Timestamp
    tasks_total: int
    tasks_done: int
    completed_at: Timestamp | None = None
    tasks: list[TaskView] | None = None  # get_story only
    started_at: Timestamp | None = None  # when its first task started
    lead_time_s: float | None = None  # created -> completed, once done
    cycle_time_s: float | None = None  # started -> completed, once done
    # -- workflow stages (issue 16) --
    stage: str | None = None  # the stage it counts in (from its first task there until its next stage starts)
    blocked_ms: int | None = None  # the blocks of its tasks, summed; left out when none
    # while open: the latest end of a block of its tasks that has started (left out when none has);
    # while it is in the future the story is blocked (the desktop's aging chart marks it)
    blocked_until: Timestamp | None = None
    # -- end workflow stages --


class ListStoriesResult(Struct):
    stories: list[StoryView]
    total: int


class PoolResult(Struct, omit_defaults=True):
    min_workers: int
    max_workers: int
    workers: int
    target: int
    # -- workflow stages (issue 16) --
    stage: str | None = None  # whose pool (left out by a server older than stages)
    # -- end workflow stages --


class FlowResult(Struct, omit_defaults=True):
    wip_limit: int
    flow_window_s: float
    # -- workflow stages (issue 16) --
    stage_wip_limits: dict[str, int] | None = None  # every stage's limit in force (0: none)
    # -- end workflow stages --


class Empty(Struct):
    pass


# -- events: server PUB, two frames [topic, json] ---------------------------
# -- workflow stages (issue 16) --
class StageStats(Struct, kw_only=True):
    """One stage of the workflow in a `stats` event: its pool, its work, its WIP."""

    name: str
    workers: int
    workers_busy: int
    min_workers: int
    max_workers: int
    tasks_queued: int  # its tasks not started, wherever they wait (the totals are the sums)
    tasks_running: int
    tasks_blocked: int
    stories: int  # stories in the stage: from their first task's start here until the next stage starts
    wip_limit: int  # 0: none
    tasks_ready: int = 0  # of tasks_queued, those in the stage's own queue now (earlier stages done)
    # the ready work its workers may start now (not held back by a WIP limit), per worker,
    # time scale applied: how long a task joining the queue now waits for a worker
    wait_s: float = 0.0
# -- end workflow stages --


class Stats(Struct, kw_only=True):
    seq: int
    ts: Timestamp  # server wall clock, seconds since the epoch
    stories_produced_per_s: float
    stories_completed_per_s: float
    open_stories: int
    completed_stories: int
    tasks_produced_per_s: float
    tasks_completed_per_s: float
    tasks_queued: int
    tasks_running: int
    tasks_completed: int  # tasks done in the database (a deleted story takes its tasks along)
    queued_work_s: float  # estimate-seconds of queued tasks, time scale applied
    workers: int
    workers_busy: int
    workers_target: int
    min_workers: int
    max_workers: int
    rate_window_s: float  # rates are averaged over this sliding window
    # "unavailable" while the database refuses writes; database_error names the cause
    database: Literal["ok", "unavailable"] = "ok"
    database_error: str | None = None
    # flow: open stories at least one of whose tasks has started; lead and cycle times
    # of the stories completed in the last flow_window_s (null when none)
    stories_in_progress: int = 0
    stories_completed_in_window: int = 0
    lead_time_mean_s: float | None = None
    lead_time_p50_s: float | None = None
    lead_time_p85_s: float | None = None
    lead_time_p95_s: float | None = None
    cycle_time_p50_s: float | None = None
    cycle_time_p85_s: float | None = None
    cycle_time_p95_s: float | None = None
    flow_window_s: float | None = None
    wip_limit: int = 0  # 0: none
    # Added later, with defaults, so stats from an older server still decode.
    internal_errors: int = 0  # messages whose handling failed inside the server (answered `internal`)
    dropped_messages: int = 0  # messages dropped unanswered: bad envelopes, bad worker messages
    # -- workflow stages (issue 16) --
    stages: list[StageStats] = []  # one per stage, in workflow order (an older server: none)
    tasks_blocked: int = 0  # tasks started and blocked now: the stages' sum
    # work time / cycle time of the stories completed in the flow window (null when none):
    # a story works while one of its tasks runs on a worker
    flow_efficiency: float | None = None
    bottleneck: str | None = None  # the stage with the longest wait_s; null when none waits
    # -- end workflow stages --
    # Forecasts (docs/forecasts.md): seconds from `ts` until as many more stories are done as
    # are open now (0 with none open; null without throughput history), and how often the
    # server's own recorded backlog forecasts came true at each level (null until one matured);
    # forecast_scored: how many matured at p85.
    forecast_open_p50_s: float | None = None
    forecast_open_p85_s: float | None = None
    forecast_open_p95_s: float | None = None
    forecast_hit_rate_p50: float | None = None
    forecast_hit_rate_p85: float | None = None
    forecast_hit_rate_p95: float | None = None
    forecast_scored: int = 0
    # Of the flow window, the seconds the server has counted completions for (less than
    # flow_window_s while it fills after a start or a longer window); null from older servers.
    flow_window_covered_s: float | None = None


class StoryEvent(Struct, kw_only=True):
    seq: int
    ts: Timestamp
    event: Literal["created", "completed", "deleted"]
    story_id: int
    lead_time_s: float | None = None  # "completed" only
    cycle_time_s: float | None = None  # "completed" only


class PoolEvent(Struct, kw_only=True, omit_defaults=True):
    seq: int
    ts: Timestamp
    old_size: int
    new_size: int
    reason: str
    # -- workflow stages (issue 16) --
    stage: str | None = None  # whose pool, on a server with several stages
    # -- end workflow stages --


# -- notes: what changed how the server works, for markers on charts (docs/protocol.md) --
NOTE_KINDS = ("started", "restored", "wip_limit", "stage_wip_limit", "flow_window", "pool_bounds",
              "outage_began", "outage_ended")  # a newer server may add kinds: show them as text
NoteValue = Union[int, float, list[int]]


class NoteEvent(Struct, kw_only=True, omit_defaults=True):
    seq: int
    ts: Timestamp
    kind: Annotated[str, Meta(max_length=32)]  # one of NOTE_KINDS
    text: str  # one line for people
    stage: str | None = None  # stage_wip_limit; pool_bounds on a server with several stages
    old: NoteValue | None = None  # the setting before and after it changed ([min, max]: pool_bounds)
    new: NoteValue | None = None
    cause: str | None = None  # outage_began
    lasted_s: float | None = None  # outage_ended
    stages: list[str] | None = None  # started, restored: the workflow's stages in order
    scenario: str | None = None  # started, restored: the scenario the workflow came from


class OtherEvent(Struct):
    """An event of a topic this client does not know (a newer server's): only its seq and ts,
    so that a client counts its number instead of taking it for a lost message."""

    seq: int
    ts: Timestamp
    topic: str = ""


class Completion(Struct):
    """A recently completed story, for the lead-time chart of a client that joins late."""

    story_id: int
    completed_at: Timestamp
    lead_time_s: float
    cycle_time_s: float


class SnapshotResult(Struct):
    seq: int  # the seq of the last message published before this snapshot
    stats: Stats
    history: list[Stats]  # one entry a second, oldest first
    # the stories completed in the flow window, oldest first, at most COMPLETIONS_MAX
    completions: list[Completion] = []
    # the newest notes, oldest first, at most NOTES_MAX; null from a server older than notes
    notes: list[NoteEvent] | None = None


TOPIC_STATS = b"stats"
TOPIC_STORY = b"story"
TOPIC_POOL = b"pool"
TOPIC_NOTE = b"note"
EVENT_TYPES: dict[bytes, type] = {
    TOPIC_STATS: Stats,
    TOPIC_STORY: StoryEvent,
    TOPIC_POOL: PoolEvent,
    TOPIC_NOTE: NoteEvent,
}


# -- replies -----------------------------------------------------------------
class ErrorInfo(Struct):
    code: Literal["invalid_request", "not_found", "busy", "unavailable", "internal",
                  "version_mismatch"]
    message: str


class Reply(Struct, omit_defaults=True):
    ok: bool
    id: CorrelationId = None
    result: Any = None
    error: ErrorInfo | None = None


INVALID, NOT_FOUND, BUSY, INTERNAL = "invalid_request", "not_found", "busy", "internal"
UNAVAILABLE = "unavailable"  # the database refuses writes for now; the message names the cause
# Refusals of a write that stored nothing: the same request may be sent again later.
TRY_AGAIN = frozenset({BUSY, UNAVAILABLE})

RESULT_TYPES: dict[str, type] = {
    "ping": PingResult,
    "create_story": CreateStoryResult,
    "delete_story": Empty,
    "get_story": StoryView,
    "list_stories": ListStoriesResult,
    "snapshot": SnapshotResult,
    "set_pool": PoolResult,
    "set_flow": FlowResult,
    "forecast": ForecastResult,
}


# -- workers: worker DEALER <-> server ROUTER --------------------------------
class Ready(Struct, tag="ready", tag_field="type"):
    pid: int
    host: str = ""
    # -- workflow stages (issue 16) --
    stage: StageName | None = None  # the stage it serves (a worker host's --stage); None: the first
    # -- end workflow stages --


class Done(Struct, tag="done", tag_field="type"):
    task_ids: list[int]


class Heartbeat(Struct, tag="hb", tag_field="type"):
    pass


class Work(Struct, tag="work", tag_field="type"):
    """One lease: tasks the worker runs one after another, then reports at once."""

    tasks: list[tuple[int, int]]  # (task_id, estimate_ms)
    time_scale: float


class Stop(Struct, tag="stop", tag_field="type", omit_defaults=True):
    # -- workflow stages (issue 16) --
    reason: str = ""  # why, when the server refuses the worker (a stage it does not have)
    # -- end workflow stages --


WorkerMessage = Union[Ready, Done, Heartbeat]
ServerToWorker = Union[Work, Heartbeat, Stop]


# -- encode / decode ---------------------------------------------------------
_encoder = msgspec.json.Encoder()
encode = _encoder.encode
_request_decoder = msgspec.json.Decoder(Request)
_worker_decoder = msgspec.json.Decoder(WorkerMessage)
_to_worker_decoder = msgspec.json.Decoder(ServerToWorker)
_reply_decoder = msgspec.json.Decoder(Reply)
_event_decoders = {topic: msgspec.json.Decoder(t) for topic, t in EVENT_TYPES.items()}
_other_decoder = msgspec.json.Decoder(OtherEvent)


class ProtocolError(ValueError):
    """A frame that does not follow the protocol; the message names the field."""


# What a decoder may raise on hostile input besides its own errors: RecursionError
# (nesting, guarded above but kept as a backstop), ValueError/OverflowError from
# number conversions, TypeError for a frame that is not bytes at all.
_DECODE_FAILURES = (msgspec.MsgspecError, RecursionError, ValueError, OverflowError, TypeError)


def _decode(decoder: msgspec.json.Decoder, frame: bytes, what: str) -> Any:
    """Any frame in, a typed message or ProtocolError out: never anything else."""
    try:
        if too_deep(frame, MAX_DEPTH):
            raise ProtocolError(f"{what} is nested deeper than {MAX_DEPTH} levels, the limit")
        return decoder.decode(frame)
    except ProtocolError:
        raise
    except msgspec.ValidationError as exc:
        raise ProtocolError(_clip(_explain(str(exc)))) from None
    except _DECODE_FAILURES as exc:
        raise ProtocolError(_clip(f"not valid JSON: {exc}")) from None


def decode_request(frame: bytes) -> Request:
    if len(frame) > MAX_FRAME_BYTES:
        raise ProtocolError(f"request is {len(frame)} bytes; the limit is {MAX_FRAME_BYTES}")
    return _decode(_request_decoder, frame, "request")


def _explain(message: str) -> str:
    # msgspec's wording for an unknown tag is terse; say what is allowed.
    if message.startswith("Invalid value") and message.endswith("`$.op`"):
        return f"{message}; known ops: {', '.join(OPS)}"
    return message


def _clip(text: str) -> str:
    return text if len(text) <= MESSAGE_MAX else text[:MESSAGE_MAX] + "…"


class _IdOnly(Struct):
    """A request seen only for its `id`: every other field is skipped, not built."""

    id: msgspec.Raw = msgspec.Raw(b"null")


_id_decoder = msgspec.json.Decoder(_IdOnly)
_correlation_decoder = msgspec.json.Decoder(CorrelationId)


def correlation_id(frame: bytes) -> CorrelationId:
    """Best-effort `id` of a frame that failed validation, so the error reply can echo it.

    Never raises: it runs on the error path, on frames already known to be bad."""
    try:
        if len(frame) > MAX_FRAME_BYTES or too_deep(frame, MAX_DEPTH):
            return None
        raw = _id_decoder.decode(frame).id
        return _correlation_decoder.decode(raw) if raw else None
    except Exception:
        return None


def decode_worker_message(frame: bytes) -> WorkerMessage:
    return _decode(_worker_decoder, frame, "worker message")


def decode_to_worker(frame: bytes) -> Work | Heartbeat | Stop:
    return _decode(_to_worker_decoder, frame, "message to a worker")


def decode_reply(frame: bytes) -> Reply:
    return _decode(_reply_decoder, frame, "reply")


def convert_result(value: Any, result_type: type) -> Any:
    """A reply's untyped `result` as `result_type`; ProtocolError if it does not fit."""
    try:
        return msgspec.convert(value, result_type)
    except _DECODE_FAILURES as exc:
        raise ProtocolError(_clip(f"result: {exc}")) from None


Event = Union[Stats, StoryEvent, PoolEvent, NoteEvent]


def decode_event(topic: bytes, frame: bytes) -> Event:
    decoder = _event_decoders.get(topic) if isinstance(topic, bytes) else None
    if decoder is None:
        shown = topic[:40] if isinstance(topic, bytes) else type(topic).__name__
        raise ProtocolError(f"unknown topic {shown!r}")
    return _decode(decoder, frame, f"{topic.decode('ascii')} event")


def decode_event_frames(frames: list[bytes]) -> Event:
    """A PUB message as a SUB socket receives it: [topic, json]."""
    if len(frames) != 2:
        raise ProtocolError(f"an event is two frames [topic, json], not {len(frames)}")
    return decode_event(frames[0], frames[1])


def decode_other_event(topic: bytes, frame: bytes) -> OtherEvent:
    """The seq and ts of an event of a topic not in EVENT_TYPES; ProtocolError if it has none."""
    event = _decode(_other_decoder, frame, "event of an unknown topic")
    event.topic = topic[:40].decode("ascii", "replace")
    return event


def ok(request_id: CorrelationId, result: Any) -> bytes:
    return encode(Reply(ok=True, id=request_id, result=result))


def error(request_id: CorrelationId, code: str, message: str) -> bytes:
    """An error reply. Never raises: it is what goes out when something else did."""
    info = ErrorInfo(_safe_text(code), _safe_text(message))
    for echo in (_safe_id(request_id), None):
        try:
            return encode(Reply(ok=False, id=echo, error=info))
        except Exception:
            continue
    return _UNDESCRIBED


_UNDESCRIBED = encode(Reply(ok=False, error=ErrorInfo(INTERNAL, "the error could not be described")))


def _safe_text(text: Any) -> str:
    # A lone surrogate (which an exception's text may quote) cannot be encoded as UTF-8.
    try:
        return _clip(str(text).encode("utf-8", "backslashreplace").decode("utf-8"))
    except Exception:  # a __str__ that raises
        return f"<{type(text).__name__}>"


def _safe_id(request_id: Any) -> CorrelationId:
    if isinstance(request_id, bool) or not isinstance(request_id, (int, str)):
        return None
    if isinstance(request_id, str):
        return _safe_text(request_id) if len(request_id) <= CORRELATION_MAX else None
    return request_id
