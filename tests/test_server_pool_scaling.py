"""The pool resizes with the load: the real server loop (in this process, tests/inproc.py),
real worker processes, real sockets."""

from __future__ import annotations


import pytest

from inproc import InprocServer
from support import EventTap

QUIET_WINDOW = 1.0
SCALING = {"quiet_window": QUIET_WINDOW, "scale_interval": 0.2}


@pytest.fixture
def feed_of():
    feeds: list[EventTap] = []

    def make(server: InprocServer) -> EventTap:
        feeds.append(EventTap(server))
        return feeds[-1]
    yield make
    for f in feeds:
        f.close()


def add_stories(server: InprocServer, count: int, tasks: int, estimate_ms: int) -> list[int]:
    with server.client() as client:
        return [client.create_story(f"load {i}", [{"estimate_ms": estimate_ms}] * tasks).story_id
                for i in range(count)]


def test_a_load_step_grows_the_pool_at_once_and_the_queue_drains(inproc_factory, feed_of):
    srv = inproc_factory(workers=1, max_workers=8, **SCALING).start()
    feed = feed_of(srv)
    feed.wait_stats(lambda s: s.workers == 1 and s.workers_target == 1, 20, "one idle worker")

    # 48 tasks of 0.5 s: 24 s of work for one worker, 3 s for eight.
    stories = add_stories(srv, 12, 4, 500)
    grown = feed.wait_stats(lambda s: s.workers_target == 8, 10, "the target to jump to max")
    feed.wait_stats(lambda s: s.workers >= 6 and s.workers_busy >= 6, 20, "the new workers to take tasks")

    # The start-up event ("start at the target of 1") may reach a subscriber that joined
    # early enough; it is not a decision on load.
    grows = [e for e in feed.pool_events()
             if e.new_size > e.old_size and not e.reason.startswith("start at the target")]
    assert grows, "a resize event was published"
    assert grows[0].new_size - grows[0].old_size >= 4, f"one big step, not one per tick: {grows}"
    assert grows[0].reason.startswith("grow") and "queued tasks" in grows[0].reason

    done = feed.wait_stats(lambda s: s.tasks_queued == 0 and s.tasks_running == 0
                     and s.completed_stories >= len(stories), 30, "the queue to drain")
    # With one worker this would take 24 s; the grown pool does it in a fraction.
    assert done.ts - grown.ts < 20
    with srv.client() as client:
        assert all(client.get_story(sid).status == "done" for sid in stories)


def test_when_the_load_stops_the_pool_shrinks_back_to_min_after_the_quiet_window(inproc_factory, feed_of):
    srv = inproc_factory(workers=1, max_workers=6, **SCALING).start()
    feed = feed_of(srv)
    add_stories(srv, 6, 4, 300)
    feed.wait_stats(lambda s: s.workers_target == 6, 10, "the pool to grow")
    feed.wait_stats(lambda s: s.tasks_queued == 0 and s.tasks_running == 0, 30, "the queue to drain")

    feed.wait_stats(lambda s: s.workers == 1 and s.workers_target == 1, 60, "the pool back at min_workers")
    shrinks = [e for e in feed.pool_events() if e.new_size < e.old_size and e.reason.startswith("shrink")]
    assert shrinks, [e.reason for e in feed.pool_events()]
    last_grow = max(e.ts for e in feed.pool_events() if e.new_size > e.old_size)
    # Slow to shrink: nothing before a quiet window had passed, then a step at a time.
    assert shrinks[0].ts - last_grow >= QUIET_WINDOW * 0.9
    assert len(shrinks) >= 2, "shrinks in steps, not one drop"
    for a, b in zip(shrinks, shrinks[1:]):
        assert b.ts - a.ts >= QUIET_WINDOW * 0.9, "each step waits for another quiet window"
    assert min(e.new_size for e in shrinks) >= 1, "never below min_workers"


def test_set_pool_changes_the_bounds_at_run_time(inproc_factory, feed_of):
    srv = inproc_factory(workers=1, max_workers=3, **SCALING).start()
    feed = feed_of(srv)
    with srv.client() as client:
        # A higher minimum with no load at all: the pool grows to it.
        result = client.set_pool(min_workers=3, max_workers=6)
        assert (result.min_workers, result.max_workers) == (3, 6)
        feed.wait_stats(lambda s: s.workers == 3 and s.min_workers == 3 and s.max_workers == 6, 20,
                  "the pool to grow to the new minimum")

        # Under load, the new maximum is the ceiling the policy grows to.
        add_stories(srv, 10, 4, 500)
        feed.wait_stats(lambda s: s.workers_target == 6 and s.workers == 6, 20, "the pool to reach max 6")

        # A lower maximum while busy: obeyed, by retiring workers as they finish.
        client.set_pool(min_workers=1, max_workers=2)
        feed.wait_stats(lambda s: s.workers_target == 2 and s.max_workers == 2, 10, "the target to obey max 2")
        feed.wait_stats(lambda s: s.workers <= 2, 30, "the pool to shrink to 2 without killing busy workers")

        feed.wait_stats(lambda s: s.tasks_queued == 0 and s.tasks_running == 0, 60, "the queue to drain")
        feed.wait_stats(lambda s: s.workers == 1, 30, "back to the new minimum once quiet")
    bounds = [e for e in feed.pool_events() if "bounds" in e.reason]
    assert bounds and bounds[-1].new_size == 2, [e.reason for e in feed.pool_events()]
