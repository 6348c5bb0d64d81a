"""One self-contained HTML page per report: styles, script, charts and thumbnails all inline.

Everything that comes from a run or an image (prompts, file names, error messages, metadata) is
untrusted and passes through `e()` before it reaches the page; charts are SVG images, where no
script can run; the page loads nothing from the network.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any

from suite import __version__
from suite.report import charts
from suite.report.compare import compare_runs
from suite.report.runs import Run

THUMBNAIL_PX = 160


def e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _asset(name: str) -> str:
    return resources.files("suite.report").joinpath("assets", name).read_text(encoding="utf-8")


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def thumbnail(path: str | Path, size: int = THUMBNAIL_PX) -> str | None:
    """A small JPEG of an image as a data URI (None when it cannot be read)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.draft("RGB", (size, size))
            image.thumbnail((size, size))
            buf = io.BytesIO()
            image.convert("RGB").save(buf, "JPEG", quality=80)
    except Exception:
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def thumbnails(paths: Sequence[str | Path], workers: int | None = None) -> list[str | None]:
    if len(paths) < 64:
        return [thumbnail(p) for p in paths]
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count()) as pool:
        return list(pool.map(thumbnail, paths, chunksize=32))


def svg_figure(svg: str | None, caption: str, missing: str) -> str:
    if svg is None:
        return f'<p class="note">{e(missing)}</p>'
    uri = "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return f'<figure><img src="{uri}" alt="{e(caption)}"><figcaption>{e(caption)}</figcaption></figure>'


def page(title: str, subtitle: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
        f"<title>{e(title)}</title><style>{_asset('report.css')}</style></head><body>"
        f"<header><h1>{e(title)}</h1><p>{e(subtitle)}</p></header><main>{body}</main>"
        f"<script>{_asset('report.js')}</script></body></html>\n"
    )


def table(table_id: str, headers: Sequence[tuple[str, bool]], rows: Iterable[str], statuses: Sequence[str] = ()) -> str:
    """A sortable, filterable table; `headers` are (label, numeric) and `rows` ready-made <tr> elements."""
    head = "".join(f'<th class="num">{e(h)}</th>' if num else f"<th>{e(h)}</th>" for h, num in headers)
    picker = ""
    if statuses:
        options = "".join(f'<option value="{e(s)}">{e(s)}</option>' for s in statuses)
        picker = f'<select data-filter="{table_id}" aria-label="status"><option value="">every status</option>{options}</select>'
    body = "".join(rows)
    return (
        f'<div class="controls"><input type="search" placeholder="filter rows…" data-filter="{table_id}" '
        f'aria-label="filter">{picker}<span class="note" data-count="{table_id}"></span></div>'
        f'<div class="tablewrap"><table class="sortable" id="{table_id}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def _td(value: Any, numeric: bool = False, digits: int = 3, cls: str = "") -> str:
    text = _fmt(value, digits)
    classes = " ".join(c for c in ("num" if numeric else "", cls) if c)
    attr = f' class="{classes}"' if classes else ""
    sort = f' data-v="{e(value)}"' if numeric and text else ""
    return f"<td{attr}{sort}>{e(text)}</td>"


def _badge(status: str) -> str:
    return f'<span class="badge s-{e(status)}">{e(status)}</span>'


# ---- bench runs ---------------------------------------------------------------------------------

MACHINE_FIELDS = (
    ("cpu", "CPU"),
    ("cpu_cores", "cores"),
    ("ram_gib", "RAM, GiB"),
    ("gpu", "GPU"),
    ("gpu_vram_gib", "VRAM, GiB"),
    ("driver", "driver"),
    ("cuda", "CUDA"),
    ("compute_capability", "compute capability"),
    ("torch", "torch"),
    ("diffusers", "diffusers"),
    ("transformers", "transformers"),
    ("python", "Python"),
    ("os", "OS"),
    ("suite_version", "sdsuite"),
    ("git_sha", "git"),
)


def machine_card(run: Run) -> str:
    env = run.environment
    fp = env.get("fingerprint", {})
    items = [
        ("run", env.get("run_id", run.path.name)),
        ("profile", env.get("profile", "")),
        ("started", env.get("started_at", "")),
    ]
    items += [(label, fp.get(key)) for key, label in MACHINE_FIELDS if fp.get(key) not in (None, "")]
    peaks = env.get("peak_tflops") or {}
    if peaks:
        items.append(("measured peak", ", ".join(f"{k} {v:.3g} TFLOP/s" for k, v in peaks.items() if v)))
    if env.get("datasheet_tflops_fp16"):
        items.append(("datasheet fp16", f"{env['datasheet_tflops_fp16']} TFLOP/s"))
    sources = run.weight_sources
    synthetic = all(s in ("synthetic", "tiny") for s in sources) if sources else True
    kind = "synthetic weights" if synthetic else "real weights"
    weights = f'<span class="badge {"synthetic" if synthetic else "real"}">{e(kind)}</span> {e(", ".join(sources))}'
    counts: dict[str, int] = {}
    for r in run.records:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    summary = " ".join(f"<span>{_badge(k)} {n}</span>" for k, n in sorted(counts.items()))
    dl = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in items)
    return (
        f'<div class="card"><h3>{e(run.label)}</h3><p>{weights}</p><p class="counts">{summary}</p><dl>{dl}</dl></div>'
    )


