"""What to run: scenario files (TOML) parsed into validated, fully expanded `Scenario` objects.

A file has an optional `[defaults]` table and `[[scenario]]` entries. An entry may carry a
`[scenario.matrix]` table whose lists expand into one scenario per combination, so one entry can
say "these memory modes x these precisions". `size = N` sets width and height at once. Errors
name the file, the line and the field.
"""

from __future__ import annotations

import itertools
import re
import sys
from dataclasses import Field, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, get_origin, get_type_hints

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

MODELS = ("sd-v1", "sd-v2.1", "sd-x4-upscaler")
TASKS = ("txt2img", "img2img", "upscale")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("fp32", "fp16", "bf16")
MEMORY_MODES = (
    "none",
    "attention-slicing",
    "vae-slicing",
    "vae-tiling",
    "model-offload",
    "sequential-offload",
)
OFFLOAD_MODES = ("model-offload", "sequential-offload")
WATERMARKS = ("auto", "none", "sd-v1", "sd-v2", "sdxl")
SDPA_BACKENDS = ("default", "math", "flash", "efficient", "cudnn")
COMPILE_MODES = ("", "default", "reduce-overhead", "max-autotune-no-cudagraphs", "max-autotune")
COMPILE_TARGETS = ("unet", "vae")
# What a scenario may need beyond its device: it is `skipped`, with the reason, where it is absent.
REQUIREMENTS = ("cpu-bf16", "no-accelerator")
# Capacity searches: the value searched for, each probe a short generation under the VRAM budget.
SEARCHES = ("", "max-batch", "max-resolution", "min-budget")
# checked: one worker serves a configuration's probes and is replaced when one leaves memory
# behind (suite/probe_worker.py); process: a fresh worker for every probe, slower, to compare
PROBE_ISOLATIONS = ("checked", "process")
# When the polling memory sampler runs (the kernel's peak RSS is always taken, at no cost):
# during the timed repeats, in one extra repeat of its own, not at all, or auto = during where
# the machine has a core the work does not use, else a repeat of its own (suite/worker.py)
MEMORY_SAMPLINGS = ("auto", "during", "separate", "off")

# Bounds past which a scenario is a typo, refused before the machine is measured (`size = 100000`)
MAX_SIDE = 16384
MAX_COUNT = {"steps": 10_000, "batch": 1024, "repeats": 10_000, "processes": 1000}

SCENARIOS_DIR = Path(__file__).resolve().parent.parent / "scenarios"


class ScenarioError(ValueError):
    """A scenario file that cannot be run as written; the message says where and why."""


# field metadata: `label`, it changes nothing that is computed; `toml`, the types a file may give it
_LABEL = {"label": True}


