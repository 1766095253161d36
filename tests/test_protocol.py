"""The protocol's schemas, validation messages and helpers; docs/protocol.md checked against them."""

from __future__ import annotations

import re
import subprocess
import sys
import typing

import msgspec
import pytest

from storypulse import endpoints, protocol
from storypulse.loadgen import Pacer, StoryGenerator, parse_range
from support import REPO

DOC = REPO / "docs" / "protocol.md"
EXAMPLE = re.compile(r"<!-- example: ([^>]+?) -->\s*\n```(\w+)\n(.*?)\n```", re.S)


def examples() -> list[tuple[str, str, str]]:
    """(kind, name, body) of every example in the document, in order."""
    found = []
    for marker, _lang, body in EXAMPLE.findall(DOC.read_text(encoding="utf-8")):
        kind, _, name = marker.partition(" ")
        found.append((kind, name.strip(), body))
    return found


def of_kind(kind: str) -> list[tuple[str, str]]:
    return [(name, body) for k, name, body in examples() if k == kind]


# -- the document's examples ---------------------------------------------------
def test_document_has_examples_of_every_kind():
    kinds = {k for k, _, _ in examples()}
    unknown = kinds - {"request", "reply", "error", "invalid-request", "event", "worker", "to-worker",
                       "python-client"}
    assert not unknown, f"example markers of unknown kind: {unknown}"
    assert len(examples()) >= 30


@pytest.mark.parametrize("name,body", of_kind("request"))
def test_request_examples_decode(name, body):
    request = protocol.decode_request(body.encode())
    assert request.__struct_config__.tag == name


@pytest.mark.parametrize("name,body", of_kind("reply"))
def test_reply_examples_decode(name, body):
    reply = protocol.decode_reply(body.encode())
    assert reply.ok and reply.error is None
    msgspec.convert(reply.result, protocol.RESULT_TYPES[name])


@pytest.mark.parametrize("name,body", of_kind("error"))
def test_error_examples_decode(name, body):
    reply = protocol.decode_reply(body.encode())
    assert not reply.ok and reply.error is not None
    assert reply.error.code == name


def test_every_op_has_a_request_and_a_reply_example():
    assert {name for name, _ in of_kind("request")} == set(protocol.OPS)
    assert {name for name, _ in of_kind("reply")} == set(protocol.OPS)


def test_every_error_code_but_the_reserved_one_has_an_example():
    codes = set(typing.get_args(typing.get_type_hints(protocol.ErrorInfo)["code"]))
    documented = {name for name, _ in of_kind("error")}
    assert documented <= codes
    assert codes - documented <= {"version_mismatch"}  # reserved: no server sends it yet
    text = DOC.read_text(encoding="utf-8")
    for code in codes:
        assert f"| `{code}` |" in text, f"error code {code} missing from the errors table"


def test_invalid_request_examples_get_the_documented_reply():
    """Each invalid-request example is followed by its reply, whose message is the real one."""
    items = examples()
    pairs = [(items[i][2], items[i + 1]) for i, item in enumerate(items) if item[0] == "invalid-request"]
    assert len(pairs) >= 6
    for frame, (kind, code, reply_body) in pairs:
        assert (kind, code) == ("error", "invalid_request")
        with pytest.raises(protocol.ProtocolError) as caught:
            protocol.decode_request(frame.encode())
        reply = protocol.decode_reply(reply_body.encode())
        assert reply.error.message == str(caught.value)
        assert reply.id == protocol.correlation_id(frame.encode())


@pytest.mark.parametrize("topic,body", of_kind("event"))
def test_event_examples_decode(topic, body):
    event = protocol.decode_event(topic.encode(), body.encode())
    assert isinstance(event, protocol.EVENT_TYPES[topic.encode()])


def test_every_topic_has_an_example():
    assert {name.encode() for name, _ in of_kind("event")} == set(protocol.EVENT_TYPES)


