"""desktop/ui_gc.py: Qt objects in cyclic garbage are destroyed in the UI thread, never in the thread that
happened to allocate when a collection was due (which crashed a full test run: docs/pitfalls.md).

Each test starts from Python's own state — automatic collection on, nothing young pending — whatever the
conftest fixture set up, and puts that fixture's state back after.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import weakref
from contextlib import contextmanager

from PySide6.QtCore import QObject

from storypulse.desktop.ui_gc import UiThreadCollector


@contextmanager
def automatic_collection():
    was = gc.isenabled()
    gc.enable()
    try:
        yield
    finally:
        if not was:
            gc.disable()


def qt_object_in_a_cycle(died_in: list) -> None:
    """Drop a QObject that only a reference cycle keeps; `died_in` gets the thread that destroys it."""
    holder: dict = {"object": QObject()}
    holder["self"] = holder
    weakref.finalize(holder["object"], lambda: died_in.append(threading.get_ident()))


def allocate_in_a_thread(kept: list) -> int:
    """A worker thread's allocations: far more new containers than a young generation holds before Python
    collects it."""
    def work() -> None:
        kept.extend([] for _ in range(20 * gc.get_threshold()[0]))

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    return thread.ident


def test_without_it_a_worker_thread_that_allocates_collects_the_ui_threads_garbage():
    """The hazard itself (and the proof the next test's worker allocates enough to set off a collection)."""
    died_in: list = []
    kept: list = []
    with automatic_collection():
        gc.collect()
        qt_object_in_a_cycle(died_in)
        worker = allocate_in_a_thread(kept)
    assert died_in == [worker]


def test_with_it_only_the_ui_thread_collects_and_its_timer_does(qtbot):
    died_in: list = []
    kept: list = []
    with automatic_collection():
        gc.collect()
        collector = UiThreadCollector(interval_ms=20)
        try:
            assert not gc.isenabled()
            qt_object_in_a_cycle(died_in)
            allocate_in_a_thread(kept)
            assert died_in == []  # the worker's allocations set nothing off
            assert gc.get_count()[0] > collector.thresholds[0]  # but a collection is due: the timer makes it
            qtbot.waitUntil(lambda: bool(died_in), timeout=5_000)
            assert died_in == [threading.get_ident()]
        finally:
            collector.stop()
        assert gc.isenabled()  # as it was before the collector


def test_the_app_makes_one_with_its_qapplication():
    """Before any worker thread starts (a fresh process: this one's QApplication exists already)."""
    code = ("import gc; from storypulse.desktop.app import ensure_app; app = ensure_app(); "
            "print(gc.isenabled(), app.findChild(UiThreadCollector) is not None)")
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run([sys.executable, "-c", f"from storypulse.desktop.ui_gc import UiThreadCollector; {code}"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]
