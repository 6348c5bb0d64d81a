"""The `sdsuite` command.

Each subcommand lives beside the code it drives and exposes `add_arguments(parser)` and
`run(args) -> int`; its module is imported only when the subcommand is used, so `sdsuite audit`
never pays for importing torch and `--help` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from suite import __version__
from suite.errors import EXIT_CODES_TEXT, EXIT_INTERRUPTED, EXIT_USAGE, UsageError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "bench": ("suite.bench_command", "run scenario files and measure time, memory and energy"),
    "models": ("suite.models.command", "list the shipped architectures; check a checkpoint file"),
    "report": ("suite.report.command", "build one self-contained HTML report from runs or an audit"),
    "compare": ("suite.report.compare_command", "compare two bench runs scenario by scenario"),
    "system": ("suite.system_command", "show what makes this machine's benchmark numbers noisy, with hints"),
    "audit": ("suite.audit.command", "detect and decode SD watermarks and provenance metadata in images"),
    "watermark": ("suite.watermark_command", "embed the reference SD watermarks into images"),
    "robustness": ("suite.robustness.command", "how often the audit finds each mark after JPEG, resizes, crops, ..."),
}


def _command_name(argv: list[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdsuite",
        description="Benchmark Stable Diffusion pipelines and audit images for SD invisible watermarks.",
    )
    parser.add_argument("--version", action="version", version=f"sdsuite {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of any failure")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=EXIT_CODES_TEXT)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        if name == command:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = _command_name(argv)
    if command not in COMMANDS:
        parser = build_parser()
        if command is None and not argv:
            parser.print_help()
            return 0
        parser.parse_args(argv)  # prints the error for an unknown command (or --help/--version)
        return 2
    args = build_parser(command).parse_args(argv)
    try:
        return importlib.import_module(COMMANDS[command][0]).run(args)
    except BrokenPipeError:  # `sdsuite ... | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (UsageError, KeyboardInterrupt, OSError) as exc:
        if args.debug or (isinstance(exc, OSError) and exc.filename is None):
            raise  # an OSError that names no file is no user's input: a bug until shown otherwise
        if isinstance(exc, KeyboardInterrupt):
            print(f"sdsuite {command}: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        text = f"{exc.filename}: {exc.strerror or exc}" if isinstance(exc, OSError) else str(exc)
        print(f"sdsuite {command}: {text}", file=sys.stderr)
        return EXIT_USAGE
