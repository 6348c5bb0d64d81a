"""The versioned results of a bench run and where they live.

`results.jsonl` is the source of truth: one complete record per finished scenario, appended and
fsynced the moment the scenario ends, so a killed run loses nothing that had finished.
`results.csv` is the flat view of the same records (one row per scenario, units in column names,
cells neutralised for spreadsheets), rebuilt from the JSONL whenever a run resumes.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from suite.capacity import probes_run
from suite.errors import UsageError
from suite.scenario import Scenario
from suite.spreadsheet import neutralise, restore

# 2: per-process repeats (`processes`), the kernel's peak RSS, the machine's noise and a stability
# verdict; records of version 1 read as one process, judged on their spread alone
SCHEMA_VERSION = 2
STATUSES = ("ok", "oom", "unsupported", "timeout", "error", "skipped")
STAGES = ("text_encode", "prepare", "denoise", "vae_decode", "watermark")
FINGERPRINT_COLUMNS = (
    "cpu",
    "cpu_cores",
    "ram_gib",
    "gpu",
    "gpu_vram_gib",
    "driver",
    "cuda",
    "compute_capability",
    "torch",
    "diffusers",
    "transformers",
    "python",
    "os",
    "suite_version",
    "git_sha",
)
COLUMNS = (
    "schema_version",
    "run_id",
    "scenario",
    "family",
    "model",
    "weights",
    "weights_source",
    "weights_hash",
    "task",
    "sampler",
    "device",
    "precision",
    "memory_mode",
    "vram_budget_gib",
    "width",
    "height",
    "steps",
    "batch",
    "guidance_scale",
    "seed",
    "status",
    "error",
    "latency_s_median",
    "latency_s_p90",
    "latency_s_min",
    "latency_s_max",
    "latency_s_mean",
    "latency_s_stdev",
    "latency_s_ci_low",
    "latency_s_ci_high",
    "repeats",
    "processes",
    "warmup",
    "it_per_s",
    "images_per_s",
    "s_per_image",
    "load_s",
    *(f"{stage}_s" for stage in STAGES),
    "first_step_s",
    "step_s_median",
    "step_s_p90",
    "step_s_min",
    "step_s_max",
    "peak_rss_mib",
    "peak_vram_allocated_mib",
    "peak_vram_reserved_mib",
    "peak_vram_device_mib",
    "peak_vram_process_mib",
    "memory_sample_hz",
    "peak_rss_method",
    "memory_sampling",
    "sampler_peak_rss_mib",
    "sampled_repeat_peak_rss_mib",
    "sampler_cpu_pct",
    "sampler_effect_pct",
    "energy_j_per_image",
    "avg_power_w",
    "unet_tflop_per_step",
    "achieved_tflops",
    "peak_tflops",
    "pct_of_peak",
    "techniques",
    "compile_s",
    "quality",
    "psnr_db",
    "capacity_search",
    "capacity_value",
    "capacity_unit",
    "capacity_probes",
    "capacity_note",
    "stability",
    "stability_reason",
    "stability_advice",
    "repeat_spread_pct",
    "process_spread_pct",
    "drift_pct",
    "others_cpu_pct",
    "steal_pct",
    "watermark_scheme",
    "images",
    "started_at",
    "duration_s",
    *FINGERPRINT_COLUMNS,
)


def summarise(values: Sequence[float]) -> dict[str, float]:
    """median / p90 / min / max / mean / stdev of repeated measurements (NaN when there are none)."""
    if not values:
        nan = math.nan
        return {"median": nan, "p90": nan, "min": nan, "max": nan, "mean": nan, "stdev": nan}
    import numpy as np

    a = np.asarray(values, dtype=float)
    return {
        "median": float(np.median(a)),
        "p90": float(np.percentile(a, 90)),
        "min": float(a.min()),
        "max": float(a.max()),
        "mean": float(a.mean()),
        "stdev": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
    }


def steady_steps(step_s: Iterable[Sequence[float]] | None) -> list[float]:
    """Every call's step times after its first, which carries the call's set-up."""
    return [t for steps in step_s or [] for t in steps[1:]]


def _median(values: Iterable[float]) -> float:
    return summarise(list(values))["median"]


def flatten(record: dict[str, Any]) -> dict[str, Any]:
    """The one flat CSV row of a record (every column present, blanks where nothing was measured)."""
    s = record["scenario"]
    weights = record.get("weights") or {}
    row: dict[str, Any] = {
        "schema_version": record["schema_version"],
        "run_id": record["run_id"],
        "scenario": s["name"],
        "family": s["family"],
        "model": s["model"],
        "weights": s["weights"],
        "weights_source": weights.get("source", ""),
        "weights_hash": weights.get("hash", ""),
        "task": s["task"],
        "sampler": s["sampler"],
        "device": record.get("device") or s["device"],
        "precision": s["precision"],
        "memory_mode": "+".join(s["memory_modes"]),
        "vram_budget_gib": s["vram_budget_gib"] or "",
        "width": s["width"],
        "height": s["height"],
        "steps": s["steps"],
        "batch": s["batch"],
        "guidance_scale": s["guidance_scale"],
        "seed": s["seed"],
        "status": record["status"],
        "error": record.get("error") or "",
        "repeats": len(record.get("latency_s") or []),
        "warmup": len(record.get("warmup_latency_s") or []),
        "load_s": record.get("load_s"),
        "techniques": Scenario.from_dict(s).techniques,
        "compile_s": record.get("compile_s"),
        "quality": (record.get("quality") or {}).get("verdict", ""),
        "psnr_db": (record.get("quality") or {}).get("psnr_db"),
        **_capacity_cells(record.get("capacity")),
        "watermark_scheme": (record.get("watermark") or {}).get("scheme", ""),
        "images": ";".join(record.get("images") or []),
        "started_at": record.get("started_at", ""),
        "duration_s": record.get("duration_s"),
    }
    latency = summarise(record.get("latency_s") or [])
    for stat, value in latency.items():
        row[f"latency_s_{stat}"] = value
    row.update(_trust_cells(record))
    batch = s["batch"]
    median_latency = latency["median"]
    row["images_per_s"] = batch / median_latency if median_latency > 0 else math.nan
    row["s_per_image"] = median_latency / batch
    stages = record.get("stages_s") or {}
    for stage in STAGES:
        row[f"{stage}_s"] = _median(stages.get(stage) or [])
    denoise = row["denoise_s"]
    steps_per_run = [len(steps) for steps in record.get("step_s") or []]
    row["it_per_s"] = steps_per_run[0] / denoise if steps_per_run and denoise > 0 else math.nan
    step = summarise(steady_steps(record.get("step_s")))
    row["first_step_s"] = _median(steps[0] for steps in record.get("step_s") or [] if steps)
    for stat in ("median", "p90", "min", "max"):
        row[f"step_s_{stat}"] = step[stat]
    for key, value in (record.get("memory") or {}).items():
        if key in COLUMNS:
            row[key] = value
    energy = record.get("energy") or {}
    row["energy_j_per_image"] = energy.get("j_per_image")
    row["avg_power_w"] = energy.get("avg_power_w")
    compute = record.get("compute") or {}
    for key in ("unet_tflop_per_step", "achieved_tflops", "peak_tflops", "pct_of_peak"):
        row[key] = compute.get(key)
    fingerprint = record.get("fingerprint") or {}
    for key in FINGERPRINT_COLUMNS:
        row[key] = fingerprint.get(key, "")
    return {c: _cell(row.get(c)) for c in COLUMNS}


class ResultsError(UsageError, ValueError):
    """A results.jsonl that holds something other than bench records; the message names the line."""


def record_problem(record: Any) -> str | None:
    """What keeps `record` from being a bench record (the fields every reader uses), or None."""
    if not isinstance(record, dict):
        return "not a JSON object"
    if record.get("status") not in STATUSES:
        return f"status {record.get('status')!r} is not one of {', '.join(STATUSES)}"
    if not isinstance(record.get("scenario"), dict) or not isinstance(record["scenario"].get("name"), str):
        return "no scenario name"
    for key in ("latency_s", "warmup_latency_s"):
        if not _numbers(record.get(key) or []):
            return f"{key} is not a list of seconds"
    steps = record.get("step_s") or []
    stages = record.get("stages_s") or {}
    if not isinstance(steps, list) or not all(_numbers(run) for run in steps):
        return "step_s is not a list of lists of seconds"
    if not isinstance(stages, dict) or not all(_numbers(times) for times in stages.values()):
        return "stages_s is not an object of lists of seconds"
    try:
        flatten(record)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _numbers(values: Any) -> bool:
    return isinstance(values, list) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def _trust_cells(record: dict[str, Any]) -> dict[str, Any]:
    """How far to trust the latency: its hierarchical-bootstrap interval and the stability verdict."""
    from suite import stability
    from suite.measure.bootstrap import median_interval

    latencies = stability.groups(record)
    cells: dict[str, Any] = {"processes": len(record.get("processes") or []) or (1 if latencies else None)}
    if sum(len(g) for g in latencies) > 1:
        cells["latency_s_ci_low"], cells["latency_s_ci_high"] = median_interval(latencies)
    verdict = stability.judge(record)
    cells.update(
        stability=verdict.stability,
        stability_reason=verdict.reason,
        stability_advice=verdict.advice,
        repeat_spread_pct=verdict.repeat_spread_pct,
        process_spread_pct=verdict.process_spread_pct,
        drift_pct=verdict.drift_pct,
        others_cpu_pct=verdict.others_cpu_pct,
        steal_pct=(record.get("system") or {}).get("steal_pct"),
        memory_sampling=record.get("memory_sampling", ""),
    )
    return cells


def _capacity_cells(capacity: dict[str, Any] | None) -> dict[str, Any]:
    if not capacity:
        return {}
    return {
        "capacity_search": capacity["search"],
        "capacity_value": capacity.get("value"),
        "capacity_unit": capacity["unit"],
        "capacity_probes": probes_run(capacity),
        "capacity_note": capacity.get("note", ""),
    }


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    return neutralise(value)


def _fsync_append(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _csv_text(rows: Iterable[dict[str, Any]], header: bool) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


class ResultsStore:
    """Append-only results of one run directory."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.jsonl = self.run_dir / "results.jsonl"
        self.csv = self.run_dir / "results.csv"
        self.images = self.run_dir / "images"

    def records(self) -> list[dict[str, Any]]:
        """Every complete record. The last line, when a kill tore it in mid-write (no newline after
        it), is dropped; anything else that is not a record is a ResultsError naming its line."""
        if not self.jsonl.exists():
            return []
        try:
            text = self.jsonl.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ResultsError(f"{self.jsonl}: not UTF-8 text (byte {exc.start}): not a bench run's results") from None
        lines = text.splitlines()
        out = []
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                if n == len(lines) and not text.endswith("\n"):
                    break  # torn by a kill while it was written
                raise ResultsError(f"{self.jsonl}:{n}: not a JSON record ({exc.msg}); remove the line") from None
            problem = record_problem(record)
            if problem:
                raise ResultsError(f"{self.jsonl}:{n}: not a bench record ({problem}); remove the line")
            out.append(record)
        return out

    def done(self) -> set[str]:
        return {r["scenario"]["name"] for r in self.records()}

    def open(self) -> None:
        """Prepare the directory; on resume, drop a torn last line and rebuild the CSV from the JSONL."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.images.mkdir(exist_ok=True)
        records = self.records()
        tmp = self.jsonl.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        os.replace(tmp, self.jsonl)
        tmp = self.csv.with_suffix(".csv.tmp")
        tmp.write_text(_csv_text(map(flatten, records), header=True), encoding="utf-8")
        os.replace(tmp, self.csv)

    def append(self, record: dict[str, Any]) -> dict[str, Any]:
        """Persist one finished scenario at once; returns its CSV row."""
        row = flatten(record)
        _fsync_append(self.jsonl, json.dumps(record) + "\n")
        _fsync_append(self.csv, _csv_text([row], header=False))
        return row


def load(run_dir: str | Path):
    """results.csv of a run as a pandas DataFrame, spreadsheet guards undone."""
    import pandas as pd

    df = pd.read_csv(Path(run_dir) / "results.csv", keep_default_na=True)
    for column in df.columns:
        if not pd.api.types.is_numeric_dtype(df[column]) and not pd.api.types.is_bool_dtype(df[column]):
            df[column] = df[column].map(restore)
    return df


def load_records(run_dir: str | Path) -> list[dict[str, Any]]:
    """The full records of a run (per-step times and all), as written to results.jsonl."""
    return ResultsStore(run_dir).records()


def load_environment(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / "environment.json"
    if not path.exists():
        return {}
    try:
        environment = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultsError(f"{path}: not the JSON a bench run writes ({exc}); remove it or the run") from None
    problem = environment_problem(environment)
    if problem:
        raise ResultsError(f"{path}: not what a bench run writes ({problem}); remove it or the run")
    return environment


def environment_problem(environment: Any) -> str | None:
    """What keeps `environment` from being a run's environment.json (the fields readers use), or None."""
    if not isinstance(environment, dict):
        return "not a JSON object"
    if not isinstance(environment.get("fingerprint") or {}, dict):
        return "fingerprint is not an object"
    peaks = environment.get("peak_tflops") or {}
    if not isinstance(peaks, dict) or not all(isinstance(v, int | float | None) for v in peaks.values()):
        return "peak_tflops is not an object of numbers"
    for key in ("run_id", "profile", "started_at"):
        if not isinstance(environment.get(key, ""), str):
            return f"{key} is not text"
    if not isinstance(environment.get("datasheet_tflops_fp16") or 0, int | float):
        return "datasheet_tflops_fp16 is not a number"
    return None