SCENARIO_COLUMNS = (
    ("run", "run", False),
    ("scenario", "scenario", False),
    ("family", "family", False),
    ("model", "model", False),
    ("task", "task", False),
    ("device", "device", False),
    ("precision", "precision", False),
    ("memory_mode", "memory mode", False),
    ("techniques", "techniques", False),
    ("size", "size", False),
    ("steps", "steps", True),
    ("batch", "batch", True),
    ("vram_budget_gib", "budget GiB", True),
    ("status", "status", False),
    ("s_per_image", "s/image", True),
    ("latency_s_p90", "p90 s", True),
    ("it_per_s", "it/s", True),
    ("images_per_s", "images/s", True),
    ("step_s_median", "step s", True),
    ("first_step_s", "first step s", True),
    ("load_s", "load s", True),
    ("peak_rss_mib", "RSS MiB", True),
    ("peak_vram_allocated_mib", "VRAM alloc MiB", True),
    ("peak_vram_reserved_mib", "VRAM reserved MiB", True),
    ("peak_vram_device_mib", "device MiB", True),
    ("energy_j_per_image", "J/image", True),
    ("achieved_tflops", "TFLOP/s", True),
    ("pct_of_peak", "% peak", True),
    ("quality", "quality", False),
    ("error", "reason", False),
)


def scenario_rows(runs: Sequence[Run]) -> list[str]:
    out = []
    for run in runs:
        for row in run.rows:
            row = {
                **row,
                "run": run.environment.get("run_id", run.path.name),
                "size": f"{row['width']}x{row['height']}",
            }
            cells = []
            for key, _, numeric in SCENARIO_COLUMNS:
                value = row.get(key)
                if isinstance(value, str) and value.startswith("'"):
                    value = value[1:]  # the CSV's spreadsheet guard, not part of the text
                if key == "status":
                    cells.append(f'<td data-v="{e(value)}">{_badge(value)}</td>')
                elif key == "quality" and str(value).startswith("broken"):
                    cells.append(
                        f'<td class="reason"><span class="badge q-broken">broken</span> {e(str(value)[7:])}</td>'
                    )
                elif key == "error":
                    cells.append(f'<td class="reason">{e(value)}</td>')
                else:
                    cells.append(_td(value, numeric))
            out.append(f'<tr data-status="{e(row["status"])}">{"".join(cells)}</tr>')
    return out


def budget_table(runs: Sequence[Run]) -> str:
    """fits / oom for each scenario under each emulated VRAM budget."""
    cells: dict[tuple[str, str], dict[float, str]] = {}
    budgets: set[float] = set()
    for run in runs:
        for r in run.records:
            budget = r["scenario"]["vram_budget_gib"]
            if not budget:
                continue
            s = r["scenario"]
            base = f"{s['model']} {s['width']}x{s['height']} {s['precision']} {'+'.join(s['memory_modes'])}"
            verdict = {"ok": "fits", "oom": "oom"}.get(r["status"], r["status"])
            cells.setdefault((run.label, base), {})[budget] = verdict
            budgets.add(budget)
    if not cells:
        return '<p class="note">No VRAM budget was emulated in these runs (it needs CUDA; see the lowvram-budget scenarios).</p>'
    order = sorted(budgets)
    head = "".join(f"<th>{e(_fmt(b))} GiB</th>" for b in order)
    body = []
    for (label, base), verdicts in cells.items():
        tds = []
        for b in order:
            v = verdicts.get(b, "")
            cls = {"fits": "v-fits", "oom": "v-oom"}.get(v, "s-skipped")
            tds.append(f'<td><span class="badge {cls}">{e(v)}</span></td>' if v else "<td></td>")
        body.append(f"<tr><td>{e(label)}</td><td>{e(base)}</td>{''.join(tds)}</tr>")
    return (
        '<div class="tablewrap"><table><thead><tr><th>run</th><th>configuration</th>'
        f"{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
        '<p class="note">Budget emulation caps the process (torch allocator + the measured CUDA context) at the '
        "budget: <em>fits</em> means the whole generation ran under that cap, <em>oom</em> that it ran out of memory.</p>"
    )


