"""A stand-in server for the desktop's flow views: a queueing model of a team behind real sockets.

`FlowModel` (team_model.py) is a team as a queue: stories arrive (Poisson or
steady) and go through workflow stages, each with its own workers, WIP limit
and blocked work (one stage, `work`, by default), taking a log-normal time in
each. It numbers every message it makes (the Clone pattern's seq), keeps a
stats history one row a second and the recent completions, as a snapshot
must. Time is passed in, so the same model runs on a fast clock in tests and
on the wall clock in the benchmark and screenshots.

`StandIn` puts a model behind a ROUTER (ping, snapshot, list_stories of open
stories, set_flow with stage limits, set_pool with a stage) and a PUB (story events as they happen, stats at
`stats_hz`), and records what it published: the stream a test compares the
app with, exactly, with no worker processes in the way. (It came first: the
desktop's flow views were built before the server filled the flow fields.
Tests of the real figures run against the real server.)
"""

from __future__ import annotations

import threading
import time

import msgspec
import zmq

from storypulse import protocol
from storypulse.endpoints import Endpoints
from storypulse.percentiles import nearest_rank  # noqa: F401  (the tests take it from here)
from ports import bind_server_sockets, free_port_block
from team_model import FlowModel, Stage, three_stages  # noqa: F401  (a stand-in's model, for its users)

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
            try:
                if request.stage_wip_limits:
                    self.model.set_stage_wip_limits(request.stage_wip_limits)  # checked before anything changes
            except ValueError as exc:
                return protocol.error(request.id, protocol.INVALID, f"stage_wip_limits: {exc}")
            if request.wip_limit is not None:
                self.model.set_wip_limit(request.wip_limit)
            if request.flow_window_s is not None:
                self.model.window_s = request.flow_window_s
            return protocol.ok(request.id, protocol.FlowResult(
                self.model.wip_limit, self.model.window_s,
                stage_wip_limits={s.name: s.wip_limit for s in self.model.stages}))
        if isinstance(request, protocol.SetPool):
            try:
                stage = self.model.set_pool(request.stage, request.min_workers, request.max_workers)
            except ValueError as exc:
                return protocol.error(request.id, protocol.INVALID, str(exc))
            return protocol.ok(request.id, protocol.PoolResult(stage.min_workers, stage.max_workers, stage.workers,
                                                               stage.workers, stage=stage.name))
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
    parser.add_argument("--stages", type=int, choices=(1, 3), default=1,
                        help="1: one stage, `work` (default); 3: analysis, build, test, test short of people "
                             "(--workers and --median-s then unused)")
    args = parser.parse_args()
    model = FlowModel(rate=args.rate, workers=args.workers, median_s=args.median_s, wip_limit=args.wip_limit,
                      stages=three_stages(args.rate / 3) if args.stages == 3 else None)
    server = StandIn(model, port=args.port, start_on_snapshot=False)
    server.record = False
    server.start()
    signal.signal(signal.SIGTERM, lambda *_: server.halt())
    while server.is_alive():
        server.join(0.5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
