"""The server's notes and the flow window's coverage, in the Service alone (docs/protocol.md, `note`).

As tests/test_service_stages.py: a Store on a temporary SQLite file, pools that only
keep books, and the test plays the loop (drive.settle) with the time it chooses. A
note must come out exactly when a setting really changes, numbered in the one seq
with every other event, and ride in the snapshot so that a late joiner sees it.
"""

from __future__ import annotations

import drive
from storypulse import protocol
from storypulse.server.config import ServerConfig
from storypulse.server.pools import Pools
from storypulse.server.service import Service
from storypulse.server.store import Store
from test_service_stages import WALL, Board, board  # noqa: F401 (board: the fixture)


def send(b: Board, body: dict, now: float) -> drive.Out:
    """A request and the turn's end: what went out."""
    b.service.handle_request([b"c"], protocol.encode(body), now, WALL + now)
    return drive.settle(b.service, now, WALL + now)


def notes(out: drive.Out) -> list[protocol.NoteEvent]:
    return [e for e in out.events if isinstance(e, protocol.NoteEvent)]


def snapshot(b: Board, now: float) -> protocol.SnapshotResult:
    (reply,) = send(b, {"op": "snapshot", "history_seconds": 0}, now).answers
    return protocol.convert_result(reply.result, protocol.SnapshotResult)


def test_the_first_message_of_a_new_server_is_its_start_with_the_workflow(board):
    b = board(scenario="bottleneck", stages=None)
    (start,) = snapshot(b, 0.0).notes
    assert (start.seq, start.ts, start.kind) == (1, WALL, "started")
    assert start.stages == ["analysis", "build", "test"] and start.scenario == "bottleneck"
    assert start.text == "server started with scenario bottleneck (analysis → build → test)"

    plain = board(stages=None)
    (start,) = snapshot(plain, 0.0).notes
    assert (start.kind, start.text, start.stages, start.scenario) == ("started", "server started", ["work"], None)


def test_a_restart_onto_stored_work_is_a_restored_note_with_the_counts(board):
    b = board()
    b.join(b"a", "analysis")
    b.create(("analysis", 100), now=0.0)
    b.create(("analysis", 100), now=0.0)
    b.turn(0.0)
    b.done(b"a", [1], now=1.0)
    b.restart()
    (note,) = snapshot(b, 0.0).notes  # a restart starts the notes afresh
    assert (note.seq, note.kind, note.stages) == (1, "restored", ["analysis", "build", "test"])
    assert note.text == "server restarted with stages analysis → build → test: 1 open and 1 completed " \
                        "stories restored"


def test_set_flow_notes_each_setting_that_changed_and_nothing_else(board):
    b = board(wip_limit=5)
    drive.take(b.service)  # the start note
    out = send(b, {"op": "set_flow", "wip_limit": 3, "flow_window_s": 300,
                   "stage_wip_limits": {"build": 2, "test": 0, "analysis": 0}}, now=2.0)
    assert out.answers[0].ok
    got = [(n.kind, n.stage, n.old, n.new, n.text) for n in notes(out)]
    assert got == [
        ("wip_limit", None, 5, 3, "WIP limit set to 3 (was 5)"),
        ("stage_wip_limit", "build", 0, 2, "WIP limit of build set to 2 (was none)"),
        ("flow_window", None, 60.0, 300.0, "flow window set to 300 s (was 60 s)"),
    ]  # test and analysis had no limit: nothing changed there
    assert all(n.ts == WALL + 2.0 for n in notes(out))
    assert [n.seq for n in notes(out)] == [2, 3, 4]  # in the one seq, after the start note (1)

    assert notes(send(b, {"op": "set_flow", "wip_limit": 3, "flow_window_s": 300}, 3.0)) == []  # the same again
    lifted = notes(send(b, {"op": "set_flow", "wip_limit": 0, "stage_wip_limits": {"build": 0}}, 4.0))
    assert [(n.kind, n.text) for n in lifted] == [("wip_limit", "WIP limit lifted (was 3)"),
                                                  ("stage_wip_limit", "WIP limit of build lifted (was 2)")]
    refused = send(b, {"op": "set_flow", "wip_limit": 9, "stage_wip_limits": {"deploy": 1}}, 5.0)
    assert not refused.answers[0].ok and notes(refused) == []  # refused whole: no change, no note


