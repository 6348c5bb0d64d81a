"""The three architectures of the article, from diffusers configs shipped in this package.

Each lives in `configs/<name>/` in diffusers' own layout (model_index.json plus one folder per
component), so diffusers can build it, and `from_single_file` can read a user's checkpoint into
it, with no hub access. `configs/<name>-tiny/` is the same architecture shrunk for tests: the same
block types and layout, a few channels wide. The CLIP BPE tokenizer is shipped once, in
`tokenizer/`, and every architecture builds its tokenizer from it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

CONFIGS = Path(str(resources.files("suite.models").joinpath("configs")))
TOKENIZER = Path(str(resources.files("suite.models").joinpath("tokenizer")))

PIPELINES = {
    "txt2img": "StableDiffusionPipeline",
    "img2img": "StableDiffusionImg2ImgPipeline",
    "upscale": "StableDiffusionUpscalePipeline",
}


@dataclass(frozen=True)
class Architecture:
    name: str
    description: str
    native_size: int
    tasks: tuple[str, ...]
    text_encoder: str  # "CLIP" (OpenAI ViT-L/14) or "OpenCLIP" (ViT-H): their original layouts differ

    def config_dir(self, tiny: bool = False) -> Path:
        return CONFIGS / (f"{self.name}-tiny" if tiny else self.name)

    def component_config(self, component: str, tiny: bool = False) -> dict[str, Any]:
        folder = self.config_dir(tiny) / component
        name = "scheduler_config.json" if "scheduler" in component else "config.json"
        return _read_json(folder / name)

    def pipeline_index(self, tiny: bool = False) -> dict[str, Any]:
        return _read_json(self.config_dir(tiny) / "model_index.json")


ARCHITECTURES: dict[str, Architecture] = {
    "sd-v1": Architecture(
        "sd-v1",
        "SD 1.4/1.5: CLIP ViT-L/14 text encoder, 860M UNet, PNDM (PLMS), 512x512",
        512,
        ("txt2img", "img2img"),
        "CLIP",
    ),
    "sd-v2.1": Architecture(
        "sd-v2.1",
        "SD 2.1-768: OpenCLIP ViT-H text encoder (23 layers used), linear-projection UNet with attention upcast, v-prediction, 768x768",
        768,
        ("txt2img", "img2img"),
        "OpenCLIP",
    ),
    "sd-x4-upscaler": Architecture(
        "sd-x4-upscaler",
        "SD x4 upscaler: 7-channel UNet with noise-level class embedding, its own VAE (scaling 0.08333), DDPM low-res noise, max noise level 350",
        512,
        ("upscale",),
        "OpenCLIP",
    ),
}


@cache
def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def get(name: str) -> Architecture:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(ARCHITECTURES)}") from None


def pipeline_class(arch: Architecture, task: str):
    """The diffusers pipeline class that runs `task` on `arch`."""
    import diffusers

    if task not in arch.tasks:
        raise ValueError(f"model {arch.name!r} does not do {task!r} (it does: {', '.join(arch.tasks)})")
    return getattr(diffusers, PIPELINES[task])


def tokenizer(arch: Architecture, tiny: bool = False):
    """OpenAI's CLIP BPE (49,408 tokens, lower-cases its input); SD 2.x pads with '!'."""
    from transformers import CLIPTokenizer

    settings = _read_json(arch.config_dir(tiny) / "tokenizer" / "tokenizer_config.json")
    return CLIPTokenizer(
        str(TOKENIZER / "vocab.json"),
        str(TOKENIZER / "merges.txt"),
        **{k: v for k, v in settings.items() if k != "do_lower_case"},
    )


def clip_text_config(data: dict[str, Any]):
    """A CLIPTextConfig from a config.json's contents (a shipped one or a user's folder's)."""
    from transformers import CLIPTextConfig

    return CLIPTextConfig(**{k: v for k, v in data.items() if k != "architectures"})


def schedulers(arch: Architecture, tiny: bool = False) -> dict[str, Any]:
    """The scheduler(s) named in model_index.json, built from their shipped configs."""
    import diffusers

    out = {}
    for component in ("scheduler", "low_res_scheduler"):
        entry = arch.pipeline_index(tiny).get(component)
        if entry:
            out[component] = getattr(diffusers, entry[1]).from_config(arch.component_config(component, tiny))
    return out


def pipeline_extras(arch: Architecture, task: str) -> dict[str, Any]:
    """Arguments a pipeline takes besides its models: no safety checker; the upscaler's noise ceiling."""
    extras: dict[str, Any] = {"safety_checker": None, "feature_extractor": None}
    if task == "upscale":
        extras["watermarker"] = None
        extras["max_noise_level"] = arch.pipeline_index()["max_noise_level"]
    else:
        extras["requires_safety_checker"] = False
    return extras
