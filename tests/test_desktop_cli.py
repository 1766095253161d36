"""`storypulse desktop` and `storypulse demo` refuse before any window or server: options that
need each other, and a host with no screen (in-process: no Qt is started on these paths)."""

from __future__ import annotations

import sys

import pytest

from storypulse.desktop.cli import demo_command, desktop_command

COMMANDS = {"storypulse desktop": desktop_command, "storypulse demo": demo_command}


@pytest.mark.parametrize("name", COMMANDS)
def test_a_screenshot_needs_quit_after(name, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        COMMANDS[name](["--screenshot", str(tmp_path / "shot.png")])
    assert exit_.value.code == 2
    assert "--screenshot needs --quit-after" in capsys.readouterr().err
    assert not (tmp_path / "shot.png").exists()


@pytest.mark.parametrize("name", COMMANDS)
def test_no_screen_is_one_line_naming_the_command(name, capsys, monkeypatch):
    if sys.platform in ("win32", "darwin"):
        pytest.skip("there is always a screen")
    for variable in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(variable, raising=False)
    assert COMMANDS[name](["--quit-after", "0.1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{name}: no display") and err.count("\n") == 1
