"""Helpers for the desktop tests: a dashboard on screen, fed a stats history as a snapshot would."""

from __future__ import annotations

from types import SimpleNamespace

from storypulse.desktop.series import FIELDS


def stats_row(ts: float, i: int, **fields):
    """A Stats-like row: every charted field set (to small numbers that move), then `fields`."""
    row = {name: float(i % 7) for name in FIELDS}
    row.update(ts=ts, seq=i, **fields)
    return SimpleNamespace(**row)


def snapshot_batch(history: list):
    """A FeedBatch with a snapshot of `history`, its last row the current stats."""
    return SimpleNamespace(snapshot=SimpleNamespace(history=history, stats=history[-1], completions=[]),
                           stats=[], pool_events=[], story_events=[], story_events_dropped=0)


def shown_dashboard(qtbot, history: list | None = None):
    """A Dashboard on screen (1000 × 700), given `history` as a snapshot if any."""
    from storypulse.desktop.dashboard import Dashboard

    dashboard = Dashboard()
    qtbot.addWidget(dashboard)
    dashboard.resize(1000, 700)
    dashboard.show()
    qtbot.waitExposed(dashboard)
    if history:
        dashboard.apply_batch(snapshot_batch(history))
    return dashboard
