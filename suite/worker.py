"""One scenario in one fresh process: load, warm up, repeat, measure, write one record.

- A new process per scenario: an OOM, a crash or a hang ends with it, leaving no allocator state,
  CUDA context, compiled kernels or fragmentation behind for the next one.
- Forked from a server that has only imported PRELOAD (multiprocessing's forkserver): no scenario
  pays for importing torch and diffusers, and none shares anything else.
- Progress goes to the runner over a pipe, the finished record to the job's `result` path, what the
  libraries print to the scenario's log.
- `child_measure_machine` measures the machine once per run (fingerprint, peak matmul rate), so the
  runner itself never creates a CUDA context.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

# What the forkserver imports once (diffusers and transformers import lazily, so the modules that
# the pipelines use are named); none of it touches CUDA. A name a version lacks is skipped.
PRELOAD = [
    "torch",
    "diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion",
    "diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img",
    "diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_upscale",
    "diffusers.models.unets.unet_2d_condition",
    "diffusers.models.autoencoders.autoencoder_kl",
    "diffusers.schedulers",
    "transformers.models.clip.modeling_clip",
    "transformers.models.clip.tokenization_clip",
    "suite.models",
    "suite.pipelines",
    "suite.measure.flops",
    "suite.measure.sampler",
]
MIB = 1024 * 1024
_channel = None  # the pipe to the runner, in a worker process


def emit(**event: Any) -> None:
    if _channel is not None:
        _channel.send(event)


def die_with_runner(runner_pid: int) -> None:
    """SIGKILL this worker's process group (it and its sampler) as soon as the runner is gone.

    A forkserver child keeps its server alive, and the server outlives a killed runner, so a
    parent-death signal would never fire; a killed run must leave no worker holding a GPU.
    """

    def wait_then_die() -> None:
        try:
            pidfd = os.pidfd_open(runner_pid)  # readable once the runner exits
            select.select([pidfd], [], [])
        except (AttributeError, OSError):  # no pidfd here, or the runner is already gone
            while _alive(runner_pid):
                time.sleep(0.5)
        os.killpg(0, signal.SIGKILL)

    threading.Thread(target=wait_then_die, name="die-with-runner", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def isolate(channel, log_path: str, runner_pid: int) -> None:
    """Own process group (the runner kills it with its sampler), die with the runner, print to the log."""
    global _channel
    _channel = channel
    os.setsid()
    die_with_runner(runner_pid)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # diffusers' (disabled) progress bars make tqdm create a multiprocessing lock, a semaphore the
    # parent's resource tracker then reports as leaked whenever a timed-out worker is killed.
    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())


# How allocators word a failed allocation: CUDA's caching allocator, cuBLAS/cuDNN under a tight
# budget, torch's CPU allocator ("DefaultCPUAllocator: can't allocate memory: you tried to allocate
# 21474836480 bytes"), and the rest
OOM_WORDS = ("out of memory", "alloc_failed", "can't allocate memory", "not enough memory")


def classify(exc: BaseException) -> tuple[str, str]:
    """Outcome status and a one-line reason for a failed scenario."""
    import torch

    message = f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:500]
    text = str(exc)
    # cuBLAS and cuDNN report an allocation that failed under a tight budget in words of their own
    if isinstance(exc, torch.cuda.OutOfMemoryError | MemoryError) or any(w in text.lower() for w in OOM_WORDS):
        return "oom", message
    if isinstance(exc, NotImplementedError) or "not implemented for" in text or "Unsupported" in text:
        return "unsupported", message
    return "error", message


class BudgetNotMeasurable(RuntimeError):
    """What this process holds outside torch's allocator cannot be told, so no budget can be emulated."""


