"""PySide6 pitfalls (docs/pitfalls.md) as regression tests, in fresh processes so a crash is seen, not suffered.

- PySide6 6.12.0 on Python 3.11 aborts after ~2,200 Signal.emit() calls.
- PySide6 6.11.3 segfaults in ~4% of process starts when a QThread's `started`
  signal calls a Python slot of a worker object, which is how the feed starts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

from support import REPO

ENV = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(REPO)}

EMITS = textwrap.dedent("""
    from PySide6.QtCore import QCoreApplication, QObject, Signal, Slot

    class Source(QObject):
        ping = Signal(object)

    class Sink(QObject):
        def __init__(self):
            super().__init__()
            self.count = 0

        @Slot(object)
        def take(self, value):
            self.count += 1

    app = QCoreApplication([])
    source, sink = Source(), Sink()
    source.ping.connect(sink.take)
    for i in range(10_000):
        source.ping.emit(i % 2 == 0)  # True and False: the bug dropped a reference to True
    assert sink.count == 10_000, sink.count
    print("ok", sink.count)
""")

# The app's own feed thread, started and stopped: against a port where nobody
# answers, it starts, tries a snapshot, reports its state and stops on request.
FEED_START = textwrap.dedent("""
    import sys
    from PySide6.QtCore import QCoreApplication, QTimer
    from storypulse.endpoints import Endpoints
    from storypulse.desktop.feed import Feed

    app = QCoreApplication([])
    feed = Feed(Endpoints("127.0.0.1", int(sys.argv[1])))
    feed.state_changed.connect(app.quit)
    QTimer.singleShot(10_000, app.quit)
    feed.start()
    app.exec()
    assert feed.thread.isRunning()
    assert feed.stop(5_000), "the feed thread did not stop"
    print("ok")
""")


def run(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, env=ENV, capture_output=True,
                          text=True, timeout=timeout)


def test_ten_thousand_emits_in_one_process_survive():
    done = run(EMITS)
    assert done.returncode == 0, f"exit code {done.returncode}:\n{done.stderr[-2000:]}"
    assert done.stdout.split() == ["ok", "10000"]


def test_the_feed_thread_starts_cleanly_in_many_fresh_processes():
    from support import free_port_block

    starts = int(os.environ.get("STORYPULSE_FEED_STARTS", "100"))
    port = free_port_block()
    began = time.monotonic()
    failures: list[str] = []
    done_count = 0

    def one(_: int) -> tuple[int, str]:
        result = run(FEED_START, str(port), timeout=30)
        return result.returncode, result.stdout + result.stderr[-1500:]

    # Two at a time: the machine has two cores; a crash is a crash whichever runs beside it.
    with ThreadPoolExecutor(max_workers=2) as pool:
        for code, output in pool.map(one, range(starts)):
            done_count += 1
            if code != 0 or "ok" not in output:
                failures.append(f"exit code {code}: {output}")
    elapsed = time.monotonic() - began
    assert not failures, f"{len(failures)} of {done_count} starts failed; first:\n{failures[0]}"
    # About 0.5 s of CPU per start: ~55 s for 100 on two busy cores. Far slower means a hang.
    assert elapsed < 150, f"{starts} starts took {elapsed:.0f} s"
