"""Property-based fuzzing of every decoder: any input gives a message or ProtocolError, nothing else.

Hypothesis drives the generators of fuzzing.py through `st.randoms()`. The
other half keeps the properties honest: valid messages of every kind still
decode (a decoder that refused everything would pass the first half), and the
depth check agrees with a real parser's depth on generated JSON.
STORYPULSE_FUZZ_EXAMPLES scales the examples per test (`make fuzz`).
"""

from __future__ import annotations

import json
import os
import random

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fuzzing
from storypulse import protocol as p
from storypulse.json_depth import too_deep

EXAMPLES = int(os.environ.get("STORYPULSE_FUZZ_EXAMPLES", "300"))
fuzz = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
rngs = st.randoms(use_true_random=False)


def refuses_cleanly(decode, frame: bytes):
    """Decode; anything but a message or ProtocolError fails the test, naming the frame."""
    try:
        return decode(frame)
    except p.ProtocolError:
        return None
    except BaseException as exc:  # noqa: BLE001 - that is the property under test
        raise AssertionError(f"{type(exc).__name__}: {exc} on {frame[:200]!r} ({len(frame)} bytes)") from exc


def event_decoder(topic: bytes):
    return lambda frame: p.decode_event(topic, frame)


# -- any input: a message or ProtocolError --------------------------------------------------
@fuzz
@given(rngs)
def test_decode_request_on_hostile_input(r):
    frame = fuzzing.hostile(r, fuzzing.valid_request(r))
    refuses_cleanly(p.decode_request, frame)
    found = p.correlation_id(frame)  # runs on every refused frame: must never raise
    assert found is None or (isinstance(found, (int, str)) and not isinstance(found, bool))


@fuzz
@given(rngs)
def test_worker_messages_on_hostile_input(r):
    refuses_cleanly(p.decode_worker_message, fuzzing.hostile(r, fuzzing.valid_worker_message(r)))
    refuses_cleanly(p.decode_to_worker, fuzzing.hostile(r, fuzzing.valid_to_worker(r)))


@fuzz
@given(rngs)
def test_decode_reply_and_its_result_on_hostile_input(r):
    op, reply = fuzzing.valid_reply(r)
    decoded = refuses_cleanly(p.decode_reply, fuzzing.hostile(r, reply))
    if decoded is not None and decoded.ok:
        refuses_cleanly(lambda _: p.convert_result(decoded.result, p.RESULT_TYPES[op]), b"")


@fuzz
@given(rngs, st.binary(max_size=12))
def test_decode_event_on_hostile_input(r, odd_topic):
    topic, event = fuzzing.valid_event(r)
    frame = fuzzing.hostile(r, event)
    refuses_cleanly(event_decoder(topic), frame)
    refuses_cleanly(event_decoder(odd_topic), frame)
    refuses_cleanly(lambda f: p.decode_event_frames([topic, f, f][: r.randrange(4)]), frame)


@fuzz
@given(st.binary(max_size=4096))
def test_every_decoder_on_raw_bytes(frame):
    for decode in (p.decode_request, p.decode_worker_message, p.decode_to_worker, p.decode_reply,
                   *(event_decoder(t) for t in p.EVENT_TYPES)):
        refuses_cleanly(decode, frame)
    p.correlation_id(frame)


@pytest.mark.parametrize("depth", fuzzing.DEPTHS)
def test_every_decoder_on_deep_nesting(depth):
    r = random.Random(depth)
    for _ in range(20):
        frame = fuzzing.nested(r, depth, b'{"op": "ping", "type": "hb", "ok": true}').text
        wrapped = b'{"x": ' + frame + b', "op": "ping", "type": "hb", "ok": true}'  # the tag after it
        for decode in (p.decode_request, p.decode_worker_message, p.decode_to_worker, p.decode_reply,
                       *(event_decoder(t) for t in p.EVENT_TYPES)):
            refuses_cleanly(decode, frame)
            refuses_cleanly(decode, wrapped)
        assert p.correlation_id(wrapped) is None or depth < p.MAX_DEPTH


@fuzz
@given(st.one_of(st.none(), st.integers(), st.text(), st.binary(), st.floats(), st.lists(st.integers())),
       st.text(st.characters(codec=None, categories=None)),
       st.sampled_from([p.INVALID, p.NOT_FOUND, p.BUSY, p.INTERNAL]))
