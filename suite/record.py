"""One bench record, typed: what a line of results.jsonl holds, and its row of results.csv.

- `Record.from_json` reads every schema version: version 2 only added keys (per-process repeats,
  the machine's noise), so a version 1 record reads as one process with no noise measured.
- `to_json` writes the keys in the order they were read, so a record read and written back is
  the line it was read from; the keys this schema does not name are kept as they came.
- The statistics (medians, per-image latency, it/s, the CSV row) are computed once per record.
- Nothing here imports torch or the worker: the report reads the records through this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from suite.scenario import Scenario
from suite.spreadsheet import neutralise

if TYPE_CHECKING:
    from suite.stability import Verdict

# 2: per-process repeats (`processes`), the kernel's peak RSS, the machine's noise and a stability
# verdict; records of version 1 read as one process, judged on their spread alone
SCHEMA_VERSION = 2
STATUSES = ("ok", "oom", "unsupported", "timeout", "error", "skipped")
STAGES = ("text_encode", "prepare", "denoise", "vae_decode", "watermark")
# Below this PSNR against the plain run of the same seed, a faster configuration counts as broken.
# Measured here: an unrelated image (another seed) scores 11-13 dB; the same image computed in
# bf16 scores 19.8 dB on the tiny models and 22 dB on full-size synthetic ones, whose random
# weights make the trajectory more chaotic than real weights do. Between the two lies 15 dB.
QUALITY_MIN_PSNR_DB = 15.0
# the machine's fingerprint: CSV column and the report's label for it
FINGERPRINT = (
    ("cpu", "CPU"),
    ("cpu_cores", "cores"),
    ("ram_gib", "RAM, GiB"),
    ("gpu", "GPU"),
    ("gpu_vram_gib", "VRAM, GiB"),
    ("driver", "driver"),
    ("cuda", "CUDA"),
    ("compute_capability", "compute capability"),
    ("torch", "torch"),
    ("diffusers", "diffusers"),
    ("transformers", "transformers"),
    ("python", "Python"),
    ("os", "OS"),
    ("suite_version", "sdsuite"),
    ("git_sha", "git"),
)
FINGERPRINT_COLUMNS = tuple(column for column, _ in FINGERPRINT)
MEMORY_COLUMNS = (
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
)
COMPUTE_COLUMNS = ("unet_tflop_per_step", "achieved_tflops", "peak_tflops", "pct_of_peak")
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
    *MEMORY_COLUMNS,
    "energy_j_per_image",
    "avg_power_w",
    *COMPUTE_COLUMNS,
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


def probes_run(capacity: Mapping[str, Any]) -> int:
    """How many probes a search's outcomes took (those the ledger implied took none)."""
    return sum("implied_by" not in p for p in capacity.get("probes") or [])


def _median(values: Iterable[float]) -> float:
    return summarise(list(values))["median"]


def _seconds(values: Any) -> tuple[float, ...]:
    return tuple(values or ())


def _plain(value: Any) -> Any:
    """JSON's own types again: lists for tuples, objects for typed parts."""
    if isinstance(value, _Json):
        return value.to_json()
    if isinstance(value, Scenario):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@dataclass(frozen=True, kw_only=True)
