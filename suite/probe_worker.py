"""Capacity probes of one configuration in one worker process: load once, then probe on request.

A capacity profile is hundreds of short generations that differ only in batch, image size and
budget; a fresh process for each spent most of its time creating a CUDA context and building the
pipeline. This worker builds it once and runs each probe under that probe's budget. What makes
its answers those of a fresh process alone on a card of that size:
- the budget caps torch's allocator at the budget less what lies outside it (the CUDA context and
  the kernels and libraries loaded so far, measured before each probe after a warm-up), so a probe
  sees the card it would see alone, where a fresh process would not yet count its libraries;
- a probe that fails otherwise than with an out-of-memory error is run once more without the cap:
  if it then runs, the budget caused the failure, and it counts as out of memory;
- after each probe every cached block is released, and the memory still allocated must equal what
  was allocated before the first probe. If anything is left (an out-of-memory error can strand an
  offloaded model on the GPU), the worker says so in its answer and exits, and the runner starts a
  fresh one for the next probe. No probe ever runs beside another's debris.
Requests arrive on a pipe as scenario dicts (None: stop); each answer is an event `{"probe": record}`.
"""

from __future__ import annotations

import gc
import json
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

from suite.worker import MIB, BudgetNotMeasurable, cap_allocator, emit, failure, isolate, open_cuda_context

# the warm-up's image: small enough to cost nothing, large enough to load the kernels the probes use
WARMUP_SIZE = 64


class ProbeSession:
    """The loaded pipeline of one configuration, and the allocator state each probe must leave behind."""

    def __init__(self, job: dict[str, Any]):
        import torch

        from suite import pipelines
        from suite.measure import nvml
        from suite.scenario import Scenario

        first = Scenario.from_dict(job["scenario"])
        self.device = pipelines.check_applicable(first)
        if job.get("threads"):
            torch.set_num_threads(int(job["threads"]))
        self.cuda = self.device.type == "cuda"
        self.shared = bool(job.get("side_by_side"))  # other probe servers share the card
        self.handle = self.before = None
        if self.cuda:
            self.handle = nvml.handle(uuid=nvml.torch_device_uuid(self.device.index or 0))
            self.before = open_cuda_context(self.device, self.handle)
        emit(phase="load")
        self.prepared = pipelines.prepare(first, self.device)
        emit(phase="warmup")
        self._generate(replace(first, batch=1, width=WARMUP_SIZE, height=WARMUP_SIZE))
        self._release()
        self.baseline = torch.cuda.memory_allocated(self.device) if self.cuda else 0

    def _generate(self, s):
        from suite import pipelines

        return pipelines.generate(replace(self.prepared, scenario=s, inputs=pipelines.call_arguments(s)))

    def _release(self) -> None:
        """Let go of all a generation left: its cached blocks, and the scheduler's state (PNDM keeps the
        last model outputs on the device), so the next probe starts as a fresh process would."""
        import torch

        from suite import pipelines

        pipe = self.prepared.pipe
        pipe.scheduler = pipelines.make_scheduler(self.prepared.scenario.sampler, pipe.scheduler.config)
        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()

    def leftover_mib(self) -> float:
        """Memory still allocated beyond the baseline once everything the probe made is released."""
        import torch

        self._release()
        return (torch.cuda.memory_allocated(self.device) - self.baseline) / MIB if self.cuda else 0.0

    def probe(self, s) -> dict[str, Any]:
        """One generation of `s` under its budget: `ok` with its peaks, or how it failed."""
        import torch

        record: dict[str, Any] = {"latency_s": []}
        if self.cuda:
            try:
                record["budget"] = cap_allocator(self.device, s.vram_budget_gib, self.handle, self.before, self.shared)
            except BudgetNotMeasurable as exc:  # no probe ran: nothing to blame on the budget
                return {**record, "status": "error", "error": str(exc)}
            except torch.cuda.OutOfMemoryError as exc:  # what the process holds already exceeds the budget
                return {**record, **failure(exc)}
        try:
            if self.cuda:
                torch.cuda.reset_peak_memory_stats(self.device)
            record["latency_s"].append(self._generate(s).latency_s)
            if self.cuda:
                record["memory"] = {
                    "peak_vram_allocated_mib": torch.cuda.max_memory_allocated(self.device) / MIB,
                    "peak_vram_reserved_mib": torch.cuda.max_memory_reserved(self.device) / MIB,
                    "outside_allocator_mib": record["budget"]["outside_allocator_mib"],
                }
            record["status"] = "ok"
        except Exception as exc:  # an OOM is the answer half the probes give
            traceback.print_exc()
            record.update(failure(exc))
            if s.offloads:
                self._put_offloaded_weights_back()
        if self.cuda and record["status"] in ("error", "unsupported"):
            return self._blame_the_budget(s, record)
        return record

    def _blame_the_budget(self, s, record: dict[str, Any]) -> dict[str, Any]:
        """A failure the same probe does not repeat without the cap was the budget's doing: cuBLAS and
        cuDNN word an allocation that failed in their own ways ('unable to find an engine',
        'NOT_SUPPORTED'), so the probe is run once more uncapped to tell."""
        import torch

        self._release()
        torch.cuda.set_per_process_memory_fraction(1.0, self.device)
        try:
            self._generate(s)
        except Exception:
            traceback.print_exc()
            if s.offloads:
                self._put_offloaded_weights_back()
            return record
        gib = f"{s.vram_budget_gib:g}"
        return {
            **record,
            "status": "oom",
            "error": f"{record['error']} (under the {gib} GiB budget only: it ran without)",
        }

    def _put_offloaded_weights_back(self) -> None:
        """After a call cut short, move offloaded weights to where their hooks keep them between calls.

        Model offload leaves the model it was running on the GPU; diffusers' maybe_free_model_hooks
        offloads every model. Sequential offload leaves the weights of the module that failed; the
        hook's own post_forward, which the failure skipped, puts them back. Whatever this misses,
        leftover_mib finds, and the worker is replaced.
        """
        import torch

        try:
            self.prepared.pipe.maybe_free_model_hooks()
            for component in self.prepared.pipe.components.values():
                if isinstance(component, torch.nn.Module):
                    for module in component.modules():
                        hook = getattr(module, "_hf_hook", None)
                        if getattr(hook, "offload", False):
                            hook.post_forward(module, None)
        except Exception:
            traceback.print_exc()


def child_prober(job_path: str, requests, channel, log_path: str, runner_pid: int) -> None:
    """Entry point: answer probe requests until told to stop, or until a probe leaves debris."""
    from suite.scenario import Scenario

    isolate(channel, log_path, runner_pid)
    job = json.loads(Path(job_path).read_text())
    session = None
    while (request := requests.recv()) is not None:
        if session is None:
            try:
                session = ProbeSession(job)
            except BaseException as exc:  # the load's failure is the answer to the probe that needed it
                traceback.print_exc()
                emit(probe=failure(exc), closing=True)
                return
        record = session.probe(Scenario.from_dict(request))
        leftover = session.leftover_mib()
        if leftover > 0:
            record["leftover_mib"] = leftover
            emit(probe=record, closing=True)
            return
        emit(probe=record)
