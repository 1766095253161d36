"""Scenarios (common/scenario.py) and their per-stage load (common/loadgen.py): parsed, refused, drawn."""

from __future__ import annotations

import statistics
import textwrap

import pytest

from storypulse import protocol
from storypulse.loadgen import StageLoad, StoryGenerator
from storypulse.loadrun import LoadSettings
from storypulse.scenario import ScenarioError, builtin_names, load, parse

GOOD = textwrap.dedent("""\
    name = "mine"
    description = "two stages"
    wip_limit = 5

    [load]
    rate = 2.5
    arrivals = "poisson"

    [[stage]]
    name = "dev"
    workers = "1-3"
    wip_limit = 2
    tasks = "1-3"
    estimate_ms = "100-900"
    estimates = "lognormal"
    block_chance = 0.25
    block_ms = "500-1500"

    [[stage]]
    name = "review"
    workers = 1
    tasks = 0
    estimate_ms = 200
""")


def test_the_shipped_scenarios_load_by_name():
    assert {"single", "bottleneck"} <= set(builtin_names())
    single = load("single")
    assert single.workflow.names == ("work",) and single.source == "storypulse:single"
    bottleneck = load("bottleneck")
    assert len(bottleneck.workflow) >= 3
    last = bottleneck.workflow.stages[-1]
    assert last.max_workers < max(s.max_workers for s in bottleneck.workflow.stages)  # short of people


