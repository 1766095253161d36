"""`storypulse`: one command that dispatches to the subcommands every package registers.

Subcommands are entry points in the group `storypulse.commands` (see
pyproject.toml), each a callable `fn(argv) -> exit code`. An entry point is
loaded only when its command runs, so `storypulse --help` or `storypulse list`
never import Qt, and neither the core nor these commands import server/ or desktop/.
"""

from __future__ import annotations

import difflib
import os
import sys
from importlib.metadata import EntryPoint, entry_points

from storypulse import __version__

GROUP = "storypulse.commands"

# One line each for `storypulse --help`, without loading the entry points.
SECTIONS: dict[str, dict[str, str]] = {
    "server": {
        "server": "run the headless server: requests, live statistics, the worker pool",
        "worker": "run a worker host that serves a server on another machine",
        "keys": "make and list the CURVE keys a server off loopback requires",
    },
    "desktop": {
        "desktop": "open the desktop app (live charts, stories, simulator)",
        "demo": "server + desktop app + simulator in one command",
    },
    "clients": {
        "add": "add a story with tasks (--wait: until it is done)",
        "list": "list stories, one page",
        "show": "show a story with its tasks, their states and times",
        "delete": "delete stories and their tasks",
        "pool": "show or set the worker pool's bounds",
        "flow": "lead and cycle times, work in progress; set the WIP limit",
        "load": "the simulator: random stories at a steady or Poisson rate",
        "watch": "the live figures in the terminal",
        "ping": "check that the server answers, and its version",
    },
}
DESCRIPTIONS = {name: text for section in SECTIONS.values() for name, text in section.items()}

# Modules that only the desktop extra installs.
DESKTOP_MODULES = {"PySide6", "shiboken6", "pyqtgraph", "numpy"}
DESKTOP_HINT = "the desktop app needs its extra: pip install 'storypulse[desktop]'"


def commands() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def usage(found: dict[str, EntryPoint]) -> str:
    lines = [
        "usage: storypulse COMMAND [options]      (storypulse COMMAND --help for its options)",
        "",
        "Simulate the flow of agile work - stories made of tasks - and watch it live.",
    ]
    listed = set()
    for section, names in SECTIONS.items():
        present = [n for n in names if n in found]
        if not present:
            continue
        lines += ["", f"{section}:"]
        lines += [f"  {n:<9} {DESCRIPTIONS[n]}" for n in present]
        listed.update(present)
    others = sorted(set(found) - listed)
    if others:  # registered by another package: no description without loading it
        lines += ["", "other:"] + [f"  {n}" for n in others]
    lines += ["", "options:", "  -h, --help  this list", "  --version   the version"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    found = commands()
    if not argv:
        print(usage(found), file=sys.stderr)
        return 2
    name, rest = argv[0], argv[1:]
    if name in ("-h", "--help"):
        print(usage(found))
        return 0
    if name == "--version":
        print(f"storypulse {__version__}")
        return 0
    if name == "help" and rest:  # `storypulse help add` == `storypulse add --help`
        name, rest = rest[0], ["--help"]
    entry = found.get(name)
    if entry is None:
        close = difflib.get_close_matches(name, found, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        print(f"storypulse: unknown command '{name}'{hint}; "
              f"'storypulse --help' lists the commands", file=sys.stderr)
        return 2
    try:
        command = entry.load()
    except ImportError as exc:
        return _cannot_load(name, exc)
    try:
        return int(command(rest) or 0)
    except ImportError as exc:  # a command that imports Qt lazily
        if _root(exc) in DESKTOP_MODULES:
            return _cannot_load(name, exc)
        raise
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `storypulse list | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _root(exc: ImportError) -> str:
    return (exc.name or "").split(".")[0]


def _cannot_load(name: str, exc: ImportError) -> int:
    if _root(exc) in DESKTOP_MODULES:
        print(f"storypulse {name}: {DESKTOP_HINT} ({exc.name} is not installed)", file=sys.stderr)
    else:
        print(f"storypulse {name}: this installation cannot run it ({exc})", file=sys.stderr)
    return 1

if __name__ == "__main__":
    sys.exit(main())
