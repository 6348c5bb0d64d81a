"""Hub ids: fetched into the Hugging Face cache when the network allows; otherwise no request at all.

huggingface_hub reads HF_HUB_OFFLINE once, when it is first imported, and otherwise asks the hub
for a repository's metadata even when the files are cached. So the suite decides before anything
imports it: `offline_unless_hub(weights)` sets HF_HUB_OFFLINE=1 unless one of the weights to load
is a hub id (a value the user set wins). `sdsuite bench` calls it before its worker processes'
forkserver imports diffusers (the workers inherit the environment), `sdsuite models` before it
reads a file. This module imports nothing heavy, so calling it costs nothing.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path

from suite.models.checkpoints import SINGLE_FILE_SUFFIXES
from suite.models.errors import WeightsError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
LOCAL = ("synthetic", "tiny")
TRUE = {"1", "on", "yes", "true"}


def is_hub_id(weights: str) -> bool:
    """Whether `weights` names a hub repository: org/name, and no file or folder of that name here."""
    path = Path(weights).expanduser()
    return (
        weights not in LOCAL
        and not path.exists()
        and path.suffix not in SINGLE_FILE_SUFFIXES
        and bool(HUB_ID.match(weights))
    )


def offline_unless_hub(weights: Iterable[str]) -> None:
    """Set HF_HUB_OFFLINE=1 unless some of `weights` is a hub id; call before huggingface_hub is imported."""
    if not any(is_hub_id(w) for w in weights):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")


def offline() -> bool:
    """Whether huggingface_hub is (or will be) offline: it read the variable at import, or reads it now."""
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None and constants.HF_HUB_OFFLINE:
        return True
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in TRUE


def download(repo_id: str, pipeline_class) -> Path:
    """The local snapshot of `repo_id` with what `pipeline_class` needs: fetched, or from the cache offline."""
    is_offline = offline()
    try:
        return Path(
            pipeline_class.download(
                repo_id,
                local_files_only=is_offline,
                **{name: None for name in pipeline_class._optional_components},
            )
        )
    except Exception as exc:  # huggingface_hub raises network, HTTP and cache errors of many types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        reason = (
            "HF_HUB_OFFLINE is set and it is not in the local Hugging Face cache"
            if is_offline
            else f"it could not be fetched from the Hugging Face hub ({type(exc).__name__}: {first})"
        )
        raise WeightsError(
            f"{repo_id}: no such file or folder, and {reason}. "
            "Without a network, use a diffusers folder or a .safetensors/.ckpt file"
        ) from None
