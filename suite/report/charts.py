"""The report's charts, drawn by matplotlib as SVG.

Each function takes the runs and returns SVG text, or None when the runs hold nothing to draw
(no GPU, no energy counter), so the page can say why a chart is missing instead of drawing an
empty one. The SVG is embedded as an <img>, where nothing in it can run.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FuncFormatter, MaxNLocator

from suite.record import STAGES, Record
from suite.report.runs import Run
from suite.report.sweeps import Sweep, line_fit

CARD_SIZES_GIB = (4, 6, 8, 12, 16, 24)
COLORS = plt.get_cmap("tab10").colors
STAGE_COLORS = {
    "text_encode": "#8c6bb1",
    "prepare": "#9ecae1",
    "denoise": "#3182bd",
    "vae_decode": "#fd8d3c",
    "watermark": "#31a354",
    "other": "#bdbdbd",
}
plt.rcParams.update({"svg.fonttype": "none", "font.size": 9, "axes.spines.top": False, "axes.spines.right": False})


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


# 0.2, 0.5, 1, 2, 5 rather than 2x10^-1 (no mathtext to typeset), and not every minor tick
_PLAIN = FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "125" else "")


def _plain_log_ticks(axis) -> None:
    axis.set_major_formatter(_PLAIN)
    axis.set_minor_formatter(_PLAIN)


def _ok(run: Run) -> list[Record]:
    return [r for r in run.records if r.measured]


def _height(n_bars: int) -> float:
    return max(2.2, 0.28 * n_bars + 1.0)


def _bars(
    labels: Sequence[str],
    series: list[tuple[str, list[float | None], list[tuple[float, float]] | None]],
    xlabel: str,
    title: str,
    lines: Sequence[tuple[float, str]] = (),
    log: bool = False,
):
    """Horizontal grouped bars: one group per label, one bar per series (a run)."""
    n = len(series)
    fig, ax = plt.subplots(figsize=(8, _height(len(labels) * max(1, n))))
    y = np.arange(len(labels))
    height = 0.8 / n
    for i, (name, values, ranges) in enumerate(series):
        vals = np.array([np.nan if v is None else v for v in values], dtype=float)
        pos = y - 0.4 + height * (i + 0.5)
        ax.barh(pos, vals, height=height * 0.9, color=COLORS[i % len(COLORS)], label=name)
        if ranges:
            lo = np.array([v - r[0] if r else 0 for v, r in zip(vals, ranges, strict=True)])
            hi = np.array([r[1] - v if r else 0 for v, r in zip(vals, ranges, strict=True)])
            ax.errorbar(vals, pos, xerr=[np.nan_to_num(lo), np.nan_to_num(hi)], fmt="none", ecolor="#333", lw=0.8)
    for value, text in lines:
        ax.axvline(value, color="#c00", ls="--", lw=0.8)
        ax.annotate(
            text,
            (value, 1.0),
            xycoords=("data", "axes fraction"),
            rotation=90,
            va="top",
            ha="right",
            color="#c00",
            fontsize=7,
        )
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title, loc="left")
    if log:
        ax.set_xscale("log")
        _plain_log_ticks(ax.xaxis)
    if n > 1:
        ax.legend(loc="lower right", fontsize=7)
    return fig


def _scenario_order(runs: Sequence[Run], keep) -> list[str]:
    names: list[str] = []
    for run in runs:
        for r in run.records:
            if keep(r) and r.name not in names:
                names.append(r.name)
    return names


def _per_scenario(runs: Sequence[Run], value, keep=lambda r: r.measured):
    names = _scenario_order(runs, keep)
    series = []
    for run in runs:
        by_name = run.by_name(keep)
        series.append((run.label, [value(by_name[n]) if n in by_name else None for n in names]))
    return names, series


def latency(runs: Sequence[Run]) -> str | None:
    names, series = _per_scenario(runs, Record.per_image_s)
    if not names:
        return None
    full = []
    for run, (label, values) in zip(runs, series, strict=True):
        by_name = run.by_name(lambda r: r.measured)
        ranges = [
            (
                by_name[n].timings.latency["min"] / by_name[n].scenario.batch,
                by_name[n].timings.latency["max"] / by_name[n].scenario.batch,
            )
            if n in by_name
            else None
            for n in names
        ]
        full.append((label, values, ranges))
    spread = [v for _, vals, _ in full for v in vals if v]
    log = bool(spread) and max(spread) / min(spread) > 50
    return _svg(
        _bars(
            names, full, "seconds per image (median; whiskers: min-max over repeats)", "Latency per scenario", log=log
        )
    )


def stages(runs: Sequence[Run]) -> str | None:
    """Load time apart (it happens once per process), then where one call's time goes."""
    rows = [(run.label, r) for run in runs for r in _ok(run)]
    if not rows:
        return None
    labels = [r.name if len(runs) == 1 else f"{r.name} · {label}" for label, r in rows]
    fig, (ax_load, ax) = plt.subplots(1, 2, figsize=(10, _height(len(rows))), width_ratios=(1, 3), sharey=True)
    y = np.arange(len(rows))
    ax_load.barh(y, [r.timings.load_s or 0 for _, r in rows], color="#636363")
    ax_load.set_xlabel("model load, s (once per process)")
    ax_load.set_yticks(y, labels)
    ax_load.invert_yaxis()
    left = np.zeros(len(rows))
    for stage in (*STAGES, "other"):
        if stage == "other":
            values = np.array(
                [
                    max(
                        0.0,
                        r.timings.latency["median"]
                        - sum(float(np.median(r.timings.stages_s.get(s) or [0])) for s in STAGES),
                    )
                    for _, r in rows
                ]
            )
        else:
            values = np.array([float(np.median(r.timings.stages_s.get(stage) or [0])) for _, r in rows])
        ax.barh(y, values, left=left, color=STAGE_COLORS[stage], label=stage.replace("_", " "))
        left += values
    ax.set_xlabel("seconds per call (median over repeats)")
    ax.set_title("Stage breakdown", loc="left")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12 - 1.2 / len(rows)), fontsize=7, ncols=6, frameon=False)
    return _svg(fig)


