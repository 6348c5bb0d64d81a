"""`sdsuite compare`: the scenarios two runs share, side by side, with a significance verdict."""

from __future__ import annotations

import argparse
from pathlib import Path

from suite.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from suite.report.compare import __doc__ as rule

    parser.description = "Compare the scenarios two bench runs share. " + " ".join(rule.split())
    parser.add_argument("a", type=Path, metavar="RUN_A")
    parser.add_argument("b", type=Path, metavar="RUN_B")


def run(args: argparse.Namespace) -> int:
    from suite.report.compare import compare_runs, format_table
    from suite.report.runs import load_run

    try:
        a, b = load_run(args.a), load_run(args.b)
    except (OSError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    print(format_table(a, b, compare_runs(a, b)))
    return 0
