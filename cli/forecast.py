"""`storypulse forecast`: when will N more stories be done, or how many within a time?

One `forecast` request (docs/forecasts.md says how the server answers); this
module parses the question and prints the answer for people, or JSON.
"""

from __future__ import annotations

import argparse
import re
import time

from storypulse import format as fmt
from storypulse import protocol
from storypulse.client import Client

from .options import bounded, client_parser, fail, print_json, talk

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")


def duration(text: str) -> float:
    """An argparse type: `90`, `90s`, `5m`, `1h30m`, `2d` as seconds, within the op's limit."""
    spec = text.strip().lower()
    parts = _PART.findall(spec)
    if not parts or "".join(n + u for n, u in parts) != spec.replace(" ", ""):
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 90, 90s, 5m, 1h30m, 2d)")
    seconds = sum(float(number) * UNITS[unit or "s"] for number, unit in parts)
    if not 0 < seconds <= protocol.FORECAST_WITHIN_MAX_S:
        raise argparse.ArgumentTypeError(
            f"{text!r}: must be above 0 and at most {protocol.FORECAST_WITHIN_MAX_S:g} s (a year)")
    return seconds


def forecast(argv: list[str]) -> int:
    """Monte Carlo forecast from the server's live throughput."""
    parser = client_parser(
        "forecast", "When will N more stories be done (--stories), or how many will be done within a "
                    "time (--within)? The server resamples the stories completed per second over its "
                    "recent history (its --forecast-history) into thousands of possible futures and "
                    "answers at 50, 85 and 95 % confidence.")
    question = parser.add_mutually_exclusive_group(required=True)
    question.add_argument("--stories", type=bounded(int, 1, protocol.FORECAST_STORIES_MAX), metavar="N",
                          help="when will N more stories be done, counted from now?")
    question.add_argument("--within", type=duration, metavar="DURATION",
                          help="how many stories will be done within DURATION (90, 90s, 5m, 1h30m, 2d)?")
    parser.add_argument("--trials", type=bounded(int, protocol.FORECAST_TRIALS_MIN, protocol.FORECAST_TRIALS_MAX),
                        metavar="N", help=f"futures to simulate (default {protocol.FORECAST_TRIALS_DEFAULT:,})")
    args = parser.parse_args(argv)

    def body(client: Client) -> int:
        fields = {"stories": args.stories} if args.stories is not None else {"within_s": args.within}
        if args.trials is not None:
            fields["trials"] = args.trials
        result: protocol.ForecastResult = client.call("forecast", **fields)
        if args.json:
            print_json(result)
        if result.reason is not None:
            return fail("forecast", f"no forecast yet: {result.reason}")
        if not args.json:
            for line in describe(result, time.time()):
                print(line)
        return 0

    return talk("forecast", args, body)


def basis(result: protocol.ForecastResult) -> str:
    how = (f"{result.trials:,} trials" if result.method == "simulated"
           else "normal approximation (far enough ahead, against the history, to need no draws)")
    return (f"from {fmt.duration(result.history_s)} of throughput history ({fmt.count(result.completions)} "
            f"completed in {result.samples} intervals of {result.interval_s:g} s); {how}")


def describe(result: protocol.ForecastResult, now: float) -> list[str]:
    """The answer as lines for people; `now` is the wall clock (for the times of day)."""
    if result.stories is not None:
        lines = [f"{fmt.count(result.stories)} more stories done, counted from now:"]
        for level, seconds in zip((50, 85, 95), (result.p50_s, result.p85_s, result.p95_s)):
            at = time.strftime("%H:%M:%S", time.localtime(now + seconds))
            lines.append(f"  {level} % sure within {fmt.duration(seconds):>10}  (by {at})")
    else:
        lines = [f"stories done within {fmt.duration(result.within_s)}, counted from now:"]
        for level, count in zip((50, 85, 95), (result.stories_p50, result.stories_p85, result.stories_p95)):
            lines.append(f"  {level} % sure: at least {fmt.count(count)}")
    lines.append(f"  {basis(result)}")
    return lines
