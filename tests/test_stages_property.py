"""The work state's rules under generated workflows and histories (Hypothesis), on a fake clock.

A random workflow (one to four stages), WIP limits (system and per stage) and window;
then random steps: stories with tasks in random stages, some with blocks; leases per
stage; leases done, lost, or reported late by a worker given up on; time passing (blocks
end); deletes; restarts from the "disk" (tests/stageboard.py). After every step:

- the stage order held for every task that started (checked by the board at each start),
- no stage holds more stories than its WIP limit, nor the system more than its own,
- every count (per stage and in total) equals what is there, and the stages add up;

and at the end, run to completion: every story not deleted is done, every task of it
done exactly once (nothing lost, nothing done twice).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition, rule)

from stageboard import Board, assert_consistent

EXAMPLES = int(os.environ.get("STORYPULSE_FUZZ_EXAMPLES", "150"))

task = st.tuples(st.integers(0, 3), st.sampled_from([0, 3, 10, 400]),
                 st.sampled_from([0, 0, 0, 250, 1500]))


class WorkflowMachine(RuleBasedStateMachine):
    board: Board

    @initialize(stages=st.integers(1, 4), window=st.sampled_from([3, 8, 20_000]),
                wip=st.integers(0, 4), stage_wip=st.lists(st.integers(0, 3), min_size=4, max_size=4))
    def start(self, stages, window, wip, stage_wip):
        self.limits = [limit for limit in stage_wip[:stages]]
        self.board = Board(stages, window=window, wip_limit=wip,
                           stage_wip={i: limit for i, limit in enumerate(self.limits)})
        self.stages = stages
        self.deleted: set[int] = set()

    @rule(tasks=st.lists(task, min_size=1, max_size=5), plain=st.booleans())
    def create(self, tasks, plain):
        self.board.create([(s % self.stages, e, b) for s, e, b in tasks], plain=plain)

    @rule(stage=st.integers(0, 3), max_tasks=st.sampled_from([1, 4]))
    def lease(self, stage, max_tasks):
        self.board.lease(stage % self.stages, max_tasks)

    @precondition(lambda self: self.board.leases)
    @rule(pick=st.integers(0, 100))
    def finish(self, pick):
        self.board.finish(pick % len(self.board.leases))

    @precondition(lambda self: self.board.leases)
    @rule(pick=st.integers(0, 100))
    def lose(self, pick):
        self.board.lose(pick % len(self.board.leases))

    @precondition(lambda self: self.board.tasks)
    @rule(pick=st.integers(1, 10_000))
    def late_done(self, pick):
        """A Done for any task, from a worker we no longer know (or a confused one)."""
        self.board.done([1 + pick % len(self.board.tasks)])

    @rule(seconds=st.sampled_from([0.001, 0.1, 0.3, 2.0]))
    def tick(self, seconds):
        self.board.tick(seconds)

    @precondition(lambda self: self.board.stories)
    @rule(pick=st.integers(1, 10_000))
    def delete(self, pick):
        story_id = 1 + pick % len(self.board.stories)
        if self.board.delete(story_id):
            self.deleted.add(story_id)

    @rule()
    def restart(self):
        self.board.restart()

    @invariant()
    def counts_and_limits(self):
        state = self.board.state
        assert_consistent(state)
        for stage, limit in zip(state.stages, self.limits):
            assert not limit or stage.stories <= limit, f"stage {stage.name}: {stage.stories} > {limit}"
        assert not self.board.wip_limit or state.in_progress <= self.board.wip_limit

    def teardown(self):
        board = getattr(self, "board", None)
        if board is None:
            return
        board.drain()
        assert_consistent(board.state)
        for story_id, story in board.stories.items():
            if story_id in self.deleted:
                continue
            assert story.status == "done", f"story {story_id} never completed"
            assert all(board.tasks[t].done == 1 for t in story.tasks)
        assert board.state.open_stories == 0 and board.state.queued == 0


WorkflowMachine.TestCase.settings = settings(
    max_examples=EXAMPLES, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
test_the_rules_hold_under_any_history = WorkflowMachine.TestCase
