"""The application: QApplication set-up, settings, and the bounded-run option."""

from __future__ import annotations

import signal
import sys

from PySide6.QtCore import QSettings, QTimer
from PySide6.QtWidgets import QApplication

from storypulse.endpoints import parse_server

from .ui_gc import collect_in_ui_thread

ORGANISATION = "storypulse"
APPLICATION = "storypulse"


def make_settings(settings_file: str | None = None) -> QSettings:
    if settings_file:
        return QSettings(settings_file, QSettings.Format.IniFormat)
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, ORGANISATION, APPLICATION)


def ensure_app() -> QApplication:
    app = QApplication.instance()
    if app is None:
        app = QApplication(sys.argv[:1])
        app.setOrganizationName(ORGANISATION)
        app.setApplicationName(APPLICATION)
        app.setStyle("Fusion")
        # Before any worker thread starts: Qt objects in cyclic garbage must die in this thread (ui_gc.py).
        collect_in_ui_thread(app)
    return app


def _grab_screen(window, path: str) -> None:
    """The screen as the display shows it (a real X window under Xvfb, say), else the window."""
    screen = window.screen()
    image = screen.grabWindow(0) if screen is not None else None
    if image is None or image.isNull():
        image = window.grab()
    image.save(path, "PNG")


def run_app(server: str | None = None, quit_after: float | None = None, settings_file: str | None = None,
            simulate: dict | None = None, on_window=None, screenshot: str | None = None,
            tab: str | None = None, theme: str | None = None, scenario: str | None = None) -> int:
    """Open the main window and run the event loop; returns the exit code. `scenario`: the simulator's
    load (a scenario's name or file; `simulate` may name one too, to start it at once)."""
    from .window import MainWindow

    app = ensure_app()
    settings = make_settings(settings_file)
    address = server or settings.value("server/address", "") or None
    try:
        endpoints = parse_server(address)
    except ValueError:
        endpoints = parse_server(None)  # a bad remembered value must not lock the user out
    window = MainWindow(endpoints, settings, theme_choice=theme)
    window.show()
    if tab:
        window.open_tab(tab)
    if scenario:
        window.simulator_panel.load_scenario(scenario)
    if simulate:
        window.simulator_panel.start_with(**simulate)
    if on_window is not None:
        on_window(window)
    if quit_after is not None:
        if screenshot:
            QTimer.singleShot(max(0, int((quit_after - 1) * 1000)), lambda: _grab_screen(window, screenshot))
        QTimer.singleShot(int(quit_after * 1000), window.close)
    # Ctrl+C in the terminal: Python only sees the signal when the interpreter runs,
    # so a timer wakes it up now and then.
    signal.signal(signal.SIGINT, lambda *_: window.close())
    signal.signal(signal.SIGTERM, lambda *_: window.close())
    wake = QTimer()
    wake.start(250)
    wake.timeout.connect(lambda: None)
    app.exec()
    wake.stop()
    return 0
