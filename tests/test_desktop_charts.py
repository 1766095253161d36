"""The chart pieces that keep scrolling cheap: tick arithmetic, and a dashboard that scrolls itself."""

from __future__ import annotations

import time

from desktop_support import shown_dashboard, stats_row
from storypulse.desktop.chart_axes import nice_step, ticks_between, time_format, time_step, value_label


def test_nice_steps_and_ticks():
    assert nice_step(100, 5) == 20
    assert nice_step(1, 4) == 0.5
    assert nice_step(7, 7) == 1
    assert ticks_between(0, 100, 20) == [0, 20, 40, 60, 80, 100]
    assert ticks_between(5, 39, 10) == [10, 20, 30]
    assert ticks_between(10, 5, 1) == []
    assert value_label(1500, 500) == "1,500"
    assert value_label(0.5, 0.1) == "0.5"


def test_time_steps_keep_labels_apart():
    # 60 s over 400 px with 55 px labels: labels at least 1.6 label widths apart.
    step = time_step(60, 400, 55)
    assert step in (10, 15) and 400 / (60 / step) >= 55 * 1.6
    assert time_step(3600, 400, 55) >= 600
    assert time_format(10) == "%H:%M:%S" and time_format(600) == "%H:%M"


def test_dashboard_scrolls_at_every_tick_and_rebuilds_its_grid_rarely(qtbot):
    now = time.time()
    dashboard = shown_dashboard(qtbot, [stats_row(now - 300 + k, k) for k in range(300)])
    dashboard.set_window(60)
    probes = dashboard.diagnostics
    frames, builds = probes["frames"], probes["grid builds"]
    qtbot.waitUntil(lambda: probes["frames"] >= frames + 10, timeout=5000)
    # Smooth scrolling moves the view at every frame; the grid path is rebuilt about every half window.
    assert probes["grid builds"] - builds <= 2 * len(dashboard.grids)
    left, right = dashboard.plots[0].viewRange()[0]
    assert abs((right - left) - 60) < 1e-6
    assert all(not c.path().isEmpty() for c in dashboard.curves.values())

    dashboard.hide()
    hidden_at = probes["ticks"]
    qtbot.wait(300)
    assert probes["ticks"] == hidden_at  # hidden: no work at all
