"""The server's settings: one dataclass that holds them with their defaults, one validate().

The command line, a TOML file and the environment (merged by configfile.py) and
the tests all build a `ServerConfig` the same way: `ServerConfig.from_options(dict)`,
where the dict holds only the values that were given; everything else is the
dataclass's default (DEFAULTS lists them by name). Nothing here touches a socket
or the disk.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from storypulse import protocol, scenario, workflow
from storypulse.endpoints import DEFAULT_PORT

from .worker import HEARTBEAT_LIVENESS  # one definition, shared with the worker

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("text", "json")  # json: one object a line (server/logs.py)
# What each --durability level promises, and what it asks of each database: the one text of
# it. `storypulse server --help` is made from it; tests hold docs/install.md, the packaged
# server.toml and each store's settings (store/sqlite.py, store/postgres.py) to it.
DURABILITY_LEVELS = {
    "power-loss": "a story is acknowledged only once it is flushed to disk, so it survives a "
                  "power cut or an OS crash (SQLite synchronous=FULL, PostgreSQL "
                  "synchronous_commit=on)",
    "crash": "it survives a crash of the server, but the last commits before a power cut may be "
             "lost (SQLite synchronous=NORMAL; PostgreSQL synchronous_commit=off, which also "
             "loses them in a crash of the database server)",
}


class ConfigError(ValueError):
    """A setting that cannot be used (out of range, mistyped, or in a file that cannot be read);
    the message names the option, and the file key or variable that set it."""


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


@dataclass
class ServerConfig:
    """Every setting with its default: the one table of them."""

    db: str | None = None  # None: storypulse.db in the user's data directory
    bind: str = "127.0.0.1"
    port: int = DEFAULT_PORT  # requests P, events P+1, workers P+2
    min_workers: int = 1
    max_workers: int = max(2, min(8, os.cpu_count() or 2))
    time_scale: float = 1.0  # multiplies every estimate
    stats_interval: float = 0.25  # seconds between `stats` events
    rate_window: float = 5.0  # rates are averaged over this sliding window, seconds
    scale_interval: float = 0.2  # seconds between autoscaler decisions
    quiet_window: float = 5.0  # the autoscaler shrinks only after this long without need
    heartbeat: float = 0.5  # seconds; a worker is dead after HEARTBEAT_LIVENESS missed beats
    shutdown_grace: float = 5.0  # on SIGTERM, how long busy workers may take to report
    # queued tasks above which create_story gets `busy`: the backlog lives on disk, so this is
    # a guard against a runaway producer, not a memory bound (see queue_window)
    queue_max: int = 100_000_000
    queue_window: int = 20_000  # queued tasks held in memory; the rest is read from the database
    lease_max_tasks: int = 256  # tasks in one lease of tiny tasks
    lease_max_s: float = 0.005  # scaled estimate-seconds in one lease of tiny tasks
    durability: str = field(default="power-loss", metadata={
        "choices": DURABILITY_LEVELS, "note": "the server logs the setting in force at start"})
    flow_window: float = 60.0  # lead and cycle times are taken over the stories completed this recently
    wip_limit: int = 0  # stories in progress at once; 0: no limit
    # The workflow (docs/flow.md): NAME:MIN-MAX,... in order (None: one stage, `work`, with
    # --min-workers/--max-workers); per-stage WIP limits NAME=N,...; or a scenario (a name of
    # one that comes with storypulse, or a TOML file) whose stages and WIP limits it takes.
    # Strings, so that a file and the environment set them as they set every key.
    stages: str | None = None
    stage_wip: str | None = None
    scenario: str | None = None
    forecast_history: float = 600.0  # seconds of throughput history that forecasts resample
    log_level: str = "info"
    log_format: str = "text"
    # HTTP for operators (server/http.py): /metrics, /livez, /readyz; 0: off
    http_port: int = 0
    http_bind: str = "127.0.0.1"

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> ServerConfig:
        """Build from option values; None means "not given". Unknown names are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
        given = {k: v for k, v in options.items() if v is not None}
        chosen = next((name for name in ("stages", "scenario") if name in given), None)
        bounds = [name for name in ("min_workers", "max_workers") if name in given]
        if chosen and bounds:
            # The pool bounds are per stage with a workflow: these would be ignored.
            raise ConfigError(f"{' and '.join(map(_option, bounds))} with {_option(chosen)}: each "
                              "stage has its own pool bounds (NAME:MIN-MAX); leave these out")
        config = cls(**given)
        config.validate()
        if config.scenario is not None and "wip_limit" not in given:
            config.wip_limit = config._scenario.wip_limit  # the scenario's, unless given
        return config

    @property
    def workflow(self) -> workflow.Workflow:
        """The stages in order with their pools and WIP limits (built by `validate`)."""
        try:
            return self._workflow
        except AttributeError:
            self.validate()
            return self._workflow

    @property
    def scenario_name(self) -> str | None:
        """The name of the scenario the workflow came from; None without one."""
        if self.scenario is None:
            return None
        self.workflow  # built by validate, which loads the scenario
        return self._scenario.name

    @property
    def heartbeat_timeout(self) -> float:
        return self.heartbeat * HEARTBEAT_LIVENESS

    def validate(self) -> None:
        def need(ok: bool, name: str, what: str) -> None:
            if not ok:
                raise ConfigError(f"{_option(name)} {getattr(self, name)!r}: {what}")

        need(bool(self.bind), "bind", "must not be empty")
        need(isinstance(self.port, int) and 1 <= self.port <= 65533, "port",
             "must be within 1-65533 (P+2 is used too)")
        need(isinstance(self.min_workers, int) and 0 <= self.min_workers <= protocol.WORKERS_MAX,
             "min_workers", f"must be within 0-{protocol.WORKERS_MAX}")
        need(isinstance(self.max_workers, int) and 1 <= self.max_workers <= protocol.WORKERS_MAX,
             "max_workers", f"must be within 1-{protocol.WORKERS_MAX}")
        if self.min_workers > self.max_workers:
            raise ConfigError(
                f"--min-workers {self.min_workers} is above --max-workers {self.max_workers}"
            )
        need(self.time_scale >= 0, "time_scale", "must be >= 0")
        for name in ("stats_interval", "rate_window", "scale_interval", "heartbeat"):
            need(0 < getattr(self, name) <= 3600, name, "must be > 0 and <= 3600 seconds")
        need(self.rate_window >= self.stats_interval, "rate_window",
             "must be at least --stats-interval")
        need(self.quiet_window >= 0, "quiet_window", "must be >= 0")
        need(self.shutdown_grace >= 0, "shutdown_grace", "must be >= 0")
        need(self.queue_max >= protocol.TASKS_MAX, "queue_max", f"must be >= {protocol.TASKS_MAX}")
        need(isinstance(self.queue_window, int) and 1 <= self.queue_window <= 10_000_000,
             "queue_window", "must be within 1-10000000")
        need(1 <= self.lease_max_tasks <= 10_000, "lease_max_tasks", "must be within 1-10000")
        need(0 <= self.lease_max_s <= 1, "lease_max_s", "must be within 0-1 seconds")
        need(self.durability in DURABILITY_LEVELS, "durability",
             f"must be one of {', '.join(DURABILITY_LEVELS)}")
        need(0 < self.flow_window <= protocol.FLOW_WINDOW_MAX_S, "flow_window",
             f"must be > 0 and <= {protocol.FLOW_WINDOW_MAX_S:g} seconds")
        need(isinstance(self.wip_limit, int) and 0 <= self.wip_limit <= protocol.WIP_LIMIT_MAX,
             "wip_limit", f"must be within 0-{protocol.WIP_LIMIT_MAX} (0: no limit)")
        need(10 <= self.forecast_history <= 86_400, "forecast_history",
             "must be within 10-86400 seconds")
        need(str(self.log_level).lower() in LOG_LEVELS, "log_level",
             f"must be one of {', '.join(LOG_LEVELS)}")
        need(self.log_format in LOG_FORMATS, "log_format", f"must be one of {', '.join(LOG_FORMATS)}")
        need(isinstance(self.http_port, int) and 0 <= self.http_port <= 65535, "http_port",
             "must be within 0-65535 (0: no HTTP endpoint)")
        need(bool(self.http_bind), "http_bind", "must not be empty")
        self._workflow = self._build_workflow()

    def _build_workflow(self) -> workflow.Workflow:
        """--stages (or --scenario's stages), then --stage-wip on top; one stage `work` with the
        pool bounds when neither is given."""
        if self.stages is not None and self.scenario is not None:
            raise ConfigError(f"--stages {self.stages!r} and --scenario {self.scenario!r}: give one "
                              "(a scenario has its own stages)")
        try:
            if self.scenario is not None:
                self._scenario = scenario.load(self.scenario)
                flow = self._scenario.workflow
                if self.stage_wip is not None:
                    flow = flow.with_wip_limits(workflow.parse_stage_wip(self.stage_wip, flow))
                return flow
            return workflow.from_options(self.stages, self.stage_wip, self.min_workers,
                                         self.max_workers)
        except scenario.ScenarioError as exc:
            raise ConfigError(f"--scenario: {exc}") from None
        except workflow.WorkflowError as exc:  # its message names --stages or --stage-wip
            raise ConfigError(str(exc)) from None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# The defaults by name (the command line's help shows them).
DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(ServerConfig)}


def meaning_of_choices(name: str) -> str:
    """What each value of the setting `name` means, from its field's metadata: the text of
    its --help and of its row in docs/install.md."""
    metadata = next(f for f in dataclasses.fields(ServerConfig) if f.name == name).metadata
    text = "; ".join(f"{value}: {meaning}" for value, meaning in metadata["choices"].items())
    return f"{text}; {metadata['note']}" if "note" in metadata else text
