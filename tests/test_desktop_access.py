"""Keyboard and names: every action reachable from the keyboard, every control named for screen readers.

The walk covers the main window and the add-story dialog as built. A control
is named when it has an accessible name, text of its own (a button's), or a
label that names it (a buddy: Qt tells screen readers "labelled by").
"""

from __future__ import annotations

import socket
from types import SimpleNamespace

import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (
    QAbstractButton, QAbstractItemView, QAbstractSpinBox, QComboBox, QLabel, QLineEdit, QPlainTextEdit,
    QTabBar, QToolButton, QWidget,
)

from desktop_support import snapshot_batch, workflow_stages
from storypulse.desktop.series import FIELDS
from storypulse.endpoints import Endpoints

INTERACTIVE = (QAbstractButton, QAbstractSpinBox, QComboBox, QLineEdit, QPlainTextEdit, QAbstractItemView, QTabBar)


@pytest.fixture
def window(qtbot, tmp_path):
    """The main window on a port where nothing answers: the widgets are all there, connecting."""
    from storypulse.desktop.window import MainWindow

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    made = MainWindow(Endpoints("127.0.0.1", port), QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(made)
    made.show()
    qtbot.waitExposed(made)
    yield made
    made.close()


QT_PARTS = ("ScrollLeftButton", "ScrollRightButton", "qt_toolbar_ext_button", "qt_menubar_ext_button")


def controls(top: QWidget) -> list[QWidget]:
    """The interactive controls in `top`, without the parts of another control (a spin box's editor,
    a combo box's list, a table's headers) or of Qt's own (the buttons of an overflowing bar)."""
    found = []
    for widget in top.findChildren(QWidget):
        if not isinstance(widget, INTERACTIVE) or widget.objectName() in QT_PARTS:
            continue
        parent, part = widget.parent(), False
        while parent is not None and parent is not top:
            part = part or isinstance(parent, (QAbstractSpinBox, QComboBox, QAbstractItemView)) \
                or type(parent).__name__ == "QComboBoxPrivateContainer"
            parent = parent.parent()
        if not part:
            found.append(widget)
    return found


def name_of(widget: QWidget, top: QWidget) -> str:
    if widget.accessibleName().strip():
        return widget.accessibleName()
    if isinstance(widget, QAbstractButton) and widget.text().replace("&", "").strip():
        return widget.text()
    if isinstance(widget, QTabBar) and all(widget.tabText(i) for i in range(widget.count())):
        return ", ".join(widget.tabText(i) for i in range(widget.count()))
    for label in top.findChildren(QLabel):
        if label.buddy() is widget and label.text().replace("&", "").strip():
            return label.text()
    return ""


def test_every_control_has_a_name_and_takes_the_keyboard_focus(qtbot, window):
    from storypulse.desktop.story_dialog import AddStoryDialog

    # With a workflow: the stage cards, the pool's stage list and the simulator's per-stage fields are there too.
    row = {name: 1.0 for name in FIELDS}
    row.update(ts=1_000.0, seq=1, stages=workflow_stages(), wip_limit=0, flow_window_s=60.0, lead_time_p85_s=None,
               open_stories=5, stories_in_progress=3, completed_stories=1, stories_completed_in_window=1,
               lead_time_mean_s=1.0, lead_time_p50_s=None, lead_time_p95_s=None, bottleneck="test",
               flow_efficiency=0.5, cycle_time_p50_s=None, cycle_time_p85_s=None, cycle_time_p95_s=None)
    batch = snapshot_batch([SimpleNamespace(**row)])
    window.flow.apply_batch(batch)
    window.pool_panel.apply_batch(batch)
    window.simulator_panel.load_scenario("bottleneck")
    assert len(window.flow.stage_strip.cards) == 3 and window.pool_panel.stages

    dialog = AddStoryDialog(window)
    qtbot.addWidget(dialog)
    for top in (window, dialog):
        found = controls(top)
        assert len(found) > (20 if top is window else 8)  # the walk sees them all
        unnamed = [f"{type(w).__name__} in {type(w.parent()).__name__}" for w in found if not name_of(w, top)]
        assert unnamed == [], f"controls without an accessible name: {unnamed}"
        # (A tool bar's buttons never take the focus: their actions are in the menus, with shortcuts.)
        no_tab = [f"{type(w).__name__} {name_of(w, top)!r}" for w in found
                  if not w.focusPolicy() & Qt.FocusPolicy.TabFocus
                  and not (isinstance(w, QToolButton) and w.defaultAction() in top.actions())]
        assert no_tab == [], f"controls the Tab key never reaches: {no_tab}"
    # Charts have no keys: named for screen readers, and out of the Tab order.
    for view in (window.dashboard.charts, *window.flow.views.values()):
        assert view.accessibleName() and view.accessibleDescription()
        assert view.focusPolicy() == Qt.FocusPolicy.NoFocus == view.viewport().focusPolicy()


def test_every_action_is_in_the_menu_bar_and_no_two_share_a_shortcut(window):
    menus = list(window.menus.values())
    assert {id(m) for m in menus} >= {id(a.menu()) for a in window.menuBar().actions()}
    assert len(menus) >= 5 and all("&" in m.title() for m in menus)  # Alt and a letter open each
    in_menus = {id(a) for m in menus for a in m.actions() if a.menu() is None}
    missing = [a.text() for a in window.actions() if id(a) not in in_menus]
    assert missing == []
    keys = [k.toString() for a in window.actions() for k in a.shortcuts()]
    assert len(keys) == len(set(keys)), sorted(keys)
    for expected in ("Ctrl+N", "Ctrl+R", "Ctrl+1", "Ctrl+Shift+T", "Ctrl+Shift+A", "Ctrl+L", "P"):
        assert expected in keys
    listed = dict(window.shortcut_list())  # what Help ▸ Keyboard shortcuts shows
    assert listed["Next theme"] == QKeySequence("Ctrl+Shift+T").toString(QKeySequence.SequenceFormat.NativeText)


def test_space_presses_a_focused_button_and_pauses_anywhere_else(qtbot, window):
    window.activateWindow()
    qtbot.waitActive(window)
    clicks = []
    window.pool_panel.apply.clicked.connect(lambda: clicks.append(1))
    window.pool_panel.apply.setFocus()
    qtbot.keyClick(window.pool_panel.apply, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: clicks == [1], timeout=2_000)
    assert not window.dashboard.paused
    window.open_tab("stories")
    window.stories.table.setFocus()
    qtbot.keyClick(window.stories.table, Qt.Key.Key_Space)
    assert window.dashboard.paused
    qtbot.keyClick(window.stories.table, Qt.Key.Key_P)
    assert not window.dashboard.paused


def test_the_big_numbers_read_as_title_and_value(qtbot):
    from storypulse.desktop.dashboard import Dashboard

    dashboard = Dashboard()
    qtbot.addWidget(dashboard)
    row = {name: 0.0 for name in FIELDS}
    row.update(ts=1_000.0, seq=1, open_stories=5, completed_stories=1234, stories_produced_per_s=2.5)
    stats = SimpleNamespace(**row)
    dashboard.apply_batch(SimpleNamespace(snapshot=SimpleNamespace(history=[], stats=stats), stats=[],
                                          pool_events=[]))
    dashboard._text_tick()
    assert dashboard.numbers["open_stories"].accessibleName() == "Open stories: 5"
    assert dashboard.numbers["completed_stories"].value.accessibleName() == "Completed stories: 1,234"
    assert dashboard.numbers["stories_produced_per_s"].accessibleName() == "Stories produced / s: 2.5"
