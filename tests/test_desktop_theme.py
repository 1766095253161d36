"""Themes: contrast (WCAG: 4.5:1 for text, 3:1 for lines) and colours that colour-blind eyes tell apart.

The figures come from what the tabs actually use: the palettes applied to the
widgets, the pens and brushes of the chart items, and, where that is robust,
the pixels of the tabs rendered offscreen (a chart's background, its lines in
their exact colours, the big numbers' type).
"""

from __future__ import annotations

import itertools
import re
import socket
import time
from collections import Counter
from types import SimpleNamespace

import pytest
from PySide6.QtCore import QSettings
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QAbstractButton, QAbstractSpinBox, QLabel, QWidget

from colour_vision import least_distance
from desktop_support import workflow_stages
from storypulse import protocol
from storypulse.desktop import theme
from storypulse.desktop.annotations import Note
from storypulse.desktop.cards import Card
from storypulse.desktop.chart_items import Band, Dots, LiveCurve
from storypulse.desktop.flow_math import FLOW_FIELDS
from storypulse.desktop.series import FIELDS
from storypulse.endpoints import Endpoints

TEXT, LINES = 4.5, 3.0
APART = 20.0  # CIE ΔE under normal vision and each dichromacy, for series drawn alike on one chart
THEMES = (theme.LIGHT, theme.DARK)


def ratio(a, b) -> float:
    return theme.contrast_ratio(QColor(a), QColor(b))


@pytest.mark.parametrize("colours", THEMES, ids=lambda t: t.name)
def test_every_colour_of_a_theme_meets_its_contrast(colours):
    grounds = (colours.window, colours.surface, colours.surface_alt, colours.button)
    for ground in grounds:
        assert ratio(colours.text, ground) >= TEXT and ratio(colours.muted, ground) >= TEXT
    for hue, colour in colours.texts.items():
        for ground in grounds[:3]:
            assert ratio(colour, ground) >= TEXT, (hue, colour, ground)
    for hue, colour in colours.lines.items():
        assert ratio(colour, colours.surface) >= LINES, (hue, colour)
    assert ratio(colours.axis, colours.surface) >= LINES
    assert ratio(colours.highlight_text, colours.highlight) >= TEXT
    assert ratio(colours.tooltip_text, colours.tooltip) >= TEXT
    # The Qt palette is these colours, role by role.
    palette = colours.qpalette()
    assert palette.color(QPalette.ColorRole.Window) == QColor(colours.window)
    assert palette.color(QPalette.ColorRole.PlaceholderText) == QColor(colours.muted)
    assert palette.color(QPalette.ColorRole.Base) == QColor(colours.surface)


def test_system_follows_the_desktop_and_a_bad_choice_is_refused(monkeypatch):
    monkeypatch.setattr(theme, "system_is_dark", lambda: True)
    assert theme.resolve("system") is theme.DARK and theme.resolve("light") is theme.LIGHT
    monkeypatch.setattr(theme, "system_is_dark", lambda: False)
    assert theme.resolve("system") is theme.LIGHT
    with pytest.raises(ValueError, match="theme must be one of system, light, dark"):
        theme.resolve("purple")
    from storypulse.desktop.cli import THEMES as CLI_THEMES

    assert CLI_THEMES == theme.CHOICES


def test_the_window_follows_the_system_only_while_told_to(qtbot, window, monkeypatch):
    monkeypatch.setattr(theme, "system_is_dark", lambda: True)
    window.set_theme("system")
    assert theme.current() is theme.DARK
    monkeypatch.setattr(theme, "system_is_dark", lambda: False)
    window._on_system_scheme()  # the desktop turned light (Qt's colorSchemeChanged)
    assert theme.current() is theme.LIGHT
    window.set_theme("dark")
    window._on_system_scheme()  # a chosen theme stays
    assert theme.current() is theme.DARK
    window._next_theme()  # Ctrl+Shift+T: dark, then the system's, then light
    assert window.theme_choice == "system" and theme.current() is theme.LIGHT
    assert [a.data() for a in window.theme_actions.actions() if a.isChecked()] == ["system"]


