"""`storypulse desktop` and `storypulse demo`: parse options, then start Qt (imported lazily).

A host without PySide6 (a headless server) gets one clear line, not a traceback.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

from storypulse.endpoints import parse_server

from .simulator_settings import DEFAULTS, span

THEMES = ("system", "light", "dark")  # theme.CHOICES, here without importing Qt
NO_QT = (
    "storypulse desktop needs the desktop extras (PySide6, pyqtgraph, numpy): "
    "pip install 'storypulse[desktop]'"
)


def no_display(environ=os.environ, platform: str = sys.platform) -> str | None:
    """The line to show when there is no screen for a window, else None.

    Windows and macOS always have one; elsewhere Qt needs X11 or Wayland, or a
    platform chosen on purpose (QT_QPA_PLATFORM=offscreen), and without any
    it aborts the process.
    """
    if platform in ("win32", "darwin") or any(
            environ.get(name) for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")):
        return None
    return ("no display (neither DISPLAY nor WAYLAND_DISPLAY is set): on a host without a screen run "
            "`storypulse server` and follow it with `storypulse watch`, or open the app on another "
            "machine with `storypulse desktop --server HOST`")


def _qt_missing() -> bool:
    return any(importlib.util.find_spec(name) is None for name in ("PySide6", "pyqtgraph", "numpy"))


def _parse_with_window_options(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Add the options of the window (both commands have them, after their own), parse, and
    check what they need of each other."""
    parser.add_argument("--quit-after", type=float, metavar="SECONDS",
                        help="close the window after this many seconds (smoke tests, screenshots)")
    parser.add_argument("--settings", metavar="FILE",
                        help="keep settings in this INI file instead of the user's settings")
    parser.add_argument("--screenshot", metavar="PNG",
                        help="save an image of the screen one second before --quit-after ends")
    parser.add_argument("--tab", choices=("dashboard", "stories", "flow"),
                        help="the tab to open at start (default: dashboard)")
    parser.add_argument("--theme", choices=THEMES,
                        help="light or dark colours, or the desktop's (system); remembered like a choice made in "
                             "the View menu (default: the last one chosen, else system)")
    args = parser.parse_args(argv)
    if args.screenshot and args.quit_after is None:
        parser.error("--screenshot needs --quit-after")
    return args


def _cannot_open_window(command: str) -> bool:
    """Say why no window can open here (no screen, no Qt), prefixed with `command`; True if so."""
    if (missing := no_display()) is not None:
        print(f"{command}: {missing}", file=sys.stderr)
        return True
    if _qt_missing():
        print(NO_QT, file=sys.stderr)
        return True
    return False


def desktop_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="storypulse desktop", description="The storypulse desktop app.")
    parser.add_argument("--server", metavar="HOST[:PORT]",
                        help="the server to watch (default: the last one used, else 127.0.0.1:5555)")
    parser.add_argument("--scenario", metavar="NAME-or-FILE",
                        help="the simulator's load: a scenario that comes with storypulse (bottleneck, single) or "
                             "a TOML file, its stages' tasks, estimates and blocks (the server needs the same "
                             "stages: storypulse server --scenario); not started until asked")
    args = _parse_with_window_options(parser, argv)
    if args.server:
        try:
            parse_server(args.server)
        except ValueError as exc:
            parser.error(str(exc))
    if args.scenario is not None:
        args.scenario = _checked_scenario(parser, args.scenario)
    if _cannot_open_window("storypulse desktop"):
        return 2
    from .app import run_app

    return run_app(server=args.server, quit_after=args.quit_after, settings_file=args.settings,
                   screenshot=args.screenshot, tab=args.tab, theme=args.theme, scenario=args.scenario)


def _checked_scenario(parser: argparse.ArgumentParser, name_or_path: str) -> str:
    """A scenario refused here, naming the line, rather than in the window; a file by its absolute path."""
    from storypulse import scenario

    try:
        scenario.load(name_or_path)
    except scenario.ScenarioError as exc:
        parser.error(f"--scenario: {exc}")
    return str(Path(name_or_path).resolve()) if Path(name_or_path).is_file() else name_or_path


def demo_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="storypulse demo",
        description="A server (unless one already answers on the port), the desktop app and the simulator, together.",
    )
    parser.add_argument("--port", type=int, default=5555, help="the server's base port (default 5555)")
    parser.add_argument("--db", metavar="PATH-or-URL", help="the server's database (default: its own default)")
    parser.add_argument("--rate", type=float,
                        help=f"simulated stories per second (default {DEFAULTS.rate:g}, or the scenario's)")
    parser.add_argument("--tasks", help=f"tasks per story, A-B (default {span(DEFAULTS.tasks)})")
    parser.add_argument("--estimate-ms",
                        help=f"task estimates in ms, A-B (default {span(DEFAULTS.estimate_ms)})")
    parser.add_argument("--max-workers", type=int, help="upper bound of the server's pool (default 16)")
    parser.add_argument("--scenario", metavar="NAME-or-FILE",
                        help="the server it starts runs this scenario's workflow (stages, pools, WIP "
                             "limits) and the simulator its load (per stage: tasks, estimates, blocks): "
                             "bottleneck, single, or a TOML file; not with --max-workers, --tasks or "
                             "--estimate-ms")
    args = _parse_with_window_options(parser, argv)
    from storypulse import loadgen, protocol

    if args.scenario is not None:
        if args.max_workers is not None:
            parser.error("--max-workers with --scenario: the scenario's stages have their own pools")
        for option, value in (("--tasks", args.tasks), ("--estimate-ms", args.estimate_ms)):
            if value is not None:
                parser.error(f"{option}: the scenario sets each stage's tasks, estimates and blocks")
        # Refused here, naming the line, not in the server's log.
        args.scenario = _checked_scenario(parser, args.scenario)
    try:
        tasks = loadgen.parse_range(args.tasks or span(DEFAULTS.tasks), name="--tasks", low=1,
                                    high=protocol.TASKS_MAX)
        estimates = loadgen.parse_range(args.estimate_ms or span(DEFAULTS.estimate_ms), name="--estimate-ms", low=0,
                                        high=protocol.ESTIMATE_MS_MAX)
    except ValueError as exc:
        parser.error(str(exc))
    if not 1 <= args.port <= 65533:
        parser.error("--port must be within 1-65533")
    if _cannot_open_window("storypulse demo"):  # before any server is started
        return 2
    from .demo import run_demo

    return run_demo(port=args.port, db=args.db, rate=args.rate, tasks=tasks, estimates=estimates,
                    max_workers=args.max_workers or 16, quit_after=args.quit_after,
                    settings_file=args.settings, screenshot=args.screenshot, tab=args.tab,
                    theme=args.theme, scenario=args.scenario)


def main() -> int:  # `python -m storypulse.desktop`
    return desktop_command(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