def test_a_scenario_file_by_path(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(GOOD)
    scenario = load(str(path))
    assert scenario.source == str(path) and scenario.name == "mine"
    assert (scenario.rate, scenario.arrivals, scenario.wip_limit) == (2.5, "poisson", 5)
    assert scenario.workflow.describe() == "dev:1-3,review:1" and scenario.workflow.wip_limits == {
        "dev": 2, "review": 0}
    assert scenario.stages[0] == StageLoad("dev", (1, 3), (100, 900), "lognormal", 0.25, (500, 1500))
    assert scenario.stages[1] == StageLoad("review", (0, 0), (200, 200))
    with pytest.raises(ScenarioError, match="'nowhere': no such file, and not one that comes with "
                                            "storypulse"):
        load("nowhere")


def bad(text: str, replace: str, by: str) -> str:
    assert replace in text
    return text.replace(replace, by)


@pytest.mark.parametrize("text, words", [
    (bad(GOOD, 'rate = 2.5', 'rate = '), "not valid TOML: Invalid value (at line 6, column 8)"),
    (bad(GOOD, 'rate = 2.5', 'rat = 2.5'), "line 6: [load]: unknown key 'rat' (did you mean 'rate'?)"),
    (bad(GOOD, 'rate = 2.5', 'rate = 0'), "line 6: [load]: rate 0 must be above 0"),
    (bad(GOOD, 'rate = 2.5', 'rate = "fast"'), "line 6: [load]: rate must be a whole number or a number"),
    (bad(GOOD, 'arrivals = "poisson"', 'arrivals = "bursty"'), "line 7: [load]: arrivals 'bursty'"),
    (bad(GOOD, 'estimate_ms = "100-900"', 'estimate_ms = "900-100"'),
     "line 14: stage 'dev': estimate_ms '900-100': need 0 <= A <= B <= 3600000"),
    (bad(GOOD, 'estimate_ms = 200', 'estimate_ms = 4000000'), "line 23: stage 'review': estimate_ms"),
    (bad(GOOD, 'block_chance = 0.25', 'block_chance = 1.5'), "line 16: stage 'dev': block_chance 1.5 must be"),
    (bad(GOOD, 'workers = "1-3"', 'workers = "0"'), "line 11: stage 'dev': workers 0-0: a stage needs"),
    (bad(GOOD, 'wip_limit = 2', 'wip_limit = -2'), "line 12: stage 'dev': wip_limit -2 must be within"),
    (bad(GOOD, 'name = "review"', 'name = "dev"'), "stage 'dev' is named twice"),
    (bad(GOOD, 'name = "review"', 'name = "re view"'), "line 20: [[stage]] 2: name 're view': a letter"),
    (bad(GOOD, 'tasks = "1-3"', 'tasks = "1-600"'), "line 13: stage 'dev': tasks '1-600': need 0 <= A <= B <= 500"),
    (bad(GOOD, 'tasks = "1-3"', 'tasks = "1-300"').replace("tasks = 0", 'tasks = "300"'),
     "the stages' tasks per story add up to 600; a story holds at most 500"),
    (bad(GOOD, 'tasks = "1-3"', "tasks = 0"), "every stage has 0 tasks per story"),
    (bad(GOOD, 'estimates = "lognormal"', 'estimates = "normal"'), "line 15: stage 'dev': estimates 'normal'"),
    (bad(GOOD, 'block_ms = "500-1500"', 'blocked_ms = "500"'), "line 17: [[stage]] 1: unknown key 'blocked_ms'"),
    (bad(GOOD, 'name = "mine"', 'title = "mine"'), "line 1: the scenario: unknown key 'title'"),
    (GOOD.split("[[stage]]")[0], "needs at least one [[stage]] table"),
    (bad(GOOD, 'name = "mine"\n', ''), "the scenario: name is missing"),
])
def test_bad_scenarios_are_refused_naming_the_line_and_the_field(text, words):
    with pytest.raises(ScenarioError) as caught:
        parse(text, "mine.toml")
    assert str(caught.value).startswith("mine.toml") and words in str(caught.value), str(caught.value)


def test_a_scenario_s_stories_are_valid_requests_by_stage_in_workflow_order():
    scenario = load("bottleneck")
    generator = scenario.generator(seed=3)
    stories = [generator.story() for _ in range(2000)]
    names = scenario.workflow.names
    blocked = 0
    for body in stories:
        request = protocol.decode_request(protocol.encode({"op": "create_story", **body}))
        order = [names.index(t.stage) for t in request.tasks]
        assert order == sorted(order)
        for task, load_ in ((t, scenario.stages[names.index(t.stage)]) for t in request.tasks):
            assert load_.estimate_ms[0] <= task.estimate_ms <= load_.estimate_ms[1]
            if task.blocked_ms:
                blocked += 1
                assert load_.block_chance and load_.block_ms[0] <= task.blocked_ms <= load_.block_ms[1]
        counts = [order.count(i) for i in range(len(names))]
        assert all(s.tasks[0] <= n <= s.tasks[1] for s, n in zip(scenario.stages, counts))
    build = [t for body in stories for t in body["tasks"] if t["stage"] == "build"]
    assert blocked / len(build) == pytest.approx(0.1, abs=0.02)


def test_the_same_seed_gives_the_same_stories_and_one_stage_names_none():
    scenario = load("bottleneck")
    one, two = scenario.generator(seed=9), scenario.generator(seed=9)
    assert [one.story() for _ in range(50)] == [two.story() for _ in range(50)]
    single = load("single")
    stories = [single.generator(seed=9).story() for _ in range(5)]
    assert all("stage" not in t for s in stories for t in s["tasks"])  # any server's first stage
    # one stage and no blocks: the very stories of the plain generator with the same ranges
    plain = StoryGenerator(tasks=(1, 6), estimate_ms=(100, 5000), estimates="lognormal", seed=9)
    staged = StoryGenerator(seed=9, stages=(StageLoad("work", (1, 6), (100, 5000), "lognormal"),))
    mean = statistics.fmean(len(plain.story()["tasks"]) for _ in range(3000))
    assert statistics.fmean(len(staged.story()["tasks"]) for _ in range(3000)) == pytest.approx(mean, rel=0.05)


def test_a_story_gets_a_task_even_when_every_stage_may_draw_none():
    gen = StoryGenerator(seed=1, stages=(StageLoad("a", (0, 1), (5, 5)), StageLoad("b", (0, 1), (7, 7))))
    assert all(gen.story()["tasks"] for _ in range(500))
    never = StoryGenerator(seed=1, stages=(StageLoad("a", (0, 0), (5, 5)), StageLoad("b", (0, 1), (7, 7))))
    never._rng.randint = lambda a, b: a  # every draw the lowest: 0 tasks everywhere
    assert never.story()["tasks"] == [{"name": "task 1", "estimate_ms": 7, "stage": "b"}]


def test_retuning_to_a_per_stage_load_and_back():
    gen = StoryGenerator(tasks=(2, 2), estimate_ms=(5, 5), seed=4)
    settings = LoadSettings.of_scenario(load("bottleneck"))
    assert settings.rate == 0.88 and settings.stages is not None
    gen.retune_stages(settings.stages)
    assert {t["stage"] for t in gen.story()["tasks"]} <= {"analysis", "build", "test"}
    gen.retune((3, 3), (5, 5), "uniform")
    assert gen.story()["tasks"] == [{"name": f"task {i}", "estimate_ms": 5} for i in (1, 2, 3)]
    with pytest.raises(ValueError, match="stage 'x': block chance 2"):
        gen.retune_stages((StageLoad("x", block_chance=2.0),))
