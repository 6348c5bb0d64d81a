"""The few features that tell Stable Diffusion variants apart, read from a checkpoint or a folder.

Loading weights into the wrong architecture fails deep inside diffusers with a shape error, or
worse, loads and produces noise: an SD 2 inpainting UNet has 9 input channels, SD 2.x conditions
on a 1024-wide OpenCLIP text encoder where SD 1.x uses a 768-wide CLIP one. The same features are
read from an original (LDM-layout) checkpoint's tensor shapes, from a diffusers folder's configs
and from the configs the suite ships, so every check compares like with like and a mismatch gets
one error that says what was expected, what was found, and what the weights probably are.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path
from typing import Any

from suite.models.architectures import ARCHITECTURES, Architecture
from suite.models.errors import WeightsError

UNET_IN = "model.diffusion_model.input_blocks.0.0.weight"
CLIP_V1 = "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"
OPEN_CLIP = "cond_stage_model.model.token_embedding.weight"
VAE_IN = "first_stage_model.encoder.conv_in.weight"
VAE_LATENT = "first_stage_model.decoder.conv_in.weight"
CROSS_ATTENTION = re.compile(r"model\.diffusion_model\..*\.attn2\.to_k\.weight")
PROJ_IN = re.compile(r"model\.diffusion_model\..*\.proj_in\.weight")
# OpenAI's CLIP uses quick_gelu, OpenCLIP's ViT-H plain gelu: how a folder's config tells them apart
TEXT_ENCODERS = {"quick_gelu": "CLIP", "gelu": "OpenCLIP"}
SUPPORTED = "sdsuite supports SD 1.x (sd-v1), SD 2.1 768-v (sd-v2.1) and the SD x4 upscaler (sd-x4-upscaler)"


@dataclass(frozen=True)
class Signature:
    text_encoder: str  # "CLIP" or "OpenCLIP"
    text_width: int
    unet_in_channels: int
    unet_width: int
    cross_attention: int
    linear_projection: bool
    vae_width: int
    latent_channels: int


LABELS = {
    "text_encoder": "text encoder",
    "text_width": "text encoder width",
    "unet_in_channels": "UNet input channels",
    "unet_width": "UNet width",
    "cross_attention": "cross-attention width",
    "linear_projection": "linear attention projections",
    "vae_width": "VAE width",
    "latent_channels": "latent channels",
}
# The features that make an architecture; the others only say how big it is.
KIND = ("text_encoder", "unet_in_channels", "linear_projection", "latent_channels")


def differences(found: Signature, expected: Signature, only: tuple[str, ...] | None = None) -> list[str]:
    """'feature found (expected E)' for each feature that differs."""
    names = only or tuple(f.name for f in fields(Signature))
    return [
        f"{LABELS[n]} {getattr(found, n)} (expected {getattr(expected, n)})"
        for n in names
        if getattr(found, n) != getattr(expected, n)
    ]


def from_configs(text_encoder: dict[str, Any], unet: dict[str, Any], vae: dict[str, Any]) -> Signature:
    return Signature(
        text_encoder=TEXT_ENCODERS.get(text_encoder.get("hidden_act", ""), str(text_encoder.get("hidden_act"))),
        text_width=text_encoder["hidden_size"],
        unet_in_channels=unet["in_channels"],
        unet_width=unet["block_out_channels"][0],
        cross_attention=unet["cross_attention_dim"],
        linear_projection=bool(unet.get("use_linear_projection")),
        vae_width=vae["block_out_channels"][0],
        latent_channels=vae["latent_channels"],
    )


@cache
def shipped(name: str, tiny: bool) -> Signature:
    arch = ARCHITECTURES[name]
    return from_configs(*(arch.component_config(c, tiny) for c in ("text_encoder", "unet", "vae")))


def folder_configs(folder: Path, location: str) -> dict[str, dict[str, Any]]:
    """The text encoder's, UNet's and VAE's config.json of a diffusers folder."""
    configs = {}
    for component in ("text_encoder", "unet", "vae"):
        path = folder / component / "config.json"
        try:
            configs[component] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise WeightsError(
                f"{location}: not a Stable Diffusion folder: cannot read {component}/config.json ({exc})"
            ) from None
    return configs


def of_folder(location: str, configs: dict[str, dict[str, Any]]) -> Signature:
    try:
        return from_configs(configs["text_encoder"], configs["unet"], configs["vae"])
    except (KeyError, IndexError, TypeError) as exc:
        raise WeightsError(f"{location}: not a Stable Diffusion folder: its configs lack {exc}") from None


