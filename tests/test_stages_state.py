"""Workflow stages in the work state (server/state.py), on a fake clock: order, blocks, WIP, figures.

Each test drives a `Board` (tests/stageboard.py): the work state with what the service does
around it, a dict for a database. Every start of a task is checked against the stage order
there, and every test ends with the counts recounted from scratch.
"""

from __future__ import annotations

import math

import pytest

from stageboard import Board, assert_consistent
from storypulse.server.stages import StageFigures, bottleneck, wait_s
from storypulse.server.state import WorkState

A, B, C = 0, 1, 2  # stage indexes of a three-stage board: s0, s1, s2


@pytest.fixture(autouse=True)
def _consistent_at_the_end(request):
    yield
    board = request.node.funcargs.get("board")
    if board is not None:
        assert_consistent(board.state)


@pytest.fixture
def board() -> Board:
    return Board(3)


# -- stage order -------------------------------------------------------------------------
def test_a_story_works_its_stages_in_order_and_a_stage_side_by_side(board):
    story = board.create([(A, 100, 0), (A, 100, 0), (B, 100, 0), (C, 100, 0)])
    assert board.lease(B) == [] and board.lease(C) == []  # later stages: nothing yet
    assert board.lease(A, max_tasks=1) == [1] and board.lease(A, max_tasks=1) == [2]  # side by side
    board.finish(0)
    assert board.lease(B) == []  # task 2 of stage A still runs
    board.finish(0)
    assert board.lease(B) == [3] and board.lease(C) == []
    board.finish(0)
    assert board.lease(C) == [4]
    assert board.finish(0) == [story]
    assert board.state.open_stories == 0 and board.state.in_progress == 0


def test_a_stage_without_tasks_of_the_story_is_skipped(board):
    only_c = board.create([(C, 100, 0)])
    a_then_c = board.create([(C, 100, 0), (A, 100, 0)])  # listed out of order: order is the workflow's
    assert board.lease(C) == [1]  # a new story whose first stage is C starts there
    assert board.lease(A) == [3] and board.lease(C) == []
    board.finish(1)
    assert board.lease(C) == [2]
    assert board.finish(0) == [only_c] and board.finish(0) == [a_then_c]
    assert board.stories[a_then_c].counted == C  # never counted in B


def test_the_stages_count_where_the_story_is(board):
    board.create([(A, 100, 0), (B, 100, 0), (B, 100, 0), (C, 100, 0)])
    board.lease(A)
    board.finish(0)
    # done with A, waiting for B: it still counts in A, and B's two tasks are ready there
    f = {s.name: s for s in board.state.figures()}
    assert (f["s0"].stories, f["s1"].stories) == (1, 0)
    assert (f["s1"].tasks_ready, f["s1"].tasks_queued, f["s2"].tasks_queued, f["s2"].tasks_ready) == (2, 2, 1, 0)
    board.lease(B, max_tasks=1)
    f = {s.name: s for s in board.state.figures()}
    assert (f["s0"].stories, f["s1"].stories, f["s1"].tasks_running, f["s1"].tasks_ready) == (0, 1, 1, 1)
    assert board.stories[1].counted == B


# -- blocked work ----------------------------------------------------------------------------
def test_a_blocked_task_frees_its_worker_and_another_story_moves_meanwhile():
    board = Board(1)
    blocked = board.create([(0, 1000, 2000)])  # blocked 2 s when it starts, then works 1 s
    other = board.create([(0, 1000, 0)])
    assert board.lease(0, max_tasks=1) == [2]  # the worker took the next story at once
    assert board.state.blocked == 1 and board.tasks[1].blocked_until == 2.0
    assert board.stories[blocked].started == 0.0  # blocked counts as started
    board.tick(1.0)
    assert board.finish(0) == [other]  # the other story moved while the first was blocked
    assert board.lease(0) == [] and board.state.release_blocks(1.5) == []
    assert board.tick(1.0) == [1]  # the block ended at 2.0: back to the front
    board.create([(0, 1000, 0)])
    assert board.lease(0, max_tasks=1) == [1]  # before the story created after it
    board.tick(1.0)
    assert board.finish(0) == [blocked]
    assert board.state.blocked == 0


