"""The tabs at 100, 125, 150 and 200 % (QT_SCALE_FACTOR) and with large type: nothing cut off, nothing blurred.

A scale factor is fixed when Qt starts, so each runs tests/scale_probe.py in a
fresh process; the probe lists what it found wrong (a big number or title cut
off, a chart laid out wider than its view, value labels wider than their axis,
time labels that overlap, a cached drawing blurred, chart lines thinner than
the text).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from support import REPO


def probe(scale: str, *args: str) -> dict:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "QT_SCALE_FACTOR": scale}
    done = subprocess.run([sys.executable, str(REPO / "tests" / "scale_probe.py"), *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("scale", ("1", "1.25", "1.5", "2"))
def test_the_tabs_fit_and_stay_sharp_at_each_scale(scale):
    found = probe(scale)
    assert found["ratio"] == float(scale)
    assert found["problems"] == []
    assert found["line_width"] == max(1, round(float(scale)))


@pytest.mark.parametrize("points", ("12", "14"))
def test_the_tabs_fit_a_larger_font(points):
    """A desktop set to large type (no scale factor): fixed sizes follow the font."""
    assert probe("1", points)["problems"] == []
