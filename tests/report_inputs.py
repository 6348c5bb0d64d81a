"""Realistic inputs for reports, made without running models: a many-scenario GPU run and an audit folder.

The run has the shape `sdsuite bench` writes on a CUDA machine (per-step times with a warm-up
step, stage times, VRAM, energy, compute, budget verdicts, failures with reasons) and real-size
watermarked PNGs; the folder holds photographs and illustrations, marked and clean, plus the
bad files a real crawl has.
"""

from __future__ import annotations

import io
import json
from functools import cache
from pathlib import Path

import audit_corpus
import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from suite.record import SCHEMA_VERSION, STAGES
from suite.results import ResultsStore
from suite.scenario import Scenario
from suite.watermark import SCHEME_OF_MODEL, embed

FINGERPRINT = {
    "cpu": "AMD EPYC 9454 48-Core Processor",
    "cpu_cores": 16,
    "ram_gib": 125.8,
    "gpu": "NVIDIA H100 80GB HBM3",
    "gpu_vram_gib": 79.6,
    "driver": "550.54.15",
    "cuda": "12.4",
    "compute_capability": "9.0",
    "torch": "2.5.1+cu124",
    "diffusers": "0.32.2",
    "python": "3.11.7",
    "os": "Linux-6.5.0-x86_64",
    "suite_version": "0.1.0",
    "git_sha": "ec8f8c6",
}
PEAK_TFLOPS = {"fp32": 51.2, "fp16": 612.0, "bf16": 598.0}
# (model, task, size, batch, precision, memory modes, seconds per step, peak VRAM GiB)
_CONFIGS = (
    ("sd-v1", "txt2img", 512, 1, "fp16", ("none",), 0.021, 3.1),
    ("sd-v1", "txt2img", 512, 4, "fp16", ("none",), 0.055, 5.9),
    ("sd-v1", "txt2img", 512, 1, "fp32", ("none",), 0.048, 4.6),
    ("sd-v1", "img2img", 512, 1, "fp16", ("none",), 0.021, 3.2),
    ("sd-v1", "txt2img", 512, 1, "fp16", ("attention-slicing",), 0.027, 2.7),
    ("sd-v1", "txt2img", 512, 1, "fp16", ("model-offload",), 0.024, 1.9),
    ("sd-v1", "txt2img", 512, 1, "fp16", ("sequential-offload",), 0.41, 0.6),
    ("sd-v2.1", "txt2img", 768, 1, "fp16", ("none",), 0.052, 5.2),
    ("sd-v2.1", "txt2img", 768, 2, "fp16", ("none",), 0.098, 7.8),
    ("sd-v2.1", "txt2img", 768, 1, "fp32", ("none",), 0.131, 8.9),
    ("sd-x4-upscaler", "upscale", 512, 1, "fp16", ("none",), 0.37, 21.5),
    ("sd-x4-upscaler", "upscale", 512, 1, "fp16", ("vae-tiling",), 0.39, 11.2),
)
_SAMPLERS = ("pndm", "ddim", "euler")


