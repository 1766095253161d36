"""Frame generators for the fuzz tests: valid messages, hostile mutations of them, garbage.

Every generator takes a `random.Random`. In the decoder tests Hypothesis drives
it (`st.randoms()`), so it explores and shrinks; the live-server tests draw
thousands of frames in bulk from a `random.Random(seed)` with a printed seed,
so a failing run is replayed exactly. One set of generators serves both.

The hostile values are the classes a hand-picked list tends to miss: every
limit of protocol.py and ±1 around it, 2**63/2**64/10**4000, NaN/Infinity,
lone surrogates as `\\ud800` escapes and as raw bytes, duplicate keys,
nesting up to 100,000 levels, strings at and over every length limit.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from typing import Any

import msgspec

from storypulse import protocol as p

# -- serialising what json.dumps cannot: duplicate keys, raw tokens ------------------


@dataclass
class Raw:
    """JSON text put in verbatim (NaN, 10**4000, raw surrogate bytes, deep nesting)."""

    text: bytes


@dataclass
class Pairs:
    """An object whose keys may repeat, in this order."""

    items: list[tuple[Any, Any]]


def dump(value: Any) -> bytes:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, Pairs):
        return b"{" + b",".join(dump(k) + b":" + dump(v) for k, v in value.items) + b"}"
    if isinstance(value, dict):
        return dump(Pairs(list(value.items())))
    if isinstance(value, list):
        return b"[" + b",".join(dump(v) for v in value) + b"]"
    if isinstance(value, str):
        return json.dumps(value).encode()  # ASCII: a lone surrogate becomes a \udXXX escape
    return json.dumps(value).encode()  # numbers, bools, None (floats NaN/inf as tokens)


# -- valid messages, as builtins ----------------------------------------------------------
CHARS = "abcxyz019 _-.:/[]{}\"\\,é€😀\n\t\x00"


def text(r: random.Random, low: int, high: int) -> str:
    size = r.choice([low, high, r.randint(low, min(high, low + 12))])
    return "".join(r.choice(CHARS) for _ in range(size)) if size < 64 else \
        r.choice(CHARS) * size


def ts(r: random.Random) -> float:
    return r.choice([0.0, 1795815120.125, float(p.TIMESTAMP_MAX), r.uniform(0, 4e9)])


def correlation(r: random.Random) -> Any:
    return r.choice([None, r.randint(-(2**63), 2**64), text(r, 0, p.CORRELATION_MAX), 0])


# Stage names as the fuzzed server's workflow has them (test_server_fuzz.py), as another has
# them, and at the edges of what the protocol lets through.
STAGE_NAMES = ["analysis", "build", "test", "work", "deploy", "a", "B-2_x", "x" * p.STAGE_NAME_MAX]


def stage_name(r: random.Random) -> str:
    return r.choice(STAGE_NAMES)


def valid_request(r: random.Random) -> dict:
    op = r.choice(p.OPS)
    doc: dict[str, Any] = {"op": op}
    if r.random() < 0.7:
        doc["id"] = correlation(r)
    if op == "create_story":
        doc["name"] = text(r, 1, p.NAME_MAX)
        if r.random() < 0.5:
            doc["description"] = text(r, 0, p.DESCRIPTION_MAX)
        count = r.choice([1, 1, 3, p.TASKS_MAX])
        tasks = [{"estimate_ms": r.choice([0, 1, p.ESTIMATE_MS_MAX, r.randint(0, 500)])}
                 for _ in range(count)]
        for task in tasks[:3]:
            if r.random() < 0.5:
                task["name"] = text(r, 0, p.NAME_MAX)
            if r.random() < 0.4:
                task["stage"] = r.choice([None, stage_name(r)])
            if r.random() < 0.3:
                task["blocked_ms"] = r.choice([0, 1, r.randint(0, 50), p.ESTIMATE_MS_MAX])
        doc["tasks"] = tasks
    elif op in ("delete_story", "get_story"):
        doc["story_id"] = r.choice([1, p.ID_MAX, r.randint(1, 1000)])
    elif op == "list_stories":
        for key, values in (("status", ["open", "done", None]), ("offset", [0, p.ID_MAX, 5]),
                            ("limit", [1, p.LIST_LIMIT_MAX, 10])):
            if r.random() < 0.5:
                doc[key] = r.choice(values)
    elif op == "snapshot" and r.random() < 0.7:
        doc["history_seconds"] = r.choice([0, p.HISTORY_SECONDS_MAX, 3])
    elif op == "set_pool":
        if r.random() < 0.6:
            doc["min_workers"] = r.choice([None, 0, 1, p.WORKERS_MAX])
        if r.random() < 0.6:
            doc["max_workers"] = r.choice([None, 1, 2, p.WORKERS_MAX])
        if r.random() < 0.4:
            doc["stage"] = r.choice([None, stage_name(r)])
    elif op == "set_flow":
        if r.random() < 0.6:
            doc["wip_limit"] = r.choice([None, 0, 1, p.WIP_LIMIT_MAX])
        if r.random() < 0.6:
            doc["flow_window_s"] = r.choice([None, 0.001, 60, p.FLOW_WINDOW_MAX_S])
        if r.random() < 0.4:
            doc["stage_wip_limits"] = r.choice([None, {}, {
                stage_name(r): r.choice([0, 1, p.WIP_LIMIT_MAX]) for _ in range(r.choice([1, 3]))}])
    elif op == "forecast":
        if r.random() < 0.5:
            doc["stories"] = r.choice([1, 40, p.FORECAST_STORIES_MAX, r.randint(1, 10**6)])
        else:
            doc["within_s"] = r.choice([1e-9, 0.5, 60, p.FORECAST_WITHIN_MAX_S])
        if r.random() < 0.5:
            doc["trials"] = r.choice([p.FORECAST_TRIALS_MIN, p.FORECAST_TRIALS_MAX, 1000])
    return doc


def valid_worker_message(r: random.Random) -> dict:
    kind = r.choice(["ready", "done", "hb"])
    if kind == "ready":
        doc = {"type": "ready", "pid": r.choice([1, 4711, 2**31, -(2**63)])}
        if r.random() < 0.5:
            doc["host"] = text(r, 0, 300)
        if r.random() < 0.4:
            doc["stage"] = r.choice([None, stage_name(r)])
        return doc
    if kind == "done":
        return {"type": "done", "task_ids": [r.randint(-5, 2**40) for _ in range(r.choice([0, 1, 3, 300]))]}
    return {"type": "hb"}


def valid_to_worker(r: random.Random) -> dict:
    kind = r.choice(["work", "hb", "stop"])
    if kind == "work":
        tasks = [[r.randint(1, 2**40), r.randint(0, p.ESTIMATE_MS_MAX)] for _ in range(r.choice([1, 2, 256]))]
        return {"type": "work", "tasks": tasks, "time_scale": r.choice([0.0, 0.01, 1.0, 1e9])}
    if kind == "stop" and r.random() < 0.4:
        return {"type": "stop", "reason": text(r, 0, 200)}
    return {"type": kind}


def stats(r: random.Random) -> p.Stats:
    count = lambda: r.choice([0, 1, 2**62, r.randint(0, 10_000)])  # noqa: E731
    rate = lambda: r.choice([0.0, 12.5, 1e300])  # noqa: E731
    maybe = lambda: r.choice([None, 0.0, 12.5, 1e300])  # noqa: E731
    extra = {"internal_errors": count(), "dropped_messages": count(),
             "database": r.choice(["ok", "unavailable"]), "database_error": r.choice([None, text(r, 0, 80)]),
             "stories_in_progress": count(), "stories_completed_in_window": count(),
             "lead_time_mean_s": maybe(), "lead_time_p50_s": maybe(), "lead_time_p85_s": maybe(),
             "lead_time_p95_s": maybe(), "cycle_time_p50_s": maybe(), "cycle_time_p85_s": maybe(),
             "cycle_time_p95_s": maybe(), "flow_window_s": maybe(), "wip_limit": count(),
             "stages": [stage_stats(r, count) for _ in range(r.choice([0, 1, 3, p.STAGES_MAX]))],
             "tasks_blocked": count(), "flow_efficiency": r.choice([None, 0.0, 0.5, 1.0]),
             "bottleneck": r.choice([None, stage_name(r)]),
             "forecast_open_p50_s": maybe(), "forecast_open_p85_s": maybe(),
             "forecast_open_p95_s": maybe(), "forecast_hit_rate_p50": r.choice([None, 0.0, 0.5, 1.0]),
             "forecast_hit_rate_p85": r.choice([None, 0.85]), "forecast_hit_rate_p95": r.choice([None, 1.0]),
             "forecast_scored": count(),
             } if r.random() < 0.5 else {}  # else as an older server sends it
    return p.Stats(seq=count(), ts=ts(r), stories_produced_per_s=rate(), stories_completed_per_s=rate(),
                   open_stories=count(), completed_stories=count(), tasks_produced_per_s=rate(),
                   tasks_completed_per_s=rate(), tasks_queued=count(), tasks_running=count(),
                   tasks_completed=count(), queued_work_s=rate(), workers=count(), workers_busy=count(),
                   workers_target=count(), min_workers=count(), max_workers=count(),
                   rate_window_s=rate(), **extra)


def stage_stats(r: random.Random, count) -> p.StageStats:
    return p.StageStats(name=stage_name(r), workers=count(), workers_busy=count(),
                        min_workers=count(), max_workers=count(), tasks_queued=count(),
                        tasks_running=count(), tasks_blocked=count(), stories=count(),
                        wip_limit=count(), tasks_ready=count(), wait_s=r.choice([0.0, 2.5, 1e9]))


def story_view(r: random.Random, with_tasks: bool) -> p.StoryView:
    tasks = None
    if with_tasks:
        tasks = [p.TaskView(r.randint(1, p.ID_MAX), text(r, 0, 20), r.randint(0, p.ESTIMATE_MS_MAX),
                            r.choice(["queued", "running", "done"]), r.randint(0, 9), ts(r),
                            r.choice([None, ts(r)]), r.choice([None, ts(r)]),
                            r.choice([None, stage_name(r)]), r.choice([0, p.ESTIMATE_MS_MAX]),
                            r.choice([None, ts(r)]))
                 for _ in range(r.choice([0, 1, 3]))]
    return p.StoryView(r.randint(1, p.ID_MAX), text(r, 1, 30), text(r, 0, 30), r.choice(["open", "done"]),
                       ts(r), r.randint(1, 500), r.randint(0, 500), r.choice([None, ts(r)]), tasks,
                       r.choice([None, ts(r)]), r.choice([None, 0.5]), r.choice([None, 1e300]),
                       r.choice([None, stage_name(r)]), r.choice([None, 1, 2**40]), r.choice([None, ts(r)]))


def valid_result(r: random.Random, op: str) -> Any:
    if op == "ping":
        return p.PingResult(text(r, 0, 20), r.choice([1, 2, 2**40]))
    if op == "create_story":
        return p.CreateStoryResult(r.randint(1, p.ID_MAX), [r.randint(1, p.ID_MAX) for _ in range(r.choice([1, 5]))])
    if op == "delete_story":
        return p.Empty()
    if op == "get_story":
        return story_view(r, True)
    if op == "list_stories":
        return p.ListStoriesResult([story_view(r, False) for _ in range(r.choice([0, 2]))], r.randint(0, 10**6))
    if op == "snapshot":
        completions = [p.Completion(r.randint(1, p.ID_MAX), ts(r), r.choice([0.0, 3.5]), r.choice([0.0, 1e300]))
                       for _ in range(r.choice([0, 2]))]
        return p.SnapshotResult(r.randint(0, 10**9), stats(r), [stats(r) for _ in range(r.choice([0, 3]))],
                                completions)
    if op == "forecast":
        when = r.random() < 0.5
        pick = lambda *values: r.choice(values)  # noqa: E731
        return p.ForecastResult(
            stories=pick(1, p.FORECAST_STORIES_MAX) if when else None,
            within_s=None if when else pick(0.5, p.FORECAST_WITHIN_MAX_S),
            p50_s=pick(None, 0.0, 1e300) if when else None, p85_s=pick(None, 3.5) if when else None,
            p95_s=pick(None, 1e300) if when else None,
            stories_p50=None if when else pick(None, 0, 2**62), stories_p85=None if when else pick(None, 7),
            stories_p95=None if when else pick(None, 0), method=pick(None, "simulated", "normal"),
            trials=pick(0, p.FORECAST_TRIALS_MAX), history_s=pick(0.0, 600.0), samples=pick(0, 600),
            interval_s=1.0, completions=pick(0, 2**62), reason=pick(None, text(r, 0, 80)))
    if op == "set_flow":
        return p.FlowResult(r.randint(0, p.WIP_LIMIT_MAX), r.choice([0.001, 60.0, p.FLOW_WINDOW_MAX_S]),
                            r.choice([None, {stage_name(r): r.randint(0, p.WIP_LIMIT_MAX)}]))
    return p.PoolResult(r.randint(0, 256), r.randint(1, 256), r.randint(0, 256), r.randint(0, 256),
                        r.choice([None, stage_name(r)]))


def valid_reply(r: random.Random) -> tuple[str, dict]:
    op = r.choice(list(p.RESULT_TYPES))
    request_id = correlation(r)
    if r.random() < 0.3:
        code = r.choice(["invalid_request", "not_found", "busy", "internal", "version_mismatch"])
        reply = p.Reply(ok=False, id=request_id, error=p.ErrorInfo(code, text(r, 0, 80)))
    else:
        reply = p.Reply(ok=True, id=request_id, result=valid_result(r, op))
    return op, msgspec.to_builtins(reply)


def valid_event(r: random.Random) -> tuple[bytes, dict]:
    topic = r.choice(list(p.EVENT_TYPES))
    if topic == p.TOPIC_STATS:
        event: Any = stats(r)
    elif topic == p.TOPIC_STORY:
        event = p.StoryEvent(seq=r.randint(0, 2**62), ts=ts(r), event=r.choice(["created", "completed", "deleted"]),
                             story_id=r.randint(1, p.ID_MAX), lead_time_s=r.choice([None, 2.5]),
                             cycle_time_s=r.choice([None, 1.5]))
    elif topic == p.TOPIC_POOL:
        event = p.PoolEvent(seq=r.randint(0, 2**62), ts=ts(r), old_size=r.randint(0, 256),
                            new_size=r.randint(0, 256), reason=text(r, 0, 80),
                            stage=r.choice([None, stage_name(r)]))
    else:
        value = r.choice([None, r.randint(0, p.WIP_LIMIT_MAX), 60.5, [r.randint(0, 8), r.randint(1, 256)]])
        event = p.NoteEvent(seq=r.randint(0, 2**62), ts=ts(r), kind=r.choice(p.NOTE_KINDS), text=text(r, 0, 80),
                            stage=r.choice([None, stage_name(r)]), old=value, new=value,
                            cause=r.choice([None, text(r, 0, 40)]), lasted_s=r.choice([None, 2.5]),
                            stages=r.choice([None, [stage_name(r) for _ in range(r.randint(1, 4))]]),
                            scenario=r.choice([None, text(r, 1, 20)]))
    return topic, msgspec.to_builtins(event)


# -- hostile values -------------------------------------------------------------------------
INT_LIMITS = [p.NAME_MAX, p.DESCRIPTION_MAX, p.TASKS_MAX, p.ESTIMATE_MS_MAX, p.LIST_LIMIT_MAX,
              p.HISTORY_SECONDS_MAX, p.WORKERS_MAX, p.ID_MAX, p.CORRELATION_MAX, p.MAX_DEPTH,
              p.TIMESTAMP_MAX, p.MAX_FRAME_BYTES, p.WIP_LIMIT_MAX, int(p.FLOW_WINDOW_MAX_S),
              p.COMPLETIONS_MAX, p.STAGES_MAX, p.STAGE_NAME_MAX, 0, 1]
STR_LIMITS = [p.NAME_MAX, p.DESCRIPTION_MAX, p.CORRELATION_MAX, p.MESSAGE_MAX, p.STAGE_NAME_MAX]
TOKENS = [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"-0", b"1.5e-400", b"0.1", b"true",
          b"false", b"null", b"[]", b"{}", b'""', b"1" * 4301, b"-" + b"9" * 5000]
SURROGATES = [Raw(b'"\\ud800"'), Raw(b'"\\udfff tail"'), Raw(b'"\\ud800\\u0041"'), Raw(b'"x\\udc00"'),
              Raw(b'"\xed\xa0\x80"'), Raw(b'"\xed\xbf\xbf"'), Raw(b'"\xc0\xaf"'), Raw(b'"\xff"'),
              "\ud800", "a\udfffb"]
DEPTHS = [p.MAX_DEPTH - 1, p.MAX_DEPTH, p.MAX_DEPTH + 1, 1000, 5000, 100_000]


def nested(r: random.Random, depth: int, inner: bytes = b"1") -> Raw:
    """`depth` levels around `inner`, built without recursion; sometimes left unclosed."""
    opener, closer = r.choice([(b"[", b"]"), (b'{"a":', b"}"), (b'[{"k":', b"}]")])
    levels = max(1, depth // (2 if opener == b'[{"k":' else 1))
    closing = closer * levels if r.random() < 0.85 else b""
    return Raw(opener * levels + inner + closing)


def json_value(r: random.Random, depth: int = 0) -> Any:
    kind = r.randrange(8 if depth < 4 else 5)
    if kind == 0:
        return r.choice([None, True, False])
    if kind == 1:
        return r.choice([0, -1, 2**53, r.randint(-(2**70), 2**70)])
    if kind == 2:
        return r.choice([0.5, -1e300, 1e-300])
    if kind in (3, 4):
        return text(r, 0, 40)
    if kind == 5:
        return [json_value(r, depth + 1) for _ in range(r.randrange(4))]
    return {text(r, 0, 8): json_value(r, depth + 1) for _ in range(r.randrange(4))}


def hostile_value(r: random.Random) -> Any:
    kind = r.randrange(9)
    if kind == 0:
        limit = r.choice(INT_LIMITS)
        return limit + r.choice([-1, 0, 1]) * r.choice([1, -1])
    if kind == 1:
        return r.choice([2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**4000, -(10**4000)])
    if kind == 2:
        return Raw(r.choice(TOKENS))
    if kind == 3:
        return r.choice(SURROGATES)
    if kind == 4:
        limit = r.choice(STR_LIMITS)
        return r.choice("xé😀[\"\\") * (limit + r.choice([0, 1]))
    if kind == 5:
        return nested(r, r.choice(DEPTHS))
    if kind == 6:
        return r.choice(["", " ", "op", "ping", "create_story", "ready", "work", "\x00", "ok"])
    return json_value(r)


# -- mutations ----------------------------------------------------------------------------------
def _containers(doc: Any, found: list) -> list:
    if isinstance(doc, dict):
        found.extend((doc, key) for key in list(doc)[:20])
        for value in list(doc.values())[:20]:
            _containers(value, found)
    elif isinstance(doc, list):
        found.extend((doc, i) for i in range(min(len(doc), 3)))
        for value in doc[:3]:
            _containers(value, found)
    return found


def mutate(r: random.Random, doc: Any) -> bytes:
    """One valid message made hostile in one or a few places, as JSON text."""
    for _ in range(r.choice([1, 1, 1, 2, 3])):
        places = _containers(doc, [])
        choice = r.randrange(7)
        if choice == 0 or not places:  # the whole message replaced, or wrapped deep
            doc = r.choice([hostile_value(r), nested(r, r.choice(DEPTHS), dump(doc)), [doc], json_value(r)])
            continue
        container, key = r.choice(places)
        if choice <= 2:  # a value swapped for a hostile one (type swaps, limits, tokens)
            container[key] = hostile_value(r)
        elif choice == 3 and isinstance(container, dict):  # a field left out
            del container[key]
        elif choice == 4 and isinstance(container, dict):  # a duplicate key, before or after
            items = list(container.items())
            extra = (key, hostile_value(r))
            items.insert(r.choice([0, len(items)]), extra)
            pairs = Pairs(items)
            doc = _replace(doc, container, pairs)
        elif choice == 5 and isinstance(container, dict):  # an unknown field, maybe surrogate-named
            container[r.choice(["extra", "\ud800", "ok", "x" * 5000, "id"])] = hostile_value(r)
        else:  # a value wrapped in nesting
            container[key] = nested(r, r.choice(DEPTHS), dump(container[key]))
    text_ = dump(doc)
    if r.random() < 0.15:
        text_ = mangle(r, text_)
    return text_


def _replace(doc: Any, old: Any, new: Any) -> Any:
    if doc is old:
        return new
    if isinstance(doc, dict):
        for key, value in doc.items():
            doc[key] = _replace(value, old, new)
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            doc[i] = _replace(value, old, new)
    return doc


def mangle(r: random.Random, text_: bytes) -> bytes:
    """Byte-level damage: truncate, flip, insert, splice."""
    if not text_:
        return bytes(r.randrange(256) for _ in range(r.randrange(8)))
    at = r.randrange(len(text_))
    kind = r.randrange(4)
    if kind == 0:
        return text_[:at]
    if kind == 1:
        return text_[:at] + bytes([r.randrange(256)]) + text_[at + 1:]
    if kind == 2:
        return text_[:at] + r.choice([b"\xed\xa0\x80", b"\\", b'"', b"[", b"}", b"\x00", b"\xff"]) + text_[at:]
    return text_ + text_[:at]


def garbage(r: random.Random) -> bytes:
    kind = r.randrange(5)
    if kind == 0:
        return bytes(r.randrange(256) for _ in range(r.choice([0, 1, 7, 64])))
    if kind == 1:
        return dump(json_value(r))
    if kind == 2:
        return dump(hostile_value(r))
    if kind == 3:
        return r.choice([b"", b" ", b"{", b"}", b"[" * 100_000, b"\xef\xbb\xbf{}", b'{"op":"ping"}\x00'])
    return nested(r, r.choice(DEPTHS)).text


def hostile(r: random.Random, valid: Any) -> bytes:
    """A frame for a decoder: mostly a mutated valid message, else garbage."""
    return mutate(r, valid) if r.random() < 0.8 else garbage(r)


# -- what a broken server sends its clients ----------------------------------------------------------
def _absurd_stats() -> dict:
    doc = msgspec.to_builtins(stats(random.Random(0)))
    doc.update(ts=1e300)
    return doc


DEEP = b"[" * 100_000
BROKEN_EVENTS: list[list[bytes]] = [
    [p.TOPIC_STATS],  # one frame
    [p.TOPIC_STATS, b"{}", b"{}"],  # three
    [b"", b""],
    [b"no-such-topic", b"{}"],
    [p.TOPIC_STATS, b"not json"],
    [p.TOPIC_STATS, DEEP],
    [p.TOPIC_STATS, b'{"x": ' + DEEP + b', "seq": 1}'],  # skipped as an unknown field: recursed
    [p.TOPIC_STATS, dump(_absurd_stats())],  # a time past TIMESTAMP_MAX
    [p.TOPIC_STORY, b'{"seq": 1, "ts": 1.0, "event": "exploded", "story_id": 1}'],
    [p.TOPIC_POOL, b'{"seq": 1, "ts": NaN, "old_size": 1, "new_size": 2, "reason": ""}'],
    [p.TOPIC_STORY, b'{"seq": 1, "ts": 1.0, "event": "created", "story_id": "\xed\xa0\x80"}'],
]


def broken_replies(request_id: int) -> list[bytes]:
    """Replies a client must drop (and count) before the real one; some carry the right id."""
    return [
        b"not json",
        b"",
        DEEP,
        b'{"ok": true, "id": %d, "result": ' % request_id + DEEP + b"}",
        b'{"ok": "yes", "id": %d}' % request_id,
        b'{"ok": true, "id": %d, "result": {"server_version": 5, "protocol_version": "one"}}' % request_id,
        b'{"ok": true, "id": %d, "result": {"story_id": 1, "name": "x", "description": "", "status": "open",'
        b' "created_at": 1e300, "tasks_total": 1, "tasks_done": 0}}' % request_id,
        b'{"ok": true, "id": %d, "' % request_id + b"\xed\xa0\x80" + b'": 1}',
    ]


class BrokenServer:
    """A stand-in's behaviour (support.StandInServer): to each request garbage first, then
    (unless `mute`) the right answer; between valid stats events, every broken one."""

    def __init__(self, mute: bool = False):
        self.mute = mute
        self.seq = 0
        self.story_done = False

    def stats(self) -> p.Stats:
        event = stats(random.Random(self.seq))
        event.seq, event.ts = self.seq, time.time()
        return event

    def answer(self, request: p.Request) -> list[bytes]:
        garbage = broken_replies(request.id) if isinstance(request.id, int) else []
        if self.mute:
            return garbage
        if isinstance(request, p.Ping):
            result = p.PingResult("stand-in", p.PROTOCOL_VERSION)
        elif isinstance(request, p.Snapshot):
            result = p.SnapshotResult(self.seq, self.stats(), [])
        elif isinstance(request, p.CreateStory):
            result = p.CreateStoryResult(7, [70])
        elif isinstance(request, p.GetStory):
            result = p.StoryView(7, "s", "", "done" if self.story_done else "open", 1.0, 1,
                                 int(self.story_done), 2.0 if self.story_done else None, [])
        else:
            result = p.ListStoriesResult([p.StoryView(7, "s", "", "open", 1.0, 1, 0)], 1)
        return garbage + [p.ok(request.id, result)]

    def cycle(self) -> list[list[bytes]]:
        self.seq += 1
        valid = [p.TOPIC_STATS, p.encode(self.stats())]
        return [*BROKEN_EVENTS, valid]