def test_every_field_of_stats_stories_and_completions_appears_in_an_example():
    """Every field has an example: the flow additions too, not only the schema's say-so."""
    import json

    def keys(kind: str, name: str, pick) -> set[str]:
        found: set[str] = set()
        for body in (b for n, b in of_kind(kind) if n == name):
            for item in pick(json.loads(body)):
                found |= set(item)
        return found

    def fields(t: type) -> set[str]:
        return set(t.__struct_fields__)

    assert fields(protocol.Stats) <= keys("event", "stats", lambda e: [e])
    assert fields(protocol.StoryEvent) <= keys("event", "story", lambda e: [e])
    stories = keys("reply", "get_story", lambda r: [r["result"]]) | keys(
        "reply", "list_stories", lambda r: r["result"]["stories"])
    assert fields(protocol.StoryView) <= stories
    assert fields(protocol.Completion) <= keys("reply", "snapshot", lambda r: r["result"]["completions"])
    assert fields(protocol.SnapshotResult) <= keys("reply", "snapshot", lambda r: [r["result"]])
    assert fields(protocol.FlowResult) <= keys("reply", "set_flow", lambda r: [r["result"]])
    notes = keys("event", "note", lambda e: [e]) | keys("reply", "snapshot", lambda r: r["result"].get("notes") or [])
    assert fields(protocol.NoteEvent) <= notes


def test_every_kind_of_note_is_documented_with_an_example():
    import json

    text = DOC.read_text(encoding="utf-8")
    shown = {json.loads(body)["kind"] for name, body in of_kind("event") if name == "note"}
    for kind in protocol.NOTE_KINDS:
        assert f"| `{kind}` |" in text, f"note kind {kind} missing from the kinds table"
    assert {"wip_limit", "pool_bounds", "outage_began", "outage_ended", "restored"} <= shown


def test_worker_message_examples_decode():
    sent = {name: protocol.decode_worker_message(body.encode()) for name, body in of_kind("worker")}
    received = {name: protocol.decode_to_worker(body.encode()) for name, body in of_kind("to-worker")}
    assert {type(m) for m in sent.values()} == set(typing.get_args(protocol.WorkerMessage))
    assert {type(m) for m in received.values()} == set(typing.get_args(protocol.ServerToWorker))
    for name, message in [*sent.items(), *received.items()]:
        assert message.__struct_config__.tag == name


def test_limits_table_matches_the_code():
    rows = re.findall(r"^\| `([A-Z_]+)` \| (\d+) \|", DOC.read_text(encoding="utf-8"), re.M)
    table = {name: int(value) for name, value in rows}
    limits = {"MAX_FRAME_BYTES", "NAME_MAX", "DESCRIPTION_MAX", "TASKS_MAX", "ESTIMATE_MS_MAX",
              "LIST_LIMIT_MAX", "HISTORY_SECONDS_MAX", "WORKERS_MAX", "ID_MAX", "CORRELATION_MAX",
              "WIP_LIMIT_MAX", "FLOW_WINDOW_MAX_S", "COMPLETIONS_MAX",
              "MAX_DEPTH", "MESSAGE_MAX", "TIMESTAMP_MAX", "STAGES_MAX", "STAGE_NAME_MAX",
              "FORECAST_STORIES_MAX", "FORECAST_WITHIN_MAX_S", "FORECAST_TRIALS_MIN", "FORECAST_TRIALS_MAX",
              "NOTES_MAX"}
    assert set(table) == limits
    for name, value in table.items():
        assert getattr(protocol, name) == value, name


def test_python_client_example_runs_against_a_real_server(server):
    (code,) = [body for name, body in of_kind("python-client")]
    code = (code.replace("127.0.0.1:5555", f"127.0.0.1:{server.port}")
                .replace("127.0.0.1:5556", f"127.0.0.1:{server.port + 1}"))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert re.search(r"story \d+ done in", done.stdout), done.stdout
    assert "task" in done.stdout and "draft" in done.stdout


# -- validation messages name the field and the limit ---------------------------
def rejected(frame: bytes | str) -> str:
    with pytest.raises(protocol.ProtocolError) as caught:
        protocol.decode_request(frame.encode() if isinstance(frame, str) else frame)
    return str(caught.value)


def test_wrong_type_names_the_field():
    message = rejected('{"op": "get_story", "story_id": "7"}')
    assert "`$.story_id`" in message and "int" in message and "str" in message


def test_missing_field_is_named():
    assert "`story_id`" in rejected('{"op": "delete_story"}')
    assert "`op`" in rejected('{"id": 3}')


def test_unknown_field_is_named():
    assert "`colour`" in rejected('{"op": "ping", "colour": "red"}')
    assert "`priority`" in rejected('{"op": "create_story", "name": "a", "tasks": [{"estimate_ms": 1, "priority": 2}]}')


def test_unknown_op_lists_the_known_ones():
    message = rejected('{"op": "fly"}')
    assert "'fly'" in message and "`$.op`" in message
    for op in protocol.OPS:
        assert op in message