def outside_allocator(device, h: Any, before: int | None, shared: bool = False) -> tuple[int, str]:
    """Device memory this process holds that torch's allocator does not see: the CUDA context, and
    the kernels and library handles (cuBLAS, cuDNN) loaded into it so far.

    The driver's per-process figure is preferred; where a container hides it, the growth of the
    device's used memory since `before` (read before this process touched CUDA) is used instead,
    which only a process alone on the card can do: a `shared` card's growth is its neighbours' too.
    """
    import torch

    from suite.measure import nvml

    reserved = torch.cuda.memory_reserved(device)
    mine = nvml.process_used_bytes(h, os.getpid()) if h is not None else None
    if mine is not None:
        return max(0, mine - reserved), "nvml-process"
    if shared:
        raise BudgetNotMeasurable(
            "the driver does not report this process's own memory, and beside other workers on the card "
            "nothing else tells it: probe one configuration at a time (--probe-servers 1)"
        )
    used = nvml.used_bytes(h) if h is not None else None
    if used is not None and before is not None and used - before - reserved > 64 * MIB:
        return used - before - reserved, "nvml-device-delta"
    return 512 * MIB, "assumed"


def open_cuda_context(device, h: Any) -> int | None:
    """Create this process's CUDA context; returns the device's used memory from just before it."""
    import torch

    from suite.measure import nvml

    before = nvml.used_bytes(h) if h is not None else None
    torch.empty(1, device=device)
    torch.cuda.synchronize(device)
    return before


def cap_allocator(device, gib: float, h: Any, before: int | None, shared: bool = False) -> dict[str, Any]:
    """Cap this process's CUDA allocator so that the whole process fits a card of `gib` GiB: the
    allocator may use the budget less what lies outside it, as on a real card of that size. What the
    allocator holds already must fit too: a real card would have refused it before now."""
    import torch

    outside, method = outside_allocator(device, h, before, shared)
    total = torch.cuda.get_device_properties(device).total_memory
    allowed = gib * 2**30 - outside
    if torch.cuda.memory_reserved(device) > allowed:
        torch.cuda.empty_cache()  # cached blocks, which a card of this size would have handed back already
    reserved = torch.cuda.memory_reserved(device)
    budget = {"budget_gib": gib, "outside_allocator_mib": outside / MIB, "measured_by": method}
    if allowed <= reserved:
        raise torch.cuda.OutOfMemoryError(
            f"{reserved / MIB:.0f} MiB in torch's allocator and {outside / MIB:.0f} MiB outside it "
            f"(CUDA context, kernels, libraries) exceed {gib:g} GiB"
        )
    torch.cuda.set_per_process_memory_fraction(min(1.0, allowed / total), device)
    return {**budget, "allocator_cap_mib": allowed / MIB}


def failure(exc: BaseException) -> dict[str, str]:
    """The record's status and reason for a scenario that raised: skipped when it cannot run here."""
    from suite.pipelines import NotApplicable

    status, reason = ("skipped", str(exc)) if isinstance(exc, NotApplicable) else classify(exc)
    return {"status": status, "error": reason}