def test_a_blocked_task_returns_to_the_front_of_its_own_stage(board):
    board.create([(A, 100, 0), (B, 100, 500)])
    board.create([(A, 100, 0), (B, 100, 0)])
    board.lease(A, 1), board.lease(A, 1)
    board.finish(0), board.finish(0)
    assert board.lease(B, max_tasks=1) == [4]  # task 2 blocks; the worker takes task 4
    board.finish(0)
    assert board.tick(0.5) == [2]
    assert board.state.stages[B].queue[0] == 2
    assert board.lease(B) == [2]


def test_a_done_for_a_blocked_or_a_later_stage_task_is_ignored(board):
    board.create([(A, 100, 1000), (B, 100, 0)])
    assert board.lease(A) == []  # task 1 blocks
    assert board.done([1]) == [] and board.tasks[1].done == 0  # never handed out: a wrong report
    assert board.done([2]) == [] and board.tasks[2].done == 0  # stage B: not live yet
    assert board.state.blocked == 1


def test_a_block_survives_a_restart_and_one_that_ended_goes_first():
    board = Board(1)
    board.create([(0, 100, 3000)])
    board.create([(0, 100, 1000)])
    board.create([(0, 100, 0)])
    assert board.lease(0) == [3]  # 1 and 2 blocked (until 3.0 and 1.0), 3 runs
    board.tick(2.0)  # task 2's block is over, task 1's is not
    board.restart()  # the lease of task 3 is lost; release_blocks never ran for task 2
    state = board.state
    assert state.blocked == 1 and state.live[1].running is None and state.next_unblock() == 3.0
    assert board.lease(0, max_tasks=1) == [2]  # the ended block first, then the started story
    assert board.lease(0, max_tasks=1) == [3]
    assert board.tick(1.0) == [1] and board.lease(0) == [1]
    board.drain()


# -- WIP limits ----------------------------------------------------------------------------
def test_a_full_downstream_stage_stops_upstream_pulling():
    board = Board(2, stage_wip={0: 1, 1: 1})
    for _ in range(3):
        board.create([(A, 100, 0), (B, 100, 0)])
    assert board.lease(A) == [1] and board.lease(A) == []  # A holds one story
    board.finish(0)
    assert board.lease(A) == []  # story 1 is done with A but still counts there: it waits for B
    assert board.lease(B) == [2]  # it starts B: A is free
    assert board.lease(A) == [3]
    board.finish(1)
    assert board.lease(B) == [] and board.lease(A) == []  # B full (story 1), so story 2 stays in A
    assert board.state.held(A) and board.state.held(B)
    assert board.state.demand(A) == (0, 0) and board.state.demand(B) == (0, 0)  # no worker helps
    board.finish(0)  # story 1 done: B frees, story 2 moves on, A frees
    assert board.lease(B) == [4] and board.lease(A) == [5]
    board.drain()


def test_the_system_limit_holds_new_stories_and_never_one_in_progress(board):
    """With the system full, a new story that starts in a later stage must not stand in front of
    a story in progress there (it would wait forever): in progress goes first."""
    board.state.set_wip_limit(1)
    board.create([(A, 100, 0), (B, 100, 0)])
    board.create([(B, 100, 0)])  # new, first task in B: waits for the system limit
    assert board.lease(A) == [1] and board.lease(B) == []
    board.finish(0)
    assert board.lease(B) == [2]  # story 1, in progress, goes before story 2
    assert board.lease(B) == []  # story 2 still waits: one story in progress
    board.finish(0)
    assert board.lease(B) == [3]


