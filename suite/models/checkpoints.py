"""Single-file checkpoints (`.safetensors`, `.ckpt`) as users download them: read safely, identified, checked.

A `.ckpt` is a pickle, and a pickle can run code when loaded. It is only ever opened with
`torch.load(weights_only=True)`, here and where diffusers' `from_single_file` reads it, which
refuses anything but tensors and plain containers. One name is let through: PyTorch Lightning
pickled its ModelCheckpoint class into the training state of the original SD 1.x checkpoints
(sd-v1-4.ckpt), so that global resolves to an inert stand-in; Lightning is never imported and
nothing of it runs. The keys and shapes (read without reading the tensors: the safetensors header,
or a memory-mapped zip) say which architecture and size the file holds and whether every tensor
the model needs is there, so a wrong or truncated file gets one clear error instead of a stack of
missing-key warnings, a crash on a meta tensor, or a model with random layers.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from suite.models import signature
from suite.models.architectures import ARCHITECTURES
from suite.models.errors import WeightsError
from suite.models.signature import Signature

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth")
SAMPLE_BYTES = 1 << 20
LIGHTNING_CHECKPOINT = "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"


class LightningModelCheckpoint:
    """Stands in for Lightning's ModelCheckpoint, which sd-v1-4.ckpt names in its callback state.

    No methods and no state handling of its own: unpickling can at most create an empty instance.
    """


@dataclass(frozen=True)
class CheckpointInfo:
    architecture: str
    tiny: bool
    signature: Signature
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


def trusted_globals() -> contextlib.AbstractContextManager:
    """While active, `torch.load(weights_only=True)` also accepts Lightning's ModelCheckpoint name."""
    import torch

    return torch.serialization.safe_globals([(LightningModelCheckpoint, LIGHTNING_CHECKPOINT)])


def load_ckpt(path: Path) -> dict:
    """A pickled checkpoint's tensors, refusing anything that is not plain data."""
    import pickle

    import torch

    if not zipfile.is_zipfile(path):
        raise WeightsError(f"{path}: not a PyTorch checkpoint (expected a zip archive written by torch.save)")
    try:
        with trusted_globals():
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as exc:
        raise WeightsError(_refusal(path, str(exc))) from None
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise WeightsError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    while isinstance(data, dict) and "state_dict" in data and isinstance(data["state_dict"], dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise WeightsError(f"{path}: holds no state dict of tensors")
    return data


def _refusal(path: Path, torch_message: str) -> str:
    """What was refused and why, without torch's advice to load the file with weights_only=False."""
    found = re.search(r"GLOBAL ([\w.]+)", torch_message)
    if found:
        what = f"its pickle refers to GLOBAL {found.group(1)}, which is neither a tensor nor plain data"
    else:
        detail = re.search(r"WeightsUnpickler error: ([^\n]*)", torch_message)
        what = f"its pickle holds objects other than tensors and plain data ({detail.group(1) if detail else 'unpickling failed'})"
    return (
        f"{path}: refused: {what}; unpickling it could run code, so sdsuite reads .ckpt files only as tensors "
        "(torch.load with weights_only=True). Use the model's .safetensors release instead."
    )


def identify(path: Path, shapes: dict[str, tuple[int, ...]]) -> CheckpointInfo:
    """Which architecture (and which shipped size) a Stable Diffusion checkpoint in the original layout is."""
    found = signature.of_checkpoint(path, shapes)
    arch, tiny = signature.identify(path, found)
    return CheckpointInfo(arch.name, tiny, found, len(shapes))


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


def missing_tensors(shapes: dict[str, tuple[int, ...]], model: str, tiny: bool) -> dict[str, list[str]]:
    """Per component, the tensors the model needs (diffusers names) that the checkpoint does not provide.

    The checkpoint's names go through diffusers' own converters, the ones `from_single_file` runs,
    on meta tensors: no data is read, and the answer is what loading would find.
    """
    import torch
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint,
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
        convert_open_clip_checkpoint,
    )

    from suite.models.synthetic import shipped_meta_models

    checkpoint = {key: torch.empty(shape, device="meta") for key, shape in shapes.items()}
    arch = ARCHITECTURES[model]
    models = shipped_meta_models(arch, tiny)
    provided = {
        "unet": convert_ldm_unet_checkpoint(checkpoint, models["unet"].config),
        "vae": convert_ldm_vae_checkpoint(checkpoint, models["vae"].config),
        "text_encoder": (
            convert_open_clip_checkpoint(models["text_encoder"], checkpoint)
            if arch.text_encoder == "OpenCLIP"
            else convert_ldm_clip_checkpoint(checkpoint)
        ),
    }
    return {name: absent(module, provided[name]) for name, module in models.items()}


def absent(module, provided: Iterable[str]) -> list[str]:
    """The names of `module`'s tensors that are not `provided` (with or without transformers 4's text_model. level)."""
    names = {k.removeprefix("text_model.") for k in provided}
    return sorted(
        k.removeprefix("text_model.") for k in module.state_dict() if k.removeprefix("text_model.") not in names
    )


def require_complete(location: str | Path, missing: dict[str, list[str]]) -> None:
    """A WeightsError listing what is missing, per component, if anything is."""
    parts = [
        f"{len(keys)} {name} tensor{'s' if len(keys) > 1 else ''} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})"
        for name, keys in missing.items()
        if keys
    ]
    if parts:
        raise WeightsError(f"{location}: incomplete: it lacks {'; '.join(parts)}")


def inspect(path: Path, model: str | None = None) -> CheckpointInfo:
    """Identify a single-file checkpoint and check it is complete, and that it is `model` when given."""
    if not path.exists():
        raise WeightsError(f"{path}: no such file")
    if not path.is_file():
        raise WeightsError(f"{path}: not a regular file (a folder, pipe or device is never read as a checkpoint)")
    if path.suffix not in SINGLE_FILE_SUFFIXES:
        raise WeightsError(f"{path}: expected a {' or '.join(SINGLE_FILE_SUFFIXES)} checkpoint")
    shapes = read_shapes(path)
    info = identify(path, shapes)
    if model:
        expect(path, info, model)
    require_complete(path, missing_tensors(shapes, info.architecture, info.tiny))
    return info