# -- the app as built ---------------------------------------------------------------------------
def _row(ts: float, i: int, fields):
    values = {name: float(3 + (i * 7) % 11) for name in fields}
    values.update(ts=ts, seq=i, completed_stories=float(10 + i), open_stories=float(6 + i % 5),
                  stories_in_progress=float(3 + i % 3), wip_limit=6.0, flow_window_s=60.0,
                  stories_completed_in_window=float(min(i, 60)), database="ok", database_error=None,
                  flow_efficiency=0.4, bottleneck="test")
    values["stages"] = workflow_stages(i)  # three stages: their bands, aging columns and cards are checked too
    return SimpleNamespace(**values)


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    """The main window (on a port where nothing answers) with an hour of stats in its tabs and notes."""
    from storypulse.desktop.window import MainWindow

    monkeypatch.setattr(theme, "system_is_dark", lambda: False)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    made = MainWindow(Endpoints("127.0.0.1", port), QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(made)
    made.resize(1280, 800)
    made.show()
    qtbot.waitExposed(made)
    now = time.time()
    rows = [_row(now - 120 + k, k, set(FIELDS) | set(FLOW_FIELDS)) for k in range(121)]
    completions = [SimpleNamespace(story_id=k, completed_at=now - 100 + k, lead_time_s=1 + k % 4, cycle_time_s=1.0)
                   for k in range(90)]
    batch = SimpleNamespace(snapshot=SimpleNamespace(history=rows[:-1], stats=rows[-1], completions=completions),
                            stats=[], story_events=[], pool_events=[], story_events_dropped=0)
    made.dashboard.apply_batch(batch)
    made.flow.apply_batch(batch)
    made.notes.add(Note(now - 50, "simulator", "started"))
    made.notes.add(Note(now - 40, "outage", "outage began"))
    made.set_window_length(60)
    yield made
    made.close()


def _use(qtbot, window, name: str) -> theme.Theme:
    """Switch the theme from the window, as its menu does; the widgets take the new palette at the next
    turn of the event loop."""
    window.set_theme(name)
    colours = theme.current()
    assert colours is theme.THEMES[name]
    qtbot.waitUntil(lambda: window.palette().color(QPalette.ColorRole.Window) == QColor(colours.window),
                    timeout=2_000)
    return colours


def _show(qtbot, window, tab: str) -> None:
    window.open_tab(tab)
    shown = {"dashboard": window.dashboard, "stories": window.stories, "flow": window.flow}[tab]
    qtbot.waitUntil(shown.isVisible, timeout=2_000)
    if tab == "dashboard":
        qtbot.waitUntil(lambda: window.dashboard.diagnostics["frames"] > 0 and not window.dashboard.notes.dirty,
                        timeout=5_000)
        window.dashboard._text_tick()
    if tab == "flow":
        qtbot.waitUntil(lambda: window.flow.diagnostics["frames"] > 0 and not window.flow._dirty, timeout=5_000)
        window.flow._text_tick()


def _ground(widget: QWidget, colours: theme.Theme) -> QColor:
    """The colour behind a widget: the card it sits on, or the first ancestor that fills its background."""
    while widget is not None:
        if isinstance(widget, Card):
            return QColor(colours.surface)
        if widget.autoFillBackground() or widget.isWindow():
            return widget.palette().color(widget.backgroundRole())
        widget = widget.parentWidget()
    return QColor(colours.window)


def _html_colours(text: str) -> list[str]:
    return re.findall(r"color:\s*(#[0-9a-fA-F]{6})", text)


def _chart_items(view):
    for item in view.scene().items():
        if isinstance(item, (LiveCurve, Band, Dots)):
            yield item


def _colour_of(item) -> QColor:
    return item.colour() if isinstance(item, Dots) else item.pen().color()


def _pixels(image) -> Counter:
    counts: Counter = Counter()
    step = 2  # every other pixel of every other row: enough to find lines, much faster
    for y in range(0, image.height(), step):
        for x in range(0, image.width(), step):
            counts[image.pixel(x, y) & 0xFFFFFF] += 1
    return counts


@pytest.mark.parametrize("name", ("light", "dark"))
def test_every_tab_is_readable_in_both_themes(qtbot, window, name):
    colours = _use(qtbot, window, name)
    for tab in ("dashboard", "stories", "flow"):
        _show(qtbot, window, tab)
        # Text: every label shown, in its palette's colour and any colour its rich text sets.
        checked = 0
        for label in window.findChildren(QLabel):
            if not label.isVisible() or not label.text().strip():
                continue
            ground = _ground(label, colours)
            colour = label.palette().color(label.foregroundRole())
            assert ratio(colour, ground) >= TEXT, (tab, label.text()[:40], colour.name(), ground.name())
            for coloured in _html_colours(label.text()):
                assert ratio(coloured, ground) >= TEXT, (tab, label.text()[:40], coloured)
            checked += 1
        assert checked >= 8
        if tab == "flow":  # the workflow's cards are there, and were checked
            assert window.flow.stage_strip.isVisible() and len(window.flow.stage_strip.cards) == 3
        for control in window.findChildren(QWidget):
            if control.isVisible() and isinstance(control, (QAbstractButton, QAbstractSpinBox)):
                palette = control.palette()
                ground, ink = ((QPalette.ColorRole.Button, QPalette.ColorRole.ButtonText)
                               if isinstance(control, QAbstractButton) else
                               (QPalette.ColorRole.Base, QPalette.ColorRole.Text))
                assert ratio(palette.color(ink), palette.color(ground)) >= TEXT, (tab, type(control).__name__)
    # The stories table: its text and the states' colours on both kinds of row.
    table = window.stories.table.palette()
    for ground in (QPalette.ColorRole.Base, QPalette.ColorRole.AlternateBase):
        assert ratio(table.color(QPalette.ColorRole.Text), table.color(ground)) >= TEXT
        for colour in window.stories.model.status_colours.values():
            assert ratio(colour, table.color(ground)) >= TEXT


@pytest.mark.parametrize("name", ("light", "dark"))
def test_every_chart_draws_readable_lines_and_labels_on_its_background(qtbot, window, name):
    colours = _use(qtbot, window, name)
    views = [window.dashboard.charts, *window.flow.views.values()]
    for tab in ("dashboard", "flow"):
        _show(qtbot, window, tab)
    for view in views:
        ground = view.backgroundBrush().color()
        assert ground == QColor(colours.surface)
        items = list(_chart_items(view))
        assert items
        for item in items:
            assert ratio(_colour_of(item), ground) >= LINES, (view.accessibleName(), _colour_of(item).name())
        for item in view.scene().items():
            if hasattr(item, "textPen") and hasattr(item, "orientation") and item.isVisible():  # an axis shown
                assert ratio(item.textPen().color(), ground) >= TEXT and ratio(item.pen().color(), ground) >= LINES
        for plot in [p for p in view.ci.items if hasattr(p, "titleLabel")]:
            label = plot.titleLabel
            assert ratio(label.opts["color"], ground) >= TEXT
            for coloured in _html_colours(label.text):  # the keys of a title: marks, not text
                assert ratio(coloured, ground) >= LINES
    for layer in (*window.dashboard.notes.layers, *window.flow.notes.layers):
        for item in layer.items.values():
            assert ratio(item.pen().color(), colours.surface) >= LINES


@pytest.mark.parametrize("name", ("light", "dark"))
def test_the_rendered_pixels_are_the_themes(qtbot, window, name):
    """Rendered offscreen: a chart's background is the theme's, its lines show in their exact colours,
    and the big numbers' type stands out from their cards."""
    colours = _use(qtbot, window, name)
    _show(qtbot, window, "dashboard")
    image = window.dashboard.charts.grab().toImage()
    counts = _pixels(image)
    background = QColor(counts.most_common(1)[0][0])
    assert background == QColor(colours.surface)
    drawn = {colour.rgb() & 0xFFFFFF for colour in (c.pen().color() for c in window.dashboard.curves.values())}
    assert all(counts[colour] > 0 for colour in drawn), "a curve is not drawn in its own colour"
    for colour in drawn:
        assert ratio(QColor(colour), background) >= LINES
    other = theme.THEMES["dark" if name == "light" else "light"]
    assert counts[QColor(other.surface).rgb() & 0xFFFFFF] == 0  # no trace of the theme before
    for box in window.dashboard.numbers.values():
        card = box.grab().toImage()  # the card paints the ground its labels sit on
        ratio_ = card.devicePixelRatio()
        area = box.value.geometry()
        pixels = _pixels(card.copy(round(area.x() * ratio_), round(area.y() * ratio_), round(area.width() * ratio_),
                                   round(area.height() * ratio_)))
        ground = QColor(pixels.most_common(1)[0][0])
        assert ground == QColor(colours.surface)
        assert max(ratio(QColor(p), ground) for p in pixels) >= TEXT, box.title.text()


def series_on(view):
    """(item, how it is drawn) for every series of a chart view: lines by pen style, dots by shape, bands."""
    for item in _chart_items(view):
        if isinstance(item, Band):
            yield item, "band"
        elif isinstance(item, Dots):
            yield item, "round dots" if item.round else "square dots"
        else:
            yield item, f"line {item.pen().style()}"


@pytest.mark.parametrize("name", ("light", "dark"))
def test_series_of_one_chart_are_told_apart_by_colour_blind_eyes_or_by_their_style(qtbot, window, name):
    _use(qtbot, window, name)
    for view in [window.dashboard.charts, *window.flow.views.values()]:
        # The dashboard's view holds five charts: pair the series of each chart (view box) only.
        by_chart: dict[int, list] = {}
        for item, how in series_on(view):
            by_chart.setdefault(id(item.parentItem()), []).append((item, how))
        for series in by_chart.values():
            for (a, how_a), (b, how_b) in itertools.combinations(series, 2):
                if how_a != how_b:
                    continue  # a dashed line beside a solid one, dots beside a line: told apart by shape
                if how_a == "band" and not _adjacent(window, a, b):
                    continue  # bands are told apart by their place in the stack; neighbours by colour too
                apart, vision = least_distance(_colour_of(a).name(), _colour_of(b).name())
                assert apart >= APART, (view.accessibleName(), _colour_of(a).name(), _colour_of(b).name(), vision)


def _adjacent(window, a, b) -> bool:
    order = window.flow.cfd_stack()  # bottom to top: done, each stage from the last (or in progress), waiting
    return a in order and b in order and abs(order.index(a) - order.index(b)) == 1


@pytest.mark.parametrize("colours", THEMES, ids=lambda t: t.name)
def test_stage_bands_stay_apart_from_their_neighbours_for_any_number_of_stages(colours):
    """The cumulative flow diagram stacks done, the stages from the last to the first, and waiting: whatever
    the number of stages, two neighbours stay told apart by colour-blind eyes."""
    from storypulse.desktop.stage_math import stage_role

    for count in range(1, protocol.STAGES_MAX + 1):
        roles = ["done", *(stage_role(i) for i in reversed(range(count))), "open"]
        for below, above in zip(roles, roles[1:]):
            apart, vision = least_distance(colours.colour(below).name(), colours.colour(above).name())
            assert apart >= APART, (count, below, above, vision)
