"""Ending a worker QThread: what every background part of the app does the same way at close."""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import QThread


def stop_thread(thread: QThread, stop_worker: Callable[[], None], timeout_ms: int) -> bool:
    """Ask the worker to leave its loop, end the thread's event loop and join it.

    True when the thread has ended (or never ran); False when it overran `timeout_ms`.
    """
    if not thread.isRunning():
        return True
    stop_worker()
    thread.quit()
    return thread.wait(timeout_ms)
