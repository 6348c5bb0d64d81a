"""Full-size models with seeded random weights, created directly where they will run.

The time and memory of a forward pass do not depend on the weights' values, so random weights
benchmark faithfully where real ones cannot be downloaded. Modules are built on the meta device
(no memory, no init cost), allocated once on the target device in the target dtype, and filled
there by a seeded generator, so a 1B-parameter pipeline on a GPU never passes through host
memory. The fill follows PyTorch's default scale (uniform within 1/sqrt(fan_in)), which keeps
activations within fp16 range through the whole pipeline.
"""

from __future__ import annotations

import math
import zlib
from typing import Any

import torch
from torch import nn

from suite.models.architectures import (
    Architecture,
    clip_text_config,
    pipeline_class,
    pipeline_extras,
    schedulers,
    tokenizer,
)


def _fill(module: nn.Module, seed: int, device: torch.device) -> None:
    generator = torch.Generator(device=device)
    with torch.no_grad():
        for name, param in module.named_parameters():
            # one stream per parameter name: the same seed gives the same weights whatever the order
            generator.manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
            leaf = name.rsplit(".", 1)[-1]
            owner = module.get_submodule(name.rsplit(".", 1)[0]) if "." in name else module
            if isinstance(owner, (nn.LayerNorm, nn.GroupNorm)):
                param.fill_(1.0 if leaf == "weight" else 0.0)
            elif isinstance(owner, nn.Embedding):
                param.normal_(0.0, 0.02, generator=generator)
            else:
                fan_in = param[0].numel() if param.dim() >= 2 else _fan_in(owner)
                bound = 1.0 / math.sqrt(fan_in) if fan_in else 0.0
                param.uniform_(-bound, bound, generator=generator)
        for buffer_name, buffer in module.named_buffers():
            if buffer_name.endswith("position_ids"):
                buffer.copy_(torch.arange(buffer.shape[-1], device=device).expand_as(buffer))


def _fan_in(module: nn.Module) -> int:
    weight = getattr(module, "weight", None)
    return weight[0].numel() if isinstance(weight, torch.Tensor) and weight.dim() >= 2 else 0


def materialise(module: nn.Module, device: torch.device, dtype: torch.dtype, seed: int) -> nn.Module:
    """Allocate a meta-device module on `device` in `dtype` and fill it with seeded weights."""
    module = nn.Module.to(module, dtype=dtype).to_empty(device=device)  # diffusers' .to() warns needlessly here
    _fill(module, seed, device)
    return module.eval().requires_grad_(False)


def build_pipeline(arch: Architecture, task: str, device: str, dtype: torch.dtype, seed: int, tiny: bool):
    target = torch.device(device)
    models = shipped_meta_models(arch, tiny)
    components = {
        "unet": materialise(models["unet"], target, dtype, seed),
        "vae": materialise(models["vae"], target, dtype, seed + 1),
        "text_encoder": materialise(models["text_encoder"], target, dtype, seed + 2),
        "tokenizer": tokenizer(arch, tiny),
        **schedulers(arch, tiny),
    }
    return pipeline_class(arch, task)(**components, **pipeline_extras(arch, task))


def meta_models(unet: dict[str, Any], vae: dict[str, Any], text_encoder: dict[str, Any]) -> dict[str, nn.Module]:
    """UNet, VAE and text encoder from their config.json contents, on the meta device: names and
    shapes only, no memory, instant (what synthetic weights fill, and what a checkpoint must provide)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    with torch.device("meta"):
        return {
            "unet": UNet2DConditionModel.from_config(unet),
            "vae": AutoencoderKL.from_config(vae),
            "text_encoder": CLIPTextModel(clip_text_config(text_encoder)),
        }


def shipped_meta_models(arch: Architecture, tiny: bool = False) -> dict[str, nn.Module]:
    return meta_models(*(arch.component_config(c, tiny) for c in ("unet", "vae", "text_encoder")))


def parameter_counts(arch: Architecture, tiny: bool = False) -> dict[str, int]:
    """Parameters per model component, counted on the meta device (instant, no memory)."""
    return {name: sum(p.numel() for p in m.parameters()) for name, m in shipped_meta_models(arch, tiny).items()}
