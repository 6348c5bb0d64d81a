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

import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from suite.models import architectures, checkpoints, synthetic
from suite.models.checkpoints import WeightsError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
WEIGHT_FILES = ("*.safetensors", "*.bin", "*.ckpt")


@dataclass
class WeightInfo:
    source: str
    location: str
    hash: str
    architecture: str
    size: str  # "full" or "tiny"
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
    import hashlib

    files = sorted(p for pattern in WEIGHT_FILES for p in folder.rglob(pattern))
    digest = hashlib.sha256()
    total = 0
    for path in files:
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(checkpoints.sample_hash(path).encode())
        total += path.stat().st_size
    return "sha256-sample:" + digest.hexdigest()[:32], total


def _check_folder(folder: Path, arch: architectures.Architecture, task: str) -> None:
    index = folder / "model_index.json"
    if not index.is_file():
        raise WeightsError(f"{folder}: not a diffusers folder (no model_index.json)")
    unet = folder / "unet" / "config.json"
    if not unet.is_file():
        raise WeightsError(f"{folder}: no unet/config.json")
    import json

    config = json.loads(unet.read_text())
    want_in = arch.component_config("unet")["in_channels"]
    want_linear = bool(arch.component_config("unet").get("use_linear_projection"))
    found_in = config.get("in_channels")
    found_linear = bool(config.get("use_linear_projection"))
    if found_in != want_in or found_linear != want_linear:
        raise WeightsError(
            f"{folder}: expected an {arch.name} pipeline (UNet with {want_in} input channels, "
            f"{'linear' if want_linear else 'convolutional'} attention projections); found {found_in} input channels, "
            f"{'linear' if found_linear else 'convolutional'} projections"
        )


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
            _check_folder(path, arch, task)
            try:
                pipe = cls.from_pretrained(path, dtype=dtype, local_files_only=True, **extras)
            except (OSError, ValueError, RuntimeError) as exc:
                raise WeightsError(f"{path}: could not load this diffusers folder as {model}: {exc}") from None
            digest, size = _folder_hash(path)
            info = WeightInfo("folder", str(path), digest, model, "full", dtype_name, size)
        elif path.exists() or path.suffix in checkpoints.SINGLE_FILE_SUFFIXES:
            found = checkpoints.inspect(path, model)
            try:
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
        elif HUB_ID.match(weights):
            try:
                pipe = cls.from_pretrained(weights, dtype=dtype, **extras)
            except Exception as exc:
                raise WeightsError(
                    f"{weights}: could not load from the Hugging Face hub (offline, or HF_HUB_OFFLINE set?): "
                    f"{type(exc).__name__}: {exc}"
                ) from None
            info = WeightInfo("hub", weights, "", model, "full", dtype_name)
        else:
            raise WeightsError(
                f"{weights}: no such file or folder, and not a hub id; "
                "use synthetic, tiny, a diffusers folder, a .safetensors/.ckpt file, or org/name"
            )
        pipe.to(device)
    info.parameters = _params(pipe)
    info.load_s = time.perf_counter() - t0
    return pipe, info
