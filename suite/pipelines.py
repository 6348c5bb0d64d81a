"""Build and run one scenario's diffusers pipeline: task, sampler, precision, memory modes, watermark.

The pipelines are diffusers' own; this module only prepares them and marks the moments that
divide a call into stages (text encode, prepare, each denoising step, VAE decode, watermark)
without changing what they compute. Marks go to a `Clock`, which keeps them asynchronous on CUDA.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import itertools
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from suite.measure.clock import Clock, synchronize
from suite.scenario import Scenario
from suite.watermark import SCHEME_OF_MODEL, embed, get_scheme, too_small

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}

# Sampler names people use -> (diffusers scheduler class, config overrides).
SAMPLERS: dict[str, tuple[str, dict[str, Any]]] = {
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True}),
    "plms": ("PNDMScheduler", {"skip_prk_steps": True}),
    "ddim": ("DDIMScheduler", {}),
    "ddpm": ("DDPMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler-a": ("EulerAncestralDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),
    "dpm++": ("DPMSolverMultistepScheduler", {}),
    "dpm++-karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "unipc": ("UniPCMultistepScheduler", {}),
}


class NotApplicable(Exception):
    """The scenario cannot run on this machine at all (recorded as `skipped` with the reason)."""


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise NotApplicable("needs CUDA, and this machine has no usable CUDA device")
    if requested == "mps" and not torch.backends.mps.is_available():
        raise NotApplicable("needs Apple MPS, which this machine does not have")
    return torch.device(requested)


def check_applicable(scenario: Scenario) -> torch.device:
    """The device the scenario will run on, or NotApplicable with the reason it cannot run here."""
    device = resolve_device(scenario.device)
    if scenario.offloads and device.type == "cpu":
        raise NotApplicable(
            f"{scenario.memory_mode} moves weights between CPU and an accelerator; on cpu there is none"
        )
    if (scenario.vram_budget_gib or scenario.search) and device.type != "cuda":
        raise NotApplicable("a VRAM budget is emulated on CUDA only")
    for requirement in scenario.requires:
        missing = _missing(requirement, device)
        if missing:
            raise NotApplicable(missing)
    if scenario.compile:
        if device.type == "cpu" and not (shutil.which("c++") or shutil.which("g++")):
            raise NotApplicable("torch.compile on the CPU needs a C++ compiler, and none is on PATH")
        if device.type == "cuda" and importlib.util.find_spec("triton") is None:
            raise NotApplicable("torch.compile on CUDA needs triton, which is not installed")
    return device


def _missing(requirement: str, device: torch.device) -> str | None:
    """Why a scenario's declared requirement is not met here (None when it is)."""
    if requirement == "cpu-bf16":
        from suite.measure.fingerprint import cpu_flags

        if device.type != "cpu" or not cpu_flags() & {"avx512_bf16", "amx_bf16"}:
            return "needs a CPU with native bf16 (AVX512-BF16 or AMX); this one would only emulate it, slowly"
    elif requirement == "no-accelerator" and resolve_device("auto").type != "cpu":
        return "a CPU variant for machines without a GPU; this one has a GPU, whose own scenarios say more"
    return None


def make_scheduler(name: str, config: dict[str, Any]):
    """A diffusers scheduler from a sampler name (`pndm`, `ddim`, ...) or a scheduler class name."""
    import diffusers

    class_name, overrides = SAMPLERS.get(name, (name, {}))
    cls = getattr(diffusers, class_name, None)
    if cls is None or not class_name.endswith("Scheduler"):
        known = ", ".join(SAMPLERS)
        raise ValueError(f"unknown sampler {name!r}: use one of {known} or a diffusers scheduler class name")
    return cls.from_config(config, **overrides)