def _unet_tflop(prepared, cache: Path) -> float | None:
    from suite.measure.flops import cached_unet_tflop, unet_tflop_per_call

    s = prepared.scenario
    pipe = prepared.pipe
    factor = pipe.vae_scale_factor if s.task != "upscale" else 4
    latent = (s.height // factor, s.width // factor)
    cfg = s.guidance_scale > 1.0
    batch = s.batch * (2 if cfg else 1)
    config = dict(pipe.unet.config)
    key = f"{s.model}:{json.dumps(config, sort_keys=True, default=str)}:{latent}:{batch}"
    try:
        return cached_unet_tflop(cache, key, lambda: unet_tflop_per_call(config, latent, batch))
    except Exception:
        return None


def measure_scenario(job: dict[str, Any], record: dict[str, Any]) -> None:
    """Load, warm up and time the job's scenario, filling `record` as measurements come in, so a
    failure keeps what was measured."""
    import torch

    from suite import pipelines
    from suite.measure import hwm, noise, nvml
    from suite.measure.sampler import MemorySampler
    from suite.scenario import Scenario

    scenario = Scenario.from_dict(job["scenario"])
    run_dir = Path(job["run_dir"])
    record.update(latency_s=[], warmup_latency_s=[], stages_s={}, step_s=[])
    device = pipelines.check_applicable(scenario)
    record["device"] = str(device)
    if job.get("threads"):
        torch.set_num_threads(int(job["threads"]))
    gpu = None
    gpu_uuid = None
    if device.type == "cuda":
        gpu_uuid = nvml.torch_device_uuid(device.index or 0)
        gpu = nvml.handle(uuid=gpu_uuid)
    sampling = memory_sampling(scenario, device)
    record["memory_sampling"] = sampling
    sampler = MemorySampler(gpu_uuid=gpu_uuid) if sampling == "during" else None
    try:
        if scenario.vram_budget_gib:
            before_context = open_cuda_context(device, gpu)
            record["budget"] = cap_allocator(device, scenario.vram_budget_gib, gpu, before_context)
        emit(phase="load")
        hwm.reset()
        if sampler is not None:
            sampler.reset()
        prepared = pipelines.prepare(scenario, device)
        record["load_s"] = prepared.load_s
        record["weights"] = prepared.weights
        record["load_memory"] = {**(sampler.read() if sampler else {}), "peak_rss_mib": hwm.peak_mib()}

        def on_step(phase: str, index: int, total: int):
            every = max(1, scenario.steps // 10)

            def report(step: int) -> None:
                if step % every == 0 or step == scenario.steps:
                    emit(phase=phase, run=index, runs=total, step=step, steps=scenario.steps)

            return report

        for i in range(scenario.warmup):
            # torch.compile compiles in the first call: a phase of its own, with a time budget the runner enforces
            phase = "compile" if scenario.compile and i == 0 else "warmup"
            budget = {"budget_s": scenario.compile_timeout_s} if phase == "compile" else {}
            emit(phase=phase, run=i + 1, runs=scenario.warmup, **budget)
            record["warmup_latency_s"].append(
                pipelines.generate(prepared, on_step(phase, i + 1, scenario.warmup)).latency_s
            )
        if scenario.vram_budget_gib and scenario.warmup:
            # the kernels and libraries the warm-up loaded take the card's memory too: the repeats get the rest
            record["budget"] = cap_allocator(device, scenario.vram_budget_gib, gpu, before_context)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        if sampler is not None:
            sampler.reset()
        method = hwm.reset()
        before = noise.snapshot()
        energies = []
        generation = None
        for i in range(scenario.repeats):
            emit(phase="repeat", run=i + 1, runs=scenario.repeats)
            e0 = nvml.energy_mj(gpu) if gpu is not None else None
            generation = pipelines.generate(prepared, on_step("repeat", i + 1, scenario.repeats))
            e1 = nvml.energy_mj(gpu) if gpu is not None else None
            if e0 is not None and e1 is not None:
                energies.append(((e1 - e0) / 1000.0, generation.latency_s))
            record["latency_s"].append(generation.latency_s)
            record["step_s"].append(generation.step_s)
            for stage, value in generation.stages_s.items():
                record["stages_s"].setdefault(stage, []).append(value)
        record["system"] = noise.between(before, noise.snapshot())
        memory: dict[str, Any] = {"peak_rss_mib": hwm.peak_mib(), "peak_rss_method": method}
        if sampler is not None:
            memory.update(sampler_peaks(sampler.read()))
        if device.type == "cuda":
            memory["peak_vram_allocated_mib"] = torch.cuda.max_memory_allocated(device) / MIB
            memory["peak_vram_reserved_mib"] = torch.cuda.max_memory_reserved(device) / MIB
        if sampling == "separate" and not job.get("process"):  # the first process's is enough: it costs a repeat
            emit(phase="sampled repeat", run=1, runs=1)
            memory.update(sampled_repeat(prepared, gpu_uuid, record["step_s"]))
        record["memory"] = memory
        if energies:
            joules = sorted(j for j, _ in energies)
            record["energy"] = {
                "per_repeat_j": [j for j, _ in energies],
                "j_per_image": joules[len(joules) // 2] / scenario.batch,
                "avg_power_w": sum(j for j, _ in energies) / sum(t for _, t in energies),
            }
        record["watermark"] = generation.watermark
        record["images"] = save_images(generation.images, run_dir, scenario.name)
        if scenario.compile and record["warmup_latency_s"]:
            record["compile_s"] = record["warmup_latency_s"][0] - min(record["latency_s"])
        record["quality"] = quality(generation, scenario, run_dir)
        peak = (job.get("peak_tflops") or {}).get(job["scenario"]["precision"])
        record["compute"] = compute_figures(record, _unet_tflop(prepared, run_dir / "flops.json"), peak)
        record["status"] = "ok"
    finally:
        if sampler is not None:
            sampler.close()


def memory_sampling(scenario, device) -> str:
    """When the polling sampler runs: as the scenario asks, or (auto) during the timed repeats only
    where a core is left over: on a GPU the work needs one CPU thread, on a CPU all torch's threads,
    and a side process waking 100 times a second beside them makes every parallel op wait for it."""
    import psutil
    import torch

    if scenario.memory_sampling != "auto":
        return scenario.memory_sampling
    cores = psutil.cpu_count() or 1
    busy = 1 if device.type == "cuda" else torch.get_num_threads()
    return "during" if cores - busy >= 1 else "separate"


def sampler_peaks(read: dict[str, Any]) -> dict[str, Any]:
    """The sampler's reading: device memory as it is (only the sampler sees it); its RSS peak under a
    name of its own beside the kernel's."""
    out = {k: v for k, v in read.items() if k != "peak_rss_mib"}
    out["sampler_peak_rss_mib"] = read["peak_rss_mib"]
    return out


def sampled_repeat(prepared, gpu_uuid: str | None, timed_steps: list[list[float]]) -> dict[str, Any]:
    """One more repeat with the sampler running: its peaks, what it cost, and its step time against the
    timed repeats' (the sampler's effect, measured in the same process)."""
    import statistics

    import psutil

    from suite import pipelines
    from suite.measure import hwm
    from suite.measure.sampler import MemorySampler
    from suite.record import steady_steps

    with MemorySampler(gpu_uuid=gpu_uuid) as sampler:
        side = psutil.Process(sampler.pid)
        side_before, own_before = side.cpu_times(), psutil.Process().cpu_times()
        sampler.reset()
        hwm.reset()
        generation = pipelines.generate(prepared)
        read = sampler.read()
        side_after, own_after = side.cpu_times(), psutil.Process().cpu_times()
    side_s = side_after.user + side_after.system - side_before.user - side_before.system
    own_s = own_after.user + own_after.system - own_before.user - own_before.system
    timed = statistics.median(steady) if (steady := steady_steps(timed_steps)) else 0
    sampled = statistics.median(generation.step_s[1:]) if len(generation.step_s) > 1 else 0
    out = sampler_peaks(read)
    out["sampled_repeat_peak_rss_mib"] = hwm.peak_mib()
    out["sampler_cpu_pct"] = 100.0 * side_s / own_s if own_s > 0 else None
    out["sampler_effect_pct"] = 100.0 * (sampled / timed - 1) if timed and sampled else None
    return out


def compute_figures(record: dict[str, Any], tflop: float | None, peak: float | None) -> dict[str, Any]:
    """Achieved UNet TFLOP/s from the median step, against the run's measured `peak` for this precision."""
    from suite.record import steady_steps, summarise

    if tflop is None:
        return {}
    step = summarise(steady_steps(record["step_s"]))["median"]
    out: dict[str, Any] = {"unet_tflop_per_step": tflop}
    if step and step == step:
        out["achieved_tflops"] = tflop / step
        if peak:
            out["peak_tflops"] = peak
            out["pct_of_peak"] = 100.0 * out["achieved_tflops"] / peak
    return out


def psnr(a, b) -> float:
    import numpy as np

    x = np.asarray(a.convert("RGB"), dtype=np.float64)
    y = np.asarray(b.convert("RGB"), dtype=np.float64)
    mse = float(np.mean((x - y) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def quality(generation, scenario, run_dir: Path) -> dict[str, Any]:
    """Is the output still an image: finite, not blank, and (when a reference is named) close to it."""
    from PIL import Image

    from suite.record import QUALITY_MIN_PSNR_DB

    check = dict(generation.check)
    problems = [check.pop("problem")] if check.get("problem") else []
    if scenario.quality_reference:
        ref_path = run_dir / "images" / f"{scenario.quality_reference}-0.png"
        if ref_path.exists():
            with Image.open(ref_path) as ref:
                if ref.size == generation.images[0].size:
                    check["psnr_db"] = psnr(generation.images[0], ref)
                    check["reference"] = scenario.quality_reference
                    if check["psnr_db"] < QUALITY_MIN_PSNR_DB:
                        problems.append(
                            f"PSNR {check['psnr_db']:.1f} dB against {scenario.quality_reference} "
                            f"(< {QUALITY_MIN_PSNR_DB:.0f} dB)"
                        )
        else:
            check["reference"] = f"{scenario.quality_reference} (no image: not checked)"
    check["verdict"] = "broken: " + "; ".join(problems) if problems else "ok"
    return check


def save_images(images, run_dir: Path, name: str) -> list[str]:
    """The last repeat's images as PNG (lossless, so the watermark survives), paths relative to the run."""
    out = []
    for i, image in enumerate(images):
        rel = f"images/{name}-{i}.png"
        image.save(run_dir / rel)
        out.append(rel)
    return out


def measure_machine(out: Path) -> None:
    """Fingerprint and peak matmul rates of this machine, written as JSON."""
    import torch

    from suite import pipelines
    from suite.measure.fingerprint import fingerprint
    from suite.measure.peak import datasheet_tflops, measure_matmul_tflops

    data: dict[str, Any] = {"fingerprint": fingerprint()}
    device = pipelines.resolve_device("auto")
    peaks = {"fp32": measure_matmul_tflops(device, torch.float32)}
    if device.type == "cpu" and data["fingerprint"]["cpu_bf16"]:
        peaks["bf16"] = measure_matmul_tflops(device, torch.bfloat16)
    if device.type == "cuda":
        peaks["fp16"] = measure_matmul_tflops(device, torch.float16)
        peaks["bf16"] = measure_matmul_tflops(device, torch.bfloat16)
        data["datasheet_tflops_fp16"] = datasheet_tflops(data["fingerprint"]["gpu"])
        data.update(card_memory(device))
    data["peak_tflops"] = peaks
    data["peak_device"] = str(device)
    out.write_text(json.dumps(data, indent=1))


def card_memory(device) -> dict[str, Any]:
    """The card's free memory, and whether the driver reports this process's own share of it: what
    decides how many capacity probe servers can share the card (runner.probe_servers_that_fit)."""
    import torch

    from suite.measure import nvml

    h = nvml.handle(uuid=nvml.torch_device_uuid(device.index or 0))
    torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info(device)
    mine = nvml.process_used_bytes(h, os.getpid()) if h is not None else None
    return {"gpu_free_gib": free / 2**30, "gpu_process_memory": mine is not None}


def child_measure_machine(out: str, channel, log_path: str, runner_pid: int) -> None:
    isolate(channel, log_path, runner_pid)
    measure_machine(Path(out))


def child_main(job_path: str, channel, log_path: str, runner_pid: int) -> None:
    """Entry point of a worker process: run one job, write its record, whatever happens."""
    isolate(channel, log_path, runner_pid)
    job = json.loads(Path(job_path).read_text())
    started = time.time()
    record: dict[str, Any] = {}
    try:
        measure_scenario(job, record)
    except BaseException as exc:  # every failure becomes an outcome, never a lost scenario
        traceback.print_exc()
        record.update(failure(exc))
    record["worker_s"] = time.time() - started
    Path(job["result"]).write_text(json.dumps(record))
