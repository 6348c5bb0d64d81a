"""The suite's step time against a stopwatch around plain diffusers, for test_measurement.py.

`interleaved_rounds` alternates the suite's `generate` and a hand-written denoising loop on one
prepared pipeline, so drift in the machine's speed hits both alike. `measure_in_process` does a
whole measurement (load, warm up, rounds) in whatever process calls it, and `main` is the same as
a plain `python fidelity.py OUT` process, which imports torch itself, where the suite's workers
are forked from a server that imported torch before them.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import torch

from suite.pipelines import generate, prepare
from suite.scenario import Scenario

CPU = torch.device("cpu")
SCENARIO = Scenario(name="faithful", model="sd-v1", weights="synthetic", sampler="ddim", width=128, height=128, steps=5)


def hand_timed_steps(pipe, scenario: Scenario) -> list[float]:
    """The denoising loop written out with diffusers' parts and a perf_counter around each step."""
    generator = torch.Generator("cpu").manual_seed(scenario.seed)
    with torch.inference_mode():
        positive, negative = pipe.encode_prompt(scenario.prompt, CPU, 1, True)
        context = torch.cat([negative, positive])
        pipe.scheduler.set_timesteps(scenario.steps, device=CPU)
        latents = torch.randn((1, 4, scenario.height // 8, scenario.width // 8), generator=generator)
        latents = latents * pipe.scheduler.init_noise_sigma
        times = []
        for t in pipe.scheduler.timesteps:
            t0 = time.perf_counter()
            model_in = pipe.scheduler.scale_model_input(torch.cat([latents] * 2), t)
            noise = pipe.unet(model_in, t, encoder_hidden_states=context).sample
            uncond, cond = noise.chunk(2)
            noise = uncond + scenario.guidance_scale * (cond - uncond)
            latents = pipe.scheduler.step(noise, t, latents).prev_sample
            times.append(time.perf_counter() - t0)
    return times[1:]  # the suite's step figures leave out the first step too


def interleaved_rounds(prepared, rounds: int) -> tuple[list[list[float]], list[list[float]]]:
    """Per round: the suite's steps and the hand-timed loop's, the order alternating between rounds."""
    suite_rounds, hand_rounds = [], []
    for i in range(rounds):
        first_suite = i % 2 == 0
        if first_suite:
            suite_rounds.append(generate(prepared).step_s[1:])
        hand_rounds.append(hand_timed_steps(prepared.pipe, prepared.scenario))
        if not first_suite:
            suite_rounds.append(generate(prepared).step_s[1:])
    return suite_rounds, hand_rounds


def measure_in_process(rounds: int) -> dict[str, float]:
    """Load, warm up and time `rounds` interleaved rounds here; the medians of each side."""
    prepared = prepare(SCENARIO, CPU)
    generate(prepared)
    hand_timed_steps(prepared.pipe, SCENARIO)
    suite_rounds, hand_rounds = interleaved_rounds(prepared, rounds)
    return {
        "suite_step_s": statistics.median(t for r in suite_rounds for t in r),
        "hand_step_s": statistics.median(t for r in hand_rounds for t in r),
        "torch_threads": torch.get_num_threads(),
    }


def in_suite_worker(out: str, rounds: int, channel, log_path: str, runner_pid: int) -> None:
    """The measurement in a worker as the suite starts one (forkserver child, isolated like a scenario)."""
    from suite.worker import isolate

    isolate(channel, log_path, runner_pid)
    Path(out).write_text(json.dumps(measure_in_process(rounds)))


def main() -> None:
    out, rounds = sys.argv[1], int(sys.argv[2])
    Path(out).write_text(json.dumps(measure_in_process(rounds)))


if __name__ == "__main__":
    main()