def of_checkpoint(path: Path, shapes: dict[str, tuple[int, ...]]) -> Signature:
    """The signature of an original (LDM-layout) checkpoint, from its tensor names and shapes."""
    if UNET_IN not in shapes or VAE_IN not in shapes or VAE_LATENT not in shapes:
        missing = next(k for k in (UNET_IN, VAE_IN, VAE_LATENT) if k not in shapes)
        raise WeightsError(
            f"{path}: not a Stable Diffusion checkpoint in the original (LDM) layout: "
            f"no '{missing}' among its {len(shapes)} tensors{_layout_hint(shapes)}"
        )
    if CLIP_V1 in shapes:
        text_encoder, text_width = "CLIP", shapes[CLIP_V1][1]
    elif OPEN_CLIP in shapes:
        text_encoder, text_width = "OpenCLIP", shapes[OPEN_CLIP][1]
    else:
        raise WeightsError(f"{path}: no text encoder found (neither CLIP nor OpenCLIP weights){_layout_hint(shapes)}")
    cross = next((shape for key, shape in shapes.items() if CROSS_ATTENTION.fullmatch(key)), None)
    proj_in = next((shape for key, shape in shapes.items() if PROJ_IN.fullmatch(key)), None)
    if cross is None or proj_in is None:
        raise WeightsError(
            f"{path}: its UNet has no cross-attention layers; not a text-conditioned Stable Diffusion UNet"
        )
    return Signature(
        text_encoder=text_encoder,
        text_width=text_width,
        unet_in_channels=shapes[UNET_IN][1],
        unet_width=shapes[UNET_IN][0],
        cross_attention=cross[1],
        linear_projection=len(proj_in) == 2,
        vae_width=shapes[VAE_IN][0],
        latent_channels=shapes[VAE_LATENT][1],
    )


def _layout_hint(shapes: dict[str, tuple[int, ...]]) -> str:
    if any(k.startswith("conditioner.embedders.") for k in shapes):
        return f"; this looks like an SDXL checkpoint; {SUPPORTED}"
    if any("lora" in k.lower() for k in shapes):
        return "; this looks like a LoRA (an add-on to a model, not a model)"
    return ""


def lookalike(found: Signature) -> str:
    """'; this looks like X; sdsuite supports ...' for the variants users most often have, else ''."""
    known = {
        (9, "CLIP"): "an SD 1.x inpainting checkpoint",
        (9, "OpenCLIP"): "an SD 2 inpainting checkpoint",
        (5, "OpenCLIP"): "an SD 2 depth-to-image checkpoint",
        (8, "CLIP"): "an InstructPix2Pix checkpoint",
    }
    what = known.get((found.unet_in_channels, found.text_encoder))
    return f"; this looks like {what}; {SUPPORTED}" if what else ""


def identify(location: str | Path, found: Signature) -> tuple[Architecture, bool]:
    """The shipped architecture and size (tiny or not) that `found` is exactly; a WeightsError otherwise."""
    for arch in ARCHITECTURES.values():
        for tiny in (False, True):
            if found == shipped(arch.name, tiny):
                return arch, tiny
    candidates = [(arch, tiny) for arch in ARCHITECTURES.values() for tiny in (False, True)]
    arch, tiny = min(candidates, key=lambda c: len(differences(found, shipped(c[0].name, c[1]))))
    size = "tiny " if tiny else ""
    raise WeightsError(
        f"{location}: matches no architecture sdsuite ships; nearest is the {size}{arch.name}, but it has "
        f"{', '.join(differences(found, shipped(arch.name, tiny)))}{lookalike(found)}"
    )


def check_kind(location: str | Path, found: Signature, arch: Architecture) -> None:
    """A WeightsError unless a diffusers folder is `arch` in kind, at any size (its own configs build it)."""
    wrong = differences(found, shipped(arch.name, False), KIND)
    if wrong:
        other = next(
            (a.name for a in ARCHITECTURES.values() if not differences(found, shipped(a.name, False), KIND)), None
        )
        hint = f"; this is an {other} pipeline" if other else lookalike(found)
        raise WeightsError(f"{location}: expected an {arch.name} pipeline, found {', '.join(wrong)}{hint}")
    if found.text_width != found.cross_attention:
        raise WeightsError(
            f"{location}: its UNet attends to {found.cross_attention}-wide text features but its text encoder "
            f"makes {found.text_width}-wide ones; the folder mixes components of different models"
        )


def size_of(found: Signature, arch: Architecture) -> str:
    """'full' or 'tiny' where the widths are those of a shipped config, else 'custom'."""
    for tiny, size in ((False, "full"), (True, "tiny")):
        if found == shipped(arch.name, tiny):
            return size
    return "custom"
