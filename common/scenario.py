"""Scenarios: a workflow and a load in one TOML file, so that people can model their own board.

    name = "bottleneck"
    description = "Three stages; test is short of people."
    wip_limit = 0                 # stories in progress in the whole system (0: none)

    [load]
    rate = 1.2                    # stories per second
    arrivals = "poisson"          # or "steady"

    [[stage]]                     # one table per stage, in workflow order
    name = "analysis"
    workers = "1-2"               # the stage's pool: "MIN-MAX", or N for a fixed one
    wip_limit = 0                 # stories in the stage at once (0: none)
    tasks = "1"                   # its tasks per story: "A-B" or N (0 lets stories skip it)
    estimate_ms = "300-1500"      # each task's estimate
    estimates = "lognormal"       # "uniform" within the range, or "lognormal" (see loadgen.py)
    block_chance = 0.1            # the share of its tasks that block when they first start
    block_ms = "1000-4000"        # and for how long

The ones that come with storypulse (`scenarios/*.toml` beside this module) are found by
name; anything else is a path. Every error is a ScenarioError naming the file, the line
where it can tell (tomllib's, or the line of the key at fault) and the field.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from . import protocol
from .loadgen import ARRIVALS, ESTIMATES, StageLoad, StoryGenerator, check_stage_loads, parse_range
from .workflow import StageSpec, Workflow, WorkflowError, check_stage_name

RATE_MAX = 10_000.0  # stories per second: the most a scenario may ask of a server

TOP_KEYS = {"name", "description", "wip_limit", "load", "stage"}
LOAD_KEYS = {"rate", "arrivals"}
STAGE_KEYS = {"name", "workers", "wip_limit", "tasks", "estimate_ms", "estimates", "block_chance",
              "block_ms"}


class ScenarioError(ValueError):
    """A scenario that cannot be used; the message names the file, the line and the field."""


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    workflow: Workflow  # stages, their pools and WIP limits
    wip_limit: int  # the system's
    rate: float
    arrivals: str
    stages: tuple[StageLoad, ...]  # the load, per stage, in workflow order
    source: str  # where it came from: a path, or "storypulse:NAME"

    def generator(self, seed: int | None = None) -> StoryGenerator:
        """The stories of this scenario (the same seed, the same stories)."""
        return StoryGenerator(seed=seed, stages=self.stages)


def builtin_names() -> list[str]:
    """The scenarios that come with storypulse."""
    folder = resources.files("storypulse").joinpath("scenarios")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def load(name_or_path: str) -> Scenario:
    """A scenario by the name of one that comes with storypulse, or from a file."""
    path = Path(name_or_path)
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ScenarioError(f"scenario {name_or_path}: cannot be read: {exc}") from None
        return parse(text, str(path))
    if re.fullmatch(r"[A-Za-z0-9_-]+", name_or_path) and name_or_path in builtin_names():
        text = resources.files("storypulse").joinpath("scenarios", f"{name_or_path}.toml").read_text("utf-8")
        return parse(text, f"storypulse:{name_or_path}")
    raise ScenarioError(f"scenario {name_or_path!r}: no such file, and not one that comes with "
                        f"storypulse ({', '.join(builtin_names())})")


def parse(text: str, source: str = "scenario") -> Scenario:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: not valid TOML: {exc}") from None
    return _Reader(text, source).scenario(data)


class _Reader:
    """Reads the parsed TOML, naming the line of a key when a value is wrong."""

    def __init__(self, text: str, source: str):
        self.lines = text.splitlines()
        self.source = source

    def fail(self, what: str, key: str | None = None, table: str = "", index: int = 0) -> ScenarioError:
        line = self._line(key, table, index) if key else None
        where = f"{self.source}" + (f", line {line}" if line else "")
        return ScenarioError(f"{where}: {what}")

    def _line(self, key: str, table: str, index: int) -> int | None:
        """The line of `key =` in the top level (table ""), [load], or the index-th [[stage]]."""
        current, seen = "", -1
        for number, raw in enumerate(self.lines, start=1):
            line = raw.strip()
            if line.startswith("[["):
                current = line.strip("[] ")
                seen += current == "stage"
                continue
            if line.startswith("["):
                current = line.strip("[] ")
                continue
            if current == table and (table != "stage" or seen == index) and \
                    re.match(rf"{re.escape(key)}\s*=", line):
                return number
        return None

    def _keys(self, data: dict, allowed: set[str], what: str, table: str = "", index: int = 0) -> None:
        for key in data:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f"; known: {', '.join(sorted(allowed))}"
                raise self.fail(f"{what}: unknown key {key!r}{hint}", key, table, index)

    def _value(self, data: dict, key: str, kinds: tuple[type, ...], what: str, default: Any = None,
               table: str = "", index: int = 0) -> Any:
        if key not in data:
            if default is None:
                raise self.fail(f"{what}: {key} is missing")
            return default
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, kinds):
            kind = " or ".join({int: "a whole number", float: "a number", str: "a string"}[k] for k in kinds)
            raise self.fail(f"{what}: {key} must be {kind}, not {value!r}", key, table, index)
        return value

    def _range(self, data: dict, key: str, what: str, low: int, high: int, default: str,
               index: int) -> tuple[int, int]:
        value = self._value(data, key, (str, int), what, default, "stage", index)
        try:
            return parse_range(str(value), name=key, low=low, high=high)
        except ValueError as exc:
            raise self.fail(f"{what}: {exc}", key, "stage", index) from None

    def scenario(self, data: dict) -> Scenario:
        self._keys(data, TOP_KEYS, "the scenario")
        name = self._value(data, "name", (str,), "the scenario")
        description = self._value(data, "description", (str,), "the scenario", "")
        wip = self._value(data, "wip_limit", (int,), "the scenario", 0)
        if not 0 <= wip <= protocol.WIP_LIMIT_MAX:
            raise self.fail(f"wip_limit {wip} must be within 0-{protocol.WIP_LIMIT_MAX} (0: none)", "wip_limit")
        load = data.get("load", {})
        if not isinstance(load, dict):
            raise self.fail("load must be a table: [load]", "load")
        self._keys(load, LOAD_KEYS, "[load]", "load")
        rate = float(self._value(load, "rate", (int, float), "[load]", None, "load"))
        if not 0 < rate <= RATE_MAX:
            raise self.fail(f"[load]: rate {rate:g} must be above 0 and at most {RATE_MAX:g} stories "
                            "per second", "rate", "load")
        arrivals = self._value(load, "arrivals", (str,), "[load]", "steady", "load")
        if arrivals not in ARRIVALS:
            raise self.fail(f"[load]: arrivals {arrivals!r} must be one of {', '.join(ARRIVALS)}",
                            "arrivals", "load")
        tables = data.get("stage")
        if not isinstance(tables, list) or not tables or not all(isinstance(t, dict) for t in tables):
            raise self.fail("the scenario needs at least one [[stage]] table", "stage")
        specs, loads = zip(*(self._stage(t, i) for i, t in enumerate(tables)))
        try:
            workflow = Workflow(tuple(specs))
            check_stage_loads(tuple(loads))
        except (WorkflowError, ValueError) as exc:
            raise self.fail(str(exc)) from None
        return Scenario(name, description, workflow, wip, rate, arrivals, tuple(loads), self.source)

    def _stage(self, data: dict, index: int) -> tuple[StageSpec, StageLoad]:
        what = f"[[stage]] {index + 1}"
        self._keys(data, STAGE_KEYS, what, "stage", index)
        name = self._value(data, "name", (str,), what, None, "stage", index)
        try:
            check_stage_name(name, f"{what}: name")
        except WorkflowError as exc:
            raise self.fail(str(exc), "name", "stage", index) from None
        what = f"stage {name!r}"
        workers = self._range(data, "workers", what, 0, protocol.WORKERS_MAX, "1", index)
        if workers[1] < 1:
            raise self.fail(f"{what}: workers {workers[0]}-{workers[1]}: a stage needs at least one "
                            "worker at most (MAX >= 1)", "workers", "stage", index)
        wip = self._value(data, "wip_limit", (int,), what, 0, "stage", index)
        if not 0 <= wip <= protocol.WIP_LIMIT_MAX:
            raise self.fail(f"{what}: wip_limit {wip} must be within 0-{protocol.WIP_LIMIT_MAX} (0: none)",
                            "wip_limit", "stage", index)
        spec = StageSpec(name, workers[0], workers[1], wip)
        estimates = self._value(data, "estimates", (str,), what, "uniform", "stage", index)
        if estimates not in ESTIMATES:
            raise self.fail(f"{what}: estimates {estimates!r} must be one of {', '.join(ESTIMATES)}",
                            "estimates", "stage", index)
        chance = float(self._value(data, "block_chance", (int, float), what, 0.0, "stage", index))
        if not 0.0 <= chance <= 1.0:
            raise self.fail(f"{what}: block_chance {chance:g} must be within 0-1", "block_chance",
                            "stage", index)
        load = StageLoad(
            name=name,
            tasks=self._range(data, "tasks", what, 0, protocol.TASKS_MAX, "1", index),
            estimate_ms=self._range(data, "estimate_ms", what, 0, protocol.ESTIMATE_MS_MAX, "1000", index),
            estimates=estimates,
            block_chance=chance,
            block_ms=self._range(data, "block_ms", what, 0, protocol.ESTIMATE_MS_MAX, "0", index),
        )
        return spec, load
