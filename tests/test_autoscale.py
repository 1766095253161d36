"""The scaling policy, driven with a fake clock and synthetic load curves."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from storypulse.server.autoscale import Autoscaler, Decision, Load

TICK = 0.2  # the server's default scale interval


def load(now: float = 0.0, *, queued: int = 0, work_s: float | None = None, busy: int = 0, idle: int = 0,
         starting: int = 0, rate: float = 0.0, task_s: float = 0.5) -> Load:
    """A load sample; queued work defaults to queued x task_s."""
    return Load(now=now, queued_tasks=queued, queued_work_s=queued * task_s if work_s is None else work_s,
                busy=busy, idle=idle, starting=starting, arrival_rate=rate, completion_rate=rate,
                mean_task_s=task_s)


class Clock:
    """Fake monotonic time that advances one scale interval per decision."""

    def __init__(self, scaler: Autoscaler, start: float = 100.0):
        self.scaler = scaler
        self.now = start
        self.decisions: list[Decision] = []

    def run(self, seconds: float, sample) -> list[Decision]:
        """Decide every TICK for `seconds`; `sample(now, target)` gives the load then."""
        out = []
        end = self.now + seconds
        while self.now < end - 1e-9:
            d = self.scaler.decide(replace(sample(self.now, self.scaler.target), now=self.now))
            out.append(d)
            self.now += TICK
        self.decisions += out
        return out


def targets(decisions: list[Decision]) -> list[int]:
    return [d.target for d in decisions]


def changes(decisions: list[Decision]) -> int:
    ts = targets(decisions)
    return sum(1 for a, b in zip(ts, ts[1:]) if a != b)


def test_starts_at_min_and_holds_without_load():
    scaler = Autoscaler(2, 10)
    d = scaler.decide(load(0.0, idle=2))
    assert d.target == 2
    assert d.reason


def test_step_up_reaches_the_needed_size_in_one_decision():
    scaler = Autoscaler(1, 32)
    scaler.decide(load(0.0, idle=1))
    # 40 tasks of 0.5 s land at once: 20 s of work on one busy worker.
    d = scaler.decide(load(0.2, queued=40, busy=1, rate=20.0))
    # Little's law: 20/s x 0.5 s = 10 busy workers, plus the backlog cleared in half a second.
    assert d.target == 32
    assert "grow 1 -> 32" in d.reason and "40 queued tasks" in d.reason


def test_growth_is_sized_by_the_queued_work_not_one_per_tick():
    scaler = Autoscaler(1, 64, drain_s=1.0, worker_start_s=0.0)
    scaler.decide(load(0.0, idle=1))
    d = scaler.decide(load(0.2, queued=30, work_s=6.0, busy=1))
    # 6 s of work to clear in 1 s: 6 more workers beside the busy one, no more.
    assert d.target == 7
    assert "6 free workers clear the queue in 1.0 s" in d.reason


def test_backlog_never_asks_more_workers_than_queued_tasks():
    scaler = Autoscaler(1, 64)
    scaler.decide(load(0.0, idle=1))
    d = scaler.decide(load(0.2, queued=3, work_s=30.0, busy=1))  # three long tasks
    assert d.target == 4


def test_arrival_rate_alone_grows_to_what_littles_law_needs():
    scaler = Autoscaler(1, 64, utilisation=0.8)
    scaler.decide(load(0.0, idle=1))
    d = scaler.decide(load(0.2, busy=1, rate=16.0, task_s=0.5))
    assert d.target == 10  # 8 busy at steady state, at 80 % utilisation
    assert "16.0 tasks/s x 0.50 s keep 8.0 workers busy" in d.reason


def test_step_down_waits_for_the_quiet_window_then_shrinks_in_steps():
    scaler = Autoscaler(1, 20, quiet_window=5.0)
    clock = Clock(scaler)
    clock.run(1.0, lambda now, t: load(queued=40, busy=min(t, 20), rate=30.0))
    assert scaler.target == 20
    # The load stops dead.
    quiet = clock.run(4.8, lambda now, t: load(idle=t))
    assert set(targets(quiet)) == {20}, "no shrink before the quiet window is over"
    later = clock.run(60.0, lambda now, t: load(idle=t))
    sizes = [20] + targets(later)
    steps = [a - b for a, b in zip(sizes, sizes[1:]) if a != b]
    assert all(step > 0 for step in steps), "only shrinks"
    assert all(step <= (a - 1) // 2 + 1 for a, step in zip(sizes, steps)), "a step is at most half the surplus"
    assert len(steps) >= 3, "several steps, not one drop to the minimum"
    assert scaler.target == 1
    shrinks = [d for d in later if d.reason.startswith("shrink")]
    assert shrinks and "quiet" not in shrinks[0].reason  # the reason says why, not the window state
    assert "need stayed at 0 or less" in shrinks[0].reason


def test_shrink_steps_are_one_quiet_window_apart():
    scaler = Autoscaler(1, 16, quiet_window=2.0)
    clock = Clock(scaler)
    clock.run(0.4, lambda now, t: load(queued=32, busy=min(t, 16)))
    start = clock.now
    clock.run(30.0, lambda now, t: load(idle=t))
    times = [start + i * TICK for i, (a, b) in enumerate(zip(targets(clock.decisions[2:]),
                                                             targets(clock.decisions[3:])), 1) if a != b]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert gaps and min(gaps) >= 2.0 - 1e-6


def test_never_shrinks_below_what_the_arrivals_need():
    scaler = Autoscaler(1, 20, quiet_window=1.0, shrink_below=1.0)  # no hysteresis band
    clock = Clock(scaler)
    clock.run(0.6, lambda now, t: load(queued=60, busy=min(t, 20), rate=40.0))
    assert scaler.target == 20
    # The backlog is gone; 8 tasks/s of 0.5 s keep going (4 workers busy).
    clock.run(60.0, lambda now, t: load(busy=4, idle=t - 4, rate=8.0))
    assert scaler.target == 5  # ceil(4 / 0.8)
    assert "the flow needs 5" in clock.decisions[-1].reason


def test_hysteresis_only_a_clearly_oversized_pool_shrinks():
    scaler = Autoscaler(1, 20, quiet_window=1.0)  # shrinks while the need <= 2/3 of the size
    clock = Clock(scaler)
    clock.run(0.6, lambda now, t: load(queued=60, busy=min(t, 20), rate=40.0))
    clock.run(60.0, lambda now, t: load(busy=4, idle=t - 4, rate=8.0))
    # Need 5: at 8 workers 5 <= 5.3 still shrinks, at 7 (5 > 4.7) it holds.
    assert scaler.target == 7
    assert clock.decisions[-1].reason.startswith("hold 7: need 5")


def test_never_shrinks_below_the_busy_workers():
    scaler = Autoscaler(1, 12, quiet_window=1.0, shrink_below=1.0)
    clock = Clock(scaler)
    clock.run(0.4, lambda now, t: load(queued=24, busy=min(t, 12)))
    # Nine long tasks still run, nothing arrives any more (rate 0).
    clock.run(30.0, lambda now, t: load(busy=9, idle=t - 9, rate=0.0))
    assert scaler.target == 9


def test_spike_grows_at_once_then_shrinks_back_to_min():
    scaler = Autoscaler(2, 16, quiet_window=3.0)
    clock = Clock(scaler)
    clock.run(2.0, lambda now, t: load(idle=t))
    assert scaler.target == 2
    spike = clock.run(TICK, lambda now, t: load(queued=30, busy=2, rate=50.0))
    assert spike[0].target == 16 and spike[0].reason.startswith("grow 2 -> 16")
    clock.run(2.0, lambda now, t: load(idle=t))  # the spike is gone at once
    assert scaler.target == 16, "held through the quiet window"
    clock.run(60.0, lambda now, t: load(idle=t))
    assert scaler.target == 2


def poisson_load(seed: int, rate: float, task_s: float):
    """A steady random load played against the target: Poisson arrivals of
    stories of 1-5 tasks, each running for 0..2 x task_s on a free worker."""
    rng = random.Random(seed)
    running: list[float] = []  # end times
    queue: list[float] = []  # durations
    arrivals: list[float] = []  # arrival times of the last 5 s

    def sample(now: float, target: int) -> Load:
        running[:] = [end for end in running if end > now]
        t = now - TICK + rng.expovariate(rate / 3)
        while t < now:
            count = rng.randint(1, 5)
            queue.extend(rng.uniform(0, 2 * task_s) for _ in range(count))
            arrivals.extend([t] * count)
            t += rng.expovariate(rate / 3)
        while queue and len(running) < target:
            running.append(now + queue.pop(0))
        arrivals[:] = [a for a in arrivals if a > now - 5.0]
        measured = len(arrivals) / 5.0
        return Load(now=now, queued_tasks=len(queue), queued_work_s=sum(queue), busy=len(running),
                    idle=max(target - len(running), 0), starting=0, arrival_rate=measured,
                    completion_rate=measured, mean_task_s=task_s)
    return sample


def reversals(decisions: list[Decision]) -> int:
    """Shrinks undone by the next change: the see-saw of a flapping pool."""
    moves = [b - a for a, b in zip(targets(decisions), targets(decisions[1:])) if a != b]
    return sum(1 for a, b in zip(moves, moves[1:]) if a < 0 < b)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_steady_load_settles_without_flapping(seed):
    scaler = Autoscaler(1, 32, quiet_window=5.0)
    clock = Clock(scaler)
    sample = poisson_load(seed, rate=12.0, task_s=0.5)  # 6 workers busy on average, in clumps
    clock.run(60.0, sample)  # settle
    settled = clock.run(120.0, sample)
    # 600 decisions over two minutes of the same load: the size drifts by a
    # step now and then, it does not see-saw.
    assert changes(settled) <= 12, targets(settled)
    assert reversals(settled) <= 3
    assert max(targets(settled)) - min(targets(settled)) <= 8
    assert min(targets(settled)) >= 8  # ceil(6 / 0.8): the arrivals' floor


def test_premature_shrink_makes_the_quiet_window_longer():
    scaler = Autoscaler(1, 16, quiet_window=2.0)
    clock = Clock(scaler)
    # Bursts of 12 busy workers every 6 s: longer apart than the quiet window.
    def bursty(now, t):
        phase = (now - 100.0) % 6.0
        return load(queued=12 - min(t, 12), busy=min(t, 12), idle=max(t - 12, 0)) if phase < 0.4 \
            else load(idle=t)
    clock.run(60.0, bursty)
    assert scaler.window > scaler.quiet_window, "the window grew after shrinks that had to be undone"
    early, late = clock.decisions[:150], clock.decisions[-150:]
    assert changes(late) < changes(early)


def test_patience_returns_to_normal_after_a_long_calm():
    scaler = Autoscaler(1, 16, quiet_window=1.0)
    clock = Clock(scaler)
    def bursty(now, t):
        return load(queued=10, busy=min(t, 10)) if (now - 100.0) % 3.0 < 0.2 else load(idle=t)
    clock.run(20.0, bursty)
    assert scaler.window > 1.0
    clock.run(60.0, lambda now, t: load(idle=t))
    assert scaler.window == 1.0
    assert scaler.target == 1


def test_patience_ends_with_the_load_that_needed_it():
    scaler = Autoscaler(1, 16, quiet_window=2.0)
    clock = Clock(scaler)
    # A flow of 8 tasks/s (4 workers busy) with a clump of 16 tasks every 6 s.
    def bursty(now, t):
        if (now - 100.0) % 6.0 < 0.4:
            return load(queued=16 - min(t, 16), busy=min(t, 16), idle=max(t - 16, 0), rate=8.0)
        return load(busy=4, idle=t - 4, rate=8.0)
    clock.run(60.0, bursty)
    assert scaler.window > 2.0, "shrinks undone by the clumps lengthened the window"
    # A lighter flow, but the same load in kind: the patience stays.
    clock.run(TICK, lambda now, t: load(busy=3, idle=t - 3, rate=6.0))
    assert scaler.window > 2.0
    # The flow falls to under a quarter: that load is over, the normal window is back at once.
    clock.run(TICK, lambda now, t: load(busy=1, idle=t - 1, rate=1.0))
    assert scaler.window == 2.0


@pytest.mark.parametrize("lo,hi", [(0, 1), (1, 1), (3, 3), (2, 5), (0, 256)])
def test_targets_always_within_bounds(lo, hi):
    scaler = Autoscaler(lo, hi, quiet_window=1.0)
    clock = Clock(scaler)
    rng = random.Random(lo * 1000 + hi)
    def wild(now, t):
        return load(queued=rng.randint(0, 500), busy=min(t, rng.randint(0, 300)),
                    rate=rng.choice([0.0, 1.0, 100.0]), task_s=rng.choice([0.0, 0.1, 5.0]))
    clock.run(30.0, wild)
    clock.run(30.0, lambda now, t: load(idle=t))
    assert all(lo <= t <= hi for t in targets(clock.decisions))
    assert all(d.reason for d in clock.decisions)
    assert scaler.target == max(lo, 0) or scaler.target == lo


def test_set_bounds_at_run_time():
    scaler = Autoscaler(1, 4, quiet_window=5.0)
    clock = Clock(scaler)
    clock.run(1.0, lambda now, t: load(queued=50, busy=t))
    assert scaler.target == 4
    scaler.set_bounds(1, 10)  # more room: used at once while the backlog lasts
    d = clock.run(TICK, lambda now, t: load(queued=50, busy=t))[0]
    assert d.target == 10
    scaler.set_bounds(1, 6)  # less room: obeyed at once, without waiting for a quiet window
    d = clock.run(TICK, lambda now, t: load(queued=50, busy=t))[0]
    assert d.target == 6 and "bounds" in d.reason
    scaler.set_bounds(8, 12)  # a higher minimum: obeyed at once even with no load
    d = clock.run(TICK, lambda now, t: load(idle=t))[0]
    assert d.target == 8
    clock.run(60.0, lambda now, t: load(idle=t))
    assert scaler.target == 8, "never below the new minimum"


@pytest.mark.parametrize("lo,hi", [(-1, 3), (4, 3), (0, 0)])
def test_set_bounds_rejects_impossible_bounds(lo, hi):
    with pytest.raises(ValueError):
        Autoscaler(lo, hi)
    scaler = Autoscaler(1, 2)
    with pytest.raises(ValueError):
        scaler.set_bounds(lo, hi)
    assert (scaler.min_workers, scaler.max_workers) == (1, 2)


def test_zero_load_goes_to_min_after_the_quiet_window():
    scaler = Autoscaler(0, 8, quiet_window=2.0)
    clock = Clock(scaler)
    clock.run(0.4, lambda now, t: load(queued=16, busy=min(t, 8)))
    assert scaler.target == 8
    first = clock.run(1.8, lambda now, t: load(idle=t))
    assert set(targets(first)) == {8}
    clock.run(40.0, lambda now, t: load(idle=t))
    assert scaler.target == 0


def test_zero_load_with_zero_estimates_does_not_divide_by_zero():
    scaler = Autoscaler(1, 8)
    d = scaler.decide(load(0.0, queued=5, work_s=0.0, busy=1, rate=0.0, task_s=0.0))
    assert d.target == 2  # tasks of estimate 0 still need a free worker


def test_each_decision_is_a_pure_function_of_the_inputs():
    def run() -> list[Decision]:
        scaler = Autoscaler(1, 16, quiet_window=1.0)
        clock = Clock(scaler)
        clock.run(30.0, poisson_load(7, rate=10.0, task_s=0.4))
        return clock.decisions
    assert run() == run()


def test_an_empty_pool_with_min_zero_wakes_up_for_the_first_task():
    scaler = Autoscaler(0, 4, quiet_window=1.0)
    assert scaler.decide(load(0.0)).target == 0
    d = scaler.decide(load(0.2, queued=1, work_s=0.3, rate=0.0, task_s=0.0))
    assert d.target == 1 and d.reason.startswith("grow 0 -> 1")
