"""What else the machine was doing while a scenario was timed: other processes' CPU, steal, throttling.

A worker takes a `Snapshot` before its timed repeats and one after; `between` turns the two into
shares of the machine (the whole machine's busy time less this process's own, so the work itself
never counts as noise). The CPU governor and turbo state are read where Linux shows them; a VM
usually hides them, and then the record says nothing rather than guessing.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

CPU_SYSFS = Path("/sys/devices/system/cpu")


@dataclass(frozen=True)
class Snapshot:
    wall: float
    busy: float  # all CPUs' non-idle seconds, this process included
    steal: float  # seconds a hypervisor ran something else on this VM's CPUs
    own: float  # this process's CPU seconds (and its waited-for children's)
    throttles: int | None


def throttle_count() -> int | None:
    """Thermal throttling events of all cores since boot (None where the kernel does not show them)."""
    counts = [
        int(p.read_text())
        for p in CPU_SYSFS.glob("cpu[0-9]*/thermal_throttle/core_throttle_count")
        if p.read_text().strip().isdigit()
    ]
    return sum(counts) if counts else None


def snapshot() -> Snapshot:
    t = psutil.cpu_times()
    busy = t.user + t.system + getattr(t, "nice", 0.0) + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
    own = psutil.Process().cpu_times()
    own_s = own.user + own.system + getattr(own, "children_user", 0.0) + getattr(own, "children_system", 0.0)
    return Snapshot(time.monotonic(), busy, getattr(t, "steal", 0.0), own_s, throttle_count())


def between(a: Snapshot, b: Snapshot) -> dict[str, float | int | str | None]:
    """Shares of the whole machine (all cores = 100 %) over the interval from `a` to `b`."""
    capacity = max(b.wall - a.wall, 1e-9) * (psutil.cpu_count() or 1)
    others = max(0.0, (b.busy - a.busy) - (b.own - a.own))
    throttles = b.throttles - a.throttles if a.throttles is not None and b.throttles is not None else None
    return {
        "others_cpu_pct": min(100.0, 100.0 * others / capacity),
        "steal_pct": min(100.0, 100.0 * max(0.0, b.steal - a.steal) / capacity),
        "throttle_events": throttles,
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "governor": governor(),
    }


def governor() -> str | None:
    """The CPU frequency governors in use, e.g. 'performance' or 'powersave+performance' (None: hidden)."""
    found = sorted({p.read_text().strip() for p in CPU_SYSFS.glob("cpu[0-9]*/cpufreq/scaling_governor")})
    return "+".join(found) if found else None


def turbo() -> bool | None:
    """Whether turbo/boost clocks are allowed (None where neither intel_pstate nor cpufreq shows it)."""
    no_turbo = CPU_SYSFS / "intel_pstate" / "no_turbo"
    if no_turbo.exists():
        return no_turbo.read_text().strip() == "0"
    boost = CPU_SYSFS / "cpufreq" / "boost"
    if boost.exists():
        return boost.read_text().strip() == "1"
    return None


def isolated_cpus() -> str:
    """The kernel's isolated CPUs (isolcpus=), '' when none."""
    path = CPU_SYSFS / "isolated"
    return path.read_text().strip() if path.exists() else ""
