"""The feed session (storypulse.feed_session) alone: no sockets, a fake clock, decisions read back."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from storypulse import protocol
from storypulse.feed_session import (CONNECTED, CONNECTING, DISCONNECTED, HOLD_MAX, RECONNECTING, SILENCE_FLOOR_S,
                                     Apply, AskSnapshot, FeedSession, Load, StateChanged)

T0 = 1000.0  # the fake monotonic clock starts here
WALL = 1_700_000_000.0  # and the server's wall clock here


def stats(seq: int, ts: float | None = None) -> protocol.Stats:
    return protocol.Stats(
        seq=seq, ts=WALL + seq * 0.25 if ts is None else ts, stories_produced_per_s=0.0,
        stories_completed_per_s=0.0, open_stories=0, completed_stories=seq, tasks_produced_per_s=0.0,
        tasks_completed_per_s=0.0, tasks_queued=0, tasks_running=0, tasks_completed=0, queued_work_s=0.0,
        workers=1, workers_busy=0, workers_target=1, min_workers=1, max_workers=1, rate_window_s=5.0)


def story(seq: int, ts: float | None = None) -> protocol.StoryEvent:
    return protocol.StoryEvent(seq=seq, ts=WALL + seq * 0.25 if ts is None else ts, event="created", story_id=seq)


def snapshot(seq: int, ts: float | None = None) -> protocol.SnapshotResult:
    return protocol.SnapshotResult(seq, stats(seq, ts), [])


def applied(decisions) -> list[int]:
    return [d.event.seq for d in decisions if isinstance(d, Apply)]


def asks(decisions) -> list[AskSnapshot]:
    return [d for d in decisions if isinstance(d, AskSnapshot)]


def states(decisions) -> list[str]:
    return [d.state for d in decisions if isinstance(d, StateChanged)]


def joined(at_seq: int = 10, now: float = T0) -> FeedSession:
    """A session that took its first snapshot, at seq `at_seq`."""
    session = FeedSession(history_seconds=3600, now=now)
    assert asks(session.tick(now)) == [AskSnapshot(3600)]
    out = session.snapshot_reply(snapshot(at_seq), now)
    assert states(out) == [CONNECTED]
    return session


def test_a_late_joiner_applies_what_came_before_the_reply_in_order_after_the_snapshot():
    session = FeedSession(history_seconds=600, now=T0)
    assert session.state == CONNECTING
    first = session.tick(T0)
    assert first == [AskSnapshot(600)]
    assert session.tick(T0 + 0.1) == []  # one request at a time
    # Published while the snapshot was being taken and answered: held, not dropped.
    for seq in (8, 9, 10, 11, 12):
        assert session.event(stats(seq), T0 + 0.01 * seq) == []
    out = session.snapshot_reply(snapshot(10), T0 + 0.2)
    assert isinstance(out[0], Load) and out[0].snapshot.seq == 10
    assert states(out) == [CONNECTED]
    assert applied(out) == [11, 12]  # those after the snapshot, after it, in order
    assert out.index(next(d for d in out if isinstance(d, Apply))) > 0
    assert applied(session.event(story(13), T0 + 0.3)) == [13]
    assert session.seq == 13 and session.gaps == 0


def test_a_gap_keeps_applying_and_asks_for_a_snapshot_that_repairs_it():
    session = joined(10)
    assert applied(session.event(stats(11), T0 + 0.1)) == [11]
    out = session.event(stats(14), T0 + 0.2)  # 12 and 13 were lost
    assert applied(out) == [14] and session.gaps == 1 and session.state == CONNECTED
    assert asks(out) == []  # not within a second of the last ask
    assert applied(session.event(stats(15), T0 + 0.5)) == [15]
    assert asks(session.tick(T0 + 0.99)) == []
    assert len(asks(session.tick(T0 + 1.0))) == 1
    assert applied(session.event(stats(16), T0 + 1.05)) == [16]
    # The repair was taken at 14, before 15 and 16 arrived: loaded (to merge), nothing applied twice.
    out = session.snapshot_reply(snapshot(14), T0 + 1.1)
    assert [type(d) for d in out] == [Load] and session.seq == 16
    assert applied(session.event(stats(17), T0 + 1.2)) == [17]


def test_a_repair_newer_than_what_was_applied_becomes_the_base():
    session = joined(10)
    session.event(stats(13), T0 + 0.1)  # a gap
    assert len(asks(session.tick(T0 + 1.0))) == 1
    session.snapshot_reply(snapshot(20), T0 + 1.1)
    assert session.seq == 20
    assert [applied(session.event(stats(s), T0 + 1.2)) for s in (14, 19, 20, 21)] == [[], [], [], [21]]


def test_a_restarted_server_is_joined_afresh():
    session = joined(500)
    assert applied(session.event(stats(501), T0 + 0.1)) == [501]
    out = session.event(stats(1), T0 + 1.5)  # numbering from 1 again
    assert applied(out) == [] and states(out) == [RECONNECTING] and session.restarts == 1
    assert "restarted" in session.reason
    assert len(asks(out)) == 1  # more than a second after the last ask: at once
    assert session.event(stats(2), T0 + 1.6) == []  # held until the new server's snapshot
    assert session.event(stats(3), T0 + 1.7) == []
    out = session.snapshot_reply(snapshot(2), T0 + 1.8)
    assert isinstance(out[0], Load) and states(out) == [CONNECTED] and applied(out) == [3]
    assert session.seq == 3


def test_silence_of_a_few_stats_intervals_reconnects_with_a_floor():
    session = joined(10)
    assert session.silence_limit() == SILENCE_FLOOR_S  # 3 x 0.25 s, the default, is below the floor
    session.event(stats(11), T0 + 0.1)
    assert session.next_tick() == T0 + 0.1 + SILENCE_FLOOR_S
    assert session.tick(T0 + 2.0) == []
    out = session.tick(T0 + 2.2)
    assert states(out) == [RECONNECTING] and "no messages for 2.1 s" in session.reason
    assert len(asks(out)) == 1 and session.silences == 1
    # Events meanwhile are held (the server may be a new one); the snapshot rejoins.
    assert session.event(stats(12), T0 + 2.3) == []
    out = session.snapshot_reply(snapshot(11), T0 + 2.4)
    assert states(out) == [CONNECTED] and applied(out) == [12]


def test_a_quiet_stream_stays_reconnecting_while_snapshots_keep_the_figures_fresh():
    """The request path answers, the stream does not: loaded, still reconnecting, asked again."""
    session = joined(10)
    out = session.tick(T0 + 2.1)
    assert states(out) == [RECONNECTING] and len(asks(out)) == 1
    out = session.snapshot_reply(snapshot(12), T0 + 2.2)
    assert [type(d) for d in out] == [Load] and session.state == RECONNECTING
    out = session.tick(T0 + 4.3)  # quiet for the silence limit again
    assert asks(out) == [AskSnapshot(3 + 5)] and session.silences == 2  # 2.1 s since the figures
    session.snapshot_reply(snapshot(13), T0 + 4.4)
    out = session.event(stats(14), T0 + 4.5)  # the stream is back
    assert states(out) == [CONNECTED] and applied(out) == [14]


def test_the_silence_limit_is_learned_from_the_servers_stats_interval():
    session = joined(0, now=T0)
    # A server that publishes stats every 2 s (with a story event between, and one late tick).
    now, seq = T0, 0
    for ts in (0.0, 2.0, 4.0, 6.9, 8.0, 10.0, 12.0):
        seq += 1
        session.event(stats(seq, WALL + ts), now)
        seq += 1
        session.event(story(seq, WALL + ts + 0.5), now)
        now += 2.0
    assert session.interval() == 2.0  # the median ignores the late tick
    assert session.silence_limit() == 6.0
    last = now - 2.0
    assert session.tick(last + 5.9) == [] and session.state == CONNECTED
    assert states(session.tick(last + 6.1)) == [RECONNECTING]


def test_a_snapshot_without_a_reply_is_asked_again_backing_off_until_one_comes():
    session = FeedSession(history_seconds=3600, now=T0)
    asked_at = []
    now = T0
    while len(asked_at) < 6:
        out = session.tick(now)
        if asks(out):
            asked_at.append(now)
            now += 1.5  # the request's deadline passes
            out = session.snapshot_failed("no reply from tcp://127.0.0.1:5555 within 1.5 s", now)
            assert session.state == DISCONNECTED and "no reply" in session.reason
        else:
            now = session.next_tick()
    # Spaced 2, 4, 8 s from one ask to the next, then no further apart than 8 s.
    assert [b - a for a, b in zip(asked_at, asked_at[1:])] == [2.0, 4.0, 8.0, 8.0, 8.0]
    out = session.tick(now)
    assert asks(out) == [] and session.next_tick() == asked_at[-1] + 8.0
    now = session.next_tick()
    assert asks(session.tick(now)) == [AskSnapshot(3600)]
    out = session.snapshot_reply(snapshot(5), now + 0.01)
    assert states(out) == [CONNECTED] and session.failures == 0
    # Once connected, a failure is reconnecting, and the spacing starts again from 1 s.
    assert asks(session.event(stats(9), now + 0.1)) == []  # a gap: the next ask a second after the last
    assert asks(session.tick(now + 1.0))
    out = session.snapshot_failed("internal: boom", now + 1.1)
    assert states(out) == [RECONNECTING] and session.next_ask_at == now + 1.0 + 2.0


def test_events_after_a_silence_cut_the_back_off_short():
    session = joined(10)
    out = session.tick(T0 + 3.0)  # silent: asks at once
    assert states(out) == [RECONNECTING] and len(asks(out)) == 1
    session.snapshot_failed("no reply", T0 + 4.5)
    assert session.tick(T0 + 4.6) == [] and session.next_tick() == T0 + 5.0
    session.snapshot_failed("not asked", T0 + 4.6)  # no request in flight: ignored
    assert session.failures == 1
    assert asks(session.tick(T0 + 5.0))
    session.snapshot_failed("no reply", T0 + 6.5)
    assert session.next_tick() == T0 + 9.0
    out = session.event(stats(40), T0 + 8.6)  # the server is back (2 s after the last thing heard)
    assert len(asks(out)) == 1


def test_a_snapshot_asks_only_for_the_history_the_client_lacks():
    session = joined(10, now=T0 + 99.9)  # the full history, 3600 s, at first
    session.event(stats(11), T0 + 100.0)
    out = session.tick(T0 + 130.0)  # silent for 30 s
    assert session.state == RECONNECTING
    assert asks(out) == [AskSnapshot(30 + 5)]  # the seconds since the last figures, and a margin
    session.snapshot_failed("no reply", T0 + 131.5)
    assert asks(session.tick(T0 + 132.0)) == [AskSnapshot(32 + 5)]


def test_held_events_are_bounded_and_what_overflowed_shows_as_a_gap():
    session = FeedSession(history_seconds=60, now=T0)
    session.tick(T0)
    for seq in range(1, HOLD_MAX + 101):
        session.event(story(seq), T0 + 0.1)
    assert session.dropped_held == 100
    out = session.snapshot_reply(snapshot(50), T0 + 0.2)
    assert applied(out)[:2] == [101, 102] and len(applied(out)) == HOLD_MAX and session.gaps == 1


def test_a_reply_nobody_asked_for_is_ignored():
    session = joined(10)
    assert session.snapshot_reply(snapshot(99), T0 + 0.5) == [] and session.seq == 10


# -- a property over whole runs -----------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), loss=st.sampled_from([0.0, 0.05, 0.3]),
       restart_at=st.one_of(st.none(), st.integers(20, 190)))
def test_whatever_is_lost_nothing_is_applied_twice_and_the_session_catches_up(seed, loss, restart_at):
    """A server publishes a message every 50 ms to a client that loses some for 10 s and whose
    snapshots are taken and answered late, or not at all; the server may restart on the way.
    Each server's messages are applied at most once and in order, and in the next 10 s, with
    nothing lost, the session catches up with the server."""
    rng = random.Random(seed)
    session = FeedSession(history_seconds=60, now=T0)
    now, seq, server = T0, 0, 0
    asked = taken = None  # a snapshot asked for; the seq it carries once the server took it
    origin: dict[int, int] = {}  # id(event) -> the server that published it
    keep = []
    seen: dict[int, list[int]] = {0: [], 1: []}

    def follow(out):
        nonlocal asked
        for d in out:
            if isinstance(d, Apply):
                seen[origin[id(d.event)]].append(d.event.seq)
            elif isinstance(d, AskSnapshot):
                asked = True

    follow(session.tick(now))
    for step in range(400):
        now += 0.05
        rough = step < 200
        if step == restart_at:
            server, seq = 1, 0
            if asked:  # the old server never answers it
                asked = taken = None
                follow(session.snapshot_failed("no reply", now))
        seq += 1
        event = (stats if rng.random() < 0.5 else story)(seq, WALL + now - T0)
        origin[id(event)] = server
        keep.append(event)  # ids stay unique while the events live
        if not (rough and rng.random() < loss):
            follow(session.event(event, now))
        if asked and taken is None and rng.random() < 0.5:
            taken = seq  # the server takes the snapshot now
        elif taken is not None and rng.random() < 0.5:
            reply, asked, taken = taken, None, None
            if rough and rng.random() < 0.1:
                follow(session.snapshot_failed("no reply", now))
            else:
                follow(session.snapshot_reply(snapshot(reply, WALL + now - T0), now))
        follow(session.tick(now))
    for numbers in seen.values():
        assert numbers == sorted(set(numbers))
    assert session.seq == seq and session.state == CONNECTED
