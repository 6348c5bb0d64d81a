"""Where a pipeline's weights come from, behind one `load_pipeline` call.

synthetic  every architecture at full size, seeded random weights (the suite's default)
tiny       the same architectures shrunk, seeded random weights (tests)
folder     a diffusers folder (model_index.json + components), read offline
file       a single `.safetensors` / `.ckpt` in the original layout, read offline with our configs
hub id     `org/name` from the Hugging Face hub, when the network (and HF_HUB_OFFLINE) allows

Every load returns a `WeightInfo` saying which, with a content hash, so a result always says what
it was measured with.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from suite.models import architectures, checkpoints, hub, signature, synthetic
from suite.models.errors import WeightsError

WEIGHT_FILES = ("*.safetensors", "*.bin", "*.ckpt")


@dataclass
class WeightInfo:
    source: str
    location: str
    hash: str
    architecture: str
    size: str  # "full" or "tiny" (the shipped configs' sizes), or "custom" (a folder of other widths)
    dtype: str
    size_bytes: int = 0
    parameters: dict[str, int] = field(default_factory=dict)
    load_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _params(pipe) -> dict[str, int]:
    return {
        name: sum(p.numel() for p in getattr(pipe, name).parameters())
        for name in ("unet", "vae", "text_encoder")
        if getattr(pipe, name, None) is not None
    }


def _folder_hash(folder: Path) -> tuple[str, int]:
    files = sorted(p for pattern in WEIGHT_FILES for p in folder.rglob(pattern))
    digest = hashlib.sha256()
    total = 0
    for path in files:
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(checkpoints.sample_hash(path).encode())
        total += path.stat().st_size
    return "sha256-sample:" + digest.hexdigest()[:32], total


def _weight_files(component: Path) -> list[Path]:
    """The files diffusers loads for a component without a `variant`: safetensors if any, else .bin."""
    for suffix in (".safetensors", ".bin"):
        files = sorted(p for p in component.glob(f"*{suffix}") if "." not in p.stem)  # not *.fp16.safetensors
        if files:
            return files
    return []


def _check_folder(folder: Path, arch: architectures.Architecture, location: str) -> str:
    """That a diffusers folder is `arch` and complete; returns its size: full, tiny or custom."""
    if not (folder / "model_index.json").is_file():
        raise WeightsError(f"{location}: not a diffusers folder (no model_index.json)")
    configs = signature.folder_configs(folder, location)
    found = signature.of_folder(location, configs)
    signature.check_kind(location, found, arch)
    models = synthetic.meta_models(configs["unet"], configs["vae"], configs["text_encoder"])
    missing = {}
    for name, module in models.items():
        files = _weight_files(folder / name)
        if files:  # none readable: diffusers itself says what it looked for
            missing[name] = checkpoints.absent(module, (k for f in files for k in checkpoints.read_shapes(f)))
    checkpoints.require_complete(location, missing)
    return signature.size_of(found, arch)


def architecture_of(weights: str) -> str | None:
    """The architecture a weights file or diffusers folder holds, read from shapes or configs only;
    None for weights that fit every architecture (synthetic, tiny) or are not local (a hub id)."""
    if weights in ("synthetic", "tiny"):
        return None
    path = Path(weights).expanduser()
    if path.is_dir():
        found = signature.of_folder(str(path), signature.folder_configs(path, str(path)))
        kinds = [
            arch.name
            for arch in architectures.ARCHITECTURES.values()
            if not signature.differences(found, signature.shipped(arch.name, False), signature.KIND)
        ]
        if not kinds:
            raise WeightsError(
                f"{path}: a diffusers folder of no architecture sdsuite ships{signature.lookalike(found)}"
            )
        return kinds[0]
    if path.exists() or path.suffix in checkpoints.SINGLE_FILE_SUFFIXES:
        return checkpoints.inspect(path).architecture
    return None


def _from_folder(folder: Path, cls, dtype: torch.dtype, extras: dict[str, Any], location: str, model: str):
    try:
        return cls.from_pretrained(folder, dtype=dtype, local_files_only=True, **extras)
    except (OSError, ValueError, RuntimeError) as exc:
        raise WeightsError(f"{location}: could not load this diffusers folder as {model}: {exc}") from None


def load_pipeline(
    model: str,
    weights: str = "synthetic",
    *,
    task: str = "txt2img",
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
):
    """A ready diffusers pipeline for `task` on `model`, with the weights `weights` names.

    Returns (pipeline, WeightInfo). Raises WeightsError for weights that cannot be used as asked
    and ValueError for an unknown model or a task the model does not do.
    """
    arch = architectures.get(model)
    cls = architectures.pipeline_class(arch, task)
    dtype_name = str(dtype).removeprefix("torch.")
    t0 = time.perf_counter()
    if weights in ("synthetic", "tiny"):
        tiny = weights == "tiny"
        pipe = synthetic.build_pipeline(arch, task, device, dtype, seed, tiny)
        info = WeightInfo(weights, f"seed {seed}", f"seed:{seed}", model, "tiny" if tiny else "full", dtype_name)
    else:
        path = Path(weights).expanduser()
        extras = architectures.pipeline_extras(arch, task)
        if path.is_dir():
            size = _check_folder(path, arch, str(path))
            pipe = _from_folder(path, cls, dtype, extras, str(path), model)
            digest, nbytes = _folder_hash(path)
            info = WeightInfo("folder", str(path), digest, model, size, dtype_name, nbytes)
        elif path.exists() or path.suffix in checkpoints.SINGLE_FILE_SUFFIXES:
            found = checkpoints.inspect(path, model)
            try:
                with checkpoints.trusted_globals():
                    pipe = cls.from_single_file(
                        str(path),
                        config=str(arch.config_dir(found.tiny)),
                        tokenizer=architectures.tokenizer(arch, found.tiny),
                        dtype=dtype,
                        local_files_only=True,
                        **extras,
                    )
            except (OSError, ValueError, RuntimeError, KeyError) as exc:
                raise WeightsError(f"{path}: could not load as {model}: {type(exc).__name__}: {exc}") from None
            size = "tiny" if found.tiny else "full"
            info = WeightInfo(
                "single-file", str(path), checkpoints.sample_hash(path), model, size, dtype_name, path.stat().st_size
            )
        elif hub.is_hub_id(weights):
            snapshot = hub.download(weights, cls)
            location = f"{weights} (downloaded to {snapshot})"
            size = _check_folder(snapshot, arch, location)
            pipe = _from_folder(snapshot, cls, dtype, extras, location, model)
            digest, nbytes = _folder_hash(snapshot)
            info = WeightInfo("hub", weights, digest, model, size, dtype_name, nbytes)
        else:
            raise WeightsError(
                f"{weights}: no such file or folder, and not a hub id; "
                "use synthetic, tiny, a diffusers folder, a .safetensors/.ckpt file, or org/name"
            )
        try:
            pipe.to(device)
        except NotImplementedError as exc:  # "Cannot copy out of meta tensor": a tensor was never loaded
            raise WeightsError(f"{weights}: some weights were never loaded, so it is incomplete ({exc})") from None
    info.parameters = _params(pipe)
    info.load_s = time.perf_counter() - t0
    return pipe, info