class _Json:
    """A JSON object with the keys this schema names typed; it is written back as it was read."""

    keys: tuple[str, ...] = field(default=(), repr=False, compare=False)  # the keys, in the order read
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)  # keys the schema does not name
    # how a named key's JSON value becomes the field's value (others are taken as they are)
    READERS: ClassVar[Mapping[str, Callable[[Any], Any]]] = {}

    @classmethod
    def from_json(cls: type[_J], data: Mapping[str, Any]) -> _J:
        return cls(**cls._values(data), keys=tuple(data))

    @classmethod
    def _values(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        """The fields' values from `data`, and the keys no field names as `extra`."""
        named = {f.name for f in fields(cls)} - {"keys", "extra"}
        for f in fields(cls):
            if f.default is MISSING and f.default_factory is MISSING and f.name not in data:
                raise KeyError(f.name)
        values = {k: cls.READERS.get(k, _same)(v) for k, v in data.items() if k in named}
        return {**values, "extra": {k: v for k, v in data.items() if k not in named}}

    def to_json(self) -> dict[str, Any]:
        return {k: self.extra[k] if k in self.extra else _plain(getattr(self, k)) for k in self.keys}


_J = TypeVar("_J", bound=_Json)


def _same(value: Any) -> Any:
    return value


def _part(cls: type[_Json]) -> Callable[[Any], Any]:
    """Reads an object into `cls`; anything else (null) stays as it is."""
    return lambda value: cls.from_json(value) if isinstance(value, Mapping) else value


@dataclass(frozen=True, kw_only=True)
class Memory(_Json):
    """Peaks of the timed repeats: the kernel's RSS, torch's VRAM and what the side sampler saw."""

    peak_rss_mib: float | None = None
    peak_rss_method: str | None = None
    peak_vram_allocated_mib: float | None = None
    peak_vram_reserved_mib: float | None = None

    def cells(self) -> dict[str, Any]:
        """The CSV cells: every reading whose name is a column."""
        return {k: v for k, v in self.to_json().items() if k in MEMORY_COLUMNS}


@dataclass(frozen=True, kw_only=True)
class Energy(_Json):
    """NVML's energy counter over the repeats."""

    per_repeat_j: tuple[float, ...] = ()
    j_per_image: float | None = None
    avg_power_w: float | None = None
    READERS: ClassVar[Mapping[str, Callable[[Any], Any]]] = {"per_repeat_j": _seconds}


@dataclass(frozen=True, kw_only=True)
class Compute(_Json):
    """UNet TFLOP per step and what the median step achieved of the measured peak."""

    unet_tflop_per_step: float | None = None
    achieved_tflops: float | None = None
    peak_tflops: float | None = None
    pct_of_peak: float | None = None


@dataclass(frozen=True, kw_only=True)
class Capacity(_Json):
    """A capacity search's answer and the probes that found it."""

    search: str = ""
    unit: str = ""
    value: float | None = None
    note: str | None = None
    probes: tuple[Mapping[str, Any], ...] = ()
    probe_servers: int | None = None
    READERS: ClassVar[Mapping[str, Callable[[Any], Any]]] = {"probes": _seconds}

    @property
    def probes_run(self) -> int:
        return probes_run({"probes": self.probes})


@dataclass(frozen=True, kw_only=True)
class Quality(_Json):
    """Is the output still an image: the verdict, and the PSNR against a reference when one is named."""

    verdict: str = ""
    psnr_db: float | None = None
    reference: str | None = None


@dataclass(frozen=True)
class Timings:
    """What the repeats measured: latencies, stage and step times (the statistics of them, once)."""

    latency_s: tuple[float, ...] = ()
    warmup_latency_s: tuple[float, ...] = ()
    stages_s: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    step_s: tuple[tuple[float, ...], ...] = ()
    load_s: float | None = None
    compile_s: float | None = None

    @cached_property
    def latency(self) -> dict[str, float]:
        return summarise(self.latency_s)

    @cached_property
    def steps(self) -> dict[str, float]:
        """Statistics of the steady steps (each call's first left out)."""
        return summarise(steady_steps(self.step_s))

    @cached_property
    def first_step_s(self) -> float:
        return _median(steps[0] for steps in self.step_s if steps)

    def stage_s(self, stage: str) -> float:
        """The stage's median seconds over the repeats (NaN when it was not measured)."""
        return _median(self.stages_s.get(stage) or [])

    @property
    def it_per_s(self) -> float:
        """UNet evaluations per second of the denoising stage."""
        denoise = self.stage_s("denoise")
        return len(self.step_s[0]) / denoise if self.step_s and denoise > 0 else math.nan


TIMING_KEYS = tuple(f.name for f in fields(Timings))
_TIMING_READERS: Mapping[str, Callable[[Any], Any]] = {
    "latency_s": _seconds,
    "warmup_latency_s": _seconds,
    "stages_s": lambda stages: {k: _seconds(v) for k, v in (stages or {}).items()},
    "step_s": lambda runs: tuple(_seconds(r) for r in runs or ()),
}


@dataclass(frozen=True, kw_only=True)
class Record(_Json):
    """One scenario's outcome: what ran, how it ended, what was measured, on which machine."""

    schema_version: int
    run_id: str
    scenario: Scenario
    status: str = "error"
    error: str | None = None
    device: str | None = None
    timings: Timings = field(default_factory=Timings)
    memory: Memory | None = None
    energy: Energy | None = None
    compute: Compute | None = None
    capacity: Capacity | None = None
    quality: Quality | None = None
    weights: Mapping[str, Any] | None = None
    watermark: Mapping[str, Any] | None = None
    system: Mapping[str, Any] | None = None
    processes: tuple[Mapping[str, Any], ...] = ()
    images: tuple[str, ...] = ()
    memory_sampling: str | None = None
    started_at: str | None = None
    duration_s: float | None = None
    fingerprint: Mapping[str, Any] | None = None
    READERS: ClassVar[Mapping[str, Callable[[Any], Any]]] = {
        "scenario": Scenario.from_dict,
        "memory": _part(Memory),
        "energy": _part(Energy),
        "compute": _part(Compute),
        "capacity": _part(Capacity),
        "quality": _part(Quality),
        "processes": _seconds,
        "images": _seconds,
    }

    @classmethod
    def _values(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        """As for any part, but the timing keys, which lie beside the rest in the JSON, make `timings`."""
        timings = Timings(**{k: _TIMING_READERS.get(k, _same)(data[k]) for k in TIMING_KEYS if k in data})
        return {**super()._values({k: v for k, v in data.items() if k not in TIMING_KEYS}), "timings": timings}

    def to_json(self) -> dict[str, Any]:
        def value(key: str) -> Any:
            if key in self.extra:
                return self.extra[key]
            return _plain(getattr(self.timings if key in TIMING_KEYS else self, key))

        return {key: value(key) for key in self.keys}

    @property
    def name(self) -> str:
        return self.scenario.name

    @property
    def measured(self) -> bool:
        """Ended ok with timed repeats: what the charts and comparisons draw."""
        return self.status == "ok" and bool(self.timings.latency_s)

    def per_image_s(self) -> float:
        """Median seconds per image (a batch's call divided by its batch)."""
        return self.timings.latency["median"] / self.scenario.batch

    def per_image_groups(self) -> list[list[float]]:
        """Measured seconds per image, per worker process."""
        return [[t / self.scenario.batch for t in group] for group in self.latency_groups()]

    def latency_groups(self) -> list[list[float]]:
        """The latencies per process (one group for a record from before processes were kept)."""
        from suite import stability

        return stability.groups(self._json)

    @cached_property
    def verdict(self) -> Verdict:
        """The stability verdict (suite.stability) of this record."""
        from suite import stability

        return stability.judge(self._json)

    @cached_property
    def _json(self) -> dict[str, Any]:
        return self.to_json()

    def row(self) -> dict[str, Any]:
        """The one flat CSV row (every column present, blanks where nothing was measured); a shared dict."""
        return self._row

    @cached_property
    def _row(self) -> dict[str, Any]:
        scenario, timings = self.scenario, self.timings
        latency = timings.latency
        row: dict[str, Any] = {
            "schema_version": self.schema_version,
            "run_id": self.run_id,
            "scenario": scenario.name,
            "family": scenario.family,
            "model": scenario.model,
            "weights": scenario.weights,
            "weights_source": (self.weights or {}).get("source", ""),
            "weights_hash": (self.weights or {}).get("hash", ""),
            "task": scenario.task,
            "sampler": scenario.sampler,
            "device": self.device or scenario.device,
            "precision": scenario.precision,
            "memory_mode": scenario.memory_mode,
            "vram_budget_gib": scenario.vram_budget_gib or "",
            "width": scenario.width,
            "height": scenario.height,
            "steps": scenario.steps,
            "batch": scenario.batch,
            "guidance_scale": scenario.guidance_scale,
            "seed": scenario.seed,
            "status": self.status,
            "error": self.error or "",
            "repeats": len(timings.latency_s),
            "warmup": len(timings.warmup_latency_s),
            "load_s": timings.load_s,
            "techniques": scenario.techniques,
            "compile_s": timings.compile_s,
            "quality": self.quality.verdict if self.quality else "",
            "psnr_db": self.quality.psnr_db if self.quality else None,
            **self._capacity_cells(),
            "watermark_scheme": (self.watermark or {}).get("scheme", ""),
            "images": ";".join(self.images),
            "started_at": self.started_at or "",
            "duration_s": self.duration_s,
            **{f"latency_s_{stat}": value for stat, value in latency.items()},
            **self._trust_cells(),
            "images_per_s": scenario.batch / latency["median"] if latency["median"] > 0 else math.nan,
            "s_per_image": self.per_image_s(),
            **{f"{stage}_s": timings.stage_s(stage) for stage in STAGES},
            "it_per_s": timings.it_per_s,
            "first_step_s": timings.first_step_s,
            **{f"step_s_{stat}": timings.steps[stat] for stat in ("median", "p90", "min", "max")},
            **(self.memory.cells() if self.memory else {}),
            "energy_j_per_image": self.energy.j_per_image if self.energy else None,
            "avg_power_w": self.energy.avg_power_w if self.energy else None,
            **{k: getattr(self.compute, k) if self.compute else None for k in COMPUTE_COLUMNS},
            **{k: (self.fingerprint or {}).get(k, "") for k in FINGERPRINT_COLUMNS},
        }
        return {c: _cell(row.get(c)) for c in COLUMNS}

    def _capacity_cells(self) -> dict[str, Any]:
        search = self.capacity
        if not search:
            return {}
        return {
            "capacity_search": search.search,
            "capacity_value": search.value,
            "capacity_unit": search.unit,
            "capacity_probes": search.probes_run,
            "capacity_note": search.note or "",
        }

    def _trust_cells(self) -> dict[str, Any]:
        """How far to trust the latency: its hierarchical-bootstrap interval and the stability verdict."""
        from suite.measure.bootstrap import median_interval

        groups = self.latency_groups()
        cells: dict[str, Any] = {"processes": len(self.processes) or (1 if groups else None)}
        if sum(len(g) for g in groups) > 1:
            cells["latency_s_ci_low"], cells["latency_s_ci_high"] = median_interval(groups)
        verdict = self.verdict
        cells.update(
            stability=verdict.stability,
            stability_reason=verdict.reason,
            stability_advice=verdict.advice,
            repeat_spread_pct=verdict.repeat_spread_pct,
            process_spread_pct=verdict.process_spread_pct,
            drift_pct=verdict.drift_pct,
            others_cpu_pct=verdict.others_cpu_pct,
            steal_pct=(self.system or {}).get("steal_pct"),
            memory_sampling=self.memory_sampling or "",
        )
        return cells


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    return neutralise(value)
