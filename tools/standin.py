"""A stand-in server for the desktop's flow views: a queueing model of a team behind real sockets.

`FlowModel` is a team as a queue: stories arrive (Poisson or steady), wait
their turn in creation order for one of `workers` and for the WIP limit, and
take a log-normal time once started. It numbers every message it makes (the
Clone pattern's seq), keeps a stats history one row a second and the recent
completions, as a snapshot must. Time is passed in, so the same model runs on
a fast clock in tests and on the wall clock in the benchmark and screenshots.

`StandIn` puts a model behind a ROUTER (ping, snapshot, list_stories of open
stories, set_flow) and a PUB (story events as they happen, stats at
`stats_hz`), and records what it published: the stream a test compares the
app with, exactly, with no worker processes in the way. (It came first: the
desktop's flow views were built before the server filled the flow fields.
Tests of the real figures run against the real server.)
"""

from __future__ import annotations

import heapq
import math
import random
import threading
import time
from collections import deque
from dataclasses import dataclass

import msgspec
import zmq

from storypulse import protocol
from storypulse.endpoints import Endpoints
from storypulse.percentiles import nearest_rank
from ports import bind_server_sockets, free_port_block

RATE_WINDOW_S = 5.0


@dataclass
class _Story:
    story_id: int
    created_at: float
    started_at: float | None = None


class FlowModel:
    def __init__(self, *, rate: float, workers: int, median_s: float, sigma: float = 0.6, window_s: float = 60.0,
                 wip_limit: int = 0, seed: int = 1, start: float | None = None, poisson: bool = True):
        self.rng = random.Random(seed)
        self.rate = rate
        self.workers = workers
        self.median_s = median_s
        self.sigma = sigma
        self.window_s = window_s
        self.wip_limit = wip_limit
        self.poisson = poisson
        self.now = time.time() if start is None else start
        self.seq = 0
        self.next_id = 1
        self.open: dict[int, _Story] = {}  # in creation order
        self.waiting: deque[int] = deque()
        self.running: list[tuple[float, int]] = []  # heap of (finishes at, story id)
        self.completed = 0
        self.recent: deque[protocol.Completion] = deque()  # completed in the flow window
        self.done: deque[protocol.StoryView] = deque(maxlen=10_000)  # the newest done stories, for lists
        self.arrivals: deque[float] = deque()  # in the rate window
        self.finishes: deque[float] = deque()
        self.history: deque[protocol.Stats] = deque(maxlen=protocol.HISTORY_SECONDS_MAX)
        self.next_arrival = self.now + self._gap()

    def _gap(self) -> float:
        if self.rate <= 0:
            return math.inf
        return self.rng.expovariate(self.rate) if self.poisson else 1.0 / self.rate

    def _number(self) -> int:
        self.seq += 1
        return self.seq

    def next_event_at(self) -> float:
        return min(self.next_arrival, self.running[0][0] if self.running else math.inf)

    def advance(self, until: float) -> list[protocol.StoryEvent]:
        """Everything that happens up to `until`, in time order, as story events."""
        events: list[protocol.StoryEvent] = []
        while True:
            finish = self.running[0][0] if self.running else math.inf
            at = min(self.next_arrival, finish)
            if at > until:
                break
            if finish <= self.next_arrival:
                _, story_id = heapq.heappop(self.running)
                story = self.open.pop(story_id)
                lead, cycle = at - story.created_at, at - story.started_at
                self.completed += 1
                self.recent.append(protocol.Completion(story_id, at, lead, cycle))
                self.done.append(self._view(story, "done", completed_at=at, lead_time_s=lead, cycle_time_s=cycle))
                self.finishes.append(at)
                events.append(protocol.StoryEvent(seq=self._number(), ts=at, event="completed", story_id=story_id,
                                                  lead_time_s=lead, cycle_time_s=cycle))
            else:
                story = _Story(self.next_id, at)
                self.next_id += 1
                self.open[story.story_id] = story
                self.waiting.append(story.story_id)
                self.arrivals.append(at)
                self.next_arrival = at + self._gap()
                events.append(protocol.StoryEvent(seq=self._number(), ts=at, event="created",
                                                  story_id=story.story_id))
            self._start_waiting(at)
        self.now = max(self.now, until)
        return events

    def _start_waiting(self, now: float) -> None:
        capacity = self.workers if not self.wip_limit else min(self.workers, self.wip_limit)
        while self.waiting and len(self.running) < capacity:
            story = self.open[self.waiting.popleft()]
            story.started_at = now
            service = self.median_s * math.exp(self.rng.gauss(0.0, self.sigma))
            heapq.heappush(self.running, (now + service, story.story_id))

    def set_wip_limit(self, limit: int) -> None:
        self.wip_limit = limit
        self._start_waiting(self.now)

    def _expire(self) -> None:
        while self.recent and self.recent[0].completed_at < self.now - self.window_s:
            self.recent.popleft()
        for times in (self.arrivals, self.finishes):
            while times and times[0] < self.now - RATE_WINDOW_S:
                times.popleft()

    def stats(self, publish: bool = True) -> protocol.Stats:
        """The figures now; `publish` numbers them as a message (a snapshot's stats carry the last seq)."""
        self._expire()
        leads = sorted(c.lead_time_s for c in self.recent)
        cycles = sorted(c.cycle_time_s for c in self.recent)
        busy = len(self.running)
        stats = protocol.Stats(
            seq=self._number() if publish else self.seq, ts=self.now,
            stories_produced_per_s=len(self.arrivals) / RATE_WINDOW_S,
            stories_completed_per_s=len(self.finishes) / RATE_WINDOW_S,
            open_stories=len(self.open), completed_stories=self.completed,
            tasks_produced_per_s=len(self.arrivals) / RATE_WINDOW_S,
            tasks_completed_per_s=len(self.finishes) / RATE_WINDOW_S,
            tasks_queued=len(self.waiting), tasks_running=busy, tasks_completed=self.completed,
            queued_work_s=len(self.waiting) * self.median_s, workers=self.workers, workers_busy=busy,
            workers_target=self.workers, min_workers=self.workers, max_workers=self.workers,
            rate_window_s=RATE_WINDOW_S, stories_in_progress=busy, stories_completed_in_window=len(leads),
            lead_time_mean_s=sum(leads) / len(leads) if leads else None,
            lead_time_p50_s=nearest_rank(leads, 50), lead_time_p85_s=nearest_rank(leads, 85),
            lead_time_p95_s=nearest_rank(leads, 95), cycle_time_p50_s=nearest_rank(cycles, 50),
            cycle_time_p85_s=nearest_rank(cycles, 85), cycle_time_p95_s=nearest_rank(cycles, 95),
            flow_window_s=self.window_s, wip_limit=self.wip_limit,
        )
        if publish and (not self.history or stats.ts - self.history[-1].ts >= 1.0):
            self.history.append(stats)  # one row a second, as the server keeps it
        return stats

    def snapshot(self, history_seconds: int) -> protocol.SnapshotResult:
        history = [s for s in self.history if s.ts >= self.now - history_seconds] if history_seconds else []
        return protocol.SnapshotResult(self.seq, self.stats(publish=False), history,
                                       list(self.recent)[-protocol.COMPLETIONS_MAX:])

    @staticmethod
    def _view(story: _Story, status: str, **done) -> protocol.StoryView:
        return protocol.StoryView(story_id=story.story_id, name=f"story {story.story_id}", description="",
                                  status=status, created_at=story.created_at, tasks_total=1,
                                  tasks_done=int(status == "done"), started_at=story.started_at, **done)

    def list_stories(self, status: str | None, offset: int, limit: int) -> protocol.ListStoriesResult:
        """Stories newest first, as list_stories pages them (done ones: the newest 10,000)."""
        if status == "open":
            stories = [self._view(s, "open") for s in reversed(self.open.values())]
        elif status == "done":
            stories = list(reversed(self.done))
        else:
            stories = sorted([self._view(s, "open") for s in self.open.values()] + list(self.done),
                             key=lambda v: -v.story_id)
        return protocol.ListStoriesResult(stories[offset:offset + limit], len(stories))


