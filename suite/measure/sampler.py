"""Peak memory sampled while the work runs, from a separate process.

A sampler thread inside the worker would contend for the GIL with a launch-bound pipeline; a side
process costs the worker nothing but the OS's share of one light loop. It samples the worker's
RSS and, where there is an NVIDIA GPU, the device's used memory and the worker's own (NVML) at
`hz`, and answers `reset` / `read` on stdin with peaks since the last reset.

The loop is kept to a sleep and one read per tick (RSS from a held-open /proc/PID/statm, psutil
elsewhere; commands on a thread blocked in readline), where psutil plus a select() per tick cost
three times as much. Each tick's cost is mostly the wake-up: on this project's 2-core VM 200 Hz
cost 0.73-1.13 % of the work's CPU time, so the default is 100 Hz — still a sample every 10 ms,
far shorter than any allocation peak of a pipeline stage.

Run as `python -m suite.measure.sampler PID [--hz N] [--gpu-uuid UUID]`; use `MemorySampler`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil

from suite.measure import nvml

MIB = 1024 * 1024
# NVML's per-process query costs far more than its memory query: ask it every Nth sample.
PROCESS_QUERY_EVERY = 5
DEFAULT_HZ = 100.0


@dataclass
class Peaks:
    rss: int = 0
    device: int | None = None
    process: int | None = None
    samples: int = 0
    started: float = 0.0

    def take(self, rss: int, device: int | None, process: int | None) -> None:
        self.rss = max(self.rss, rss)
        if device is not None:
            self.device = max(self.device or 0, device)
        if process is not None:
            self.process = max(self.process or 0, process)
        self.samples += 1

    def report(self) -> dict[str, Any]:
        elapsed = time.perf_counter() - self.started
        return {
            "peak_rss_mib": self.rss / MIB,
            "peak_vram_device_mib": None if self.device is None else self.device / MIB,
            "peak_vram_process_mib": None if self.process is None else self.process / MIB,
            "memory_sample_hz": self.samples / elapsed if elapsed > 0 else None,
        }


def rss_reader(pid: int) -> Callable[[], int]:
    """A function returning the process's RSS in bytes; raises psutil.Error/OSError once it is gone."""
    try:
        fd = os.open(f"/proc/{pid}/statm", os.O_RDONLY)
    except OSError:
        proc = psutil.Process(pid)
        return lambda: proc.memory_info().rss
    page = os.sysconf("SC_PAGE_SIZE")

    def read() -> int:
        fields = os.pread(fd, 128, 0).split()
        if not fields:
            raise ProcessLookupError(pid)
        return int(fields[1]) * page

    return read


class _State:
    def __init__(self) -> None:
        self.peaks = Peaks(started=time.perf_counter())
        self.running = True


def _answer_commands(state: _State) -> None:
    for line in sys.stdin:
        command = line.strip()
        if command == "quit":
            break
        if command == "read":
            print(json.dumps(state.peaks.report()), flush=True)
        elif command == "reset":
            state.peaks = Peaks(started=time.perf_counter())
            print("ok", flush=True)
    state.running = False


def serve(pid: int, hz: float, gpu_uuid: str | None) -> None:
    rss = rss_reader(pid)
    gpu = nvml.handle(uuid=gpu_uuid) if gpu_uuid else None
    period = 1.0 / hz
    state = _State()
    threading.Thread(target=_answer_commands, args=(state,), daemon=True).start()
    print("ready", flush=True)
    tick = 0
    next_sample = time.perf_counter()
    while state.running:
        try:
            resident = rss()
        except (psutil.Error, OSError):
            return
        device = nvml.used_bytes(gpu) if gpu is not None else None
        process = nvml.process_used_bytes(gpu, pid) if gpu is not None and tick % PROCESS_QUERY_EVERY == 0 else None
        state.peaks.take(resident, device, process)
        tick += 1
        next_sample += period
        delay = next_sample - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        else:
            next_sample = time.perf_counter()


class MemorySampler:
    """Drives a sampler process watching this process."""

    def __init__(self, hz: float = DEFAULT_HZ, gpu_uuid: str | None = None):
        args = [sys.executable, "-m", "suite.measure.sampler", str(os.getpid()), "--hz", str(hz)]
        if gpu_uuid:
            args += ["--gpu-uuid", gpu_uuid]
        self._proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        if self._proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the memory sampler did not start")

    @property
    def pid(self) -> int:
        """The sampler process's id (its own CPU time is the cost of sampling)."""
        return self._proc.pid

    def _ask(self, command: str) -> str:
        self._proc.stdin.write(command + "\n")
        self._proc.stdin.flush()
        return self._proc.stdout.readline().strip()

    def reset(self) -> None:
        self._ask("reset")

    def read(self) -> dict[str, Any]:
        """Peaks since the last reset."""
        return json.loads(self._ask("read"))

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                self._proc.stdin.write("quit\n")
                self._proc.stdin.flush()
                self._proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()

    def __enter__(self) -> MemorySampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("pid", type=int)
    parser.add_argument("--hz", type=float, default=DEFAULT_HZ)
    parser.add_argument("--gpu-uuid")
    args = parser.parse_args()
    serve(args.pid, args.hz, args.gpu_uuid)


if __name__ == "__main__":
    main()
