"""The stand-in's team model (tools/team_model.py) keeps the server's rules, so that the desktop tests that
stand on it test against figures a server could send: checked on a fake clock."""

from __future__ import annotations

import pytest

from standin import FlowModel, three_stages


def run(model: FlowModel, seconds: int, check) -> None:
    for t in range(1, seconds + 1):
        model.advance(model.now + 1.0)
        check(model.stats())


@pytest.mark.parametrize("wip_limit, stage_limits", [(0, {}), (8, {}), (0, {"build": 3, "test": 2})])
def test_the_stages_add_up_and_every_limit_holds_at_every_stats(wip_limit, stage_limits):
    model = FlowModel(rate=4.0, stages=three_stages(4 / 3), start=0.0, seed=5, wip_limit=wip_limit)
    model.set_stage_wip_limits(stage_limits)
    seen_blocked = []

    def check(stats):
        assert sum(s.stories for s in stats.stages) == stats.stories_in_progress
        assert sum(s.tasks_queued for s in stats.stages) == stats.tasks_queued
        assert sum(s.tasks_blocked for s in stats.stages) == stats.tasks_blocked
        assert sum(s.workers_busy for s in stats.stages) == stats.workers_busy
        assert all(s.workers_busy <= s.workers for s in stats.stages)
        if wip_limit:
            assert stats.stories_in_progress <= wip_limit
        for s in stats.stages:
            assert not s.wip_limit or s.stories <= s.wip_limit
        assert stats.bottleneck in (None, *(s.name for s in stats.stages))
        seen_blocked.append(stats.tasks_blocked)

    run(model, 120, check)
    last = model.stats()
    assert last.completed_stories > 100 and 0 < last.flow_efficiency <= 1
    assert max(seen_blocked) > 0  # build blocks one in ten
    # A story's stage in the list is the one it counts in, and its block shows while it lasts.
    page = model.list_stories("open", 0, 1000).stories
    counted = {s.name: s.stories for s in last.stages}
    assert {n: sum(v.stage == n for v in page) for n in counted} == counted


def test_a_limit_cuts_cycle_time_where_work_queues_before_the_last_stage():
    def cycle_p85(limit: int) -> float:
        model = FlowModel(rate=4.0, stages=three_stages(4 / 3), start=0.0, seed=9, wip_limit=limit)
        run(model, 300, lambda stats: None)
        return model.stats().cycle_time_p85_s

    assert cycle_p85(8) * 3 < cycle_p85(0)


def test_stage_limits_and_pools_name_an_unknown_stage_and_change_nothing():
    model = FlowModel(rate=1.0, stages=three_stages(), start=0.0)
    with pytest.raises(ValueError, match="stage 'deploy': not a stage of this server; the stages are "
                                         "analysis, build, test"):
        model.set_stage_wip_limits({"build": 2, "deploy": 1})
    assert [s.wip_limit for s in model.stages] == [0, 0, 0]
    stage = model.set_pool("test", 1, 5)
    assert (stage.min_workers, stage.max_workers, stage.workers) == (1, 5, 5)
    assert model.stats().stages[2].workers == 5
    with pytest.raises(ValueError, match="min_workers 6 is above max_workers 5"):
        model.set_pool("test", 6, None)
    # Without stages: one stage, `work`, the pool of the model's workers.
    single = FlowModel(rate=1.0, workers=3, median_s=1.0, start=0.0)
    assert [(s.name, s.workers) for s in single.stats().stages] == [("work", 3)]
