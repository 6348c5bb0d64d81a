"""Does a short calibration workload move with the host's speed the way a real step does?

`sdsuite compare` cannot tell a slower host from a slower scenario: identical runs taken 15-25
minutes apart on the shared 2-core VM differed by 17-21 % with nothing visible in the guest. If a
fixed workload, timed in each worker next to the scenario, slowed by as much, dividing by it would
take the host out. This script measures whether it does, before anything is built on it:

    .venv/bin/python tests/benchmarks/host_drift.py run OUT.jsonl SECONDS [SIZE]
    .venv/bin/python tests/benchmarks/host_drift.py analyse OUT.jsonl...

`run` loads the quick profile's SD v1 txt2img (full-size synthetic weights, PLMS, 4 steps, SIZE
pixels square, default 128) in this process and, until SECONDS have passed, alternates the candidate
workloads (twice each) and one generation: one JSON line per cycle, with the other processes' CPU
share. Run it several times, minutes apart, in fresh processes (under `flock -x
/tmp/sdsuite-quiet.lock` for quiet data). `analyse` puts each cycle's median step against the mean of
the calibrations on either side of it: the correlation of the logs, the slope, and the spread of
log(step / calibration) beside that of log(step). A calibration worth dividing by has a slope near
1 and leaves less spread than it found. Candidates:
- matmul: 4 products of 1024x1024 fp32 (compute, cache-resident; what `peak_tflops` measures);
- stream: copy 192 MiB (memory bandwidth);
- wconv: two 1280->1280 3x3 convolutions on 2x8x8 (the UNet's deepest blocks: 118 MiB of weights);
- miniunet: a two-level diffusers UNet (320/640 channels, cross-attention, 305 MiB) on 2x4x16x16.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import numpy as np


def _timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


class Candidates:
    def __init__(self) -> None:
        import torch
        from diffusers import UNet2DConditionModel

        g = torch.Generator().manual_seed(0)
        self.a, self.b = torch.randn(1024, 1024, generator=g), torch.randn(1024, 1024, generator=g)
        self.src = torch.randn(48 * 1024 * 1024, generator=g)
        self.dst = torch.empty_like(self.src)
        self.convs = torch.nn.Sequential(*[torch.nn.Conv2d(1280, 1280, 3, padding=1) for _ in range(2)]).eval()
        self.x = torch.randn(2, 1280, 8, 8, generator=g)
        torch.manual_seed(0)
        self.unet = UNet2DConditionModel(
            sample_size=32,
            layers_per_block=1,
            block_out_channels=(320, 640),
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=768,
            attention_head_dim=8,
        ).eval()
        self.latents = torch.randn(2, 4, 16, 16, generator=g)
        self.context = torch.randn(2, 77, 768, generator=g)
        self.run(1)  # warm-up

    def run(self, n: int) -> dict[str, list[float]]:
        import torch

        with torch.inference_mode():
            return {
                "matmul": _timed(lambda: [self.a @ self.b for _ in range(4)], n),
                "stream": _timed(lambda: self.dst.copy_(self.src), n),
                "wconv": _timed(lambda: self.convs(self.x), n),
                "miniunet": _timed(lambda: self.unet(self.latents, 500, encoder_hidden_states=self.context), n),
            }


def run(out: str, seconds: float, size: int = 128) -> None:
    import torch

    from suite.measure import noise
    from suite.pipelines import generate, prepare
    from suite.scenario import Scenario

    deadline = time.time() + seconds
    scenario = Scenario(
        name="v1-txt2img",
        model="sd-v1",
        weights="synthetic",
        sampler="plms",
        width=size,
        height=size,
        steps=4,
        prompt="a brush-wielding hamster, oil painting",
    )
    prepared = prepare(scenario, torch.device("cpu"))
    generate(prepared)
    candidates = Candidates()
    while time.time() < deadline:
        snap = noise.snapshot()
        before = candidates.run(2)
        steps = generate(prepared).step_s[1:]
        after = candidates.run(2)
        seen = noise.between(snap, noise.snapshot())
        line = {"t": time.time(), "calib": [before, after], "steps": [steps], **seen}
        with open(out, "a") as f:
            f.write(json.dumps(line) + "\n")


def per_process(records: list[dict]) -> None:
    """Each quiet process's median step and calibrations, as ratios to the first process's: what a
    comparison of two runs would divide (a process is a run of lines less than 2 minutes apart)."""
    groups: list[list[dict]] = []
    for r in sorted(records, key=lambda r: r["t"]):
        if r["others_cpu_pct"] >= 10:
            continue
        if not groups or r["t"] - groups[-1][-1]["t"] > 120:
            groups.append([])
        groups[-1].append(r)
    if len(groups) < 2:
        return
    medians = [
        {
            "step": statistics.median(t for r in g for steps in r["steps"] for t in steps),
            **{k: statistics.median(t for r in g for c in r["calib"] for t in c[k]) for k in g[0]["calib"][0]},
        }
        for g in groups
    ]
    print(f"quiet processes, each against the first ({len(groups)}; step / calibration ratio in brackets):")
    for g, m in zip(groups, medians, strict=True):
        step = m["step"] / medians[0]["step"]
        cells = "  ".join(
            f"{k} {m[k] / medians[0][k]:.3f} ({step / (m[k] / medians[0][k]):.3f})" for k in m if k != "step"
        )
        print(f"  {time.strftime('%H:%M', time.gmtime(g[0]['t']))} UTC, {len(g)} cycles: step {step:.3f}  {cells}")


def analyse(paths: list[str]) -> None:
    cycles = []
    records = []
    for path in paths:
        with open(path) as f:
            lines = f.readlines()
        for line in lines:
            r = json.loads(line)
            records.append(r)
            for i, steps in enumerate(r["steps"]):
                cal = {
                    k: (statistics.median(r["calib"][i][k]) + statistics.median(r["calib"][i + 1][k])) / 2
                    for k in r["calib"][0]
                }
                cycles.append((statistics.median(steps), cal, r["others_cpu_pct"]))
    for label, chosen in (("all", cycles), ("other processes < 10 % of the CPU", [c for c in cycles if c[2] < 10])):
        if len(chosen) < 3:
            continue
        step = np.log([c[0] for c in chosen])
        print(
            f"{label}: {len(chosen)} cycles, step {np.exp(step.min()):.2f}-{np.exp(step.max()):.2f} s, sd of log {step.std():.3f}"
        )
        for name in chosen[0][1]:
            cal = np.log([c[1][name] for c in chosen])
            r = np.corrcoef(step, cal)[0, 1]
            slope = np.polyfit(cal, step, 1)[0]
            print(f"  {name:9s} r {r:+.2f}  slope {slope:.2f}  sd of log(step / calibration) {(step - cal).std():.3f}")
    per_process(records)


if __name__ == "__main__":
    if sys.argv[1] == "run":
        run(sys.argv[2], float(sys.argv[3]), *(int(a) for a in sys.argv[4:5]))
    else:
        analyse(sys.argv[2:])
