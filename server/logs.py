"""Where the server's log goes and in what shape: text for people, or one JSON object a line.

`--log-format json` is for log shippers (journald's JSON export, Vector, Fluent Bit,
Loki's promtail, a Kubernetes node agent): every line is one object with `time` (UTC,
ISO 8601), `level`, `logger` and `message`, plus the structured fields the call
passed with `extra=` (a pool decision's `old`, `new` and `reason`; an outage's
`cause`; why the server could not start and its `exit_code`), and `exc` with the
traceback of an exception. Nothing else is written to stderr in that mode:
warnings and uncaught exceptions go through the same handler, and the worker
processes read the format from the environment (STORYPULSE_LOG_FORMAT) so their
lines are JSON too.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from typing import Any, TextIO

ENV_FORMAT = "STORYPULSE_LOG_FORMAT"  # also the setting's variable (configfile.py)
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
# What every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (json escapes the newlines of a message)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _utc(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def _utc(created: float) -> str:
    seconds = time.gmtime(created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", seconds) + f".{int(created % 1 * 1000):03d}Z"


def formatter(fmt: str) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)


def setup(level: str, fmt: str = "text", stream: TextIO | None = None) -> None:
    """The root logger writes `fmt` lines to stderr from `level` up. In JSON mode the
    warnings module and uncaught exceptions go through it too, and the format is put in
    the environment for the worker processes this one starts."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(fmt))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    if fmt == "json":
        os.environ[ENV_FORMAT] = "json"
        logging.captureWarnings(True)
        sys.excepthook = _log_uncaught
        threading.excepthook = lambda args: _log_uncaught(
            args.exc_type, args.exc_value, args.exc_traceback, args.thread)


def setup_from_environ(level: str = "info") -> None:
    """For a worker process: the server's format (text unless the server said json)."""
    setup(level, "json" if os.environ.get(ENV_FORMAT, "").strip() == "json" else "text")


def _log_uncaught(exc_type, exc_value, tb, thread: threading.Thread | None = None) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        return
    where = f" in thread {thread.name}" if thread is not None else ""
    logging.getLogger("storypulse").critical("uncaught exception%s", where,
                                             exc_info=(exc_type, exc_value, tb))
