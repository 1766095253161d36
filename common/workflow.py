"""A workflow: the stages a story's tasks pass through in order, each with its own pool and WIP limit.

Written on the command line as `--stages analysis:1-2,build:1-6,test:1-2` (NAME:MIN-MAX, or
NAME:N for a fixed pool) and `--stage-wip build=3,test=2`, or as `[[stage]]` tables of a
scenario file (scenario.py). Without stages there is one, `work`, with the server's
--min-workers/--max-workers: everything then behaves as it did before stages existed.

Pure: no I/O. Every error is a WorkflowError (a ValueError) whose message names the part
that is wrong and what is allowed. Shared by the server (its workflow) and the clients (a
scenario's workflow), hence in the common core.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Iterable, Mapping

from . import protocol

DEFAULT_STAGE = "work"  # the one stage of a server started without --stages
_NAME = re.compile(protocol.STAGE_NAME_PATTERN)


class WorkflowError(ValueError):
    """A workflow, a stage or a WIP limit that cannot be used; the message names it."""


def check_stage_name(name: object, where: str = "stage name") -> str:
    """`name` if it is a usable stage name, else a WorkflowError saying why."""
    if not isinstance(name, str) or not name:
        raise WorkflowError(f"{where} {name!r}: must be a non-empty string")
    if len(name) > protocol.STAGE_NAME_MAX:
        raise WorkflowError(f"{where} {name!r}: at most {protocol.STAGE_NAME_MAX} characters")
    if not _NAME.match(name):
        raise WorkflowError(f"{where} {name!r}: a letter, then letters, digits, '_' or '-'")
    return name


@dataclass(frozen=True)
class StageSpec:
    """One stage: its name, its pool's bounds and its WIP limit (stories in it at once; 0: none)."""

    name: str
    min_workers: int
    max_workers: int
    wip_limit: int = 0

    def check(self) -> None:
        check_stage_name(self.name)
        what = f"stage {self.name!r}"
        if not isinstance(self.min_workers, int) or not 0 <= self.min_workers <= protocol.WORKERS_MAX:
            raise WorkflowError(f"{what}: min workers {self.min_workers!r} must be within "
                                f"0-{protocol.WORKERS_MAX}")
        if not isinstance(self.max_workers, int) or not 1 <= self.max_workers <= protocol.WORKERS_MAX:
            raise WorkflowError(f"{what}: max workers {self.max_workers!r} must be within "
                                f"1-{protocol.WORKERS_MAX}")
        if self.min_workers > self.max_workers:
            raise WorkflowError(f"{what}: min workers {self.min_workers} is above max workers "
                                f"{self.max_workers}")
        _check_wip(self.wip_limit, f"{what}: WIP limit")

    def describe(self) -> str:
        """As --stages writes it."""
        bounds = (str(self.min_workers) if self.min_workers == self.max_workers
                  else f"{self.min_workers}-{self.max_workers}")
        return f"{self.name}:{bounds}"


def _check_wip(limit: object, what: str) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= protocol.WIP_LIMIT_MAX:
        raise WorkflowError(f"{what} {limit!r} must be within 0-{protocol.WIP_LIMIT_MAX} (0: no limit)")