@pytest.mark.parametrize("frame,field,limit", [
    ('{"op": "create_story", "name": "a", "tasks": [{"estimate_ms": 3600001}]}', "$.tasks[0].estimate_ms", "3600000"),
    ('{"op": "create_story", "name": "a", "tasks": [{"estimate_ms": -1}]}', "$.tasks[0].estimate_ms", ">= 0"),
    ('{"op": "create_story", "name": "", "tasks": [{"estimate_ms": 1}]}', "$.name", ">= 1"),
    ('{"op": "create_story", "name": "%s", "tasks": [{"estimate_ms": 1}]}' % ("n" * 201), "$.name", "200"),
    ('{"op": "create_story", "name": "a", "description": "%s", "tasks": [{"estimate_ms": 1}]}' % ("d" * 4001),
     "$.description", "4000"),
    ('{"op": "create_story", "name": "a", "tasks": []}', "$.tasks", ">= 1"),
    ('{"op": "create_story", "name": "a", "tasks": [%s]}' % ",".join(['{"estimate_ms": 1}'] * 501), "$.tasks", "500"),
    ('{"op": "list_stories", "limit": 1001}', "$.limit", "1000"),
    ('{"op": "list_stories", "limit": 0}', "$.limit", ">= 1"),
    ('{"op": "list_stories", "offset": -1}', "$.offset", ">= 0"),
    ('{"op": "list_stories", "status": "closed"}', "$.status", "closed"),
    ('{"op": "get_story", "story_id": 0}', "$.story_id", ">= 1"),
    ('{"op": "get_story", "story_id": 9007199254740992}', "$.story_id", "9007199254740991"),
    ('{"op": "snapshot", "history_seconds": 3601}', "$.history_seconds", "3600"),
    ('{"op": "set_pool", "max_workers": 257}', "$.max_workers", "256"),
    ('{"op": "set_pool", "max_workers": 0}', "$.max_workers", ">= 1"),
    ('{"op": "ping", "id": "%s"}' % ("i" * 129), "$.id", "128"),
])
def test_out_of_range_names_the_field_and_the_limit(frame, field, limit):
    message = rejected(frame)
    assert f"`{field}`" in message and limit in message


def test_oversize_frame_is_refused_unread():
    frame = b'{"op": "ping", "pad": "' + b"x" * protocol.MAX_FRAME_BYTES + b'"}'
    message = rejected(frame)
    assert str(len(frame)) in message and str(protocol.MAX_FRAME_BYTES) in message


@pytest.mark.parametrize("frame", [b"{not json", b"", b"\xff\xfe", b'{"op": "ping"'])
def test_non_json_is_refused(frame):
    assert rejected(frame).startswith("not valid JSON")


def test_not_an_object_is_refused():
    assert "object" in rejected(b"[1, 2]")


def test_a_valid_request_decodes_with_defaults():
    request = protocol.decode_request(b'{"op": "create_story", "name": "a", "tasks": [{"estimate_ms": 5}]}')
    assert isinstance(request, protocol.CreateStory)
    assert request.description == "" and request.tasks[0].name == "" and request.id is None
    listing = protocol.decode_request(b'{"op": "list_stories"}')
    assert (listing.status, listing.offset, listing.limit) == (None, 0, 100)


# -- correlation_id ------------------------------------------------------------
@pytest.mark.parametrize("frame,expected", [
    (b'{"op": "fly", "id": 7}', 7),
    (b'{"op": "fly", "id": "abc"}', "abc"),
    (b'{"id": 7, "story_id": "x"}', 7),
    (b'{"op": "fly"}', None),
    (b'{"op": "fly", "id": true}', None),  # a bool is not an id
    (b'{"op": "fly", "id": 1.5}', None),
    (b'{"op": "fly", "id": [1]}', None),
    (b'{"op": "fly", "id": "%s"}' % (b"i" * 129), None),
    (b"[7]", None),
    (b"{broken", None),
])
def test_correlation_id_is_best_effort(frame, expected):
    assert protocol.correlation_id(frame) == expected


def test_correlation_id_ignores_an_oversize_frame():
    frame = b'{"id": 5, "pad": "' + b"x" * protocol.MAX_FRAME_BYTES + b'"}'
    assert protocol.correlation_id(frame) is None


