"""The desktop simulator panel against a real server: its settings change while it runs."""

from __future__ import annotations

import pytest

from storypulse.desktop.simulator import SimulatorPanel, SimulatorSettings


@pytest.fixture
def panel(qtbot, server):
    panel = SimulatorPanel(server.endpoints)
    qtbot.addWidget(panel)
    yield panel
    panel.button.setChecked(False)
    assert panel.shutdown()


def newest_tasks(server) -> int:
    """Tasks of the newest story stored (0: none yet)."""
    with server.client() as client:
        page = client.list_stories(limit=1)
    return page.stories[0].tasks_total if page.stories else 0


def test_settings_stay_editable_and_apply_while_it_runs(qtbot, server, panel):
    panel.start_with(rate=20, tasks=(1, 1), estimate_ms=(0, 10))
    qtbot.waitUntil(lambda: panel.last_progress.created >= 3, timeout=15_000)
    assert panel.worker.applied == SimulatorSettings(20, (1, 1), (0, 10), "steady", "uniform")
    for field in (panel.rate, panel.tasks_min, panel.tasks_max, panel.estimate_min,
                  panel.estimate_max, panel.arrivals, panel.estimates):
        assert field.isEnabled()

    panel.tasks_max.setValue(4)
    panel.tasks_min.setValue(4)
    panel.estimate_max.setValue(50)
    panel.estimates.setCurrentIndex(panel.estimates.findData("lognormal"))
    panel.arrivals.setCurrentIndex(panel.arrivals.findData("poisson"))
    panel.rate.setValue(40)
    wanted = SimulatorSettings(40, (4, 4), (0, 50), "poisson", "lognormal")
    qtbot.waitUntil(lambda: panel.worker.applied == wanted, timeout=5_000)
    assert panel.running  # never stopped for it
    # the stories sent from now on follow the new settings
    qtbot.waitUntil(lambda: newest_tasks(server) == 4, timeout=10_000)


def test_a_change_while_stopped_waits_for_the_next_start(qtbot, server, panel):
    panel.rate.setValue(5)  # not running: nothing is sent to the worker
    assert panel.worker.take_update() is None
    panel.start_with(rate=10, tasks=(2, 2), estimate_ms=(0, 0), arrivals="poisson")
    qtbot.waitUntil(lambda: panel.worker.applied is not None
                    and panel.worker.applied.rate == 10, timeout=5_000)
    assert panel.worker.applied.arrivals == "poisson" and panel.worker.applied.tasks == (2, 2)


# -- scenarios: a load per stage ------------------------------------------------------------------
def test_a_scenario_brings_its_rate_arrivals_and_a_load_per_stage(qtbot, server, panel):
    from storypulse import scenario

    one_range = panel.settings()
    assert panel.load_scenario("bottleneck")
    wanted = scenario.load("bottleneck")
    settings = panel.settings()
    assert settings.stages == wanted.stages and settings.rate == wanted.rate == 0.88
    assert settings.arrivals == "poisson"
    assert (settings.tasks, settings.estimate_ms) == (one_range.tasks, one_range.estimate_ms)  # kept aside
    assert [panel.scenario.stage.itemText(i) for i in range(3)] == ["analysis", "build", "test"]
    # The fields show one stage at a time, blocks included.
    panel.scenario.stage.setCurrentIndex(1)
    build = wanted.stages[1]
    assert (panel.tasks_min.value(), panel.tasks_max.value()) == build.tasks
    assert (panel.estimate_min.value(), panel.estimate_max.value()) == build.estimate_ms
    assert panel.scenario.block_chance.value() == 10 and \
        (panel.scenario.block_min.value(), panel.scenario.block_max.value()) == build.block_ms
    assert panel.scenario.block_chance.isVisibleTo(panel) and panel.scenario.stage.isVisibleTo(panel)
    # Back to one range: the fields as they were, no stages.
    panel.load_scenario("")
    assert panel.settings() == one_range and not panel.scenario.block_chance.isVisibleTo(panel)


def test_a_stage_edited_while_it_runs_changes_the_next_stories(qtbot, server, panel):
    panel.start_with(scenario="single", rate=20)
    qtbot.waitUntil(lambda: panel.last_progress.created >= 3, timeout=15_000)
    assert panel.worker.applied.stages[0].tasks == (1, 6) and panel.worker.applied.rate == 20
    panel.tasks_min.setValue(7)
    panel.tasks_max.setValue(7)
    panel.scenario.block_chance.setValue(50)
    panel.scenario.block_max.setValue(0)
    qtbot.waitUntil(lambda: panel.worker.applied.stages[0].tasks == (7, 7)
                    and panel.worker.applied.stages[0].block_chance == 0.5, timeout=5_000)
    assert panel.running
    qtbot.waitUntil(lambda: newest_tasks(server) == 7, timeout=10_000)  # the stories sent from now on


def test_an_edit_that_leaves_no_task_is_not_applied(qtbot, server, panel):
    panel.load_scenario("single")
    panel.tasks_min.setValue(0)  # 0-6 tasks: a story still gets some
    assert panel.settings().stages[0].tasks == (0, 6)
    panel.tasks_max.setValue(0)
    assert panel.settings().stages[0].tasks == (0, 6)  # the last load that makes stories stays
    assert panel.status.text().startswith("not applied: every stage has 0 tasks per story")


def test_a_scenario_file_is_loaded_or_refused_naming_the_line(qtbot, server, panel, tmp_path):
    good = tmp_path / "board.toml"
    good.write_text('name = "our-board"\n[load]\nrate = 3\n\n[[stage]]\nname = "dev"\nworkers = "2"\n'
                    'tasks = "2"\n\n[[stage]]\nname = "review"\ntasks = "1"\nblock_chance = 0.5\n'
                    'block_ms = "100-200"\n')
    assert panel.load_scenario(str(good))
    assert panel.scenario.picker.currentText() == "our-board" and panel.scenario.source() == str(good)
    assert [s.name for s in panel.settings().stages] == ["dev", "review"] and panel.rate.value() == 3
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\n[load]\nrate = 1\n[[stage]]\nname = "dev"\ntasks = "4-1"\n')
    assert not panel.load_scenario(str(bad))
    assert "bad.toml, line 6" in panel.status.text() and "tasks '4-1'" in panel.status.text()
    assert panel.scenario.source() == str(good)  # nothing changed
    assert [s.name for s in panel.settings().stages] == ["dev", "review"]


def test_a_server_without_the_scenarios_stages_is_named(qtbot, server, panel):
    from types import SimpleNamespace

    def stats_with(*names):
        stages = [SimpleNamespace(name=n) for n in names]
        return SimpleNamespace(stats=[SimpleNamespace(stages=stages)], snapshot=None)

    panel.load_scenario("bottleneck")
    panel.apply_batch(stats_with("work"))
    assert panel.warning.isVisibleTo(panel)
    assert "the server's stages are work: it refuses tasks of analysis, build, test" in panel.warning.text()
    panel.apply_batch(stats_with("analysis", "build", "test"))
    assert not panel.warning.isVisibleTo(panel)
    panel.load_scenario("single")  # one stage: its tasks name none, and any server takes them
    panel.apply_batch(stats_with("work"))
    assert not panel.warning.isVisibleTo(panel)
