"""Peak RSS from the kernel's high-water mark: exact, and free while the work runs.

A polling sampler can miss a peak shorter than its period and takes a core from the work it
watches; the kernel keeps the peak itself. On Linux, writing "5" to /proc/self/clear_refs resets
`VmHWM` to the current RSS, so each measured phase gets its own peak. Elsewhere `ru_maxrss` is the
peak since the process started, which cannot be reset: its method says so.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

MIB = 1024 * 1024
_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def reset() -> str:
    """Start a new peak; returns the method the next `peak_mib` reads with."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return "ru_maxrss-since-start"
    return "vmhwm"


def peak_mib() -> float:
    """This process's peak RSS in MiB since the last successful `reset` (else since it started)."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / MIB
    except OSError:
        pass
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / MIB if sys.platform == "darwin" else maxrss * 1024 / MIB  # bytes on macOS, KiB elsewhere