def test_error_reply_round_trips():
    reply = protocol.decode_reply(protocol.error(9, protocol.NOT_FOUND, "story 9 does not exist"))
    assert (reply.ok, reply.id, reply.error.code) == (False, 9, "not_found")
    reply = protocol.decode_reply(protocol.ok("a", {"story_id": 1, "task_ids": [2]}))
    assert msgspec.convert(reply.result, protocol.CreateStoryResult).task_ids == [2]


# -- endpoints.parse_server ------------------------------------------------------
@pytest.mark.parametrize("text,host,port", [
    (None, "127.0.0.1", 5555),
    ("", "127.0.0.1", 5555),
    ("example.org", "example.org", 5555),
    ("10.0.0.5:6000", "10.0.0.5", 6000),
    ("[::1]", "::1", 5555),
    ("[::1]:7000", "::1", 7000),
    ("::1", "::1", 5555),  # bare IPv6: more than one colon, no port
    ("localhost:1", "localhost", 1),
    ("localhost:65533", "localhost", 65533),
])
def test_parse_server(text, host, port):
    parsed = endpoints.parse_server(text)
    assert (parsed.host, parsed.port) == (host, port)


def test_endpoints_are_three_consecutive_ports():
    e = endpoints.parse_server("[::1]:7000")
    assert (e.requests, e.events, e.workers) == ("tcp://[::1]:7000", "tcp://[::1]:7001", "tcp://[::1]:7002")
    assert str(endpoints.parse_server("h:9")) == "h:9"


@pytest.mark.parametrize("text,words", [
    ("host:0", "1-65533"),
    ("host:65534", "1-65533"),  # P+2 would not be a port
    ("host:http", "not a number"),
    ("host:", "not a number"),
    (":5555", "host is empty"),
    ("[::1", "missing ']'"),
    ("[::1]5555", "':PORT'"),
    ("[::1]:x", "not a number"),
])
def test_parse_server_rejects(text, words):
    with pytest.raises(ValueError) as caught:
        endpoints.parse_server(text)
    assert words in str(caught.value) and repr(text) in str(caught.value)


# -- loadgen ---------------------------------------------------------------------
@pytest.mark.parametrize("text,expected", [("1-5", (1, 5)), ("3", (3, 3)), ("0-0", (0, 0))])
def test_parse_range(text, expected):
    assert parse_range(text, name="--tasks", low=0, high=10) == expected


@pytest.mark.parametrize("text,words", [
    ("5-1", "A <= B"), ("0-11", "<= 10"), ("-1", "A-B"), ("a-b", "A-B"), ("1-2-3", "A-B"), ("", "A-B"),
])
def test_parse_range_rejects_naming_the_option(text, words):
    with pytest.raises(ValueError) as caught:
        parse_range(text, name="--estimate-ms", low=0, high=10)
    assert "--estimate-ms" in str(caught.value) and words in str(caught.value)


def test_generated_stories_are_valid_requests_within_the_ranges():
    gen = StoryGenerator(tasks=(2, 4), estimate_ms=(10, 20), seed=1)
    for _ in range(50):
        story = gen.story()
        request = protocol.decode_request(protocol.encode({"op": "create_story", **story}))
        assert 2 <= len(request.tasks) <= 4
        assert all(10 <= t.estimate_ms <= 20 for t in request.tasks)
    again = StoryGenerator(tasks=(2, 4), estimate_ms=(10, 20), seed=1)
    assert again.story() == StoryGenerator(tasks=(2, 4), estimate_ms=(10, 20), seed=1).story()


def test_pacer_keeps_a_steady_rate():
    pacer = Pacer(rate=10, start=100.0)
    assert pacer.due(100.0) == 1  # the first story at the start
    assert pacer.due(100.05) == 0
    assert pacer.wait(100.05) == pytest.approx(0.05)
    assert pacer.due(100.1) == 1
    total = sum(pacer.due(100.1 + i * 0.01) for i in range(1, 101))  # one more second
    assert total == 10


def test_pacer_skips_missed_ticks_instead_of_bursting():
    pacer = Pacer(rate=100, start=0.0)
    assert pacer.due(0.0) == 1
    # Stalled for 10 s: 1,000 ticks are due, only max_burst go out, the rest are skipped.
    assert pacer.due(10.0, max_burst=5) == 5
    assert pacer.due(10.001) == 0  # no debt carried over
    assert pacer.wait(10.001) == pytest.approx(0.009)


def test_pacer_rejects_a_rate_of_zero():
    with pytest.raises(ValueError):
        Pacer(rate=0, start=0.0)