def test_a_story_that_started_a_stage_new_goes_on_while_one_done_upstream_waits():
    """Found by the property test: story 2 starts B as a new story (B full with it); story 1,
    done with A, waits for B at the front of B's queue. Story 2's second task must still go."""
    board = Board(2, stage_wip={1: 1})
    board.create([(A, 0, 0), (B, 0, 0)])
    board.create([(B, 0, 0), (B, 0, 0)])
    assert board.lease(A, 1) == [1] and board.lease(B, 1) == [3]
    board.finish(0), board.finish(0)
    assert board.state.held(B) is False
    assert board.lease(B) == [4]  # not held behind story 1
    assert board.lease(B) == []
    board.finish(0)
    assert board.lease(B) == [2]


def test_a_lower_stage_limit_lets_stories_there_finish_and_starts_no_new_one():
    board = Board(2)
    for _ in range(3):
        board.create([(A, 100, 0)])
    board.lease(A), board.lease(A)
    board.state.set_stage_wip_limit(A, 1)
    assert board.lease(A) == []
    board.finish(0)
    assert board.lease(A) == []  # still one: at the limit
    board.finish(0)
    assert board.lease(A) == [3]


def test_limits_hold_at_every_step_of_a_busy_board():
    board = Board(3, wip_limit=4, stage_wip={0: 2, 1: 3, 2: 1})
    for i in range(30):
        board.create([(A, 10, 0), (B, 10, 0), (B, 10, 300 if i % 4 == 0 else 0), (C, 10, 0)])
    for step in range(400):
        for stage in (A, B, C):
            board.lease(stage, max_tasks=1)
        states = board.state.stages
        assert all(s.stories <= lim for s, lim in zip(states, (2, 3, 1)))
        assert board.state.in_progress <= 4
        if board.leases:
            board.finish(step % len(board.leases))
        board.tick(0.05)
        assert_consistent(board.state)
    board.drain()
    assert all(s.status == "done" for s in board.stories.values())


# -- leases, deletes, restarts -----------------------------------------------------------------
def test_a_lost_lease_goes_back_to_the_front_of_its_stage(board):
    board.create([(A, 100, 0), (B, 100, 0), (B, 100, 0)])
    board.create([(A, 100, 0), (B, 100, 0)])
    board.lease(A), board.lease(A)
    board.finish(0), board.finish(0)
    assert board.lease(B, max_tasks=1) == [2]
    assert board.lose(0) == 1
    assert list(board.state.stages[B].queue)[:3] == [2, 3, 5]


def test_deleting_stories_in_every_place_keeps_the_counts(board):
    running = board.create([(A, 100, 0), (B, 100, 0)])
    blocked = board.create([(A, 100, 5000), (C, 100, 0)])
    parked = board.create([(A, 100, 0), (C, 100, 0)])
    assert board.lease(A) == [1] and board.lease(A) == [5]  # task 3 blocked on the way
    assert board.state.blocked == 1 and board.state.running == 2
    board.finish(0), board.finish(0)  # 1 and 5 done: stories 1 and 3 move on
    for story_id in (running, blocked, parked):
        assert board.delete(story_id)
        assert_consistent(board.state)
    assert board.state.queued == board.state.running == board.state.blocked == 0
    assert board.state.next_unblock() is None  # the blocked task's end is dropped with it


def test_the_backlog_is_read_by_stage_and_restarts_resume_exactly():
    board = Board(3, window=4, wip_limit=3, stage_wip={1: 1})
    for i in range(12):
        board.create([(A, 10, 0), (B, 10, 200 if i % 3 == 0 else 0), (C, 10, 0)])
    assert board.state.backlog_stories > 0
    for step in range(60):
        for stage in (A, B, C):
            board.lease(stage, max_tasks=2)
        if step % 7 == 3:
            board.restart()
            assert_consistent(board.state)
        elif board.leases:
            board.finish(len(board.leases) - 1)
        board.tick(0.1)
        assert_consistent(board.state)
    board.drain()
    assert all(s.status == "done" for s in board.stories.values())
    assert all(t.done == 1 for t in board.tasks.values())