def comparison_section(runs: Sequence[Run]) -> str:
    if len(runs) < 2:
        return ""
    base = runs[0]
    parts = ["<h2>Comparison</h2>", f'<p class="note">Each run against {e(base.label)}. {e(COMPARE_RULE)}</p>']
    for other in runs[1:]:
        rows = []
        for c in compare_runs(base, other):
            interval = f"{c.low:.3f}–{c.high:.3f}" if c.low is not None else ""
            rows.append(
                f'<tr data-status="{e(c.verdict)}"><td>{e(c.scenario)}</td>{_td(c.a_s, True)}{_td(c.b_s, True)}'
                f"{_td(c.ratio, True, 4)}<td>{e(interval)}</td><td>{e(c.verdict)}</td></tr>"
            )
        headers = (
            ("scenario", False),
            ("A s/image", True),
            ("B s/image", True),
            ("B/A", True),
            ("95% interval", False),
            ("verdict", False),
        )
        parts.append(f"<h3>{e(other.label)}</h3>")
        parts.append(table(f"compare-{len(parts)}", headers, rows))
    return "".join(parts)


COMPARE_RULE = (
    "B/A is the ratio of median seconds per image; a difference counts when the 95 % bootstrap "
    "interval of that ratio (repeats resampled 2,000 times) excludes 1."
)


def image_grid(runs: Sequence[Run], limit: int = 120) -> str:
    from suite.report.checks import watermark_check

    items = []
    for run in runs:
        for r in run.records:
            for rel in r.get("images") or []:
                items.append((run, r, run.path / rel))
    if not items:
        return '<p class="note">No images were generated in these runs.</p>'
    shown = items[:limit]
    uris = thumbnails([p for _, _, p in shown])
    tiles = []
    for (run, r, path), uri in zip(shown, uris, strict=True):
        embedded = (r.get("watermark") or {}).get("scheme", "none")
        check = watermark_check(path)
        img = f'<img src="{uri}" alt="{e(path.name)}">' if uri else '<p class="note">unreadable</p>'
        tiles.append(
            f'<div class="tile">{img}<div><b>{e(r["scenario"]["name"])}</b></div>'
            f"<div>{e(run.environment.get('run_id', ''))}</div>"
            f"<div>embedded: {e(embedded)}</div><div>check: {e(check)}</div></div>"
        )
    more = f'<p class="note">{len(items) - limit} more image(s) not shown.</p>' if len(items) > limit else ""
    return f'<div class="grid">{"".join(tiles)}</div>{more}'


def bench_report(runs: Sequence[Run]) -> str:
    statuses = ("ok", "oom", "unsupported", "timeout", "error", "skipped")
    headers = [(label, numeric) for _, label, numeric in SCENARIO_COLUMNS]
    memory_svg, memory_note = charts.memory(runs)
    no_gpu = "Not measured in these runs: it needs an NVIDIA GPU (NVML)."
    body = [
        "<h2>Machines</h2>",
        f'<div class="cards">{"".join(machine_card(r) for r in runs)}</div>',
        "<h2>Scenarios</h2>",
        '<p class="note">Every scenario and its outcome; failed ones keep their reason. Click a header to sort.</p>',
        table("scenarios", headers, scenario_rows(runs), statuses),
        "<h2>Latency</h2>",
        svg_figure(
            charts.latency(runs), "Seconds per image across scenarios and machines", "No successful scenario to chart."
        ),
        "<h2>Where the time goes</h2>",
        svg_figure(
            charts.stages(runs),
            "Model load (left) and the stages of one call (right)",
            "No successful scenario to chart.",
        ),
        svg_figure(
            charts.steps(runs),
            "Time of each denoising step; a high first step is warm-up",
            "No per-step times recorded.",
        ),
        "<h2>Throughput</h2>",
        svg_figure(
            charts.throughput(runs), "Iterations per second and images per second", "No successful scenario to chart."
        ),
        "<h2>Memory</h2>",
        svg_figure(memory_svg, f"Peak memory ({memory_note})", "No memory measured."),
        "<h3>Would it fit? VRAM budget emulation</h3>",
        budget_table(runs),
        "<h2>Energy</h2>",
        svg_figure(charts.energy(runs), "Energy per image from the GPU's total-energy counter", no_gpu),
        "<h2>Compute</h2>",
        svg_figure(
            charts.tflops(runs), "UNet TFLOP per step divided by the median step time", "No compute figures recorded."
        ),
        comparison_section(runs),
        "<h2>Generated images</h2>",
        image_grid(runs),
    ]
    subtitle = f"{len(runs)} run(s) · generated {time.strftime('%Y-%m-%d %H:%M')} by sdsuite {__version__}"
    return page("sdsuite bench report", subtitle, "".join(body))


