"""Notes on real sockets: a real server publishes them in its one seq and its snapshot carries
them across a restart's afresh start; clients count the seq of a topic they do not know.

What a note says and when is tests/test_service_notes.py's (the service alone); here only
the wiring that a socket shows: the `note` topic on PUB between the stats, the snapshot
over the request socket, `storypulse watch`'s line, and a stand-in "newer server" whose
unknown topic must not look like a lost message.
"""

from __future__ import annotations

import io
import time

from storypulse import protocol
from storypulse.cli import watch as live
from storypulse.cli.figures import Figures
from support import EventTap, StandInServer, wait_for


def test_a_real_server_publishes_notes_in_its_one_seq_and_its_snapshot_keeps_them(server):
    tap = EventTap(server)
    try:
        with server.client() as client:
            client.set_flow(wip_limit=3)
            client.set_pool(max_workers=3)

            def both() -> list:
                tap.pump()
                found = [m for t, m in tap.messages if t == protocol.TOPIC_NOTE]
                return found if len(found) == 2 else None
            wip, pool = wait_for(both, 10, what="the two notes on the PUB socket")
            assert (wip.kind, wip.old, wip.new) == ("wip_limit", 0, 3)
            assert (pool.kind, pool.old, pool.new) == ("pool_bounds", [2, 2], [2, 3])
            tap.wait_stats(lambda s: s.seq > pool.seq, 10)
            # One seq across the topics, no hole: the notes are numbered with everything else.
            seqs = [m.seq for _, m in tap.messages]
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))

            snap = client.snapshot(history_seconds=0)
            assert [n.kind for n in snap.notes] == ["started", "wip_limit", "pool_bounds"]
            assert snap.notes[0].seq == 1 and snap.notes[1:] == [wip, pool]
            assert snap.stats.flow_window_covered_s is not None
            assert 0 < snap.stats.flow_window_covered_s <= snap.stats.flow_window_s

        out = io.StringIO()  # `storypulse watch` shows the newest note in a line
        assert live.run(server.endpoints, once=True, duration=None, refresh=1.0, timeout=5.0,
                        as_json=False, out=out) == 0
        assert "last note    pool: bounds set to 2–3 workers (was 2–2)" in out.getvalue()
    finally:
        tap.close()

    with server.client() as client:
        story_id = client.create_story("kept", [{"estimate_ms": 10}]).story_id
        wait_for(lambda: client.get_story(story_id).status == "done", 10, what="the story done")
    assert server.stop() == 0
    server.start()  # the same database: a restart
    with server.client() as client:
        (restored,) = client.snapshot(history_seconds=0).notes  # the notes start afresh
    assert (restored.seq, restored.kind) == (1, "restored")
    assert restored.text == "server restarted: 0 open and 1 completed stories restored"


class NewerServer:
    """A stand-in for a server newer than these clients: between its stats it publishes a topic
    they do not know, numbered in the same seq."""

    def __init__(self) -> None:
        self.seq = 0

    def stats(self) -> protocol.Stats:
        return protocol.Stats(seq=self.seq, ts=time.time(), stories_produced_per_s=0.0,
                              stories_completed_per_s=0.0, open_stories=0, completed_stories=self.seq,
                              tasks_produced_per_s=0.0, tasks_completed_per_s=0.0, tasks_queued=0,
                              tasks_running=0, tasks_completed=0, queued_work_s=0.0, workers=1,
                              workers_busy=0, workers_target=1, min_workers=1, max_workers=1,
                              rate_window_s=5.0)

    def answer(self, request: protocol.Request) -> list[bytes]:
        if isinstance(request, protocol.Snapshot):
            return [protocol.ok(request.id, protocol.SnapshotResult(self.seq, self.stats(), []))]
        return [protocol.ok(request.id, protocol.PingResult("newer", protocol.PROTOCOL_VERSION))]

    def cycle(self) -> list[list[bytes]]:
        self.seq += 1
        future = protocol.encode({"seq": self.seq + 1, "ts": time.time(), "what": "something new"})
        stats = [protocol.TOPIC_STATS, protocol.encode(self.stats())]
        self.seq += 1
        return [stats, [b"forecast_scores", future]]


def test_a_topic_the_client_does_not_know_counts_in_seq_and_is_no_gap():
    with StandInServer((newer := NewerServer()).answer, newer.cycle) as stand_in:
        figures = Figures()
        feed = live.Feed(stand_in.endpoints, figures, timeout=2)
        try:
            start = None

            def many() -> bool:
                nonlocal start
                feed.pump(time.monotonic() + 0.05)
                if figures.seq is not None and start is None:
                    start = figures.seq
                return start is not None and figures.seq >= start + 40
            wait_for(many, 15, interval=0, what="forty messages past the snapshot")
            assert feed.session.gaps == 0 and feed.session.snapshots == 1  # nothing taken for lost
            assert feed.bad_events == 0  # and nothing taken for garbage
        finally:
            feed.close()
