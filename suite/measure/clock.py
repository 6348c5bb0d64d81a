"""Timestamps of named moments in a run, faithful on asynchronous devices.

On CUDA each moment is an event recorded on the current stream, so marking never waits for the
GPU; all events are read after one synchronisation at the end. Elsewhere a moment is a
`perf_counter` reading (MPS is synchronised at each mark since it has no timing events here).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


@dataclass
class Clock:
    device: torch.device
    _marks: list[tuple[str, Any]] = field(default_factory=list)

    def mark(self, label: str) -> None:
        if self.device.type == "cuda":
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self._marks.append((label, event))
        else:
            synchronize(self.device)
            self._marks.append((label, time.perf_counter()))

    def times(self) -> list[tuple[str, float]]:
        """(label, seconds since the first mark) for every mark, in order."""
        if not self._marks:
            return []
        if self.device.type == "cuda":
            synchronize(self.device)
            first = self._marks[0][1]
            return [(label, first.elapsed_time(event) / 1000.0) for label, event in self._marks]
        t0 = self._marks[0][1]
        return [(label, t - t0) for label, t in self._marks]