def sketch_image(width: int, height: int) -> Image.Image:
    """A deterministic stand-in for the article's hand-drawn `bird.png`: a bird on a branch."""
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    for y in range(height):
        shade = int(150 + 90 * y / max(1, height - 1))
        draw.line([(0, y), (width, y)], fill=(shade // 2, shade // 2 + 40, shade))
    w, h = width, height
    draw.line([(0, int(h * 0.72)), (w, int(h * 0.6))], fill=(96, 64, 32), width=max(2, h // 40))
    draw.ellipse([int(w * 0.38), int(h * 0.42), int(w * 0.62), int(h * 0.62)], fill=(200, 60, 40))
    draw.ellipse([int(w * 0.55), int(h * 0.36), int(w * 0.68), int(h * 0.49)], fill=(210, 70, 50))
    draw.polygon(
        [(int(w * 0.68), int(h * 0.41)), (int(w * 0.75), int(h * 0.43)), (int(w * 0.68), int(h * 0.45))],
        fill=(240, 200, 40),
    )
    draw.ellipse([int(w * 0.62), int(h * 0.40), int(w * 0.645), int(h * 0.425)], fill=(0, 0, 0))
    return image


def input_image(scenario: Scenario) -> Image.Image:
    """The init image (img2img) or low-resolution input (upscale, a quarter of the output size)."""
    w, h = scenario.width, scenario.height
    if scenario.task == "upscale":
        w, h = w // 4, h // 4
    if scenario.init_image:
        path = Path(scenario.init_image)
        with Image.open(path) as image:
            return image.convert("RGB").resize((w, h), Image.Resampling.LANCZOS)
    return sketch_image(w, h)


@dataclass
class Prepared:
    scenario: Scenario
    pipe: Any
    device: torch.device
    weights: dict[str, Any]
    load_s: float
    inputs: dict[str, Any] = field(default_factory=dict)


def prepare(scenario: Scenario, device: torch.device) -> Prepared:
    """Load the pipeline for the scenario and put it where the memory modes say; times the whole load."""
    from suite.models import load_pipeline

    dtype = DTYPES[scenario.precision]
    t0 = time.perf_counter()
    load_device = "cpu" if scenario.offloads else str(device)
    pipe, weights = load_pipeline(
        scenario.model, scenario.weights, task=scenario.task, device=load_device, dtype=dtype, seed=scenario.seed
    )
    pipe.scheduler = make_scheduler(scenario.sampler, pipe.scheduler.config)
    for mode in scenario.memory_modes:
        if mode == "attention-slicing":
            pipe.enable_attention_slicing()
        elif mode == "vae-slicing":
            pipe.vae.enable_slicing()
        elif mode == "vae-tiling":
            pipe.vae.enable_tiling()
        elif mode == "model-offload":
            pipe.enable_model_cpu_offload(device=device)
        elif mode == "sequential-offload":
            pipe.enable_sequential_cpu_offload(device=device)
    if not scenario.offloads:
        pipe.to(device)
    apply_techniques(pipe, scenario)
    pipe.set_progress_bar_config(disable=True)
    synchronize(device)
    prepared = Prepared(scenario, pipe, device, weights.to_dict(), time.perf_counter() - t0)
    prepared.inputs = call_arguments(scenario)
    return prepared


def apply_techniques(pipe: Any, s: Scenario) -> None:
    """The `fast` profile's speed techniques; compilation itself happens on the first call (warm-up)."""
    if s.threads:
        torch.set_num_threads(s.threads)
    if s.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
    if s.fuse_qkv:
        pipe.fuse_qkv_projections()
    if s.channels_last:
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
    if s.compile:
        if s.compile_freeze:
            from torch._inductor import config as inductor_config

            inductor_config.freezing = True
        mode = None if s.compile == "default" else s.compile
        if "unet" in s.compile_targets:
            pipe.unet = torch.compile(pipe.unet, mode=mode)
        if "vae" in s.compile_targets:
            pipe.vae.decode = torch.compile(pipe.vae.decode, mode=mode)


def attention_backend(name: str) -> contextlib.AbstractContextManager:
    """Restrict scaled-dot-product attention to one backend ('default' leaves torch's choice)."""
    if name == "default":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backend = {
        "math": SDPBackend.MATH,
        "flash": SDPBackend.FLASH_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
        "cudnn": SDPBackend.CUDNN_ATTENTION,
    }[name]
    return sdpa_kernel(backend)


def call_arguments(scenario: Scenario) -> dict[str, Any]:
    s = scenario
    args: dict[str, Any] = {
        "prompt": [s.prompt] * s.batch,
        "num_inference_steps": s.steps,
        "guidance_scale": s.guidance_scale,
        "output_type": "np",
    }
    if s.negative_prompt:
        args["negative_prompt"] = [s.negative_prompt] * s.batch
    if s.task == "txt2img":
        args |= {"width": s.width, "height": s.height}
    elif s.task == "img2img":
        args |= {"image": input_image(s), "strength": s.strength}
    else:
        args |= {"image": input_image(s), "noise_level": s.noise_level}
    return args


def _patch(obj: Any, name: str, replacement: Any, stack: contextlib.ExitStack) -> None:
    """Set obj.name for the duration of `stack`, then put back exactly what was there."""
    missing = object()
    previous = obj.__dict__.get(name, missing)
    setattr(obj, name, replacement)
    stack.callback(lambda: obj.__dict__.pop(name) if previous is missing else setattr(obj, name, previous))


def _wrap(obj: Any, name: str, before: str, after: str, clock: Clock, stack: contextlib.ExitStack) -> None:
    """Mark `before`/`after` around every call of obj.name, for the duration of `stack`."""
    original = getattr(obj, name)

    @functools.wraps(original)
    def marked(*args: Any, **kwargs: Any) -> Any:
        clock.mark(before)
        out = original(*args, **kwargs)
        clock.mark(after)
        return out

    _patch(obj, name, marked, stack)


@contextlib.contextmanager
def instrumented(pipe: Any, clock: Clock, on_step: Callable[[int], None] | None = None) -> Iterator[None]:
    """Mark stage boundaries on the pipeline's own components while inside the block.

    A denoising step ends when the scheduler's `step` returns; the first one starts at the first
    UNet call, so the per-step times cover the whole loop and nothing outside it.
    """
    steps = 0
    scheduler = pipe.scheduler
    original_step = scheduler.step

    def step(*args: Any, **kwargs: Any) -> Any:
        nonlocal steps
        out = original_step(*args, **kwargs)
        clock.mark("step")
        steps += 1
        if on_step:
            on_step(steps)
        return out

    with contextlib.ExitStack() as stack:
        _wrap(pipe, "encode_prompt", "text_encode_start", "text_encode_end", clock, stack)
        _wrap(pipe.vae, "decode", "vae_decode_start", "vae_decode_end", clock, stack)
        _patch(scheduler, "step", step, stack)
        hook = pipe.unet.register_forward_pre_hook(lambda *_: clock.mark("denoise_start") if steps == 0 else None)
        stack.callback(hook.remove)
        yield


@dataclass
class Generation:
    images: list[Image.Image]
    latency_s: float
    stages_s: dict[str, float]
    step_s: list[float]
    watermark: dict[str, Any]
    check: dict[str, Any]


def check_pixels(arrays: np.ndarray) -> dict[str, Any]:
    """Catch outputs a speed-up broke: non-finite values (fp16 overflow) or a blank image."""
    finite = np.isfinite(arrays)
    spread = float(np.nanstd(np.where(finite, arrays, np.nan))) * 255 if finite.any() else 0.0
    out: dict[str, Any] = {"nonfinite_fraction": float(1 - finite.mean()), "pixel_std": spread}
    problems = []
    if not finite.all():
        problems.append(f"{out['nonfinite_fraction']:.1%} of output values are NaN/inf")
    if spread < 1.0:
        problems.append("the output is a blank (single-colour) image")
    out["problem"] = "; ".join(problems)
    return out


def to_pil(arrays: np.ndarray) -> list[Image.Image]:
    """As diffusers' numpy_to_pil, with non-finite values made 0 explicitly instead of by accident."""
    pixels = (np.nan_to_num(arrays, nan=0.0, posinf=1.0, neginf=0.0).clip(0, 1) * 255).round().astype(np.uint8)
    return [Image.fromarray(p) for p in pixels]


def stage_times(marks: list[tuple[str, float]]) -> tuple[dict[str, float], list[float]]:
    """Stage durations and per-step times from a call's marks (first step timed from the first UNet call)."""
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    step_ends = []
    for label, t in marks:
        first.setdefault(label, t)
        last[label] = t
        if label == "step":
            step_ends.append(t)

    def span(a: str, b: str) -> float:
        return last[b] - first[a] if a in first and b in last else 0.0

    stages = {
        "text_encode": span("text_encode_start", "text_encode_end"),
        "prepare": first["denoise_start"] - last["text_encode_end"]
        if "denoise_start" in first and "text_encode_end" in last
        else 0.0,
        "denoise": step_ends[-1] - first["denoise_start"] if step_ends and "denoise_start" in first else 0.0,
        "vae_decode": span("vae_decode_start", "vae_decode_end"),
        "watermark": span("watermark_start", "watermark_end"),
    }
    bounds = [first.get("denoise_start", 0.0), *step_ends]
    steps = [b - a for a, b in itertools.pairwise(bounds)]
    return stages, steps


def watermark_scheme(scenario: Scenario) -> str | None:
    if scenario.watermark == "none":
        return None
    return SCHEME_OF_MODEL[scenario.model] if scenario.watermark == "auto" else scenario.watermark


def apply_watermark(images: list[Image.Image], scheme_name: str | None) -> tuple[list[Image.Image], dict[str, Any]]:
    """Mark outputs as the original scripts did; images under 256x256 pixels stay unmarked, and the result says so."""
    if scheme_name is None:
        return images, {"scheme": "none", "marked": 0, "too_small": 0}
    scheme = get_scheme(scheme_name)
    out, small = [], 0
    for image in images:
        if too_small(image):
            small += 1
            out.append(image)
        else:
            out.append(embed(image, scheme))
    info = {"scheme": scheme_name, "marked": len(images) - small, "too_small": small}
    if small:
        info["note"] = f"{small} image(s) under 256x256 pixels left unmarked, as the reference encoder refuses them"
    return out, info


def generate(prepared: Prepared, on_step: Callable[[int], None] | None = None) -> Generation:
    """One full call of the pipeline plus the watermark, timed end to end."""
    s = prepared.scenario
    device = prepared.device
    clock = Clock(device)
    generator = torch.Generator("cpu").manual_seed(s.seed)
    synchronize(device)
    t0 = time.perf_counter()
    clock.mark("start")
    with instrumented(prepared.pipe, clock, on_step), torch.inference_mode(), attention_backend(s.sdpa_backend):
        arrays = prepared.pipe(**prepared.inputs, generator=generator).images
    images = to_pil(arrays)
    clock.mark("watermark_start")
    images, watermark = apply_watermark(images, watermark_scheme(s))
    clock.mark("watermark_end")
    synchronize(device)
    latency = time.perf_counter() - t0
    stages, steps = stage_times(clock.times())
    return Generation(images, latency, stages, steps, watermark, check_pixels(arrays))