@dataclass(frozen=True)
class Scenario:
    name: str = field(metadata=_LABEL)
    model: str
    task: str = "txt2img"
    family: str = field(default="", metadata=_LABEL)
    sampler: str = "pndm"
    width: int = 512
    height: int = 512
    steps: int = 50
    batch: int = 1
    device: str = "auto"
    precision: str = "fp32"
    memory_modes: tuple[str, ...] = field(default=("none",), metadata={"toml": (list, str)})
    weights: str = "synthetic"
    watermark: str = "auto"
    prompt: str = "a brush-wielding hamster, oil painting"
    negative_prompt: str = ""
    guidance_scale: float = 7.5
    strength: float = 0.8
    noise_level: int = 20
    init_image: str = ""
    seed: int = 0
    repeats: int = 3
    warmup: int = 1
    # fresh worker processes, each loading, warming up and timing `repeats`: what differs from one
    # process to the next (memory layout, thread placement) is only seen across processes
    processes: int = 1
    memory_sampling: str = "auto"
    timeout_s: float = field(default=3600.0, metadata=_LABEL)
    vram_budget_gib: float = 0.0
    description: str = field(default="", metadata=_LABEL)
    tags: tuple[str, ...] = field(default_factory=tuple, metadata=_LABEL)
    # speed techniques (the `fast` profile); all off by default, each recorded with the result
    channels_last: bool = False
    fuse_qkv: bool = False
    sdpa_backend: str = "default"
    # cuDNN times its convolution algorithms on first use of each shape and keeps the fastest
    cudnn_benchmark: bool = False
    compile: str = ""
    compile_targets: tuple[str, ...] = COMPILE_TARGETS
    # inductor's freezing: weights folded in as constants and prepacked for oneDNN (CPU inference)
    compile_freeze: bool = False
    threads: int = 0
    # seconds the first call (where torch.compile compiles) may take before the worker is stopped
    compile_timeout_s: float = 900.0
    requires: tuple[str, ...] = field(default_factory=tuple)
    # a capacity search instead of a timed run; search_max bounds it (batch, pixels, or GiB)
    search: str = ""
    search_max: float = 0.0
    probe_isolation: str = "checked"
    # another scenario of the same file whose first image is the reference for a quality check
    quality_reference: str = field(default="", metadata=_LABEL)

    @property
    def techniques(self) -> str:
        """The speed techniques in use, as one label ('eager' when none)."""
        parts = []
        if self.channels_last:
            parts.append("channels-last")
        if self.fuse_qkv:
            parts.append("fused-qkv")
        if self.sdpa_backend != "default":
            parts.append(f"sdpa-{self.sdpa_backend}")
        if self.cudnn_benchmark:
            parts.append("cudnn-benchmark")
        if self.compile:
            freeze = "+freeze" if self.compile_freeze else ""
            parts.append(f"compile-{self.compile}{freeze}({'+'.join(self.compile_targets)})")
        if self.threads:
            parts.append(f"threads-{self.threads}")
        return "+".join(parts) or "eager"

    @property
    def memory_mode(self) -> str:
        """The memory modes as one label, e.g. `attention-slicing+model-offload`."""
        return "+".join(self.memory_modes)

    @property
    def offloads(self) -> bool:
        return any(m in OFFLOAD_MODES for m in self.memory_modes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["memory_modes"] = list(self.memory_modes)
        d["tags"] = list(self.tags)
        d["compile_targets"] = list(self.compile_targets)
        d["requires"] = list(self.requires)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scenario:
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        data["memory_modes"] = tuple(data.get("memory_modes", ("none",)))
        data["tags"] = tuple(data.get("tags", ()))
        data["compile_targets"] = tuple(data.get("compile_targets", COMPILE_TARGETS))
        data["requires"] = tuple(data.get("requires", ()))
        return cls(**data)


def _toml_types(f: Field) -> type | tuple[type, ...]:
    """What a TOML value of the field may be: its own type, a list for a tuple, any number for a float."""
    if "toml" in f.metadata:
        return f.metadata["toml"]
    hint = _HINTS[f.name]
    if get_origin(hint) is tuple:
        return list
    return (int, float) if hint is float else hint


_HINTS = get_type_hints(Scenario)
_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {f.name: _toml_types(f) for f in fields(Scenario)}
# what names or describes a scenario without changing what it computes (a probe's configuration, a sweep's points)
LABELS = tuple(f.name for f in fields(Scenario) if f.metadata.get("label"))
# Matrix keys may use the singular, which reads better in a file: memory_mode = ["a", "b"].
_ALIASES = {"memory_mode": "memory_modes"}
# `size = 512` sets width and height together (a square image), in an entry or a matrix.
_SQUARE = "size"


def _choice(value: Any, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise _FieldError(what, f"{value!r} is not one of {', '.join(allowed)}")


class _FieldError(Exception):
    def __init__(self, field_name: str, message: str):
        super().__init__(message)
        self.field_name = field_name


def _normalise(raw: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key, value in raw.items():
        key = _ALIASES.get(key, key)
        if key == _SQUARE:
            if isinstance(value, bool) or not isinstance(value, int):
                raise _FieldError(key, f"expected int, got {type(value).__name__} {value!r}")
            data["width"] = data["height"] = value
            continue
        if key not in _FIELD_TYPES:
            raise _FieldError(key, f"unknown field (known: {', '.join(sorted([*_FIELD_TYPES, _SQUARE]))})")
        expected = _FIELD_TYPES[key]
        if (isinstance(value, bool) and expected is not bool) or not isinstance(value, expected):
            names = " or ".join(t.__name__ for t in (expected if isinstance(expected, tuple) else (expected,)))
            raise _FieldError(key, f"expected {names}, got {type(value).__name__} {value!r}")
        if key == "memory_modes":
            value = tuple(value.split("+")) if isinstance(value, str) else tuple(value)
        elif key in ("tags", "compile_targets", "requires"):
            value = tuple(value)
        data[key] = value
    return data


def validate(s: Scenario) -> Scenario:
    """Check one expanded scenario; returns it with derived defaults (family) filled in."""
    _choice(s.model, MODELS, "model")
    _choice(s.task, TASKS, "task")
    _choice(s.device, DEVICES, "device")
    _choice(s.precision, PRECISIONS, "precision")
    _choice(s.watermark, WATERMARKS, "watermark")
    for mode in s.memory_modes:
        _choice(mode, MEMORY_MODES, "memory_modes")
    if len(s.memory_modes) > 1 and "none" in s.memory_modes:
        raise _FieldError("memory_modes", "'none' cannot be combined with other memory modes")
    if sum(m in OFFLOAD_MODES for m in s.memory_modes) > 1:
        raise _FieldError("memory_modes", "choose one of model-offload and sequential-offload")
    if (s.task == "upscale") != (s.model == "sd-x4-upscaler"):
        raise _FieldError("task", f"task {s.task!r} does not fit model {s.model!r} (upscale <-> sd-x4-upscaler)")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", s.name):
        raise _FieldError("name", f"{s.name!r}: use letters, digits, '.', '_', '+', '-' (it names files)")
    for name in ("width", "height"):
        value = getattr(s, name)
        if value <= 0 or value % 8:
            raise _FieldError(name, f"{value} must be a positive multiple of 8")
    for name in ("width", "height"):
        if getattr(s, name) > MAX_SIDE:
            raise _FieldError(name, f"{getattr(s, name)} is over {MAX_SIDE} pixels, more than any GPU holds")
    for name in ("steps", "batch", "repeats", "processes"):
        if getattr(s, name) < 1:
            raise _FieldError(name, "must be at least 1")
        if getattr(s, name) > MAX_COUNT[name]:
            raise _FieldError(name, f"{getattr(s, name)} is over the {MAX_COUNT[name]:,} a benchmark can use")
    if s.warmup < 0:
        raise _FieldError("warmup", "must be 0 or more")
    if not 0 < s.strength <= 1:
        raise _FieldError("strength", f"{s.strength} must be in (0, 1]")
    if s.timeout_s <= 0:
        raise _FieldError("timeout_s", "must be positive")
    _choice(s.sdpa_backend, SDPA_BACKENDS, "sdpa_backend")
    _choice(s.compile, COMPILE_MODES, "compile")
    for target in s.compile_targets:
        _choice(target, COMPILE_TARGETS, "compile_targets")
    if s.compile_freeze and not s.compile:
        raise _FieldError("compile_freeze", "freezing is part of torch.compile: set compile too")
    if s.compile and s.warmup < 1:
        raise _FieldError("warmup", "a compiled scenario needs at least one warm-up run (it compiles there)")
    if s.compile and s.offloads:
        raise _FieldError("compile", "torch.compile cannot be combined with model or sequential offload")
    if s.threads < 0:
        raise _FieldError("threads", "must be 0 (torch's default) or a thread count")
    if s.vram_budget_gib < 0:
        raise _FieldError("vram_budget_gib", "must be 0 (no budget) or a size in GiB")
    if s.compile_timeout_s <= 0:
        raise _FieldError("compile_timeout_s", "must be positive")
    for requirement in s.requires:
        _choice(requirement, REQUIREMENTS, "requires")
    _choice(s.search, SEARCHES, "search")
    _choice(s.probe_isolation, PROBE_ISOLATIONS, "probe_isolation")
    _choice(s.memory_sampling, MEMORY_SAMPLINGS, "memory_sampling")
    if s.search and s.processes > 1:
        raise _FieldError("processes", "a capacity search is not timed: its probes decide what fits, not how fast")
    if s.search_max < 0:
        raise _FieldError("search_max", "must be 0 (the search's default bound) or positive")
    if s.search in ("max-batch", "max-resolution") and not s.vram_budget_gib:
        raise _FieldError("search", f"a {s.search} search needs the vram_budget_gib it searches under")
    if s.search == "min-budget" and s.vram_budget_gib:
        raise _FieldError("vram_budget_gib", "a min-budget search chooses the budget itself: leave vram_budget_gib out")
    if s.search == "max-resolution" and s.task == "upscale":
        raise _FieldError("search", "max-resolution is searched for txt2img and img2img (multiples of 64)")
    return s if s.family else replace(s, family=s.name)


def _matrix_suffix(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "+".join(map(str, value))
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return re.sub(r"[^A-Za-z0-9._+-]", "", str(value))


def _takes_a_list(key: str) -> bool:
    expected = _FIELD_TYPES.get(_ALIASES.get(key, key), ())
    return expected is list or (isinstance(expected, tuple) and list in expected)


def _expand(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """The entry's variants: one per combination of its matrix, where a list given to a field that
    holds one value (`vram_budget_gib = [4, 8, 12]`) is one more axis of the matrix."""
    matrix = entry.pop("matrix", None)
    if matrix is not None and (not isinstance(matrix, dict) or not matrix):
        raise _FieldError("matrix", "must be a table of field = [values]")
    listed = {k: entry.pop(k) for k in list(entry) if isinstance(entry[k], list) and not _takes_a_list(k)}
    if listed:
        matrix = {**listed, **(matrix or {})}
    if matrix is None:
        return [entry]
    axes = []
    for key, values in matrix.items():
        if not isinstance(values, list) or not values:
            raise _FieldError(key, "matrix values must be a non-empty list")
        axes.append([(key, v) for v in values])
    out = []
    for combo in itertools.product(*axes):
        variant = dict(entry)
        suffix = []
        for key, value in combo:
            variant[key] = value
            suffix.append(_matrix_suffix(value) + ("gib" if key == "vram_budget_gib" else ""))
        variant["name"] = "-".join([str(entry.get("name", "")), *suffix])
        variant.setdefault("family", entry.get("family") or str(entry.get("name", "")))
        out.append(variant)
    return out


def _line_of(text: str, index: int, field_name: str | None) -> int | None:
    """Best-effort line of `field_name` inside the `index`-th [[scenario]] (tomllib gives no positions)."""
    lines = text.splitlines()
    headers = [i for i, line in enumerate(lines) if re.match(r"\s*\[\[\s*scenario\s*\]\]", line)]
    if index >= len(headers):
        return None
    start = headers[index]
    end = headers[index + 1] if index + 1 < len(headers) else len(lines)
    if field_name:
        keys = {field_name, *(a for a, f in _ALIASES.items() if f == field_name)}
        for i in range(start, end):
            key = lines[i].split("=", 1)[0].strip().strip('"')
            if "=" in lines[i] and key in keys:
                return i + 1
    return start + 1


def _defaults_line(text: str, field_name: str) -> int | None:
    in_defaults = False
    for i, line in enumerate(text.splitlines()):
        if re.match(r"\s*\[", line):
            in_defaults = bool(re.match(r"\s*\[\s*defaults\s*\]", line))
        elif in_defaults and "=" in line and line.split("=", 1)[0].strip() == field_name:
            return i + 1
    return None


def parse(text: str, source: str = "<string>", overrides: dict[str, Any] | None = None) -> list[Scenario]:
    """Parse a scenario file's text into validated scenarios, matrices expanded, in file order."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: not valid TOML: {exc}") from None
    unknown = set(doc) - {"defaults", "scenario", "profile"}
    if unknown:
        raise ScenarioError(f"{source}: unknown top-level table(s) {sorted(unknown)}; use [defaults] and [[scenario]]")
    try:
        defaults = _normalise(doc.get("defaults", {}))
    except _FieldError as exc:
        line = _defaults_line(text, exc.field_name)
        where = f"{source}:{line}" if line else source
        raise ScenarioError(f"{where}: [defaults] field '{exc.field_name}': {exc}") from None
    entries = doc.get("scenario", [])
    if not entries:
        raise ScenarioError(f"{source}: no [[scenario]] entries")
    scenarios: list[Scenario] = []
    for index, entry in enumerate(entries):
        try:
            for variant in _expand(dict(entry)):
                data = {**defaults, **_normalise(variant), **(overrides or {})}
                if "name" not in data or "model" not in data:
                    missing = "name" if "name" not in data else "model"
                    raise _FieldError(missing, "is required")
                scenarios.append(validate(Scenario.from_dict(data)))
        except _FieldError as exc:
            line = _line_of(text, index, exc.field_name)
            label = entry.get("name", f"#{index + 1}")
            where = f"{source}:{line}" if line else source
            raise ScenarioError(f"{where}: scenario '{label}', field '{exc.field_name}': {exc}") from None
    seen: set[str] = set()
    for s in scenarios:
        if s.name in seen:
            raise ScenarioError(f"{source}: scenario name {s.name!r} is used twice")
        if s.quality_reference and s.quality_reference not in seen:
            raise ScenarioError(
                f"{source}: scenario {s.name!r}: quality_reference {s.quality_reference!r} must name a scenario "
                "that comes earlier in the file"
            )
        seen.add(s.name)
    return scenarios


def profiles() -> list[str]:
    """The profiles shipped in scenarios/, by name."""
    return sorted(p.stem for p in SCENARIOS_DIR.glob("*.toml"))


def resolve_profile(name_or_path: str) -> Path:
    """A profile name (`quick`) or a path to a scenario file."""
    path = Path(name_or_path)
    if path.is_dir():
        raise ScenarioError(f"{path}: is a folder; name a .toml scenario file or a profile ({', '.join(profiles())})")
    if path.suffix == ".toml" or path.exists():
        if not path.exists():
            raise ScenarioError(f"{path}: no such scenario file")
        if not path.is_file():
            raise ScenarioError(f"{path}: not a regular file (a pipe or device is never read)")
        return path
    candidate = SCENARIOS_DIR / f"{name_or_path}.toml"
    if candidate.is_file():
        return candidate
    known = ", ".join(profiles())
    raise ScenarioError(f"{name_or_path!r} is neither a scenario file nor a profile (profiles: {known})")


def load(path: str | Path, overrides: dict[str, Any] | None = None) -> list[Scenario]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"{path}: not UTF-8 text (byte {exc.start}): a scenario file is TOML") from None
    return parse(text, str(path), overrides)
