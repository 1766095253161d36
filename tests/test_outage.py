"""A database that refuses writes: the service's answers to a refused commit, the retry, the backoff."""

from __future__ import annotations

import pytest

from storypulse import protocol
from storypulse.server.config import ServerConfig
from storypulse.server.store import Store
import drive


def _service_on(path):
    from storypulse.server.pool import Pool
    from storypulse.server.service import Service

    store = Store.open(str(path))
    pool = Pool("tcp://127.0.0.1:1", heartbeat=0.5, min_workers=1, max_workers=1, quiet_window=5)
    return store, Service(ServerConfig.from_options({}), store, pool, now=0.0)


CREATE = b'{"op": "create_story", "id": 1, "name": "a", "tasks": [{"estimate_ms": 1}]}'


def test_a_refused_commit_refuses_its_creates_holds_its_deletes_and_resumes(tmp_path):
    import sqlite3

    path = tmp_path / "c.db"
    store, service = _service_on(path)
    store.db.execute_sql("PRAGMA busy_timeout = 20")
    service.handle_request([b"c"], CREATE, 0.0, 1.0)
    out = drive.settle(service, 0.0, 1.0)
    assert out.committed and out.answers[0].result["story_id"] == 1
    assert out.story_events() == [("created", 1)]  # published after the commit

    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    service.handle_request([b"c"], CREATE.replace(b'"id": 1', b'"id": 2'), 1.0, 1.0)
    service.handle_request([b"c"], b'{"op": "delete_story", "id": 3, "story_id": 1}', 1.0, 1.0)
    out = drive.settle(service, 1.0, 1.0)
    assert not out.committed
    assert service.outage is not None and "locked" in service.outage.cause
    assert str(path) in service.outage.cause
    (create,) = out.answers  # the new story: a definite no, at once
    assert (create.id, create.ok, create.error.code) == (2, False, protocol.UNAVAILABLE)
    assert "locked" in create.error.message and str(path) in create.error.message
    assert len(service.group.held) == 1  # the delete's reply waits for its commit
    assert 2 not in service.state.stories and out.story_events() == []  # nothing stored, nothing said
    assert [e.kind for e in out.events] == ["outage_began"]  # but the outage itself, for the charts
    assert service.group.events == [("deleted", 1)]

    service.handle_request([b"c"], b'{"op": "ping", "id": 4}', 1.0, 1.0)
    service.handle_request([b"c"], CREATE.replace(b'"id": 1', b'"id": 5'), 1.0, 1.0)
    service.handle_request([b"c"], b'{"op": "delete_story", "id": 6, "story_id": 1}', 1.0, 1.0)
    ping, create, delete = drive.settle(service, 1.0, 1.0).answers  # not due: no try
    assert ping.ok and ping.id == 4
    assert (create.ok, create.error.code) == (False, protocol.UNAVAILABLE)
    assert (delete.ok, delete.error.code) == (False, protocol.UNAVAILABLE)
    stats = service.stats(1.0, 1.0, 0)
    assert stats.database == "unavailable" and "locked" in stats.database_error
    assert stats.open_stories == 0

    assert service.commit(1.01, 1.01) is False  # not due yet: no try, no wait on the lock
    assert service.outage.failures == 1
    other.execute("ROLLBACK")
    other.close()
    out = drive.settle(service, service.outage.retry_at, 2.0)
    (held,) = out.answers
    assert held.ok and held.id == 3 and out.story_events() == [("deleted", 1)]
    assert service.outage is None and service.stats(2.0, 2.0, 0).database == "ok"
    assert store.story(1) is None and store.story(2) is None
    service.handle_request([b"c"], CREATE, 2.0, 2.0)
    assert drive.settle(service, 2.0, 2.0).answers[0].result["story_id"] == 3  # never reused
    store.close()


def test_outage_backoff_grows_to_a_ceiling():
    from storypulse.server.outage import FIRST_RETRY_S, MAX_RETRY_S, Outage

    outage = Outage("database is full: x", now=100.0)
    assert not outage.due(100.0) and outage.due(100.0 + FIRST_RETRY_S)
    delays = []
    for _ in range(10):
        now = outage.retry_at
        outage.refused_again("database is full: x", now)
        delays.append(outage.retry_at - now)
    assert delays[0] == pytest.approx(2 * FIRST_RETRY_S)
    assert delays == sorted(delays) and delays[-1] == MAX_RETRY_S
    assert outage.lasted(outage.retry_at) > sum(delays[:-1])
