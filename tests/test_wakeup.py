"""server/wakeup.py: the pair the loop, the forecast runner and the HTTP endpoint poll to be woken."""

from __future__ import annotations

import select
import threading

import pytest

from storypulse.server.wakeup import WakePair


@pytest.fixture
def pair():
    made = WakePair()
    yield made
    made.close()


def readable(pair: WakePair, timeout: float = 0.0) -> bool:
    return bool(select.select([pair.fd], [], [], timeout)[0])


def test_a_wake_makes_the_fd_readable_until_drained(pair):
    assert not readable(pair)
    pair.wake()
    pair.wake()
    assert readable(pair)
    pair.drain()
    assert not readable(pair)  # every byte read: the next poll waits again
    pair.drain()  # nothing waiting: no error


def test_a_wake_from_another_thread_ends_a_poll_that_waits(pair):
    thread = threading.Thread(target=pair.wake)
    thread.start()
    assert readable(pair, timeout=10.0)
    thread.join()


def test_a_full_pair_takes_more_wakes_without_blocking_and_drains_whole(pair):
    for _ in range(200_000):  # far beyond a socketpair's buffer
        pair.wake()
    pair.drain()
    assert not readable(pair)


def test_a_wake_after_close_raises_for_the_caller_to_handle():
    closed = WakePair()
    closed.close()
    with pytest.raises(OSError):
        closed.wake()
