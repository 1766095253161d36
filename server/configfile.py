"""Server options in three layers: a TOML file, then the environment, then the command line.

Each option has one name (`min_workers`) that appears as a TOML key, as an
environment variable (`STORYPULSE_MIN_WORKERS`) and as an option
(`--min-workers`). A later layer wins. This module only reads and types the
values; ranges and cross-checks stay in the server's config table (`validate()`),
so that there is one place that says what is allowed.

The service passes `--config /etc/storypulse/server.toml`; an interactive
`storypulse server` reads a file only when told to (`--config` or
`STORYPULSE_CONFIG`), so a packaged host's settings never leak into a developer's run.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import tomllib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from . import config
from .config import ConfigError  # one error for every setting that cannot be used

ENV_PREFIX = "STORYPULSE_"
ENV_CONFIG = "STORYPULSE_CONFIG"


@dataclass(frozen=True)
class Key:
    name: str
    type: type  # str, int or float

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")


def _keys() -> dict[str, Key]:
    """One key per setting of the server's config table, typed as the table types it."""
    hints = typing.get_type_hints(config.ServerConfig)
    keys = {}
    for field in dataclasses.fields(config.ServerConfig):
        hint = hints[field.name]
        # `str | None` (the database): None is the table's "default", not a value to write.
        kinds = [t for t in typing.get_args(hint) if t is not type(None)] or [hint]
        keys[field.name] = Key(field.name, kinds[0])
    return keys


KEYS: dict[str, Key] = _keys()


def merge(file_values: Mapping[str, Any], environ: Mapping[str, str], cli_values: Mapping[str, Any],
          *, file_label: str = "the configuration file", origins: dict[str, str] | None = None,
          ) -> dict[str, Any]:
    """The option values set by any layer, typed; the defaults are not filled in here.

    `file_values` is the parsed TOML, `environ` the process environment (only
    STORYPULSE_* names that are options are read; an empty value counts as
    unset), `cli_values` the options given explicitly on the command line
    (None: not given). `origins`, if given, is filled with where each value
    that did not come from the command line was set, for error messages.
    """
    merged: dict[str, Any] = {}
    where: dict[str, str] = {}
    for name, raw in file_values.items():
        key = KEYS.get(name)
        if key is None:
            raise ConfigError(f"{file_label}: unknown key {name!r}{_suggestion(name)}")
        merged[name] = _from_toml(key, raw, file_label)
        where[name] = f"key {name!r} in {file_label}"
    for key in KEYS.values():
        text = environ.get(key.env)
        if text is not None and text.strip():
            merged[key.name] = _from_text(key, text.strip(), f"environment variable {key.env}")
            where[key.name] = f"environment variable {key.env}"
    for name, value in cli_values.items():
        if value is not None:
            merged[name] = value
            where.pop(name, None)
    if origins is not None:
        origins.update(where)
    return merged


def explain(error: Exception, origins: Mapping[str, str]) -> str:
    """The server's range error, plus where the options it names were set if not on the command line.

    `--port 70000: must be within 1-65533` becomes
    `--port 70000: must be within 1-65533 (port: environment variable STORYPULSE_PORT)`.
    """
    named = [m.replace("-", "_") for m in re.findall(r"--([a-z][a-z-]*)", str(error))]
    notes = [f"{name}: {origins[name]}" for name in dict.fromkeys(named) if name in origins]
    return f"{error} ({'; '.join(notes)})" if notes else str(error)


def read_file(path: Path) -> dict[str, Any]:
    """Parse a TOML file; errors name the file (and tomllib's line and column)."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path} does not exist") from None
    except OSError as e:
        raise ConfigError(f"cannot read configuration file {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None


def config_path(option: str | None, environ: Mapping[str, str]) -> Path | None:
    """The file to read: `--config`, else STORYPULSE_CONFIG, else none."""
    chosen = option or environ.get(ENV_CONFIG, "").strip()
    return Path(chosen) if chosen else None


def load(option: str | None, environ: Mapping[str, str], cli_values: Mapping[str, Any],
         origins: dict[str, str] | None = None) -> dict[str, Any]:
    """Everything the server needs from outside its defaults: file, then environment, then options."""
    path = config_path(option, environ)
    file_values = read_file(path) if path else {}
    return merge(file_values, environ, cli_values, file_label=str(path), origins=origins)


def server_config(option: str | None, environ: Mapping[str, str],
                  cli_values: Mapping[str, Any]) -> config.ServerConfig:
    """The validated config; a range error says which file key or variable set the value."""
    origins: dict[str, str] = {}
    values = load(option, environ, cli_values, origins)
    try:
        return config.ServerConfig.from_options(values)
    except ConfigError as e:
        raise ConfigError(explain(e, origins)) from None


def _from_toml(key: Key, raw: Any, where: str) -> Any:
    # bool is an int in Python, but `port = true` is a mistake, not 1.
    if key.type is str and isinstance(raw, str):
        return raw
    if key.type is int and isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if key.type is float and isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return _finite(key, float(raw), where)
    raise ConfigError(f"{where}: key {key.name!r} must be {_kind(key.type)}, not {_toml_kind(raw)} ({raw!r})")


def _from_text(key: Key, text: str, where: str) -> Any:
    if key.type is str:
        return text
    try:
        value = key.type(text)
    except ValueError:
        raise ConfigError(f"{where}: {text!r} is not {_kind(key.type)}") from None
    return _finite(key, value, where) if key.type is float else value


def _finite(key: Key, value: float, where: str) -> float:
    if not math.isfinite(value):
        raise ConfigError(f"{where}: {key.name} must be a finite number, not {value}")
    return value


def _kind(t: type) -> str:
    return {str: "a string", int: "a whole number", float: "a number"}[t]


def _toml_kind(raw: Any) -> str:
    if isinstance(raw, bool):
        return "a boolean"
    if isinstance(raw, dict):
        return "a table"
    if isinstance(raw, list):
        return "an array"
    return type(raw).__name__


def _suggestion(name: str) -> str:
    close = difflib.get_close_matches(name.replace("-", "_"), KEYS, n=1)
    return f" (did you mean {close[0]!r}?)" if close else f"; known keys: {', '.join(KEYS)}"
