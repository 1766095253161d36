"""The request commands: `storypulse add|list|show|delete|pool|flow|ping`.

Each is an entry point `fn(argv) -> exit code` (see pyproject.toml) that makes a
request or a few through the shared Client (the plumbing is in options.py);
`load` and `watch` have modules of their own.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import msgspec
import zmq

from storypulse import format as fmt
from storypulse import protocol
from storypulse.client import Client, RequestError
from storypulse.endpoints import Endpoints
from storypulse.events import ready_events, subscriber
from storypulse.loadgen import StoryGenerator, parse_range

from .figures import flow_lines, stage_lines
from .options import bounded, client_parser, fail, print_json, talk


def _story_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"story id {text!r} is not a whole number") from None
    if not 1 <= value <= protocol.ID_MAX:
        raise argparse.ArgumentTypeError(f"story id {text!r}: must be within 1-{protocol.ID_MAX}")
    return value


# -- ping --------------------------------------------------------------------
def ping(argv: list[str]) -> int:
    """Ask the server for its version; checks the protocol version matches."""
    parser = client_parser("ping", "Check that the server answers, and which version it runs.")
    args = parser.parse_args(argv)

    def body(client: Client) -> int:
        started = time.perf_counter()
        result = client.ping()
        took = time.perf_counter() - started
        if args.json:
            print_json({**msgspec.to_builtins(result), "round_trip_ms": round(took * 1000, 3)})
        else:
            print(f"pong from {args.server} in {fmt.duration(took)}: server {result.server_version},"
                  f" protocol {result.protocol_version}")
        if result.protocol_version != protocol.PROTOCOL_VERSION:
            return fail("ping", f"the server speaks protocol {result.protocol_version};"
                                 f" this client speaks {protocol.PROTOCOL_VERSION}")
        return 0

    return talk("ping", args, body)


# -- add ---------------------------------------------------------------------
def _task_spec(text: str) -> dict[str, Any]:
    raw, _, name = text.partition(":")
    try:
        estimate = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--task {text!r}: expected ESTIMATE_MS[:NAME], e.g. 250:write tests") from None
    return {"estimate_ms": estimate, "name": name} if name else {"estimate_ms": estimate}


def add(argv: list[str]) -> int:
    """Add a story with tasks; --wait waits until it is done."""
    parser = client_parser("add", "Add a story made of tasks; prints the story id and the task ids.")
    parser.add_argument("name", help="the story's name")
    parser.add_argument("--description", default="", help="the story's description")
    parser.add_argument("--task", action="append", type=_task_spec, default=[], metavar="ESTIMATE_MS[:NAME]",
                        help="a task with its estimate in ms and an optional name (repeatable)")
    parser.add_argument("--tasks", type=int, metavar="N", help="N random tasks (with --estimate-ms)")
    parser.add_argument("--estimate-ms", default="0-1000", metavar="A-B",
                        help="estimate range of the random tasks (default 0-1000)")
    parser.add_argument("--seed", type=int, help="seed for the random tasks")
    parser.add_argument("--wait", action="store_true", help="wait until the story is done; print the time it took")
    args = parser.parse_args(argv)

    tasks = list(args.task)
    if args.tasks is not None:
        try:
            low, high = parse_range(args.estimate_ms, name="--estimate-ms", low=0, high=protocol.ESTIMATE_MS_MAX)
            if not 1 <= args.tasks <= protocol.TASKS_MAX:
                raise ValueError(f"--tasks {args.tasks}: must be within 1-{protocol.TASKS_MAX}")
        except ValueError as exc:
            parser.error(str(exc))
        gen = StoryGenerator(tasks=(args.tasks, args.tasks), estimate_ms=(low, high), seed=args.seed)
        tasks += gen.story()["tasks"]
    if not tasks:
        parser.error("give the tasks: --task ESTIMATE_MS[:NAME] (repeatable) or --tasks N")

    def body(client: Client) -> int:
        sub = _story_events(args.server) if args.wait else None
        try:
            started = time.monotonic()
            created = client.create_story(args.name, tasks, args.description)
            report: dict[str, Any] = msgspec.to_builtins(created)
            if not args.json:
                ids = ", ".join(str(t) for t in created.task_ids)
                print(f"story {created.story_id} created with {len(created.task_ids)} task(s): {ids}")
            if sub is not None:
                story = _wait_done(client, sub, created.story_id)
                elapsed = time.monotonic() - started
                report.update(status="done", elapsed_s=round(elapsed, 4),
                              server_elapsed_s=round((story.completed_at or 0) - story.created_at, 4))
                if not args.json:
                    print(f"story {created.story_id} done in {fmt.duration(elapsed)}"
                          f" (server: {fmt.duration(report['server_elapsed_s'])} from creation to done)")
            if args.json:
                print_json(report)
            return 0
        finally:
            if sub is not None:
                sub.close(linger=0)

    return talk("add", args, body)


def _story_events(endpoints: Endpoints) -> zmq.Socket:
    # Subscribed before the story is created, so its `completed` event can't slip past.
    return subscriber(endpoints, protocol.TOPIC_STORY)


def _wait_done(client: Client, sub: zmq.Socket, story_id: int, check_every: float = 1.0) -> protocol.StoryView:
    """Until the story is done: its `completed` event, or (if events were missed) get_story."""
    next_check = time.monotonic() + check_every
    while True:
        wait = max(0.0, next_check - time.monotonic())
        if sub.poll(wait * 1000):
            # A malformed event (None) is no news: get_story below still tells.
            if not any(isinstance(event, protocol.StoryEvent) and event.story_id == story_id
                       and event.event in ("completed", "deleted") for event in ready_events(sub)):
                continue
        elif time.monotonic() < next_check:
            continue
        next_check = time.monotonic() + check_every
        try:
            story = client.get_story(story_id)
        except RequestError as exc:
            if exc.code == protocol.NOT_FOUND:
                raise RequestError(exc.code, f"story {story_id} was deleted before it was done") from None
            raise
        if story.status == "done":
            return story


# -- list, show, delete ------------------------------------------------------
def list_(argv: list[str]) -> int:
    """List stories, newest first (paged)."""
    parser = client_parser("list", "List stories (one page).")
    parser.add_argument("--status", choices=("open", "done"), help="only open or only done stories")
    parser.add_argument("--offset", type=int, default=0, help="skip this many stories (default 0)")
    parser.add_argument("--limit", type=int, default=50,
                        help=f"stories in the page, at most {protocol.LIST_LIMIT_MAX} (default 50)")
    args = parser.parse_args(argv)

    def body(client: Client) -> int:
        page = client.list_stories(args.status, args.offset, args.limit)
        if args.json:
            print_json(page)
            return 0
        now = time.time()
        rows = [
            (s.story_id, s.status, f"{s.tasks_done}/{s.tasks_total}", fmt.clock(s.created_at, now),
             fmt.clock(s.completed_at, now),
             fmt.duration(s.completed_at - s.created_at) if s.completed_at else "-", s.name)
            for s in page.stories
        ]
        if rows:
            print(fmt.table(("ID", "STATUS", "TASKS", "CREATED", "COMPLETED", "TOOK", "NAME"), rows, right=(0, 2)))
        which = f"{args.status} stories" if args.status else "stories"
        if page.stories:
            print(f"{which} {args.offset + 1}-{args.offset + len(page.stories)} of {page.total}")
        else:
            print(f"no {which} here ({page.total} in all)")
        return 0

    return talk("list", args, body)


def show(argv: list[str]) -> int:
    """Show one story with its tasks, their states and times."""
    parser = client_parser("show", "Show a story with its tasks, their states and times.")
    parser.add_argument("story_id", type=_story_id, metavar="ID")
    args = parser.parse_args(argv)

    def body(client: Client) -> int:
        story = client.get_story(args.story_id)
        if args.json:
            print_json(story)
            return 0
        now = time.time()
        took = f" · took {fmt.duration(story.completed_at - story.created_at)}" if story.completed_at else ""
        print(f"story {story.story_id}: {story.name}  [{story.status}]")
        if story.description:
            print(f"  {story.description}")
        print(f"  created {fmt.clock(story.created_at, now)} · completed {fmt.clock(story.completed_at, now)}"
              f"{took} · {story.tasks_done}/{story.tasks_total} tasks done")
        rows = [
            (t.task_id, t.name or "-", f"{t.estimate_ms} ms", t.state, t.attempts,
             fmt.clock(t.started_at, now), fmt.clock(t.finished_at, now),
             fmt.duration(t.finished_at - t.started_at) if t.finished_at and t.started_at else "-")
            for t in story.tasks or []
        ]
        if rows:
            print()
            print(fmt.table(("TASK", "NAME", "ESTIMATE", "STATE", "ATTEMPTS", "STARTED", "FINISHED", "RAN"),
                            rows, right=(0, 2, 4)))
        return 0

    return talk("show", args, body)


def delete(argv: list[str]) -> int:
    """Delete stories and their tasks."""
    parser = client_parser("delete", "Delete stories (and their tasks).")
    parser.add_argument("story_ids", type=_story_id, nargs="+", metavar="ID")
    args = parser.parse_args(argv)

    def body(client: Client) -> int:
        failed = 0
        results = []
        for story_id in args.story_ids:
            try:
                client.delete_story(story_id)
                results.append({"story_id": story_id, "deleted": True})
                if not args.json:
                    print(f"story {story_id} deleted")
            except RequestError as exc:  # one missing story doesn't stop the others
                failed += 1
                results.append({"story_id": story_id, "deleted": False, "error": exc.code, "message": exc.message})
                fail("delete", f"story {story_id}: {exc.code}: {exc.message}")
        if args.json:
            print_json(results)
        return 1 if failed else 0

    return talk("delete", args, body)


# -- pool --------------------------------------------------------------------
def pool(argv: list[str]) -> int:
    """Show or set the worker pool's bounds."""
    parser = client_parser("pool", "Show the worker pool, or set its bounds (the autoscaler stays within them).")
    parser.add_argument("--min", type=int, dest="min_workers", metavar="N",
                        help=f"at least N workers (0-{protocol.WORKERS_MAX})")
    parser.add_argument("--max", type=int, dest="max_workers", metavar="M",
                        help=f"at most M workers (1-{protocol.WORKERS_MAX})")
    parser.add_argument("--stage", metavar="NAME",
                        help="with a workflow: the pool of this stage (default: the first stage's)")
    args = parser.parse_args(argv)

    def body(client: Client) -> int:
        changing = args.min_workers is not None or args.max_workers is not None
        result = client.set_pool(args.min_workers, args.max_workers, args.stage)
        if args.json:
            print_json(result)
            return 0
        verb = "now" if changing else "is"
        whose = f" of stage {result.stage!r}" if result.stage else ""
        print(f"pool{whose} {verb}: {result.workers} worker(s), target {result.target},"
              f" bounds {result.min_workers}-{result.max_workers}")
        return 0

    return talk("pool", args, body)


