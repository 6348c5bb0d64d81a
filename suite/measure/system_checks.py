"""What makes this machine noisy for benchmarks, and what would help: one `Check` per cause.

Modelled on `pyperf system show`, for runs that last minutes: the governor and turbo decide
whether clocks hold steady, isolated cores keep other work off the benchmark's, and the load
measured over a short sample (other processes' CPU, a hypervisor's steal, swapping, throttling)
is what the stability verdict of `sdsuite bench` will see. Where the OS hides a setting (as a VM
usually hides cpufreq) the check says so instead of guessing.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import psutil

from suite.measure import noise
from suite.stability import OTHERS_CPU_MAX_PCT, STEAL_MAX_PCT


@dataclass(frozen=True)
class Check:
    name: str
    state: str  # "ok", "noisy" or "unknown"
    value: str
    hint: str


def _busiest_others(seconds: float) -> tuple[noise.Snapshot, noise.Snapshot, list[tuple[str, float]]]:
    """Two snapshots `seconds` apart, and the other processes that used the most CPU meanwhile (in %)."""
    me = os.getpid()
    procs = []
    for p in psutil.process_iter(["name"]):
        if p.pid == me:
            continue
        try:
            p.cpu_percent(None)
            procs.append(p)
        except psutil.Error:
            continue
    a = noise.snapshot()
    time.sleep(seconds)
    b = noise.snapshot()
    used = []
    for p in procs:
        try:
            used.append((f"{p.info['name']} ({p.pid})", p.cpu_percent(None)))
        except psutil.Error:
            continue
    return a, b, sorted((u for u in used if u[1] >= 1.0), key=lambda u: -u[1])[:3]


def _judged(name: str, value: str, noisy: bool, hint: str) -> Check:
    """A check with a threshold: noisy with its hint past it, ok without one below."""
    return Check(name, "noisy" if noisy else "ok", value, hint if noisy else "")


def checks(sample_s: float = 1.0) -> list[Check]:
    out = []
    gov = noise.governor()
    if gov is None:
        out.append(
            Check(
                "CPU governor",
                "unknown",
                "not shown (a VM, or no cpufreq driver)",
                "the host decides clocks: a dedicated instance holds them steadier",
            )
        )
    elif gov == "performance":
        out.append(Check("CPU governor", "ok", gov, ""))
    else:
        out.append(
            Check("CPU governor", "noisy", gov, "sudo cpupower frequency-set -g performance (clocks then stay high)")
        )
    boost = noise.turbo()
    if boost is None:
        out.append(
            Check(
                "turbo / boost",
                "unknown",
                "not shown",
                "turbo clocks follow temperature and load; where the host allows, turn them off",
            )
        )
    elif boost:
        out.append(
            Check(
                "turbo / boost",
                "noisy",
                "on",
                "echo 1 | sudo tee /sys/devices/system/cpu/intel_pstate/no_turbo (or cpufreq/boost 0): clocks stop depending on heat",
            )
        )
    else:
        out.append(Check("turbo / boost", "ok", "off", ""))
    isolated = noise.isolated_cpus()
    out.append(
        Check("isolated cores", "ok", isolated, "")
        if isolated
        else Check(
            "isolated cores",
            "noisy",
            "none",
            "boot with isolcpus=N-M nohz_full=N-M and run with taskset -c N-M: no other work lands on the cores you time",
        )
    )
    physical, logical = psutil.cpu_count(logical=False), psutil.cpu_count()
    smt = physical is not None and logical is not None and logical > physical
    out.append(
        Check(
            "SMT (hyper-threads)",
            "noisy",
            f"{logical} threads on {physical} cores",
            f"two threads share a core's units: sdsuite bench --threads {physical}",
        )
        if smt
        else Check("SMT (hyper-threads)", "ok", f"{logical} CPUs", "")
    )
    a, b, busiest = _busiest_others(sample_s)
    shares = noise.between(a, b)
    others = shares["others_cpu_pct"] or 0.0
    who = ", ".join(f"{name} {pct:.0f} %" for name, pct in busiest)
    value = f"{others:.0f} % of the machine over {sample_s:g} s" + (f" ({who})" if who else "")
    out.append(
        _judged(
            "other processes' CPU",
            value,
            others > OTHERS_CPU_MAX_PCT,
            "stop them or wait: a bench run above 10 % is called unstable",
        )
    )
    steal = shares["steal_pct"] or 0.0
    out.append(
        _judged(
            "steal (hypervisor)",
            f"{steal:.1f} %",
            steal > STEAL_MAX_PCT,
            "other VMs share these CPUs: a dedicated or bare-metal instance",
        )
    )
    load = shares["load_avg_1m"]
    if load is not None:
        cores = logical or 1
        out.append(
            _judged(
                "load average (1 min)",
                f"{load:.2f} on {cores} CPUs",
                load > cores,
                "work is queued for the CPUs: wait until it drops below the core count",
            )
        )
    throttles = noise.throttle_count()
    if throttles is None:
        out.append(
            Check(
                "thermal throttling",
                "unknown",
                "not shown",
                "watch step times drifting in the report: the bench calls drift over 10 % unstable",
            )
        )
    else:
        out.append(
            _judged(
                "thermal throttling",
                f"{throttles} events since boot",
                throttles > 0,
                "improve cooling or lower the power draw; compare runs after the machine has cooled",
            )
        )
    swap = psutil.swap_memory()
    out.append(
        _judged(
            "swap in use",
            f"{swap.used / 2**20:.0f} MiB",
            swap.used > 64 * 2**20,
            "free memory: paging in and out distorts time and peak RSS",
        )
    )
    return out
