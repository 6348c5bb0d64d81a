"""Is a scenario's number one to trust? A `stable`/`unstable` verdict with its reason and advice.

Judged from the record alone, the way pyperf warns about a benchmark: the spread of the repeats
within a process and of the processes' medians, step times drifting through a run, and what the
worker saw of the machine while it timed (other processes' CPU, a hypervisor's steal, thermal
throttling). Old records without the machine's state are judged on their spread. The thresholds
are pyperf's 10 % for spread; 10 % of the machine for others' CPU, since on 2 cores one busy
neighbour is 50 % and slows every parallel op of the work.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

SPREAD_MAX_PCT = 10.0
DRIFT_MAX_PCT = 10.0
OTHERS_CPU_MAX_PCT = 10.0
STEAL_MAX_PCT = 5.0


@dataclass(frozen=True)
class Verdict:
    stability: str  # "stable", "unstable", or "" where there is nothing to judge
    reason: str
    advice: str
    repeat_spread_pct: float | None
    process_spread_pct: float | None
    drift_pct: float | None
    others_cpu_pct: float | None


def _cv_pct(values: list[float]) -> float | None:
    return 100.0 * statistics.stdev(values) / statistics.mean(values) if len(values) > 1 else None


def groups(record: dict[str, Any]) -> list[list[float]]:
    """The latencies per process (one group for a record from before processes were kept)."""
    per_process = [p.get("latency_s") or [] for p in record.get("processes") or []]
    per_process = [g for g in per_process if g]
    return per_process or ([list(record["latency_s"])] if record.get("latency_s") else [])


def repeat_spread_pct(latencies: list[list[float]]) -> float | None:
    """Pooled within-process spread: root of the mean variance over the grand mean, in %."""
    variances = [statistics.variance(g) for g in latencies if len(g) > 1]
    if not variances:
        return None
    mean = statistics.mean(x for g in latencies for x in g)
    return 100.0 * statistics.mean(variances) ** 0.5 / mean


def drift_pct(step_s: list[list[float]], processes: int) -> float | None:
    """How much slower the second half of each process's steps ran than the first (median over
    processes, in %). First steps are left out: they carry each call's set-up."""
    runs = [r[1:] for r in step_s if len(r) > 1]
    per_process = max(1, len(runs) // max(1, processes))
    drifts = []
    for start in range(0, len(runs), per_process):
        steps = [t for r in runs[start : start + per_process] for t in r]
        half = len(steps) // 2
        if half >= 2:
            drifts.append(100.0 * (statistics.median(steps[half:]) / statistics.median(steps[:half]) - 1))
    return statistics.median(drifts) if drifts else None


def judge(record: dict[str, Any]) -> Verdict:
    if record.get("status") != "ok":
        return Verdict("", "", "", None, None, None, None)
    latencies = groups(record)
    within = repeat_spread_pct(latencies)
    between = _cv_pct([statistics.median(g) for g in latencies]) if len(latencies) > 1 else None
    drift = drift_pct(record.get("step_s") or [], len(latencies))
    system = record.get("system") or {}
    others = system.get("others_cpu_pct")
    steal = system.get("steal_pct")
    throttles = system.get("throttle_events")
    if within is None and between is None:
        return Verdict("", "one repeat in one process: no spread to judge", "", None, None, drift, others)

    problems: list[tuple[str, str]] = []
    if others is not None and others > OTHERS_CPU_MAX_PCT:
        problems.append(
            (
                f"measured while other processes used {others:.0f} % of the CPU",
                "stop the other work or run when the machine is idle (`sdsuite system` lists what runs)",
            )
        )
    if steal is not None and steal > STEAL_MAX_PCT:
        problems.append(
            (f"the hypervisor took {steal:.0f} % of the CPU (steal)", "use a dedicated or bare-metal instance")
        )
    if throttles:
        problems.append((f"the CPU throttled {throttles} times", "improve cooling or lift the power limit"))
    if within is not None and within > SPREAD_MAX_PCT:
        problems.append(
            (f"spread {within:.0f} % between repeats", "use more repeats or a quieter machine (`sdsuite system`)")
        )
    if between is not None and between > SPREAD_MAX_PCT:
        problems.append((f"spread {between:.0f} % between processes", "use more processes or a quieter machine"))
    if drift is not None and abs(drift) > DRIFT_MAX_PCT:
        problems.append(
            (
                f"steps {'slower' if drift > 0 else 'faster'} by {abs(drift):.0f} % by the end of each process",
                "warm up longer and check clocks and cooling (`sdsuite system`)",
            )
        )
    if problems:
        reason = "; ".join(p for p, _ in problems)
        advice = "; ".join(dict.fromkeys(a for _, a in problems))
        return Verdict("unstable", reason, advice, within, between, drift, others)
    facts = []
    if within is not None:
        facts.append(f"spread {within:.1f} % between repeats")
    if between is not None:
        facts.append(f"{between:.1f} % between {len(latencies)} processes")
    if others is not None:
        facts.append(f"others' CPU {others:.0f} %")
    advice = ""
    governor = system.get("governor")
    if governor and governor != "performance":
        advice = f"the CPU governor is {governor}: `performance` holds clocks steady"
    return Verdict("stable", ", ".join(facts), advice, within, between, drift, others)
