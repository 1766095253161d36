"""`--log-format json`: every line the server (and its workers) writes is one JSON object with
time, level, logger and message, and the structured fields of pool decisions, outages and the
start-up; `text` stays as it was."""

from __future__ import annotations

import io
import json
import logging
import sqlite3

import pytest

from storypulse.server.logs import JsonFormatter, setup
from support import wait_for
from test_server_faults import Acknowledged
from test_server_start import start

KEYS = {"time", "level", "logger", "message", "pid"}


def parse_every_line(text: str) -> list[dict]:
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        assert line.strip(), f"an empty line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AssertionError(f"line {number} is not JSON ({exc}): {line!r}") from None
        assert isinstance(record, dict) and KEYS <= set(record), line
        records.append(record)
    return records


def test_a_record_with_fields_and_a_traceback_is_one_line_of_json():
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("storypulse.test.logs")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("pool target %d -> %d: %s", 1, 3, "queue\nof 40", extra={
            "event": "pool.target", "old": 1, "new": 3, "reason": "queue\nof 40", "odd": {1, 2}})
        try:
            raise ValueError("bad\nthing")
        except ValueError:
            logger.exception("it failed")
    finally:
        logger.removeHandler(handler)
    first, second = parse_every_line(out.getvalue())
    assert first["message"] == "pool target 1 -> 3: queue\nof 40" and first["level"] == "warning"
    assert (first["event"], first["old"], first["new"]) == ("pool.target", 1, 3)
    assert first["logger"] == "storypulse.test.logs" and first["time"].endswith("Z")
    assert first["odd"] in ("{1, 2}", "{2, 1}")  # what JSON cannot hold, as text
    assert "ValueError: bad\nthing" in second["exc"] and second["level"] == "error"


def test_the_server_logs_only_json_with_its_fields(server_factory):
    server = server_factory(time_scale=0.01, workers=1, max_workers=3,
                            extra=["--log-format", "json", "--quiet-window", "0.5"]).start()
    with server.client(timeout=10) as client:
        for i in range(40):  # a queue: the pool grows, then shrinks back when it is gone
            client.create_story(f"s{i}", [{"estimate_ms": 2000}] * 3)
        made = Acknowledged(client)
        other = sqlite3.connect(server.db, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")  # the database refuses writes: an outage
        try:
            wait_for(lambda: not made.create(), 20, interval=0, what="a write refused")
        finally:
            other.execute("ROLLBACK")
            other.close()
        wait_for(made.create, 20, interval=0.05, what="writes accepted again")
    wait_for(lambda: '"pool.target"' in server.log() and '"database.resumed"' in server.log(), 20,
             what="a pool decision and the outage's end")
    assert server.stop() == 0
    records = parse_every_line(server.log())
    events = {}
    for record in records:
        events.setdefault(record.get("event"), []).append(record)
    start_line = events["start"][0]
    assert start_line["durability"] == "power-loss" and start_line["database"].startswith("Sqlite")
    grow = events["pool.target"][0]
    assert grow["new"] > grow["old"] and grow["reason"] in grow["message"]
    outage = events["database.outage"][0]
    assert "locked" in outage["cause"] and outage["level"] == "error"
    resumed = events["database.resumed"][0]
    assert resumed["tries"] >= 1 and resumed["outage_s"] > 0
    assert {r["level"] for r in records} <= {"debug", "info", "warning", "error", "critical"}


def test_a_start_refused_says_why_in_one_json_line(server_factory):
    first = server_factory().start()
    code, out, err = start(first.db, "--log-format", "json")
    assert code == 1
    (line,) = parse_every_line(out + err)
    assert line["event"] == "start.failed" and line["exit_code"] == 1 and line["level"] == "critical"
    assert "in use by another storypulse server" in line["cause"] and str(first.db) in line["message"]


def test_text_stays_text(server_factory):
    server = server_factory(time_scale=0.01).start()
    assert server.stop() == 0
    lines = server.log().splitlines()
    assert lines and not any(line.startswith("{") for line in lines)
    assert any(" INFO    storypulse.server: storypulse " in line for line in lines), lines[:3]


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_setup_text_writes_the_usual_lines(restore_logging):
    out = io.StringIO()
    setup("info", "text", stream=out)
    logging.getLogger("storypulse.x").info("hello %s", "there", extra={"event": "e"})
    assert out.getvalue().rstrip().endswith("INFO    storypulse.x: hello there")
