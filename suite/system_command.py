"""`sdsuite system`: what makes this machine noisy for benchmarks, with a hint for each cause."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Show what makes this machine's benchmark numbers noisy (governor, turbo, isolated cores, SMT, "
        "other processes' CPU, steal, load, throttling, swap) and what would help. Nothing is changed."
    )
    parser.add_argument("--sample", type=float, default=1.0, metavar="S", help="seconds to watch the load (default 1)")
    parser.add_argument("--json", action="store_true", help="one JSON object per check instead of a table")


def run(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from suite.errors import UsageError
    from suite.measure.system_checks import checks

    if not 0 < args.sample <= 60:
        raise UsageError(f"--sample {args.sample:g}: give 0 to 60 seconds")
    found = checks(args.sample)
    if args.json:
        for c in found:
            print(json.dumps(asdict(c)))
        return 0
    name_w = max(len(c.name) for c in found)
    state_w = max(len(c.state) for c in found)
    for c in found:
        print(f"{c.name:<{name_w}}  {c.state:<{state_w}}  {c.value}")
        if c.hint:
            print(f"{'':<{name_w}}  {'':<{state_w}}  -> {c.hint}")
    noisy = [c.name for c in found if c.state == "noisy"]
    print(f"\n{len(noisy)} of {len(found)} checks noisy" + (f": {', '.join(noisy)}" if noisy else ""))
    return 0
