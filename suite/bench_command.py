"""`sdsuite bench`: run a scenario file (or a named profile) on this machine and write its results."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from suite.errors import EXIT_FAILURES, EXIT_OK, UsageError

DEFAULT_REPORTS = Path("reports")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from suite.runner import MAX_PROBE_SERVERS
    from suite.scenario import profiles

    parser.description = (
        "Run every scenario of SCENARIO_FILE in its own worker process and write results.csv, "
        "results.jsonl, environment.json and images/ to the run directory."
    )
    parser.epilog = (
        "exit codes: 0 every scenario ran (ok, oom, unsupported, timeout and skipped are outcomes); "
        "1 at least one scenario ended in error; 2 usage or input error; 130 interrupted"
    )
    parser.add_argument(
        "scenarios",
        nargs="?",
        default="auto",
        metavar="SCENARIO_FILE",
        help=f"a .toml file, or a profile name: {', '.join(profiles())}; "
        "auto (default) = reference where CUDA is present, quick otherwise",
    )
    parser.add_argument("--out", type=Path, help="run directory (default: reports/<date>-<time>-<profile>)")
    parser.add_argument(
        "--weights",
        help="override every scenario's weights: synthetic, tiny, a diffusers folder, a .safetensors/.ckpt file, or a hub id",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue a run: the --out directory, or else the latest run of this profile; finished scenarios are kept",
    )
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these scenarios (names or families)")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--repeats", type=_at_least(1), help="override the measured repeats of every scenario")
    parser.add_argument("--warmup", type=_at_least(0), help="override the warm-up runs of every scenario")
    parser.add_argument(
        "--processes",
        type=_at_least(1),
        help="override the fresh worker processes of every timed scenario (each warms up and times --repeats)",
    )
    parser.add_argument(
        "--timeout", type=_positive_seconds, help="seconds allowed per scenario (default: each scenario's own)"
    )
    parser.add_argument(
        "--threads", type=_at_least(1), help="torch CPU threads in the workers (default: torch's choice)"
    )
    parser.add_argument(
        "--probe-servers",
        type=_at_least(1),
        metavar="N",
        help="capacity searches of different configurations side by side on one GPU, each in its own worker "
        "under its own budget (default: as many as the card's free memory holds at the largest budget, up to "
        f"{MAX_PROBE_SERVERS}, where the driver reports each process's memory; else 1)",
    )


def _at_least(low: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least `low` (the option's own error, not the TOML's)."""

    def whole(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    return whole


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _auto_profile() -> str:
    import torch

    return "reference" if torch.cuda.is_available() else "quick"


def _latest_run(reports: Path, profile: str) -> Path | None:
    candidates = []
    for env_file in reports.glob("*/environment.json"):
        try:
            if json.loads(env_file.read_text()).get("profile") == profile:
                candidates.append(env_file.parent)
        except (OSError, json.JSONDecodeError):
            continue
    return max(candidates, key=lambda p: p.stat().st_mtime, default=None)


def _select(scenarios: list, only: list[str] | None) -> list:
    if not only:
        return scenarios
    wanted = set(only)
    chosen = [s for s in scenarios if s.name in wanted or s.family in wanted]
    unknown = wanted - {s.name for s in chosen} - {s.family for s in chosen}
    if unknown:
        raise UsageError(f"--only: no scenario or family named {', '.join(sorted(unknown))} (--list shows them)")
    return chosen


def _matching_weights(scenarios: list, weights: str) -> list:
    """The scenarios that `--weights` can serve: a file or folder holds one architecture, and
    running the others on it would only produce a row of errors each."""
    path = Path(weights).expanduser()
    if not (path.exists() or path.suffix in (".safetensors", ".ckpt")):  # synthetic, tiny, a hub id
        return scenarios
    from suite.models.sources import architecture_of

    model = architecture_of(weights)
    if model is None:
        return scenarios
    kept = [s for s in scenarios if s.model == model]
    left_out = [s.name for s in scenarios if s.model != model]
    if not kept:
        raise UsageError(f"{weights} holds an {model} model, and no scenario here uses {model}")
    if left_out:
        print(
            f"sdsuite bench: {weights} holds an {model} model: leaving out the {len(left_out)} scenario(s) "
            f"of other models ({', '.join(left_out)})",
            file=sys.stderr,
        )
    return kept


def _check_runnable(scenarios: list) -> None:
    """What would only fail once the machine is measured, refused now: an unknown sampler, weights
    that are neither built in, a file or folder here, nor a hub id."""
    from suite.models.checkpoints import SINGLE_FILE_SUFFIXES
    from suite.models.hub import LOCAL, is_hub_id
    from suite.pipelines import SAMPLERS

    for s in scenarios:
        if s.sampler not in SAMPLERS:
            import diffusers

            if not (s.sampler.endswith("Scheduler") and hasattr(diffusers, s.sampler)):
                raise UsageError(
                    f"scenario {s.name!r}: unknown sampler {s.sampler!r}: use one of {', '.join(SAMPLERS)} "
                    "or a diffusers scheduler class name"
                )
        path = Path(s.weights).expanduser()
        local = s.weights in LOCAL or path.exists()
        if not local and (path.suffix in SINGLE_FILE_SUFFIXES or not is_hub_id(s.weights)):
            raise UsageError(
                f"scenario {s.name!r}: weights {s.weights}: no such file or folder, and not a hub id; "
                "use synthetic, tiny, a diffusers folder, a .safetensors/.ckpt file, or org/name"
            )


def _describe(s) -> str:
    size = f"{s.width}x{s.height}"
    text = f"{s.model} {s.task} {size} {s.steps} steps x{s.batch} {s.device} {s.precision} {s.memory_mode}"
    if s.techniques != "eager":
        text += f" {s.techniques}"
    if s.search:
        text += f" search {s.search}" + (f" under {s.vram_budget_gib:g} GiB" if s.vram_budget_gib else "")
    elif s.vram_budget_gib:
        text += f" budget {s.vram_budget_gib:g} GiB"
    if s.processes > 1:
        text += f" in {s.processes} processes"
    return f"{text} [{s.weights}]"


class Console:
    """Progress on stderr: live lines on a terminal, sparse lines in a log. Where scenarios run side by
    side (`named`), every line names its scenario and none is rewritten in place."""

    def __init__(self, stream: TextIO | None = None, named: bool = False):
        self.stream = sys.stderr if stream is None else stream  # looked up now: sys.stderr may have been replaced
        self.named = named
        self.live = self.stream.isatty() and not named
        self.t0 = time.monotonic()

    def _whose(self, s) -> str:
        return f"{s.name}: " if self.named else ""

    def _elapsed(self) -> str:
        m, s = divmod(int(time.monotonic() - self.t0), 60)
        return f"{m:3d}:{s:02d}"

    def start(self, index: int, total: int, s) -> None:
        print(f"{self._elapsed()} [{index}/{total}] {s.name}: {_describe(s)}", file=self.stream, flush=True)

    def event(self, s, e: dict[str, Any]) -> None:
        phase = e.get("phase")
        text = phase if "run" not in e else f"{phase} {e['run']}/{e['runs']}"
        if "process" in e:
            text = f"process {e['process']}/{e['processes']} {text}"
        if "step" in e:
            text += f" step {e['step']}/{e['steps']}"
        if self.live:
            print(f"\r{self._elapsed()}     {text:<40}", end="", file=self.stream, flush=True)
        elif "step" not in e:
            print(f"{self._elapsed()}     {self._whose(s)}{text}", file=self.stream, flush=True)

    def done(self, s, record: dict[str, Any]) -> None:
        from suite.results import flatten

        row = flatten(record)
        if self.live:
            print("\r" + " " * 60 + "\r", end="", file=self.stream)
        if record["status"] == "ok":
            rss = row["peak_rss_mib"]
            vram = row["peak_vram_allocated_mib"]
            detail = f"{row['s_per_image']:.3g} s/image, {row['it_per_s']:.3g} it/s, peak RSS {rss:.0f} MiB"
            if vram != "":
                detail += f", peak VRAM {vram:.0f} MiB"
        else:
            detail = record.get("error", "")
        print(f"{self._elapsed()}     {self._whose(s)}{record['status']}: {detail}", file=self.stream, flush=True)


SUMMARY_COLUMNS = {  # row field -> (heading, number format or None for text)
    "scenario": ("scenario", None),
    "status": ("status", None),
    "device": ("device", None),
    "precision": ("prec", None),
    "memory_mode": ("memory", None),
    "stability": ("stability", None),
    "s_per_image": ("s/image", "{:.3g}"),
    "it_per_s": ("it/s", "{:.3g}"),
    "step_s_median": ("step s", "{:.3g}"),
    "peak_rss_mib": ("RSS MiB", "{:,.0f}"),
    "peak_vram_allocated_mib": ("VRAM MiB", "{:,.0f}"),
    "capacity_value": ("found", "{:g}"),
    "techniques": ("techniques", None),
    "quality": ("quality", None),
    "error": ("reason", None),
}
CELL_WIDTH = 70  # longer text is cut in the table, and the reasons are printed in full below it
# cells that say nothing worth a column: the default technique, an image that passed its check
SUMMARY_QUIET = {"techniques": "eager", "quality": "ok"}


def summary_table(rows: list[dict[str, Any]]) -> str:
    """Plain-text table of the run: numbers right-aligned, text left, columns empty in every row left out."""
    from suite.spreadsheet import restore

    def cell(value: Any, number: str | None) -> str:
        if value is None or value == "" or (isinstance(value, float) and value != value):
            return ""
        if number is not None and isinstance(value, int | float):
            return number.format(value)
        return " ".join(str(restore(value)).split())[:CELL_WIDTH]

    columns = []
    for key, (heading, number) in SUMMARY_COLUMNS.items():
        cells = [cell(row.get(key) if row.get(key) != SUMMARY_QUIET.get(key) else "", number) for row in rows]
        if any(cells):
            width = max(len(heading), *(len(c) for c in cells))
            align = str.rjust if number else str.ljust
            columns.append([align(heading, width), *(align(c, width) for c in cells)])
    return "\n".join("  ".join(line).rstrip() for line in zip(*columns, strict=True))


def full_reasons(rows: list[dict[str, Any]]) -> str:
    """The reasons the table had to cut, in full, one scenario per line."""
    from suite.spreadsheet import restore

    cut = [row for row in rows if len(" ".join(str(restore(row["error"])).split())) > CELL_WIDTH]
    return "".join(f"\n{row['scenario']}: {restore(row['error'])}" for row in cut)


def stability_notes(rows: list[dict[str, Any]]) -> str:
    """Why each unstable scenario is unstable and what would help, one scenario per line."""
    from suite.spreadsheet import restore

    return "".join(
        f"\n{row['scenario']}: {restore(row['stability_reason'])}; {restore(row['stability_advice'])}"
        for row in rows
        if row["stability"] == "unstable"
    )


def _probe_servers(asked: int | None, environment: dict[str, Any], todo: list) -> int:
    """The probe servers to run side by side: what was asked, if this card allows it, else what fits."""
    from suite.runner import probe_servers_that_fit

    if asked == 1 or not any(s.search for s in todo):
        return 1
    if asked and not environment.get("gpu_process_memory"):
        print(
            "sdsuite bench: --probe-servers: no GPU here whose driver reports each process's memory, which "
            "budgets side by side need; probing one configuration at a time",
            file=sys.stderr,
        )
        return 1
    servers = asked or probe_servers_that_fit(environment, todo)
    if servers > 1:
        print(f"sdsuite bench: capacity searches of {servers} configurations side by side", file=sys.stderr)
    return servers


def run(args: argparse.Namespace) -> int:
    from suite import results, scenario
    from suite.models.errors import WeightsError
    from suite.models.hub import offline_unless_hub
    from suite.runner import Runner, measure_machine

    profile_arg = _auto_profile() if args.scenarios == "auto" else args.scenarios
    try:
        path = scenario.resolve_profile(profile_arg)
        overrides: dict[str, Any] = {}
        if args.weights:
            overrides["weights"] = args.weights
        if args.repeats is not None:
            overrides["repeats"] = args.repeats
        if args.warmup is not None:
            overrides["warmup"] = args.warmup
        scenarios = _select(scenario.load(path, overrides), args.only)
        if args.processes is not None:  # a capacity search is not timed: it keeps its one prober
            if args.processes > scenario.MAX_COUNT["processes"]:
                raise UsageError(f"--processes {args.processes}: at most {scenario.MAX_COUNT['processes']:,}")
            scenarios = [s if s.search else dataclasses.replace(s, processes=args.processes) for s in scenarios]
        # before anything imports diffusers: huggingface_hub reads HF_HUB_OFFLINE at import
        offline_unless_hub(s.weights for s in scenarios)
        if args.weights:
            scenarios = _matching_weights(scenarios, args.weights)
        _check_runnable(scenarios)
    except (scenario.ScenarioError, WeightsError) as exc:
        raise UsageError(str(exc)) from exc
    profile = path.stem
    if args.list:
        for s in scenarios:
            print(f"{s.name:40s} {_describe(s)}")
        return 0

    run_dir = args.out
    if args.resume and run_dir is None:
        run_dir = _latest_run(DEFAULT_REPORTS, profile)
        if run_dir is None:
            print(
                f"sdsuite bench: --resume: no earlier run of profile {profile!r} under {DEFAULT_REPORTS}/",
                file=sys.stderr,
            )
            return 2
    if run_dir is None:
        run_dir = DEFAULT_REPORTS / f"{time.strftime('%Y%m%d-%H%M%S')}-{profile}"
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"--out {run_dir}: is a file; name a run directory (new, or one to --resume)")
    if (run_dir / "results.jsonl").exists() and not args.resume:
        raise UsageError(f"{run_dir} already holds results; use --resume to continue it or another --out")
    if args.resume and not (run_dir / "environment.json").exists():
        raise UsageError(f"--resume: {run_dir} holds no earlier run to continue; leave out --resume to start one")
    run_dir.mkdir(parents=True, exist_ok=True)

    env_path = run_dir / "environment.json"
    if env_path.exists():
        environment = results.load_environment(run_dir)
        environment.setdefault("resumed_at", []).append(time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    else:
        print(f"sdsuite bench: measuring this machine (fingerprint, peak matmul rate) for {run_dir}", file=sys.stderr)
        environment = {
            "schema_version": results.SCHEMA_VERSION,
            "run_id": run_dir.name,
            "profile": profile,
            "scenario_file": str(path),
            "scenario_file_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "argv": sys.argv,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **measure_machine(run_dir),
        }
    env_path.write_text(json.dumps(environment, indent=1))

    done = results.ResultsStore(run_dir).done()
    todo = [s for s in scenarios if s.name not in done]
    print(f"sdsuite bench: {profile}: {len(todo)} of {len(scenarios)} scenario(s) to run -> {run_dir}", file=sys.stderr)
    servers = _probe_servers(args.probe_servers, environment, todo)
    console = Console(named=servers > 1)
    runner = Runner(
        run_dir,
        environment,
        on_start=console.start,
        on_event=console.event,
        on_done=console.done,
        timeout_s=args.timeout,
        threads=args.threads,
        probe_servers=servers,
    )
    runner.run(scenarios)
    wanted = {s.name for s in scenarios}
    rows = [r.row() for r in results.ResultsStore(run_dir).typed_records() if r.name in wanted]
    print(summary_table(rows))
    reasons = full_reasons(rows)
    if reasons:
        print(f"\nreasons in full:{reasons}")
    unstable = stability_notes(rows)
    if unstable:
        print(f"\nunstable (the numbers may not repeat):{unstable}")
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    print(f"\n{len(rows)} scenario(s): " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    print(f"results: {run_dir / 'results.csv'}  (full detail: results.jsonl, machine: environment.json)")
    return EXIT_FAILURES if counts.get("error") else EXIT_OK
