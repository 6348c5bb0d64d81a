"""The machine's peak dense matmul rate: measured on the spot, with a table of known GPUs beside it.

Achieved TFLOP/s means little without the ceiling it is measured against; a table alone is wrong
for power-capped or throttled cards, so the suite measures a large matmul once per run and
keeps the datasheet figure (dense, no sparsity) next to it.
"""

from __future__ import annotations

import time

import torch

# Dense fp16/bf16 tensor-core TFLOP/s from vendors' datasheets (no sparsity).
DATASHEET_TFLOPS_FP16 = {
    "H200": 989.4,
    "H100 SXM": 989.4,
    "H100 80GB HBM3": 989.4,
    "H100 PCIe": 756.0,
    "H100 NVL": 835.0,
    "A100": 312.0,
    "L40S": 362.1,
    "L40": 181.0,
    "L4": 121.0,
    "A10G": 70.0,
    "A10": 125.0,
    "T4": 65.0,
    "V100": 125.0,
    "RTX 4090": 165.2,
    "RTX 4080": 97.5,
    "RTX 3090": 71.0,
    "RTX 3080": 59.5,
    "RTX 3060": 25.6,
}


def datasheet_tflops(gpu_name: str) -> float | None:
    """The longest table key contained in the GPU's name, so 'H100 PCIe' wins over 'H100'."""
    matches = [k for k in DATASHEET_TFLOPS_FP16 if k.lower() in gpu_name.lower()]
    return DATASHEET_TFLOPS_FP16[max(matches, key=len)] if matches else None


def measure_matmul_tflops(
    device: torch.device, dtype: torch.dtype, n: int | None = None, seconds: float = 1.5, warmup_s: float = 0.5
) -> float:
    """Best observed TFLOP/s of an n x n matmul, timed with synchronisation after a timed warm-up
    (a few products are not enough for a CPU's thread pool and clock to settle: 3 of them read 20 %
    low here)."""
    from suite.measure.clock import synchronize

    if n is None:
        n = 8192 if device.type == "cuda" else 1024
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    flop = 2 * n**3
    warm_until = time.perf_counter() + warmup_s
    while time.perf_counter() < warm_until:
        a @ b
        synchronize(device)
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        reps = 10 if device.type == "cuda" else 2
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        synchronize(device)
        best = max(best, reps * flop / (time.perf_counter() - t0))
    return best / 1e12