def test_error_replies_never_raise_and_always_decode(request_id, message, code):
    for text in (message, message + "\ud800", "\udc80" * 3000):
        reply = p.decode_reply(p.error(request_id, code, text))
        assert reply.ok is False and len(reply.error.message) <= p.MESSAGE_MAX + 1


# -- valid input still decodes: the properties above could otherwise pass by refusing all --
@fuzz
@given(rngs)
def test_valid_messages_decode(r):
    request = fuzzing.valid_request(r)
    decoded = p.decode_request(fuzzing.dump(request))
    assert decoded.__struct_config__.tag == request["op"]
    if "id" in request:
        assert decoded.id == request["id"]
    message = fuzzing.valid_worker_message(r)
    assert p.decode_worker_message(fuzzing.dump(message)).__struct_config__.tag == message["type"]
    message = fuzzing.valid_to_worker(r)
    assert p.decode_to_worker(fuzzing.dump(message)).__struct_config__.tag == message["type"]
    op, reply = fuzzing.valid_reply(r)
    decoded = p.decode_reply(fuzzing.dump(reply))
    if decoded.ok:
        p.convert_result(decoded.result, p.RESULT_TYPES[op])
    else:
        assert decoded.error.code == reply["error"]["code"]
    topic, event = fuzzing.valid_event(r)
    assert isinstance(p.decode_event(topic, fuzzing.dump(event)), p.EVENT_TYPES[topic])


def test_a_stats_event_of_an_older_server_still_decodes():
    old = msgspec.to_builtins(fuzzing.stats(random.Random(1)))
    old.pop("internal_errors", None)
    old.pop("dropped_messages", None)
    decoded = p.decode_event(p.TOPIC_STATS, json.dumps(old).encode())
    assert (decoded.internal_errors, decoded.dropped_messages) == (0, 0)


# -- the depth check against a real parser ----------------------------------------------------
def depth_of(value) -> int:
    """Nesting depth as JSON counts it, without recursion (values can be deep)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, (list, dict)):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


json_text = st.text(st.sampled_from('ab[]{}"\\\n/é'), max_size=8)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | json_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(json_text, inner, max_size=3),
    max_leaves=60,
)


@fuzz
@given(json_values, st.integers(0, 40), st.sampled_from(["[", '{"k": ', '["s[{\\"", ']))
def test_depth_check_agrees_with_a_parser(value, extra, opener):
    closer = {"[": "]", '{"k": ': "}", '["s[{\\"", ': "]"}[opener]
    text = opener * extra + json.dumps(value, ensure_ascii=False) + closer * extra
    depth = depth_of(json.loads(text))
    for limit in (p.MAX_DEPTH, 1, 5):
        assert too_deep(text.encode(), limit) == (depth > limit), (text[:200], depth, limit)


def parser_depth(frame: bytes) -> int:
    """The deepest a JSON parser gets in `frame` before its first error (a plain reference scan)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in frame:
        char = chr(byte)
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
            if depth < 0:
                break  # a parser stops here
        elif char == "\\":
            break  # outside a string: a syntax error
    return deepest


soup = st.lists(st.sampled_from([b"[", b"]", b"{", b"}", b'"', b"\\", b"a", b",", b":", b"[[[", b"]]]"]),
                max_size=400).map(b"".join)


@fuzz
@given(soup, st.sampled_from([1, 3, 8]))
def test_what_passes_the_depth_check_never_nests_deeper_in_a_parser(frame, limit):
    """Malformed input too: passing the check means a parser never goes deeper than the limit."""
    if not too_deep(frame, limit):
        assert parser_depth(frame) <= limit, frame


def test_depth_check_on_every_bracket_string_up_to_14():
    """Exhaustive where random input is thin: depth limit+1 reached after a sibling (no long run)."""
    for size in range(15):
        for bits in range(2**size):
            frame = bytes(b"[]"[(bits >> i) & 1] for i in range(size))
            depth = parser_depth(frame)
            balanced = _closes_in_order(frame)
            for limit in (1, 2, 3, 4):
                if balanced:
                    assert too_deep(frame, limit) == (depth > limit), (frame, limit)
                elif not too_deep(frame, limit):
                    assert depth <= limit, (frame, limit)


def _closes_in_order(frame: bytes) -> bool:
    open_ = 0
    for byte in frame:
        open_ += 1 if byte == ord("[") else -1
        if open_ < 0:
            return False
    return open_ == 0
