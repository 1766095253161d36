"""What every client command shares: the common options, the Client's life, the usual failures.

A command parses its own options on top of `client_parser`, runs its body inside
`talk`, prints for people by default and JSON with `--json`, and turns the
usual failures into one clear line on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable

import msgspec

from storypulse.client import Client, RequestError, ServerUnavailable
from storypulse.endpoints import Endpoints, parse_server
from storypulse.security import MissingKey

DEFAULT_TIMEOUT = 5.0


def client_parser(name: str, description: str, *, json_flag: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"storypulse {name}", description=description)
    parser.add_argument("--server", type=server, default=Endpoints(), metavar="HOST[:PORT]",
                        help="the server: requests on PORT, events on PORT+1 (default 127.0.0.1:5555)")
    parser.add_argument("--timeout", type=positive_float, default=DEFAULT_TIMEOUT, metavar="S",
                        help=f"seconds to wait for a reply (default {DEFAULT_TIMEOUT:g})")
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    return parser


def server(text: str) -> Endpoints:
    try:
        return parse_server(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be above 0")
    return value


def bounded(kind: type, low: float, high: float, *, above: bool = False) -> Callable[[str], Any]:
    """An argparse type: a number from `low` (or above it, with `above`) to `high`."""
    what = "a whole number" if kind is int else "a number"
    limits = f"must be {'above' if above else 'at least'} {low:g} and at most {high:g}"

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not ((value > low if above else value >= low) and value <= high):
            raise argparse.ArgumentTypeError(f"{text!r}: {limits}")
        return value

    return parse


def fail(name: str, message: str) -> int:
    print(f"storypulse {name}: {message}", file=sys.stderr)
    return 1


def no_reply(name: str, endpoints: Endpoints) -> int:
    return fail(name, f"no reply from {endpoints.requests}: is the server running?")


def talk(name: str, args: argparse.Namespace, body: Callable[[Client], int]) -> int:
    """Run `body` with a Client; the usual failures become one line on stderr and exit 1."""
    try:
        client = Client(args.server, timeout=args.timeout)
    except MissingKey as exc:
        return fail(name, str(exc))
    try:
        return body(client) or 0
    except ServerUnavailable:
        return no_reply(name, args.server)
    except RequestError as exc:
        return fail(name, f"{exc.code}: {exc.message}")
    finally:
        client.close()


def print_json(value: Any) -> None:
    print(json.dumps(msgspec.to_builtins(value), indent=2, ensure_ascii=False))
