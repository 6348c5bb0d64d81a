"""UNet work per denoising step, counted by torch's flop counter on the meta device.

Counting on the meta device runs no arithmetic, so a full-size count costs well under a second
on any machine; the figure depends only on the architecture, the latent size and the batch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode


def unet_tflop_per_call(
    unet_config: dict[str, Any],
    latent_hw: tuple[int, int],
    batch: int,
    text_tokens: int = 77,
) -> float:
    """TFLOP of one UNet forward at `batch` (already doubled for classifier-free guidance)."""
    from diffusers import UNet2DConditionModel

    config = {k: v for k, v in unet_config.items() if not k.startswith("_")}
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config)
        h, w = latent_hw
        sample = torch.empty(batch, unet.config.in_channels, h, w)
        context = torch.empty(batch, text_tokens, unet.config.cross_attention_dim)
        timestep = torch.full((batch,), 10, dtype=torch.long)
        kwargs = {}
        if unet.config.num_class_embeds:
            kwargs["class_labels"] = torch.zeros(batch, dtype=torch.long)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        unet(sample, timestep, encoder_hidden_states=context, **kwargs)
    return counter.get_total_flops() / 1e12


def cached_unet_tflop(cache: Path, key: str, compute) -> float:
    """`compute()` once per key for a whole run; the cache is a small JSON file in the run directory."""
    data = json.loads(cache.read_text()) if cache.exists() else {}
    if key not in data:
        data[key] = compute()
        cache.write_text(json.dumps(data, indent=1, sort_keys=True))
    return float(data[key])
