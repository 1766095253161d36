"""The workflow model (common/workflow.py): --stages and --stage-wip, parsed and refused by part."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storypulse import protocol
from storypulse.workflow import (DEFAULT_STAGE, StageSpec, Workflow, WorkflowError, from_options,
                                 parse_stage_wip, parse_stages, single)


def test_stages_in_order_with_their_pools():
    workflow = parse_stages("analysis:1-2, build:1-6,test:2")
    assert workflow.names == ("analysis", "build", "test")
    assert workflow.stages[1] == StageSpec("build", 1, 6)
    assert workflow.stages[2] == StageSpec("test", 2, 2)  # NAME:N: a fixed pool
    assert workflow.describe() == "analysis:1-2,build:1-6,test:2"
    assert workflow.index("test") == 2


def test_without_stages_one_stage_work_with_the_server_pool():
    workflow = from_options(None, None, 1, 8)
    assert workflow == single(1, 8) and workflow.names == (DEFAULT_STAGE,) == ("work",)
    assert workflow.stages[0].min_workers == 1 and workflow.stages[0].max_workers == 8
    assert from_options(None, "work=3", 1, 8).wip_limits == {"work": 3}


def test_stage_wip_limits_per_stage_and_zero_lifts_one():
    workflow = from_options("analysis:1-2,build:1-6,test:1-2", "build=3,test=2", 1, 8)
    assert workflow.wip_limits == {"analysis": 0, "build": 3, "test": 2}
    assert workflow.describe_wip() == "build=3,test=2"
    assert workflow.with_wip_limits({"build": 0}).wip_limits["build"] == 0


@pytest.mark.parametrize("text, words", [
    ("", "--stages: empty"),
    ("analysis:1-2,,test:1", "an empty part"),
    ("analysis", "part 'analysis': expected NAME:MIN-MAX"),
    ("analysis:1-2,build:6-1", "stage 'build': min workers 6 is above max workers 1"),
    ("analysis:a-2", "part 'analysis:a-2': min workers: 'a' is not a whole number"),
    ("analysis:1-", "max workers: '' is not a whole number"),
    ("build:0-0", "stage 'build': max workers 0 must be within 1-256"),
    ("build:1-300", "max workers 300 must be within 1-256"),
    ("build:1-2,Build:1-2", "stage 'Build' is named twice (as 'build' too)"),
    ("build:1-2,build:3", "stage 'build' is named twice"),
    ("2build:1", "stage name '2build': a letter, then letters, digits"),
    ("bu ild:1", "a letter, then letters, digits"),
    ("a:1-100,b:1-100,c:1-100", "add up to 300; at most 256"),
    (",".join(f"s{i}:1" for i in range(17)), "17 stages: at most 16"),
    ("x" * 33 + ":1", "at most 32 characters"),
])
def test_bad_stages_are_refused_naming_the_part(text, words):
    with pytest.raises(WorkflowError) as caught:
        parse_stages(text)
    assert words in str(caught.value)


@pytest.mark.parametrize("text, words", [
    ("deploy=2", "unknown stage 'deploy'; the stages are analysis, build, test"),
    ("build", "part 'build': expected NAME=N"),
    ("build=-1", "WIP limit: '-1' is not a whole number"),
    ("build=200000", "must be within 0-100000"),
    ("build=2,build=3", "stage 'build' is given twice"),
    ("build=2,", "an empty part"),
])
def test_bad_stage_wip_is_refused_naming_the_part(text, words):
    workflow = parse_stages("analysis:1-2,build:1-6,test:1-2")
    with pytest.raises(WorkflowError) as caught:
        parse_stage_wip(text, workflow)
    assert words in str(caught.value)


def test_a_workflow_is_valid_or_not_built():
    with pytest.raises(WorkflowError, match="at least one stage"):
        Workflow(())
    with pytest.raises(WorkflowError, match="unknown stage 'qa'"):
        single(1, 2).with_wip_limits({"qa": 1})


names = st.from_regex(protocol.STAGE_NAME_PATTERN.replace("*$", "{0,8}$"), fullmatch=True)


@given(st.lists(st.tuples(names, st.integers(0, 9), st.integers(1, 9)), min_size=1, max_size=8,
                unique_by=lambda t: t[0].lower()))
def test_any_valid_workflow_round_trips_through_its_text(stages):
    stages = [(n, min(a, b), max(a, b)) for n, a, b in stages]
    workflow = parse_stages(",".join(f"{n}:{a}-{b}" for n, a, b in stages))
    assert parse_stages(workflow.describe()) == workflow
    assert [(s.name, s.min_workers, s.max_workers) for s in workflow.stages] == stages


@given(st.text(max_size=40))
def test_any_text_parses_or_is_refused_with_a_workflow_error(text):
    try:
        parse_stages(text)
    except WorkflowError:
        pass