@dataclass(frozen=True)
class Workflow:
    """The stages in order. Built valid or not at all (see `check`)."""

    stages: tuple[StageSpec, ...]

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        if not self.stages:
            raise WorkflowError("a workflow needs at least one stage")
        if len(self.stages) > protocol.STAGES_MAX:
            raise WorkflowError(f"{len(self.stages)} stages: at most {protocol.STAGES_MAX}")
        seen: dict[str, str] = {}
        for stage in self.stages:
            stage.check()
            key = stage.name.lower()  # `Build` beside `build` would only confuse
            if key in seen:
                raise WorkflowError(f"stage {stage.name!r} is named twice" + (
                    "" if seen[key] == stage.name else f" (as {seen[key]!r} too)"))
            seen[key] = stage.name
        total = sum(stage.max_workers for stage in self.stages)
        if total > protocol.WORKERS_MAX:
            raise WorkflowError(f"the stages' max workers add up to {total}; at most "
                                f"{protocol.WORKERS_MAX} in all")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(stage.name for stage in self.stages)

    def __len__(self) -> int:
        return len(self.stages)

    def index(self, name: str) -> int:
        """The position of stage `name`; a WorkflowError naming it and listing the stages if none."""
        for i, stage in enumerate(self.stages):
            if stage.name == name:
                return i
        raise WorkflowError(f"unknown stage {name!r}; the stages are {', '.join(self.names)}")

    @property
    def wip_limits(self) -> dict[str, int]:
        return {stage.name: stage.wip_limit for stage in self.stages}

    def with_wip_limits(self, limits: Mapping[str, int]) -> Workflow:
        """The same workflow with these stages' WIP limits changed (0 lifts one)."""
        for name, limit in limits.items():
            self.index(name)
            _check_wip(limit, f"WIP limit of stage {name!r}")
        return Workflow(tuple(replace(s, wip_limit=limits.get(s.name, s.wip_limit)) for s in self.stages))

    def with_pool(self, name: str, min_workers: int, max_workers: int) -> Workflow:
        i = self.index(name)
        stages = list(self.stages)
        stages[i] = replace(stages[i], min_workers=min_workers, max_workers=max_workers)
        return Workflow(tuple(stages))

    def describe(self) -> str:
        """As --stages writes it (WIP limits apart: see `describe_wip`)."""
        return ",".join(stage.describe() for stage in self.stages)

    def describe_wip(self) -> str:
        """As --stage-wip writes it: the stages that have a limit."""
        return ",".join(f"{s.name}={s.wip_limit}" for s in self.stages if s.wip_limit)


def single(min_workers: int, max_workers: int, wip_limit: int = 0) -> Workflow:
    """The workflow of a server started without stages: one stage, `work`."""
    return Workflow((StageSpec(DEFAULT_STAGE, min_workers, max_workers, wip_limit),))


def _pairs(text: object, option: str, sep: str, form: str,
           example: str) -> Iterable[tuple[str, str, str]]:
    """(name, value, where) of each `NAME<sep>VALUE` part (`form`) of an option's comma-separated
    text; `where` names the part for an error message."""
    if not isinstance(text, str) or not text.strip():
        raise WorkflowError(f"{option}: empty; expected e.g. {example}")
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise WorkflowError(f"{option} {text!r}: an empty part (two commas, or one at an end)")
        name, found, value = part.partition(sep)
        where = f"{option} part {part!r}"
        if not found:
            raise WorkflowError(f"{where}: expected {form}, e.g. {example.split(',')[0]}")
        yield name.strip(), value, where


def _whole(text: str, what: str) -> int:
    if not re.fullmatch(r"\d{1,9}", text.strip()):
        raise WorkflowError(f"{what}: {text!r} is not a whole number")
    return int(text)


def parse_stages(text: str) -> Workflow:
    """`analysis:1-2,build:1-6,test:1-2` (NAME:MIN-MAX or NAME:N each, in workflow order)."""
    stages = []
    for name, bounds, where in _pairs(text, "--stages", ":", "NAME:MIN-MAX",
                                          "analysis:1-2,build:1-6,test:1-2"):
        check_stage_name(name, f"{where}: stage name")
        low, dash, high = bounds.partition("-")
        low_n = _whole(low, f"{where}: min workers")
        high_n = _whole(high, f"{where}: max workers") if dash else low_n
        stages.append(StageSpec(name, low_n, high_n))
    try:
        return Workflow(tuple(stages))
    except WorkflowError as exc:
        raise WorkflowError(f"--stages {text!r}: {exc}") from None


def parse_stage_wip(text: str, workflow: Workflow) -> dict[str, int]:
    """`build=3,test=2`: a WIP limit per stage of `workflow` (0 lifts one)."""
    limits: dict[str, int] = {}
    for name, value, where in _pairs(text, "--stage-wip", "=", "NAME=N", "build=3,test=2"):
        if name in limits:
            raise WorkflowError(f"{where}: stage {name!r} is given twice")
        try:
            workflow.index(name)
        except WorkflowError as exc:
            raise WorkflowError(f"{where}: {exc}") from None
        limit = _whole(value, f"{where}: WIP limit")
        _check_wip(limit, f"{where}: WIP limit")
        limits[name] = limit
    return limits


def from_options(stages: str | None, stage_wip: str | None, min_workers: int,
                 max_workers: int) -> Workflow:
    """The server's workflow from its options: --stages (else one stage, `work`, with the pool
    bounds), then --stage-wip on top."""
    workflow = parse_stages(stages) if stages is not None else single(min_workers, max_workers)
    if stage_wip is not None:
        workflow = workflow.with_wip_limits(parse_stage_wip(stage_wip, workflow))
    return workflow
