"""The machine and software a result was measured on, so results from different machines compare."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from suite import __version__

_REPO = Path(__file__).resolve().parents[2]


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return ""


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def git_sha() -> str:
    """The suite's commit, with `-dirty` when the working tree has changes. A copy of the tree without
    its .git (as sent to a lent GPU machine) names it in SDSUITE_GIT_SHA; '' where neither tells."""
    try:
        sha = subprocess.run(
            ["git", "-C", str(_REPO), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(_REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("SDSUITE_GIT_SHA", "")


def _gpu() -> dict[str, Any]:
    import torch

    if not torch.cuda.is_available():
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return {"gpu": f"Apple MPS ({platform.machine()})"}
        return {"gpu": "", "gpu_vram_gib": "", "driver": "", "cuda": "", "compute_capability": ""}
    from suite.measure import nvml

    props = torch.cuda.get_device_properties(0)
    facts = nvml.device_facts(nvml.handle(uuid=nvml.torch_device_uuid(0)))
    return {
        "gpu": props.name,
        "gpu_count": torch.cuda.device_count(),
        "gpu_vram_gib": round(props.total_memory / 2**30, 2),
        "driver": facts.get("driver", ""),
        "power_limit_w": facts.get("power_limit_w"),
        "cuda": torch.version.cuda or "",
        "compute_capability": f"{props.major}.{props.minor}",
    }


@functools.cache
def fingerprint() -> dict[str, Any]:
    import torch

    flags = cpu_flags()
    return {
        "cpu": cpu_model(),
        "cpu_cores": psutil.cpu_count(logical=False) or psutil.cpu_count(),
        "cpu_threads": psutil.cpu_count(),
        "cpu_bf16": bool(flags & {"avx512_bf16", "amx_bf16"}),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        **_gpu(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "diffusers": _version("diffusers"),
        "transformers": _version("transformers"),
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "suite_version": __version__,
        "git_sha": git_sha(),
    }
