"""server/state.py driven directly: leases, lost leases, completion, deletion."""

from __future__ import annotations

from storypulse.server.state import WorkState


# -- leases and the work state --------------------------------------------------


def state_with(*stories: list[int]) -> WorkState:
    state = WorkState()
    next_task = 1
    for story_id, estimates in enumerate(stories, start=1):
        state.add_story(story_id, next_task, estimates)
        next_task += len(estimates)
    return state


def test_tiny_tasks_go_together_and_real_ones_alone():
    state = state_with([0] * 10, [2000], [0, 0])
    lease = state.take_lease(time_scale=1.0, max_tasks=4, max_s=0.005)
    assert lease == [(1, 0), (2, 0), (3, 0), (4, 0)]  # capped by max_tasks
    assert state.take_lease(1.0, 100, 0.005) == [(i, 0) for i in range(5, 11)]  # stops at the big one
    assert state.take_lease(1.0, 100, 0.005) == [(11, 2000)]  # alone
    assert state.take_lease(1.0, 100, 0.005) == [(12, 0), (13, 0)]
    assert state.take_lease(1.0, 100, 0.005) == []
    assert state.running == 13 and state.queued == 0 and state.queued_ms == 0


def test_lease_respects_the_scaled_work_limit():
    state = state_with([2, 2, 2, 2])
    assert [t for t, _ in state.take_lease(1.0, 100, 0.005)] == [1, 2]  # 4 ms; a third would be 6
    state = state_with([200, 200, 200])
    # at time scale 0.01, 200 ms is 2 ms of real time: two fit in 5 ms
    assert [t for t, _ in state.take_lease(0.01, 100, 0.005)] == [1, 2]
    state = state_with([10**6, 0])
    assert state.take_lease(0.0, 100, 0.005) == [(1, 10**6), (2, 0)]  # time scale 0: all tiny


def test_lost_lease_goes_back_to_the_front_in_order():
    state = state_with([100, 100, 100], [100])
    first = state.take_lease(1.0, 10, 0.005)
    second = state.take_lease(1.0, 10, 0.005)
    assert (first, second) == ([(1, 100)], [(2, 100)])
    assert state.requeue_front([1]) == 1
    assert state.live[1].attempts == 1 and not state.live[1].running
    assert [t for t, _ in state.take_lease(1.0, 10, 0.005)] == [1]
    assert state.live[1].attempts == 2
    assert [t for t, _ in state.take_lease(1.0, 10, 0.005)] == [3]


def test_completion_is_idempotent_and_finishes_the_story_once():
    state = state_with([0, 0], [0])
    lease = state.take_lease(1.0, 10, 0.005)
    assert [t for t, _ in lease] == [1, 2, 3]
    task, done = state.complete(1)
    assert task is not None and not done
    assert state.complete(1) == (None, None)  # twice: ignored
    task, done = state.complete(2)
    assert done and 1 not in state.stories
    assert state.complete(2) == (None, None)
    assert state.complete(99) == (None, None)  # unknown
    assert state.running == 1


def test_delete_drops_queued_and_ignores_running():
    state = state_with([100, 100, 100])
    state.take_lease(1.0, 10, 0.005)  # task 1 runs
    story = state.delete_story(1)
    assert story is not None and story.remaining == 3
    assert state.queued == 0 and state.running == 0 and state.queued_ms == 0
    assert state.take_lease(1.0, 10, 0.005) == []  # lazy removal skips 2 and 3
    assert state.complete(1) == (None, None)  # the running task's later Done
    assert state.delete_story(1) is None


def test_requeued_task_completed_by_its_first_worker():
    state = state_with([100])
    state.take_lease(1.0, 10, 0.005)
    state.requeue_front([1])
    task, done = state.complete(1)  # a late Done from a worker we gave up on
    assert done and state.queued == 0 and state.queued_ms == 0
    assert state.take_lease(1.0, 10, 0.005) == []