# -- flow --------------------------------------------------------------------
def flow(argv: list[str]) -> int:
    """Show the flow figures; set the WIP limit and the flow window."""
    parser = client_parser("flow", "The flow: stories in progress and waiting, lead and cycle times (p50, p85, p95) "
                                   "of the stories completed in the flow window. --wip-limit and --window change "
                                   "the server's settings until it stops (its --wip-limit and --flow-window "
                                   "apply again after a restart).")
    parser.add_argument("--wip-limit", type=bounded(int, 0, protocol.WIP_LIMIT_MAX), metavar="N",
                        help="at most N stories in progress; 0 lifts the limit")
    parser.add_argument("--window", type=bounded(float, 0, protocol.FLOW_WINDOW_MAX_S, above=True), metavar="S",
                        help=f"take lead and cycle times over the last S seconds (at most {protocol.FLOW_WINDOW_MAX_S:g})")
    parser.add_argument("--stage-wip", type=stage_limits, metavar="NAME=N,...",
                        help="with a workflow: at most N stories in each named stage (e.g. build=3,test=2); "
                             "0 lifts a stage's limit")
    args = parser.parse_args(argv)

    def body(client: Client) -> int:
        settings = client.set_flow(args.wip_limit, args.window, args.stage_wip)
        stats = client.snapshot(history_seconds=0).stats
        if args.json:
            print_json({**msgspec.to_builtins(settings),
                        "stories_in_progress": stats.stories_in_progress,
                        "stories_waiting": stats.open_stories - stats.stories_in_progress,
                        **{k: getattr(stats, k) for k in FLOW_FIGURES}})
            return 0
        changing = args.wip_limit is not None or args.window is not None or args.stage_wip
        limit = f"WIP limit {settings.wip_limit}" if settings.wip_limit else "no WIP limit"
        print(f"flow {'now' if changing else 'is'}: {limit} · window {fmt.duration(settings.flow_window_s)}")
        for line in flow_lines(stats) + stage_lines(stats):
            print(line)
        return 0

    return talk("flow", args, body)


def stage_limits(text: str) -> dict[str, int]:
    """--stage-wip NAME=N,...: WIP limits by stage (the server says which stages it has)."""
    from storypulse.workflow import check_stage_name

    limits: dict[str, int] = {}
    for part in text.split(","):
        name, found, value = (piece.strip() for piece in part.partition("="))
        try:
            check_stage_name(name)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{part.strip()!r}: {exc}") from None
        if not found or not value.isdigit() or int(value) > protocol.WIP_LIMIT_MAX:
            raise argparse.ArgumentTypeError(
                f"{part.strip()!r}: expected NAME=N with N within 0-{protocol.WIP_LIMIT_MAX}")
        limits[name] = int(value)
    return limits


FLOW_FIGURES = ("stories_completed_in_window", "lead_time_mean_s", "lead_time_p50_s", "lead_time_p85_s",
                "lead_time_p95_s", "cycle_time_p50_s", "cycle_time_p85_s", "cycle_time_p95_s")