def _scenarios(count: int) -> list[tuple[Scenario, float, float]]:
    """`count` scenarios cycling through the configurations and samplers, the last under VRAM budgets."""
    out = []
    budgets = (4.0, 6.0, 8.0, 12.0)  # the last scenarios: SD v1 at batch 4 (5.9 GiB) under each budget
    for i in range(count):
        budget = budgets[i - count + len(budgets)] if i >= count - len(budgets) else 0.0
        config = _CONFIGS[1 if budget else i % len(_CONFIGS)]
        model, task, size, batch, precision, modes, step_s, vram = config
        sampler = _SAMPLERS[(i // len(_CONFIGS)) % len(_SAMPLERS)]
        name = f"{model}-{task}-{size}-b{batch}-{precision}-{'+'.join(modes)}-{sampler}"
        if budget:
            name += f"-{budget:g}gib"
        scenario = Scenario(
            name=name,
            model=model,
            task=task,
            family=f"{model}-{task}",
            sampler=sampler,
            width=size,
            height=size,
            steps=50 if task != "upscale" else 75,
            batch=batch,
            device="cuda",
            precision=precision,
            memory_modes=modes,
            weights="synthetic",
            repeats=3,
            vram_budget_gib=budget,
        )
        out.append((scenario, step_s, vram))
    return out


def _outcome(i: int, scenario: Scenario, vram: float) -> tuple[str, str]:
    if scenario.vram_budget_gib and vram > scenario.vram_budget_gib - 0.5:
        return "oom", f"CUDA out of memory under the {scenario.vram_budget_gib:g} GiB budget"
    if i % 13 == 12:
        return "unsupported", "sequential offload needs accelerate's cpu_offload hooks for this model"
    if i % 17 == 16:
        return "timeout", "no result within 3600 s"
    return "ok", ""


def write_run(root: Path, scenarios: int = 30, seed: int = 0) -> Path:
    """A run directory as `sdsuite bench` leaves it on an H100: results.jsonl, CSV, environment, images."""
    rng = np.random.default_rng(seed)
    run_dir = root / f"20261125-0400-synthetic-{scenarios}"
    (run_dir / "images").mkdir(parents=True)
    run_id = run_dir.name
    environment = {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "profile": "reference",
        "started_at": "2026-11-25T04:00:00+0000",
        "fingerprint": FINGERPRINT,
        "peak_tflops": PEAK_TFLOPS,
        "datasheet_tflops_fp16": 989.4,
    }
    (run_dir / "environment.json").write_text(json.dumps(environment, indent=1))
    store = ResultsStore(run_dir)
    store.open()
    for i, (scenario, step_s, vram) in enumerate(_scenarios(scenarios)):
        status, error = _outcome(i, scenario, vram)
        record = {
            "schema_version": SCHEMA_VERSION,
            "run_id": run_id,
            "scenario": scenario.to_dict(),
            "started_at": "2026-11-25T04:00:00+0000",
            "duration_s": 30.0,
            "status": status,
            "error": error or None,
            "device": "cuda:0",
            "fingerprint": FINGERPRINT,
        }
        if status == "ok":
            record.update(_measurements(scenario, step_s, vram, rng))
            record["images"] = _images(run_dir, scenario, audit_corpus.PHOTOS[i % 4])
            scheme = SCHEME_OF_MODEL[scenario.model]
            record["watermark"] = {"scheme": scheme, "marked": scenario.batch, "too_small": 0}
        store.append(record)
    return run_dir


def _measurements(scenario: Scenario, step_s: float, vram: float, rng: np.random.Generator) -> dict:
    """Per-step times (a slow first step), stages, memory, energy and compute of three repeats."""
    steps = [
        list(step_s * (1 + 0.03 * rng.standard_normal(scenario.steps)) * np.r_[4.0, np.ones(scenario.steps - 1)])
        for _ in range(scenario.repeats)
    ]
    stages = {stage: [] for stage in STAGES}
    latency = []
    for repeat in steps:
        parts = {
            "text_encode": 0.008 + 0.001 * rng.random(),
            "prepare": 0.004,
            "denoise": float(np.sum(repeat)),
            "vae_decode": 0.04 * scenario.batch * (scenario.width / 512) ** 2,
            "watermark": 0.02 * scenario.batch,
        }
        for stage, value in parts.items():
            stages[stage].append(value)
        latency.append(sum(parts.values()) + 0.01)
    tflop = 0.7 * scenario.batch * (scenario.width / 512) ** 2
    peak = PEAK_TFLOPS[scenario.precision]
    achieved = tflop / float(np.median(np.concatenate([s[1:] for s in steps])))
    return {
        "latency_s": latency,
        "warmup_latency_s": [latency[0] * 3],
        "stages_s": stages,
        "step_s": [list(map(float, s)) for s in steps],
        "load_s": 4.0 + rng.random(),
        "weights": {"source": "synthetic", "hash": "seed-0"},
        "memory": {
            "peak_rss_mib": 5200 + 400 * rng.random(),
            "peak_vram_allocated_mib": vram * 1024,
            "peak_vram_reserved_mib": vram * 1024 * 1.12,
            "peak_vram_device_mib": vram * 1024 * 1.12 + 520,
            "memory_sample_hz": 200.0,
        },
        "energy": {
            "per_repeat_j": [t * 610 for t in latency],
            "j_per_image": float(np.median(latency)) * 610 / scenario.batch,
            "avg_power_w": 610.0,
        },
        "compute": {
            "unet_tflop_per_step": tflop,
            "achieved_tflops": achieved,
            "peak_tflops": peak,
            "pct_of_peak": 100 * achieved / peak,
        },
        "quality": {"verdict": "ok"},
    }


@cache
def _marked(photo: str, size: int, scheme: str) -> Image.Image:
    return embed(audit_corpus.fit(audit_corpus.photo(photo), (size, size)), scheme)


def _images(run_dir: Path, scenario: Scenario, photo: str) -> list[str]:
    """The scenario's outputs at their real size, marked as the model's scripts mark them."""
    size = scenario.width * 4 if scenario.task == "upscale" else scenario.width
    marked = _marked(photo, size, SCHEME_OF_MODEL[scenario.model])
    out = []
    for i in range(scenario.batch):
        rel = f"images/{scenario.name}-{i}.png"
        marked.save(run_dir / rel, compress_level=1)
        out.append(rel)
    return out


AUDIT_SCHEMES = (None, "sd-v1", "sd-v2", "sdxl")  # file i carries AUDIT_SCHEMES[i % 4] (None: clean)


def write_audit_folder(folder: Path, files: int, hostile_name: str = "") -> list[Path]:
    """`files` PNGs named 00000.png on: photographs and illustrations at real sizes, file i clean or
    marked by AUDIT_SCHEMES[i % 4], marked ones with A1111 parameters; file i is too small when
    i % 50 == 5 and a truncated PNG when i % 100 == 7. Optionally one more file with a hostile name
    and hostile A1111 parameters (an sd-v1-marked photograph)."""
    folder.mkdir(parents=True, exist_ok=True)
    sizes = ((512, 512), (768, 768), (640, 448))
    bases = [image for _, image in audit_corpus.clean_images(count_per_size=2, sizes=sizes)]
    cache: dict[int, Image.Image] = {}

    def variant(index: int) -> Image.Image:
        if index not in cache:
            scheme, base = AUDIT_SCHEMES[index % 4], bases[index // 4]
            cache[index] = base if scheme is None else embed(base, scheme)
        return cache[index]

    paths = []
    for i in range(files):
        path = folder / f"{i:05d}.png"
        if i % 100 == 7:
            buffer = io.BytesIO()
            bases[0].save(buffer, "PNG", compress_level=1)
            path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])  # a download cut off halfway
        elif i % 50 == 5:
            Image.new("RGB", (200, 150), (40, 90, 160)).save(path)
        else:
            index = i % (4 * len(bases))
            info = PngInfo()
            if AUDIT_SCHEMES[i % 4]:
                info.add_text("parameters", "a lighthouse at dusk\nSteps: 30, Sampler: Euler a, Seed: 7")
            variant(index).save(path, pnginfo=info, compress_level=1)
        paths.append(path)
    if hostile_name:
        info = PngInfo()
        info.add_text("parameters", "<script>alert(1)</script>\nSteps: 20, Sampler: Euler")
        hostile = folder / f"{hostile_name}.png"
        variant(1).save(hostile, pnginfo=info)
        paths.append(hostile)
    return paths