def test_shutting_down_hands_nothing_more_out_and_moves_no_story_on():
    board = Board(3)  # (not the fixture: after a shutdown the stories keep tasks memory lets go)
    board.create([(A, 100, 0), (B, 100, 0)])
    board.create([(A, 100, 4000)])
    board.lease(A)
    assert board.state.clear_queue() == 2  # task 2 (parked) and task 3 (blocked)
    board.finish(0)  # the running task still completes; its story does not move to B
    assert board.lease(B) == [] and board.state.open_stories == 2
    assert board.state.release_blocks(10.0) == []


# -- one stage: as before ------------------------------------------------------------------------
def test_one_stage_keeps_no_per_stage_task_counts_and_shows_the_totals():
    board = Board(1, wip_limit=2)
    for _ in range(4):
        board.create([(0, 100, 0)] * 2, plain=True)
    board.lease(0, max_tasks=1)
    (stage,) = board.state.figures()
    st = board.state.stages[0]
    assert (st.queued, st.ready, st.running) == (0, 0, 0)  # not kept: the totals are the stage's
    assert (stage.name, stage.tasks_queued, stage.tasks_running, stage.stories) == ("work", 7, 1, 1)
    assert board.state.entered == []  # nothing more to write per story than before


# -- work time --------------------------------------------------------------------------------------
def test_work_time_is_the_union_of_the_stories_task_runs(board):
    story_id = board.create([(A, 1000, 0), (A, 1000, 0), (B, 1000, 0)])
    story = board.state.stories[story_id]
    board.lease(A, 1)  # at 0
    board.tick(0.5)
    board.lease(A, 1)  # at 0.5, side by side
    board.tick(0.5)
    board.finish(0)  # the first ends at 1.0: the second still runs
    board.tick(0.5)
    board.finish(0)  # 1.5: worked 0 - 1.5
    board.tick(2.0)  # waits 2 s for a B worker
    board.lease(B)
    board.tick(1.0)
    assert story.work_s == pytest.approx(1.5)
    board.finish(0)
    assert story.work_s == pytest.approx(2.5)  # 2.5 s of work in 4.5 s of cycle time


# -- the bottleneck ---------------------------------------------------------------------------------
def figure(name: str, demand_ms: int, tasks: int = 1) -> StageFigures:
    return StageFigures(name, tasks, tasks, 0, 0, 0, 0, False, tasks if demand_ms or tasks else 0, demand_ms)


def test_the_bottleneck_is_the_stage_with_the_longest_wait_for_a_worker():
    stages = [figure("analysis", 4000), figure("build", 12_000), figure("test", 9000)]
    assert bottleneck(stages, [2, 6, 2], 1.0) == "test"  # 2 s, 2 s, 4.5 s
    assert bottleneck(stages, [2, 2, 6], 1.0) == "build"
    assert wait_s(stages[2], 2, 0.5) == pytest.approx(2.25)  # time-scaled
    assert bottleneck([figure("a", 0, 0), figure("b", 0, 0)], [1, 1], 1.0) is None
    assert math.isinf(wait_s(figure("a", 10), 0, 1.0))  # work and no worker at all
    assert bottleneck([figure("a", 1000), figure("b", 10)], [1, 0], 1.0) == "b"
    held = StageFigures("held", 9, 9, 0, 0, 2, 2, True, 0, 0)  # waits for its WIP limit, not a worker
    assert bottleneck([held, figure("b", 10)], [1, 1], 1.0) == "b"


def test_the_figures_of_a_workflow_name_the_stage_with_the_queue():
    state = WorkState(stages=("analysis", "build", "test"))
    for story_id in range(1, 5):
        first = (story_id - 1) * 2 + 1
        state.add_story(story_id, first, [500, 500], stages=[0, 2])
    for _ in range(4):
        state.take_lease(1.0, 1, 0.005, stage=0)
    for task_id in (1, 3, 5, 7):
        state.complete(task_id)
    figures = state.figures()
    assert [f.demand_tasks for f in figures] == [0, 0, 4]
    assert bottleneck(figures, [2, 6, 2], 1.0) == "test"