# ---- audits ------------------------------------------------------------------------------------


def audit_report(records: Sequence[dict[str, Any]], source: str) -> str:
    from suite.report.checks import summarise_audit

    summary = summarise_audit(records)
    count_rows = "".join(
        f"<tr><td>{e(scheme)}</td><td class='num'>{n_detected}</td><td class='num'>{n_checked}</td></tr>"
        for scheme, (n_detected, n_checked) in summary["per_scheme"].items()
    )
    status_line = " ".join(f"<span>{_badge(k)} {n}</span>" for k, n in summary["status"].items())
    pvalues = [w["p_value"] for r in records for w in r.get("watermarks") or [] if w.get("p_value") is not None]
    errors = [r for r in records if r.get("status") != "ok"]
    error_rows = [
        f'<tr data-status="{e(r.get("status"))}"><td class="mono">{e(r.get("path"))}</td>'
        f"<td>{_badge('error' if r.get('status') == 'error' else 'skipped')} {e(r.get('status'))}</td>"
        f'<td class="reason">{e(r.get("error"))}</td></tr>'
        for r in errors
    ]
    paths = [r.get("path", "") for r in records]
    uris = thumbnails([p for p in paths])
    file_rows = []
    for r, uri in zip(records, uris, strict=True):
        found = [w for w in r.get("watermarks") or [] if w.get("detected")]
        verdict = ", ".join(f"{w['scheme']} (p={w['p_value']:.2g})" for w in found) if found else "none"
        best = min((w.get("p_value") for w in r.get("watermarks") or [] if w.get("p_value") is not None), default=None)
        meta = r.get("metadata") or {}
        meta_text = (
            "; ".join(f"{k}: {v}" for k, v in meta.items() if v)[:300] if isinstance(meta, dict) else str(meta)[:300]
        )
        img = f'<img src="{uri}" alt="" loading="lazy" width="64">' if uri else ""
        file_rows.append(
            f'<tr data-status="{e(r.get("status"))}"><td>{img}</td><td class="mono">{e(r.get("path"))}</td>'
            f"<td>{_badge(r.get('status', 'error') if r.get('status') == 'ok' else 'error')} {e(r.get('status'))}</td>"
            f"{_td(r.get('width'), True)}{_td(r.get('height'), True)}<td>{e(verdict)}</td>{_td(best, True)}"
            f'<td class="reason">{e(meta_text)}</td></tr>'
        )
    file_headers = (
        ("", False),
        ("path", False),
        ("status", False),
        ("width", True),
        ("height", True),
        ("watermark", False),
        ("min p", True),
        ("metadata", False),
    )
    body = [
        "<h2>Summary</h2>",
        f'<p class="counts">{len(records)} file(s): {status_line}</p>',
        '<div class="tablewrap"><table><thead><tr><th>scheme</th><th>detected</th><th>checked</th></tr></thead>'
        f"<tbody>{count_rows}</tbody></table></div>",
        svg_figure(
            charts.histogram(pvalues, "p-value (log scale)", "p-values of every scheme checked", log=True),
            "Distribution of p-values: watermarked files sit far left",
            "No p-values in this audit.",
        ),
        "<h2>Errors</h2>",
        table("audit-errors", (("path", False), ("status", False), ("reason", False)), error_rows)
        if errors
        else '<p class="note">No file failed.</p>',
        "<h2>Files</h2>",
        table("audit-files", file_headers, file_rows, ("ok", "too_small", "error")),
    ]
    subtitle = f"{source} · generated {time.strftime('%Y-%m-%d %H:%M')} by sdsuite {__version__}"
    return page("sdsuite audit report", subtitle, "".join(body))
