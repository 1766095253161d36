"""Requests off the UI thread: a worker with its own Client in a QThread; replies come back as signals.

The UI calls `Requests.call(op, fields, on_ok, on_error)`; the callbacks run in
the UI thread, because the reply signal is connected to a method of
`Requests`, a QObject that lives there (a signal connected to a lambda would
run the lambda in the worker thread).
"""

from __future__ import annotations

import itertools
from typing import Any, Callable

import msgspec
import zmq
from PySide6.QtCore import QObject, QThread, Signal, Slot

from storypulse.client import Client, RequestError, ServerUnavailable
from storypulse.endpoints import Endpoints

from .threads import stop_thread


class RequestWorker(QObject):
    replied = Signal(int, object)  # token, result
    failed = Signal(int, str, str)  # token, error code, message

    def __init__(self, endpoints: Endpoints, timeout: float):
        super().__init__()
        self.endpoints = endpoints
        self.timeout = timeout
        self._client: Client | None = None

    @Slot(int, str, object)
    def handle(self, token: int, op: str, fields: object) -> None:
        try:
            if self._client is None:
                self._client = Client(self.endpoints, timeout=self.timeout)
            result = self._client.call(op, **(fields or {}))
        except RequestError as exc:
            self.failed.emit(token, exc.code, exc.message)
        except ServerUnavailable as exc:
            self.failed.emit(token, "unavailable", str(exc))
        except (msgspec.MsgspecError, zmq.ZMQError, ValueError, RuntimeError) as exc:
            self.failed.emit(token, "internal", f"{type(exc).__name__}: {exc}")
        else:
            self.replied.emit(token, result)

    @Slot()
    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


class Requests(QObject):
    """One request thread; make two when slow pages must not hold up user actions."""

    _submit = Signal(int, str, object)
    _close = Signal()

    def __init__(self, endpoints: Endpoints, parent: QObject | None = None, timeout: float = 3.0,
                 name: str = "storypulse-requests"):
        super().__init__(parent)
        self._tokens = itertools.count(1)
        self._callbacks: dict[int, tuple[Callable | None, Callable | None]] = {}
        self.thread = QThread()
        self.thread.setObjectName(name)
        self.worker = RequestWorker(endpoints, timeout)
        self.worker.moveToThread(self.thread)
        self._submit.connect(self.worker.handle)
        self._close.connect(self.worker.close)
        self.worker.replied.connect(self._on_replied)
        self.worker.failed.connect(self._on_failed)
        self.thread.start()

    def call(self, op: str, fields: dict[str, Any] | None = None,
             on_ok: Callable[[Any], None] | None = None,
             on_error: Callable[[str, str], None] | None = None) -> int:
        token = next(self._tokens)
        self._callbacks[token] = (on_ok, on_error)
        self._submit.emit(token, op, fields or {})
        return token

    @Slot(int, object)
    def _on_replied(self, token: int, result: object) -> None:
        on_ok, _ = self._callbacks.pop(token, (None, None))
        if on_ok is not None:
            on_ok(result)

    @Slot(int, str, str)
    def _on_failed(self, token: int, code: str, message: str) -> None:
        _, on_error = self._callbacks.pop(token, (None, None))
        if on_error is not None:
            on_error(code, message)

    def stop(self, timeout_ms: int = 5000) -> bool:
        ok = stop_thread(self.thread, self._close.emit, timeout_ms)
        self._callbacks.clear()
        return ok
