"""The desktop simulator's settings and their defaults, written once.

Qt-free, so that `storypulse demo --help` (desktop/cli.py) shows the same
defaults as the panel and the saved settings fall back to, on a host without Qt.
"""

from __future__ import annotations

from dataclasses import dataclass

from storypulse.loadrun import LoadSettings


@dataclass(frozen=True)
class SimulatorSettings(LoadSettings):
    """What the panel runs the shared load loop with: slower and longer tasks than `storypulse load`."""

    rate: float = 2.0
    estimate_ms: tuple[int, int] = (200, 3000)


DEFAULTS = SimulatorSettings()


def span(bounds: tuple[int, int]) -> str:
    """A range as the command line writes it: 'A-B'."""
    return f"{bounds[0]}-{bounds[1]}"
