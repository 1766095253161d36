"""The app's colours: a light and a dark theme, and one palette of series colours for every chart.

Series take the hues of Okabe and Ito's palette (2008; its yellow only for the
workflow's stage bands, as an olive in the light theme), chosen to stay apart
for people with a colour-vision deficiency. Each theme keeps those hues and
moves their lightness, so that on its chart background a line has at least
3:1 contrast and a coloured text 4.5:1 (WCAG 2), and two series that share a
chart stay apart under protanopia, deuteranopia and tritanopia too; where
they still could be confused, they also differ in line style (SERIES).
tests/test_desktop_theme.py checks every one of these against the pens and
palettes the tabs actually use.

A series is named by its role ("produced", "in_progress", ...), never by a
colour, so every tab draws the same thing the same way. Widgets take their
colours from the application palette (qpalette) where Qt has a role for it;
the charts, which draw with their own pens, re-make them in `apply_theme`
when the theme changes (`follow`), never per frame.

"system" follows the desktop's colour scheme (Qt's style hints), light when
it says nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QColor, QGuiApplication, QPalette, QPen

CHOICES = ("system", "light", "dark")
SOLID, DASH, DASH_DOT, DOT = (Qt.PenStyle.SolidLine, Qt.PenStyle.DashLine, Qt.PenStyle.DashDotLine,
                              Qt.PenStyle.DotLine)

# What each series is drawn with, in both themes: (hue, line style).
SERIES = MappingProxyType({
    "produced": ("blue", SOLID),
    "completed": ("green", SOLID),
    "open": ("orange", SOLID),  # open stories, work in progress, the waiting band
    "done": ("purple", SOLID),  # completed stories, the done band
    "in_progress": ("sky", SOLID),
    "queued": ("orange", SOLID),  # tasks waiting
    "running": ("sky", SOLID),
    "workers": ("neutral", SOLID),
    "busy": ("blue", SOLID),
    "target": ("neutral", DASH),
    "p50": ("green", SOLID),
    "p85": ("orange", SOLID),
    "p95": ("vermillion", DASH),  # beside p85's orange, which it is near for deuteranopes
    "predicted": ("green", DASH),
    "limit": ("neutral", DASH_DOT),
    "lead_time": ("neutral", SOLID),  # the lead-time dots
    "calm": ("sky", SOLID),  # open stories younger than the p85 lead time
    "risk": ("vermillion", SOLID),  # ... and older
    "grown": ("green", SOLID),  # pool resize marks (their shape tells up from down too)
    "shrunk": ("vermillion", SOLID),
    "note": ("neutral", DOT),  # annotations
    "alert": ("vermillion", DOT),  # annotations about trouble (a database outage)
    # The workflow (stage_math.STAGE_ROLES): stage bands cycle sky, yellow, blue, yellow, ...
    "stage_1": ("sky", SOLID),  # the first stage: the in-progress band's hue, split
    "stage_2": ("yellow", SOLID),
    "stage_3": ("blue", SOLID),
    "blocked": ("purple", SOLID),  # blocked stories on the aging chart (squares behind their dots)
    "efficiency": ("green", SOLID),  # flow efficiency
    "bottleneck": ("vermillion", SOLID),  # the stage named the bottleneck
    "connected": ("green", SOLID),  # connection states
    "connecting": ("neutral", SOLID),
    "reconnecting": ("orange", SOLID),
    "disconnected": ("vermillion", SOLID),
})


@dataclass(frozen=True)
class Theme:
    name: str
    window: str  # behind everything
    surface: str  # charts, cards, tables
    surface_alt: str  # a table's alternate rows
    button: str
    text: str
    muted: str  # secondary text, 4.5:1 on window, surface and button
    border: str
    grid: str  # chart grid lines: there, not loud
    axis: str  # axis lines, 3:1 on surface
    highlight: str
    highlight_text: str
    tooltip: str
    tooltip_text: str
    lines: dict[str, str] = field(default_factory=dict)  # hue -> colour of lines and marks (3:1 on surface)
    texts: dict[str, str] = field(default_factory=dict)  # hue -> colour of coloured text (4.5:1)

    @property
    def dark(self) -> bool:
        return self.name == "dark"

    def colour(self, role: str) -> QColor:
        """The line colour of a series role (SERIES)."""
        return QColor(self.lines[SERIES[role][0]])

    def text_colour(self, role: str) -> QColor:
        """The colour of text that stands for a series (a big number, a state)."""
        return QColor(self.texts[SERIES[role][0]])

    def pen(self, role: str, width: float = 1.0) -> QPen:
        """A cosmetic pen (the same pixels whatever a view's scale) in the role's colour and line style."""
        pen = QPen(self.colour(role), width * line_width(), SERIES[role][1])
        pen.setCosmetic(True)
        return pen

    def qpalette(self) -> QPalette:
        """The Qt palette for the widgets (Fusion style)."""
        palette = QPalette()
        c = QColor
        button = c(self.button)
        roles = {
            QPalette.ColorRole.Window: self.window, QPalette.ColorRole.WindowText: self.text,
            QPalette.ColorRole.Base: self.surface, QPalette.ColorRole.AlternateBase: self.surface_alt,
            QPalette.ColorRole.Text: self.text, QPalette.ColorRole.Button: self.button,
            QPalette.ColorRole.ButtonText: self.text, QPalette.ColorRole.BrightText: self.texts["vermillion"],
            QPalette.ColorRole.Highlight: self.highlight, QPalette.ColorRole.HighlightedText: self.highlight_text,
            QPalette.ColorRole.ToolTipBase: self.tooltip, QPalette.ColorRole.ToolTipText: self.tooltip_text,
            QPalette.ColorRole.PlaceholderText: self.muted, QPalette.ColorRole.Link: self.texts["blue"],
            QPalette.ColorRole.LinkVisited: self.texts["purple"],
            QPalette.ColorRole.Light: button.lighter(130).name(), QPalette.ColorRole.Midlight: button.lighter(115).name(),
            QPalette.ColorRole.Mid: self.border, QPalette.ColorRole.Dark: button.darker(150).name(),
            QPalette.ColorRole.Shadow: "#000000",
        }
        for role, value in roles.items():
            palette.setColor(role, c(value))
        disabled = c(self.muted)
        disabled.setAlpha(150)
        for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
            palette.setColor(QPalette.ColorGroup.Disabled, role, disabled)
        palette.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Highlight, c(self.border))
        return palette


LIGHT = Theme(
    name="light", window="#F3F4F6", surface="#FFFFFF", surface_alt="#F6F8FA", button="#E9ECEF",
    text="#1F2328", muted="#59636E", border="#C9D1D9", grid="#E6E9ED", axis="#8C959F",
    highlight="#0969DA", highlight_text="#FFFFFF", tooltip="#FFFFFF", tooltip_text="#1F2328",
    lines={"blue": "#006299", "sky": "#1C95D9", "green": "#00A377", "orange": "#B87F00", "vermillion": "#D65F00",
           "purple": "#CA73A3", "neutral": "#717A84", "yellow": "#8F8A00"},
    texts={"blue": "#006299", "sky": "#1673A7", "green": "#007A59", "orange": "#8F6300", "vermillion": "#B24F00",
           "purple": "#B24381", "neutral": "#656D76", "yellow": "#706C00"},
)
DARK = Theme(
    name="dark", window="#22262B", surface="#17191D", surface_alt="#1E2126", button="#2D333B",
    text="#E6EDF3", muted="#9DA7B3", border="#444C56", grid="#2A2F36", axis="#7D8590",
    highlight="#316DCA", highlight_text="#FFFFFF", tooltip="#2D333B", tooltip_text="#E6EDF3",
    lines={"blue": "#118BD0", "sky": "#54B3E9", "green": "#00CC94", "orange": "#EBA200", "vermillion": "#D65F00",
           "purple": "#C0729D", "neutral": "#7B848E", "yellow": "#C9BF37"},
    texts={"blue": "#27A6ED", "sky": "#54B3E9", "green": "#00CC94", "orange": "#EBA200", "vermillion": "#FF7405",
           "purple": "#CB8BAE", "neutral": "#99A0A8", "yellow": "#D4C93A"},
)
THEMES = {"light": LIGHT, "dark": DARK}


def contrast_ratio(a: QColor | str, b: QColor | str) -> float:
    """WCAG 2's contrast ratio of two opaque colours: 1 (none) to 21 (black on white)."""
    def luminance(colour) -> float:
        colour = QColor(colour)
        channels = [colour.redF(), colour.greenF(), colour.blueF()]
        r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def set_text_colour(widget, colour: QColor | str) -> None:
    """A widget's own text colour (a label that stands for a series, say), on top of the app's palette."""
    palette = widget.palette()
    palette.setColor(QPalette.ColorRole.WindowText, QColor(colour))
    widget.setPalette(palette)


def line_width() -> int:
    """Device pixels in a chart line: a cosmetic pen's width is in device pixels, so at 200 % a line
    of 1 would be half as thick as the text beside it. The app's highest device pixel ratio, rounded."""
    app = QGuiApplication.instance()
    return max(1, round(app.devicePixelRatio())) if app is not None else 1


def system_is_dark() -> bool:
    app = QGuiApplication.instance()
    return app is not None and app.styleHints().colorScheme() == Qt.ColorScheme.Dark


def resolve(choice: str) -> Theme:
    """The theme for a choice of CHOICES; "system" asks the desktop."""
    if choice not in CHOICES:
        raise ValueError(f"theme must be one of {', '.join(CHOICES)}, not {choice!r}")
    if choice == "system":
        return DARK if system_is_dark() else LIGHT
    return THEMES[choice]


class _Notifier(QObject):
    changed = Signal(object)  # Theme


_current = LIGHT
_notifier: _Notifier | None = None


def current() -> Theme:
    return _current


def _changes() -> _Notifier:
    global _notifier
    if _notifier is None:
        _notifier = _Notifier()
    return _notifier


def follow(receiver: QObject, apply) -> None:
    """Call `apply(theme)` now and at every change; `apply` must be a method of `receiver`, a QObject in
    the UI thread (disconnected when it is deleted)."""
    apply(_current)
    _changes().changed.connect(apply)


def use(theme: Theme) -> None:
    """Make `theme` the app's: the widgets' palette at once, the charts through `follow`."""
    global _current
    import pyqtgraph as pg

    app = QGuiApplication.instance()
    changed = theme is not _current
    _current = theme
    pg.setConfigOptions(background=theme.surface, foreground=theme.muted)  # for items made from now on
    if app is not None:
        app.setPalette(theme.qpalette())
    if changed:
        _changes().changed.emit(theme)
