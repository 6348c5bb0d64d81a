"""NVIDIA's management library: device memory as the driver sees it, and the energy counter.

Everything here degrades to None where there is no NVIDIA GPU or driver, so callers record
"not measured" instead of failing.
"""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def _nvml():
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml
    except Exception:
        return None


def handle(index: int = 0, uuid: str | None = None) -> Any | None:
    """The NVML handle of a GPU, by UUID when known (CUDA and NVML may number devices differently)."""
    nvml = _nvml()
    if nvml is None:
        return None
    try:
        if uuid:
            return nvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")
        return nvml.nvmlDeviceGetHandleByIndex(index)
    except Exception:
        return None


def torch_device_uuid(index: int) -> str | None:
    import torch

    try:
        return str(torch.cuda.get_device_properties(index).uuid)
    except Exception:
        return None


def used_bytes(h: Any) -> int | None:
    """Device memory in use by everyone, CUDA contexts included."""
    try:
        return int(_nvml().nvmlDeviceGetMemoryInfo(h).used)
    except Exception:
        return None


def process_used_bytes(h: Any, pid: int) -> int | None:
    """What the driver charges to one process (None where it will not say, e.g. in some containers)."""
    nvml = _nvml()
    try:
        for proc in nvml.nvmlDeviceGetComputeRunningProcesses(h):
            if proc.pid == pid and proc.usedGpuMemory is not None:
                return int(proc.usedGpuMemory)
    except Exception:
        return None
    return None


def energy_mj(h: Any) -> int | None:
    """Total energy since the driver loaded, in millijoules (Volta and newer)."""
    try:
        return int(_nvml().nvmlDeviceGetTotalEnergyConsumption(h))
    except Exception:
        return None


def device_facts(h: Any) -> dict[str, Any]:
    nvml = _nvml()
    facts: dict[str, Any] = {}
    try:
        facts["driver"] = nvml.nvmlSystemGetDriverVersion()
        facts["gpu_memory_total_bytes"] = int(nvml.nvmlDeviceGetMemoryInfo(h).total)
        facts["power_limit_w"] = nvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0
    except Exception:
        pass
    return facts
