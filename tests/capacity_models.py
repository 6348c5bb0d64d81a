"""Capacity probes answered without a GPU: a simple memory model, and the searches the tests run."""

from suite.scenario import Scenario


def memory_model(s: Scenario) -> dict:
    """A stand-in worker: 2 GiB of weights plus 1.5 GiB per 512x512 image, less with slicing."""
    need = 2.0 + 1.5 * s.batch * (s.width * s.height) / 512**2 * (0.5 if "attention-slicing" in s.memory_modes else 1)
    return answer(s, need)


def answer(s: Scenario, need_gib: float) -> dict:
    """A probe's record from what the configuration needs: 0.5 GiB of it outside the allocator."""
    if need_gib <= s.vram_budget_gib:
        memory = {
            "peak_vram_allocated_mib": (need_gib - 0.5) * 1024,
            "peak_vram_reserved_mib": need_gib * 1024,
            "outside_allocator_mib": 512.0,
        }
        return {"status": "ok", "latency_s": [0.5], "memory": memory}
    return {"status": "oom", "error": f"OutOfMemoryError: tried to allocate under {s.vram_budget_gib:g} GiB"}


# max-batch searches of SD v1 fp16, with and without sliced attention, under 4 and 8 GiB
MAX_BATCHES = """
[defaults]
model = "sd-v1"
device = "cuda"
precision = "fp16"
steps = 2

[[scenario]]
name = "{name}"
search = "max-batch"
search_max = 16
[scenario.matrix]
memory_mode = ["none", "attention-slicing"]
vram_budget_gib = [4, 8]
"""
