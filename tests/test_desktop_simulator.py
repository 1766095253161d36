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