def test_set_pool_notes_new_bounds_with_the_stage(board):
    b = board()
    drive.take(b.service)
    out = send(b, {"op": "set_pool", "stage": "build", "min_workers": 1, "max_workers": 6}, 1.0)
    (note,) = notes(out)
    assert (note.kind, note.stage, note.old, note.new) == ("pool_bounds", "build", [0, 3], [1, 6])
    assert note.text == "pool of build: bounds set to 1–6 workers (was 0–3)"
    assert notes(send(b, {"op": "set_pool", "stage": "build", "max_workers": 6}, 2.0)) == []
    assert notes(send(b, {"op": "set_pool", "stage": "build", "min_workers": 9, "max_workers": 2}, 3.0)) == []

    one = board(stages=None, min_workers=1, max_workers=4)
    drive.take(one.service)
    (note,) = notes(send(one, {"op": "set_pool", "max_workers": 2}, 1.0))
    assert (note.stage, note.old, note.new, note.text) == (None, [1, 4], [1, 2],
                                                            "pool: bounds set to 1–2 workers (was 1–4)")


def test_the_snapshot_carries_the_newest_notes_covered_by_its_seq(board):
    b = board(stages=None)
    for i in range(protocol.NOTES_MAX + 5):  # more than are kept
        send(b, {"op": "set_flow", "wip_limit": i + 1}, float(i))
    snap = snapshot(b, 200.0)
    assert len(snap.notes) == protocol.NOTES_MAX
    seqs = [n.seq for n in snap.notes]
    assert seqs == sorted(seqs) and seqs[-1] == snap.seq  # the last message published was a note
    assert snap.notes[-1].new == protocol.NOTES_MAX + 5 and snap.notes[0].new == 6  # the start and the oldest went


# -- the flow window's coverage --------------------------------------------------------------
def covered(b: Board, now: float) -> float:
    return b.stats(now).flow_window_covered_s


def test_a_new_server_covers_its_flow_window_from_its_start(board):
    b = board(stages=None, flow_window=60.0)
    assert [covered(b, t) for t in (0.0, 10.0, 59.5, 60.0, 500.0)] == [0.0, 10.0, 59.5, 60.0, 60.0]
    send(b, {"op": "set_flow", "flow_window_s": 300}, 100.0)  # longer: it fills from the start
    assert (covered(b, 100.0), covered(b, 250.0), covered(b, 400.0)) == (100.0, 250.0, 300.0)
    send(b, {"op": "set_flow", "flow_window_s": 30}, 400.0)  # shorter: full at once
    assert covered(b, 400.0) == 30.0


def started_at(b: Board, wall: float) -> Service:
    """The server starts again on `b`'s database, its wall clock at `wall` (its monotonic at 0)."""
    b.store.close()
    b.store = Store.open(str(b.path))
    config = ServerConfig.from_options(b.options)
    service = Service(config, b.store, Pools.of(config.workflow, "tcp://127.0.0.1:1", 0.5, 5.0), now=0.0)
    service.restore(now=0.0, wall=wall)
    return service


def test_a_restart_covers_back_to_the_oldest_story_it_read_and_no_further(board):
    b = board(stages=None, flow_window=60.0)
    b.join(b"w", None)
    b.create(("work", 100), now=0.0)  # created at WALL
    b.turn(0.0)
    b.done(b"w", [1], now=5.0)  # completed at WALL + 5

    service = started_at(b, WALL + 20.0)  # 20 s after the story was created
    stats = service.stats(0.0, WALL + 20.0)
    assert stats.stories_completed_in_window == 1  # read back
    # Every completion since the story's creation is in the database: 20 s are counted, the
    # down time included (nothing completed then), and the completion read back lies in them.
    assert stats.flow_window_covered_s == 20.0
    assert service.stats(30.0, WALL + 50.0).flow_window_covered_s == 50.0
    assert service.stats(45.0, WALL + 65.0).flow_window_covered_s == 60.0

    later = started_at(b, WALL + 500.0)  # the story is long out of the window: nothing read back
    assert later.stats(0.0, WALL + 500.0).stories_completed_in_window == 0
    assert later.stats(0.0, WALL + 500.0).flow_window_covered_s == 0.0  # counting from this start
    assert later.stats(12.0, WALL + 512.0).flow_window_covered_s == 12.0
