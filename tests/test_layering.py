"""The dependency rule between the source folders, read from the code itself (ast, not imports).

The core (common/, `storypulse`) is what every side shares, so it imports none of
them; the server never needs Qt nor the applications; the terminal commands
(cli/) reach the server and the desktop app only through entry points, and the
desktop app reaches the server only over the wire. Every
import counts: at the top, inside a function, absolute or relative.
(An import-linter contract cannot check this: the folders join into one
namespace through the editable install's import hook, which it does not follow.)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from support import REPO

QT = ("PySide6", "shiboken6", "pyqtgraph")
FOLDERS = {"common": "storypulse", "cli": "storypulse.cli", "server": "storypulse.server",
           "desktop": "storypulse.desktop"}
FORBIDDEN = {
    "common": ("storypulse.server", "storypulse.desktop", "storypulse.cli", *QT),
    "server": ("storypulse.desktop", "storypulse.cli", *QT),
    "cli": ("storypulse.server", "storypulse.desktop", *QT),
    # `storypulse demo` starts the server as a process (python -m storypulse.server), never imports it.
    "desktop": ("storypulse.server", "storypulse.cli"),
}

# `python -m storypulse` is the `storypulse` command: a launcher that nothing imports,
# so its import of the dispatcher gives the core no dependency.
LAUNCHERS = {"storypulse.__main__"}


def module_name(folder: str, path: Path) -> str:
    parts = list(path.relative_to(REPO / folder).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([FOLDERS[folder], *parts])


def imported(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, name) of every module the source imports; `from a import b` gives a and a.b."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names if alias.name != "*"]
    return found


def violations(folder: str, module: str, source: str, is_package: bool) -> list[str]:
    if module in LAUNCHERS:
        return []
    banned = FORBIDDEN[folder]
    return [f"{module} ({folder}/) imports {name} at line {line}: {folder}/ must not import {prefix}"
            for line, name in imported(source, module, is_package)
            for prefix in banned if name == prefix or name.startswith(prefix + ".")]


def sources(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_each_folder_imports_only_what_the_rule_allows(folder):
    paths = sources(folder)
    assert paths, f"no modules found under {folder}/"
    problems = []
    for path in paths:
        problems += violations(folder, module_name(folder, path), path.read_text(), path.name == "__init__.py")
    assert not problems, "\n".join(problems)


def test_every_folder_is_a_package_of_the_namespace():
    for folder in FOLDERS:
        assert (REPO / folder / "__init__.py").is_file(), folder


def test_the_checker_sees_absolute_relative_and_lazy_imports():
    source = (
        "import PySide6.QtCore\n"
        "from .. import server\n"
        "def later():\n"
        "    from ..desktop.feed import Feed\n"
        "from .figures import Figures\n"
    )
    found = violations("cli", "storypulse.cli.watch", source, is_package=False)
    assert sorted(v.split(" imports ")[1].split(" at ")[0] for v in found) == [
        "PySide6.QtCore", "storypulse.desktop.feed", "storypulse.desktop.feed.Feed", "storypulse.server"]
    assert all(v.startswith("storypulse.cli.watch (cli/) imports ") for v in found)
    # From the core package itself, one dot is the core: `.cli` is the terminal package.
    assert len(violations("common", "storypulse", "from .cli import main\n", is_package=True)) == 2
    assert violations("cli", "storypulse.cli.load", "from storypulse.loadrun import LoadRun\n", False) == []


def test_nothing_imports_a_source_folder_by_its_own_name():
    """`import server` works from the repository root (the folder is on sys.path there) and
    loads a second copy of the code beside `storypulse.server`; only the namespace is real.
    Code in strings counts too (`python -c` in tests), so this reads text, not the ast."""
    import re

    by_folder_name = re.compile(rf"^\s*(?:from|import) ({'|'.join(FOLDERS)})(?:\.|\s|$)", re.M)
    found = []
    for folder in (*FOLDERS, "tests", "bench", "packaging"):
        for path in sorted((REPO / folder).rglob("*.py")):
            text = path.read_text()
            found += [f"{path.relative_to(REPO)}: {m.group(0).strip()}" for m in by_folder_name.finditer(text)]
            found += [f"{path.relative_to(REPO)}: {m.group(0)}"
                      for m in re.finditer(rf"(?:from|import) (?:{'|'.join(FOLDERS)})\.\w+ import", text)]
    assert not found, "import through the storypulse namespace instead:\n" + "\n".join(found)
