"""Single-file checkpoints (`.safetensors`, `.ckpt`) as users download them: read safely, identified.

A `.ckpt` is a pickle, and a pickle can run code when loaded. It is only ever opened with
`torch.load(weights_only=True)`, which refuses anything but tensors and plain containers, before
anything else touches it. The keys and shapes (read without loading the tensors: the
safetensors header, or a memory-mapped zip) tell which architecture and size the file holds,
so a wrong file gets one clear error instead of a stack of missing-key warnings.
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth")
SAMPLE_BYTES = 1 << 20

UNET_IN = "model.diffusion_model.input_blocks.0.0.weight"
CLIP_V1 = "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"
OPEN_CLIP = "cond_stage_model.model.token_embedding.weight"
VAE_IN = "first_stage_model.encoder.conv_in.weight"
# UNet widths (conv_in output channels) of the shipped configs: full size and tiny
WIDTHS = {"sd-v1": (320, 32), "sd-v2.1": (320, 32), "sd-x4-upscaler": (256, 32)}


class WeightsError(ValueError):
    """Weights that cannot be used as asked; the message names the file and what was expected."""


@dataclass(frozen=True)
class CheckpointInfo:
    architecture: str
    tiny: bool
    text_encoder: str
    unet_width: int
    tensors: int


def sample_hash(path: Path) -> str:
    """sha256 of size + first MiB + last MiB: identifies multi-GB files in milliseconds."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        digest.update(f.read(SAMPLE_BYTES))
        if size > SAMPLE_BYTES:
            f.seek(max(SAMPLE_BYTES, size - SAMPLE_BYTES))
            digest.update(f.read(SAMPLE_BYTES))
    return "sha256-sample:" + digest.hexdigest()[:32]


def read_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of a checkpoint, without reading its tensors."""
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (safe_open has no iterator)
        except (SafetensorError, OSError, ValueError) as exc:
            raise WeightsError(f"{path}: not a readable .safetensors file ({exc})") from None
    return {k: tuple(v.shape) for k, v in load_ckpt(path).items()}


def load_ckpt(path: Path) -> dict:
    """A pickled checkpoint's tensors, refusing anything that is not plain data."""
    import pickle

    import torch

    if not zipfile.is_zipfile(path):
        raise WeightsError(f"{path}: not a PyTorch checkpoint (expected a zip archive written by torch.save)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0]
        raise WeightsError(
            f"{path}: refused: the checkpoint holds Python objects other than tensors, and loading them could run code "
            f"({first}). Convert it to .safetensors with a tool you trust, or use the original file."
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise WeightsError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    while isinstance(data, dict) and "state_dict" in data and isinstance(data["state_dict"], dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise WeightsError(f"{path}: holds no state dict of tensors")
    return data


def identify(path: Path, shapes: dict[str, tuple[int, ...]]) -> CheckpointInfo:
    """Which architecture (and which shipped size) a Stable Diffusion checkpoint in the original layout is."""
    if UNET_IN not in shapes or VAE_IN not in shapes:
        raise WeightsError(
            f"{path}: not a Stable Diffusion checkpoint in the original (LDM) layout: "
            f"no '{UNET_IN if UNET_IN not in shapes else VAE_IN}' among its {len(shapes)} tensors"
        )
    width, in_channels = shapes[UNET_IN][0], shapes[UNET_IN][1]
    if OPEN_CLIP in shapes:
        text = "OpenCLIP"
        architecture = "sd-x4-upscaler" if in_channels == 7 else "sd-v2.1"
    elif CLIP_V1 in shapes:
        text = "CLIP"
        architecture = "sd-v1"
    else:
        raise WeightsError(f"{path}: no text encoder found (neither CLIP nor OpenCLIP weights)")
    full, tiny = WIDTHS[architecture]
    if width not in (full, tiny):
        raise WeightsError(
            f"{path}: a {architecture} checkpoint with UNet width {width}; the shipped configs have {full}"
        )
    return CheckpointInfo(architecture, width == tiny != full, text, width, len(shapes))


def expect(path: Path, info: CheckpointInfo, model: str) -> None:
    if info.architecture != model:
        what = {
            "sd-v1": "CLIP text encoder",
            "sd-v2.1": "OpenCLIP text encoder, 4-channel UNet",
            "sd-x4-upscaler": "OpenCLIP text encoder, 7-channel UNet",
        }
        raise WeightsError(
            f"{path}: expected an {model} checkpoint ({what[model]}), found an {info.architecture} one "
            f"({what[info.architecture]})"
        )


def inspect(path: Path, model: str | None = None) -> CheckpointInfo:
    """Identify a single-file checkpoint, checking it is `model` when given."""
    if not path.is_file():
        raise WeightsError(f"{path}: no such file")
    if path.suffix not in SINGLE_FILE_SUFFIXES:
        raise WeightsError(f"{path}: expected a {' or '.join(SINGLE_FILE_SUFFIXES)} checkpoint")
    info = identify(path, read_shapes(path))
    if model:
        expect(path, info, model)
    return info
