"""The simulator's scenario: a picker of the scenarios that come with storypulse (or a file), and a per-stage load.

A scenario (storypulse.scenario) gives the simulator its rate, its arrivals
and a load per stage: tasks per story, their estimates and spread, the share
of them that block and for how long. The panel (simulator.py) shows one
stage's load at a time in its own fields (tasks, estimates, spread) plus two
for blocks, so the form stays as short with sixteen stages as with one; an
edit changes that stage's load, applied to the next stories while it runs.
"One range" is the simulator without stages, as it always was.
"""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtWidgets import QComboBox, QDoubleSpinBox, QSpinBox

from storypulse import protocol, scenario
from storypulse.loadgen import StageLoad, check_stage_loads

ONE_RANGE = ""  # the picker's value without a scenario
FROM_FILE = "\0file"  # the picker's value of its last item, which asks for a file


class ScenarioLoad:
    """The scenario picker, the stage list and the block fields, and the per-stage load they edit."""

    def __init__(self) -> None:
        self.picker = QComboBox()
        self.picker.setAccessibleName("Scenario of the simulated load")
        self.picker.setToolTip("A workflow's load: tasks, estimates and blocks per stage, and the rate. The "
                               "server must run the same stages (storypulse server --scenario NAME).")
        self.picker.addItem("one range (no stages)", ONE_RANGE)
        for name in scenario.builtin_names():
            self.picker.addItem(name, name)
        self.picker.addItem("from file…", FROM_FILE)
        self.stage = QComboBox()
        self.stage.setAccessibleName("Stage whose load to edit")
        self.block_chance = QDoubleSpinBox()
        self.block_chance.setRange(0.0, 100.0)
        self.block_chance.setDecimals(0)
        self.block_chance.setSuffix(" % of tasks")
        self.block_chance.setAccessibleName("Share of the stage's tasks that block")
        self.block_chance.setToolTip("A blocked task waits when it first starts, without holding a worker; "
                                     "then it goes to the front of its stage's queue.")
        self.block_min = _spin(" ms")
        self.block_max = _spin(" ms")
        self.block_min.setAccessibleName("Shortest block")
        self.block_max.setAccessibleName("Longest block")
        self.loaded: scenario.Scenario | None = None
        self.loads: list[StageLoad] = []  # as edited, in workflow order

    @property
    def active(self) -> bool:
        return self.loaded is not None

    @property
    def index(self) -> int:
        return max(0, self.stage.currentIndex())

    def current(self) -> StageLoad:
        return self.loads[self.index]

    def load(self, name_or_path: str) -> scenario.Scenario:
        """A scenario by name or path (scenario.ScenarioError names what is wrong; nothing changes then)."""
        found = scenario.load(name_or_path)
        self.loaded = found
        self.loads = list(found.stages)
        self.stage.blockSignals(True)
        self.stage.clear()
        self.stage.addItems([s.name for s in found.stages])
        self.stage.blockSignals(False)
        at = self.picker.findData(name_or_path)
        if at < 0:  # a file: an item of its own, before "from file…"
            at = self.picker.count() - 1
            self.picker.insertItem(at, found.name, name_or_path)
        self.picker.blockSignals(True)
        self.picker.setCurrentIndex(at)
        self.picker.blockSignals(False)
        return found

    def clear(self) -> None:
        self.loaded = None
        self.loads = []
        self.stage.clear()
        self.picker.blockSignals(True)
        self.picker.setCurrentIndex(0)
        self.picker.blockSignals(False)

    def source(self) -> str:
        """What to remember: a scenario's name or path, or "" (one range)."""
        value = self.picker.currentData()
        return value if self.active and value not in (ONE_RANGE, FROM_FILE) else ONE_RANGE

    def show_blocks(self, load: StageLoad) -> None:
        for box, value in ((self.block_chance, round(100 * load.block_chance)), (self.block_min, load.block_ms[0]),
                           (self.block_max, load.block_ms[1])):
            box.blockSignals(True)
            box.setValue(value)
            box.blockSignals(False)

    def edit(self, tasks: tuple[int, int], estimate_ms: tuple[int, int], estimates: str) -> list[StageLoad]:
        """The loads with the current stage's set from the fields; ValueError names what cannot be used
        (then nothing changes)."""
        low, high = sorted((self.block_min.value(), self.block_max.value()))
        edited = replace(self.current(), tasks=tasks, estimate_ms=estimate_ms, estimates=estimates,
                         block_chance=self.block_chance.value() / 100.0, block_ms=(low, high))
        loads = [*self.loads[:self.index], edited, *self.loads[self.index + 1:]]
        check_stage_loads(tuple(loads))
        self.loads = loads
        return loads

    def mismatch(self, server_stages: tuple[str, ...]) -> str:
        """Why the server would refuse this scenario's stories, or ""."""
        names = tuple(s.name for s in self.loads)
        if not self.active or len(names) < 2 or not server_stages:
            return ""  # one stage: its tasks name none, any server takes them
        missing = [n for n in names if n not in server_stages]
        if not missing:
            return ""
        return (f"the server's stages are {', '.join(server_stages)}: it refuses tasks of "
                f"{', '.join(missing)} (start it with --scenario {self.loaded.name})")


def _spin(suffix: str) -> QSpinBox:
    box = QSpinBox()
    box.setRange(0, protocol.ESTIMATE_MS_MAX)
    box.setSingleStep(500)
    box.setSuffix(suffix)
    box.setMinimumWidth(box.fontMetrics().horizontalAdvance("00000 ms") + 24)
    return box