def steps(runs: Sequence[Run], max_lines: int = 12) -> str | None:
    """Median time of each denoising step over the repeats: warm-up effects show as a high first step."""
    lines = []
    for run in runs:
        for r in _ok(run):
            per_repeat = [s for s in r.timings.step_s if s]
            if not per_repeat:
                continue
            length = min(len(s) for s in per_repeat)
            median = np.median(np.array([s[:length] for s in per_repeat]), axis=0)
            name = r.name if len(runs) == 1 else f"{r.name} · {run.label}"
            lines.append((name, median))
    if not lines:
        return None
    title = "Time per step (median over repeats)"
    if len(lines) > max_lines:
        title += f": the first {max_lines} of {len(lines)} scenarios"
        lines = lines[:max_lines]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for i, (name, median) in enumerate(lines):
        style = ("-", "--", ":")[i // len(COLORS) % 3]  # past ten lines the colours repeat: the dashes tell them apart
        ax.plot(
            np.arange(1, len(median) + 1),
            median,
            marker="o",
            ms=2.5,
            lw=1.2,
            ls=style,
            color=COLORS[i % len(COLORS)],
            label=name,
        )
    values = np.concatenate([m for _, m in lines])
    if values.min() > 0 and values.max() / values.min() > 20:
        ax.set_yscale("log")
        _plain_log_ticks(ax.yaxis)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("denoising step")
    ax.set_ylabel("seconds")
    ax.set_title(title, loc="left")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _svg(fig)


def memory(runs: Sequence[Run]) -> tuple[str | None, str]:
    """Peak VRAM per scenario against common card sizes; host RSS where no GPU was used."""
    gpu = any(r.memory and r.memory.peak_vram_allocated_mib for run in runs for r in _ok(run))
    key = "peak_vram_allocated_mib" if gpu else "peak_rss_mib"

    def value(r: Record) -> float | None:
        return ((r.memory and getattr(r.memory, key)) or 0) / 1024 or None

    if gpu:
        unit = "peak VRAM allocated by torch, GiB"
        lines = [(float(g), f"{g} GB card") for g in CARD_SIZES_GIB]
        note = "GPU memory; dashed lines: common card sizes"
    else:
        unit = "peak process RSS, GiB (host memory: no GPU in these runs)"
        lines = []
        note = "host memory: these runs used no GPU"
    names, series = _per_scenario(runs, value, keep=lambda r: r.status == "ok" and not r.scenario.vram_budget_gib)
    if not names:
        return None, note
    top = max((v for _, vals in series for v in vals if v), default=0)
    shown = [(v, t) for v, t in lines if v <= max(top * 1.6, 4)]
    fig = _bars(names, [(label, vals, None) for label, vals in series], unit, "Peak memory per scenario", lines=shown)
    return _svg(fig), note


def throughput(runs: Sequence[Run]) -> str | None:
    def metric(name: str):
        return lambda r: r.row()[name] or None

    names, its = _per_scenario(runs, metric("it_per_s"))
    if not names:
        return None
    _, imgs = _per_scenario(runs, metric("images_per_s"))
    fig, axes = plt.subplots(1, 2, figsize=(10, _height(len(names) * len(runs))), sharey=True)
    y = np.arange(len(names))
    height = 0.8 / len(runs)
    for ax, series, label in ((axes[0], its, "denoising iterations per second"), (axes[1], imgs, "images per second")):
        for i, (run_label, vals) in enumerate(series):
            vals = np.array([np.nan if v is None else v for v in vals], dtype=float)
            ax.barh(
                y - 0.4 + height * (i + 0.5), vals, height=height * 0.9, color=COLORS[i % len(COLORS)], label=run_label
            )
        ax.set_xlabel(label)
    axes[0].set_yticks(y, names)
    axes[0].invert_yaxis()
    axes[0].set_title("Throughput", loc="left")
    if len(runs) > 1:
        axes[1].legend(fontsize=7)
    return _svg(fig)


def energy(runs: Sequence[Run]) -> str | None:
    names, series = _per_scenario(runs, lambda r: r.energy and r.energy.j_per_image)
    if not any(v for _, vals in series for v in vals):
        return None
    return _svg(
        _bars(
            names,
            [(label, vals, None) for label, vals in series],
            "joules per image (GPU energy counter)",
            "Energy per image",
        )
    )


def tflops(runs: Sequence[Run]) -> str | None:
    names, series = _per_scenario(runs, lambda r: r.compute and r.compute.achieved_tflops)
    if not any(v for _, vals in series for v in vals):
        return None
    peaks = []
    for run in runs:
        used = {r.scenario.precision for r in _ok(run)}
        for precision, value in (run.environment.get("peak_tflops") or {}).items():
            if value and not math.isnan(value) and precision in used:
                which = "" if len(runs) == 1 else f" · {run.environment.get('run_id', run.path.name)}"
                peaks.append((value, f"{precision} peak{which}"))
    achieved = [v for _, vals in series for v in vals if v]
    shown = [p for p in peaks if p[0] <= max(achieved) * 20]
    fig = _bars(
        names,
        [(label, vals, None) for label, vals in series],
        "achieved UNet TFLOP/s (flop count / median step time)",
        "Achieved compute against the measured peak (dashed)",
        lines=shown,
        log=any(p[0] > 10 * min(achieved) for p in shown),  # bars far below the peak stay visible
    )
    return _svg(fig)


VERDICT_COLORS = {"none": "#bdbdbd", "too_small": "#d4a72c", "error": "#cf222e"}


def scheme_colors(schemes: Sequence[str]) -> dict[str, Any]:
    """One colour per scheme, the same in every chart of a report."""
    return {scheme: COLORS[i % len(COLORS)] for i, scheme in enumerate(schemes)}


def verdicts(counts: dict[str, int], schemes: Sequence[str]) -> str | None:
    """Files per verdict: each scheme found (in `schemes` order; combinations after), none, too small, error."""
    if not counts:
        return None
    colors = {**scheme_colors(schemes), **VERDICT_COLORS}
    rank = {scheme: i for i, scheme in enumerate(schemes)}
    found = sorted((k for k in counts if k not in VERDICT_COLORS), key=lambda k: (rank.get(k, len(rank)), k))
    order = found + [k for k in VERDICT_COLORS if k in counts]
    fig, ax = plt.subplots(figsize=(6, _height(len(order))))
    y = np.arange(len(order))
    values = [counts[k] for k in order]
    ax.barh(y, values, color=[colors.get(k, "#6a51a3") for k in order])
    for pos, value in zip(y, values, strict=True):
        ax.annotate(f" {value:,}", (value, pos), va="center", fontsize=8)
    ax.set_yticks(y, [k.replace("_", " ") for k in order])
    ax.invert_yaxis()
    ax.set_xlabel("files")
    ax.set_xlim(0, max(values) * 1.15)
    return _svg(fig)


def pvalues(by_scheme: dict[str, list[float]], alpha: float) -> str | None:
    """Each scheme's p-values twice: on [0, 1], where unmarked files spread out, and as -log10 p,
    where marked files stand far past the threshold."""
    schemes = [s for s, values in by_scheme.items() if values]
    if not schemes:
        return None
    data = [np.clip(np.asarray(by_scheme[s], dtype=float), 1e-300, 1.0) for s in schemes]
    palette = scheme_colors(list(by_scheme))
    colors = [palette[s] for s in schemes]
    fig, (linear, strength) = plt.subplots(1, 2, figsize=(10, 3.2), width_ratios=(1, 1.5))
    linear.hist(data, bins=np.linspace(0, 1, 21), stacked=True, color=colors, label=schemes)
    linear.set_xlabel("p-value")
    linear.set_ylabel("scheme tests")
    linear.set_title("p-values", loc="left")
    scores = [-np.log10(d) for d in data]
    threshold = -math.log10(alpha)
    top = math.ceil(max(max(float(s.max()) for s in scores), threshold + 2))
    edges = np.linspace(0, top, min(60, 2 * top) + 1)
    strength.hist(scores, bins=edges, stacked=True, color=colors, label=schemes, log=True)
    _plain_log_ticks(strength.yaxis)
    strength.axvline(threshold, color="#c00", ls="--", lw=0.8)
    strength.annotate(
        f" detected: p ≤ {alpha:g}",
        (threshold, 1.0),
        xycoords=("data", "axes fraction"),
        va="top",
        color="#c00",
        fontsize=7,
    )
    strength.set_xlabel("−log10 p (right: stronger evidence of a mark)")
    strength.set_ylabel("scheme tests (log scale)")
    strength.set_title("Strength of the evidence", loc="left")
    strength.legend(fontsize=7, loc="upper right")
    return _svg(fig)


AXIS_LABELS = {"steps": "denoising steps", "batch": "batch size", "resolution": "image side, pixels (square)"}


def scaling(sweeps: Sequence[Sweep]) -> str | None:
    """One row per sweep: seconds per call against the swept value (left), peak memory (right)."""
    if not sweeps:
        return None
    fig, axes = plt.subplots(len(sweeps), 2, figsize=(10, 2.8 * len(sweeps)), squeeze=False)
    for (ax_t, ax_m), sweep in zip(axes, sweeps, strict=True):
        x = np.asarray(sweep.x)
        y = np.asarray(sweep.latency_s)
        err = [y - np.asarray(sweep.low_s), np.asarray(sweep.high_s) - y]
        ax_t.errorbar(x, y, yerr=err, marker="o", ms=3.5, lw=1.2, color=COLORS[0], capsize=2, label="measured")
        if sweep.axis == "steps":
            fixed, per_step = line_fit(sweep.x, sweep.latency_s)
            ax_t.plot(x, fixed + per_step * x, ls="--", lw=0.9, color="#c00", label="straight-line fit")
            ax_t.legend(fontsize=7, loc="upper left")
        ax_t.set_xlabel(AXIS_LABELS[sweep.axis])
        ax_t.set_ylabel("seconds per call (median)")
        ax_t.set_title(sweep.label, loc="left")
        ax_t.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax_t.set_ylim(bottom=0)
        memory = np.array([np.nan if m is None else m / 1024 for m in sweep.memory_mib], dtype=float)
        ax_m.plot(x, memory, marker="s", ms=3.5, lw=1.2, color=COLORS[1])
        ax_m.set_xlabel(AXIS_LABELS[sweep.axis])
        ax_m.set_ylabel(f"peak {sweep.memory_kind}, GiB")
        ax_m.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax_m.set_ylim(bottom=0)
    fig.tight_layout()
    return _svg(fig)


def robustness(
    attacks: Sequence[str],
    families: Sequence[str],
    found: dict[str, list[tuple[float, float, float]]],
    flagged: Sequence[float],
) -> str | None:
    """WAVES-style robustness: per attack (rows, grouped by family), each scheme's share of marks found
    with its 95 % interval, and the share of clean images flagged under the same attack (red x)."""
    if not attacks or not found:
        return None
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(attacks) + 1.4))
    y = np.arange(len(attacks))
    palette = scheme_colors(list(found))
    spread = 0.5 / max(1, len(found))
    for i, (scheme, values) in enumerate(found.items()):
        share, low, high = (100 * np.array(v, dtype=float) for v in zip(*values, strict=True))
        pos = y + spread * (i - (len(found) - 1) / 2)
        ax.errorbar(
            share,
            pos,
            xerr=[share - low, high - share],
            fmt="o",
            ms=4,
            lw=0.8,
            capsize=1.5,
            color=palette[scheme],
            label=f"{scheme}: marks found",
        )
    ax.plot(
        100 * np.asarray(flagged, dtype=float),
        y,
        "x",
        color="#c00",
        ms=6,
        mew=1.4,
        zorder=5,
        label="clean images flagged",
    )
    starts = [i for i in range(len(families)) if i == 0 or families[i] != families[i - 1]]
    for n, start in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(families)
        if n % 2:
            ax.axhspan(start - 0.5, end - 0.5, color="#f2f2f2", zorder=0)
        ax.annotate(
            families[start], (1.01, (start + end - 1) / 2), xycoords=("axes fraction", "data"), va="center", fontsize=7
        )
    ax.set_yticks(y, attacks)
    ax.set_ylim(len(attacks) - 0.5, -0.5)
    ax.set_xlim(-3, 103)
    ax.set_xlabel("% of images (95 % intervals: Clopper–Pearson)")
    ax.grid(axis="x", color="#ddd", lw=0.6)
    ax.set_axisbelow(True)
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: labels[i] == "clean images flagged")
    ax.legend(
        [handles[i] for i in order],
        [labels[i] for i in order],
        fontsize=7,
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
        ncol=4,
        frameon=False,
    )
    return _svg(fig)