class StandIn(threading.Thread):
    """A FlowModel behind a ROUTER and a PUB on free local ports.

    `speed` runs the model's clock faster than the wall clock (from the first
    snapshot request on, so that a client sees the whole stream); `freeze()`
    stops the model, after which stats keep coming with the same figures and
    a clock that goes on at the wall clock's pace, as from a server where
    nothing happens.
    """

    def __init__(self, model: FlowModel, *, stats_hz: float = 10.0, speed: float = 1.0, port: int | None = None,
                 start_on_snapshot: bool = True):
        super().__init__(daemon=True)
        self.model = model
        self.stats_hz = stats_hz
        self.speed = speed
        self.endpoints = Endpoints("127.0.0.1", port or free_port_block())
        self.published: list[tuple[bytes, object]] = []
        self.requests: list[protocol.Request] = []
        self.snapshots: list[protocol.SnapshotResult] = []  # as answered
        self.refuse_set_flow = ""  # an error message to answer set_flow with, when set
        self.record = True  # False: publish without keeping a record (long benchmark runs)
        self.lock = threading.Lock()  # the test thread reads what the loop thread writes
        self._running = not start_on_snapshot
        self._frozen = threading.Event()
        self._still: tuple[float, protocol.Stats] | None = None  # (frozen at, its figures)
        self._halt = threading.Event()
        self._origin = (time.monotonic(), model.now)
        self.router, self.pub = bind_server_sockets(self.endpoints, sndhwm=100_000)

    # -- from the test ------------------------------------------------------------
    def freeze(self) -> None:
        self._frozen.set()

    def halt(self) -> None:
        """Ask the loop to end (safe from a signal handler); stop() also waits for it."""
        self._halt.set()

    def stop(self) -> None:
        self.halt()
        self.join(5)

    def stats(self) -> list[protocol.Stats]:
        with self.lock:
            return [m for t, m in self.published if t == protocol.TOPIC_STATS]

    def story_events(self) -> list[protocol.StoryEvent]:
        with self.lock:
            return [m for t, m in self.published if t == protocol.TOPIC_STORY]

    def requests_of(self, kind: type) -> list:
        with self.lock:
            return [r for r in self.requests if isinstance(r, kind)]

    # -- the loop -------------------------------------------------------------------
    def _model_time(self) -> float:
        started, origin = self._origin
        return origin + (time.monotonic() - started) * self.speed

    def _publish(self, topic: bytes, message) -> None:
        if self.record:  # before it is sent: a test may see it arrive at once
            with self.lock:
                self.published.append((topic, message))
        self.pub.send_multipart([topic, protocol.encode(message)])

    def _next_stats(self) -> protocol.Stats:
        if not self._frozen.is_set():
            return self.model.stats()
        if self._still is None:
            self._still = (time.monotonic(), self.model.stats())
        at, figures = self._still
        # The wall clock's pace: quiet time passes no faster for a fast model.
        return msgspec.structs.replace(figures, seq=self.model._number(), ts=figures.ts + time.monotonic() - at)

    def run(self) -> None:
        period = 1.0 / self.stats_hz
        next_stats = time.monotonic()
        try:
            while not self._halt.is_set():
                if self._running and not self._frozen.is_set():
                    for event in self.model.advance(self._model_time()):
                        self._publish(protocol.TOPIC_STORY, event)
                now = time.monotonic()
                if self._running and now >= next_stats:
                    next_stats = max(next_stats + period, now - period)  # skip missed ticks, no burst
                    self._publish(protocol.TOPIC_STATS, self._next_stats())
                wait = next_stats - time.monotonic()
                if self._running and not self._frozen.is_set():
                    wait = min(wait, (self.model.next_event_at() - self._model_time()) / self.speed)
                if self.router.poll(max(0.0, min(wait, period)) * 1000):
                    self._answer()
        finally:
            self.router.close(0)
            self.pub.close(0)

    def _answer(self) -> None:
        while True:
            try:
                identity, frame = self.router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            request = protocol.decode_request(frame)
            with self.lock:
                self.requests.append(request)
            reply = self.answer(request)
            self.router.send_multipart([identity, reply])

    def answer(self, request) -> bytes:
        """The reply frame to one request; a subclass may answer more."""
        if isinstance(request, protocol.Ping):
            return protocol.ok(request.id, protocol.PingResult("stand-in", protocol.PROTOCOL_VERSION))
        if isinstance(request, protocol.Snapshot):
            if not self._running:
                self._running = True
                self._origin = (time.monotonic(), self.model.now)
            snapshot = self.model.snapshot(request.history_seconds)
            with self.lock:
                self.snapshots.append(snapshot)
            return protocol.ok(request.id, snapshot)
        if isinstance(request, protocol.ListStories):
            return protocol.ok(request.id, self.model.list_stories(request.status, request.offset, request.limit))
        if isinstance(request, protocol.SetFlow):
            if self.refuse_set_flow:
                return protocol.error(request.id, protocol.INVALID, self.refuse_set_flow)
            if request.wip_limit is not None:
                self.model.set_wip_limit(request.wip_limit)
            if request.flow_window_s is not None:
                self.model.window_s = request.flow_window_s
            return protocol.ok(request.id, protocol.FlowResult(self.model.wip_limit, self.model.window_s))
        return protocol.error(request.id, protocol.INVALID, f"{request.__struct_config__.tag} is not in the stand-in")


def main() -> int:
    """Serve a model on the wall clock until SIGTERM: `python tools/standin.py --port P` (screenshots)."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, required=True, help="requests on PORT, events on PORT+1")
    parser.add_argument("--rate", type=float, default=3.0, help="stories a second, Poisson (default 3)")
    parser.add_argument("--workers", type=int, default=8, help="stories worked at once (default 8)")
    parser.add_argument("--median-s", type=float, default=2.0, help="median time a story takes (default 2)")
    parser.add_argument("--wip-limit", type=int, default=0, help="0: none (default)")
    args = parser.parse_args()
    model = FlowModel(rate=args.rate, workers=args.workers, median_s=args.median_s, wip_limit=args.wip_limit)
    server = StandIn(model, port=args.port, start_on_snapshot=False)
    server.record = False
    server.start()
    signal.signal(signal.SIGTERM, lambda *_: server.halt())
    while server.is_alive():
        server.join(0.5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
