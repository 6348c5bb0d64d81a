"""How long a full-size synthetic pipeline takes to exist, and that it computes a real 512x512 step.

Run with `make bench-micro`. Target: an SD v1 pipeline (860M-parameter UNet, CLIP ViT-L/14, VAE)
with seeded random weights is created in under 60 s on a 2-core CPU.
"""

import time

import pytest
import torch

from suite.models import load_pipeline
from suite.models.architectures import ARCHITECTURES
from suite.models.synthetic import parameter_counts

CREATE_TARGET_S = 60.0


@pytest.mark.parametrize("model", ["sd-v1", "sd-v2.1"])
def test_full_size_synthetic_pipeline_is_created_quickly_and_runs_a_512_step(benchmark, model):
    created: dict = {}

    def create():
        t0 = time.perf_counter()
        created["pipe"], created["weights"] = load_pipeline(model, "synthetic", device="cpu", dtype=torch.float32)
        created["s"] = time.perf_counter() - t0

    benchmark.pedantic(create, rounds=1, iterations=1)
    pipe = created["pipe"]
    counts = parameter_counts(ARCHITECTURES[model])
    assert sum(p.numel() for p in pipe.unet.parameters()) == counts["unet"] > 800e6
    cross = pipe.unet.config.cross_attention_dim
    latents = torch.randn(2, 4, 64, 64)  # one 512x512 step with classifier-free guidance: batch 2
    context = torch.randn(2, 77, cross)
    t0 = time.perf_counter()
    with torch.inference_mode():
        noise = pipe.unet(latents, torch.tensor(999), encoder_hidden_states=context).sample
    step_s = time.perf_counter() - t0
    assert noise.shape == latents.shape and torch.isfinite(noise).all()
    benchmark.extra_info.update(create_s=created["s"], step_512_s=step_s, unet_parameters=counts["unet"])
    print(f"\n{model}: created in {created['s']:.1f} s; one 512x512 UNet step with guidance {step_s:.1f} s")
    assert created["s"] < CREATE_TARGET_S
