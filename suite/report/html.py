"""One self-contained HTML page per report: styles, script, charts and thumbnails all inline.

Everything that comes from a run or an image (prompts, file names, error messages, metadata) is
untrusted and passes through `e()` before it reaches the page; charts are SVG images, where no
script can run; the page loads nothing from the network.
"""

from __future__ import annotations

import base64
import io
import os
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

from suite import __version__
from suite.audit.defaults import DEFAULT_ALPHA, MAX_PIXELS, image_formats
from suite.audit.output import mirror_text, search_text
from suite.audit.summary import Summary, file_verdict
from suite.record import FINGERPRINT, STATUSES, Record
from suite.report import capacity, charts, speedups, sweeps, trust
from suite.report.checks import MarkCheck, audit_image, mark_check
from suite.report.compare import compare_runs
from suite.report.markup import badge, e, fmt, page, quality_cell, svg_figure, table, td
from suite.report.runs import Run
from suite.safe_files import is_regular_file
from suite.spreadsheet import restore

THUMBNAIL_PX = 160


def thumbnail(path: str | Path, size: int = THUMBNAIL_PX) -> str | None:
    """A small JPEG of an image as a data URI (None when it cannot be read).

    Downscaled here, once, so the page carries kilobytes per image and the browser decodes no
    full-size picture.
    """
    if not is_regular_file(path):
        return None  # a pipe would never end, a device never be an image
    return image_thumbnail(path, size)


def image_thumbnail(image_file: str | Path | BinaryIO, size: int = THUMBNAIL_PX) -> str | None:
    """thumbnail() of an open file or bytes in memory (a sample read back from a dataset shard)."""
    from PIL import Image

    try:
        with Image.open(image_file, formats=image_formats()) as image:
            if image.width * image.height > MAX_PIXELS:
                return None  # a decompression bomb, refused as the audit refuses it
            image.draft("RGB", (size, size))
            image.thumbnail((size, size))
            buf = io.BytesIO()
            image.convert("RGB").save(buf, "JPEG", quality=80)
    except Exception:
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def image_pool() -> ThreadPoolExecutor:
    """Threads that read images while the main thread draws the charts. Threads suffice: Pillow
    and OpenCV release the GIL while they decode and resize, and a thread needs no fork of a
    process that has run OpenCV."""
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 1)


# ---- bench runs ---------------------------------------------------------------------------------


def machine_card(run: Run) -> str:
    env = run.environment
    fp = env.get("fingerprint") or {}
    items = [
        ("run", env.get("run_id", run.path.name)),
        ("profile", env.get("profile", "")),
        ("started", env.get("started_at", "")),
    ]
    items += [(label, fp.get(key)) for key, label in FINGERPRINT if fp.get(key) not in (None, "")]
    peaks = env.get("peak_tflops") or {}
    if peaks:
        items.append(("measured peak", ", ".join(f"{k} {v:.3g} TFLOP/s" for k, v in peaks.items() if v)))
    if env.get("datasheet_tflops_fp16"):
        items.append(("datasheet fp16", f"{env['datasheet_tflops_fp16']} TFLOP/s"))
    sources = run.weight_sources
    synthetic = all(s in ("synthetic", "tiny") for s in sources) if sources else True
    kind = "synthetic weights" if synthetic else "real weights"
    weights = f"{badge(kind, 'synthetic' if synthetic else 'real')} {e(', '.join(sources))}"
    counts = Counter(r.status for r in run.records)
    summary = " ".join(f"<span>{badge(k)} {n}</span>" for k, n in sorted(counts.items()))
    dl = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in items)
    return (
        f'<div class="card"><h3>{e(run.label)}</h3><p>{weights}</p><p class="counts">{summary}</p><dl>{dl}</dl></div>'
    )


# What a reader looks for first (which scenario, its outcome and why, its speed) comes first; the
# configuration follows, so the table needs no sideways scrolling for the answer.
SCENARIO_COLUMNS = (
    ("run", "run", False),
    ("scenario", "scenario", False),
    ("status", "status", False),
    ("error", "reason", False),
    ("stability", "stability", False),
    ("s_per_image", "s/image", True),
    ("latency_s_ci_low", "latency 95% low s", True),
    ("latency_s_ci_high", "latency 95% high s", True),
    ("processes", "processes", True),
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
                value = restore(value)  # the CSV's spreadsheet guard is not part of the text
                if key == "status":
                    cells.append(f'<td data-v="{e(value)}">{badge(value)}</td>')
                elif key == "quality":
                    cells.append(quality_cell(value))
                elif key == "error":
                    cells.append(f'<td class="reason short">{e(value)}</td>')
                elif key == "stability":
                    cells.append(trust.stability_cell(value, row["stability_reason"]))
                else:
                    cells.append(td(value, numeric))
            out.append(f'<tr data-status="{e(row["status"])}">{"".join(cells)}</tr>')
    return out


def budget_table(runs: Sequence[Run]) -> str:
    """fits / oom for each scenario under each emulated VRAM budget."""
    cells: dict[tuple[str, str], dict[float, str]] = {}
    budgets: set[float] = set()
    for run in runs:
        for r in run.records:
            s = r.scenario
            budget = s.vram_budget_gib
            if not budget:
                continue
            base = f"{s.model} {s.width}x{s.height} {s.precision} {s.memory_mode}"
            verdict = {"ok": "fits", "oom": "oom"}.get(r.status, r.status)
            cells.setdefault((run.label, base), {})[budget] = verdict
            budgets.add(budget)
    if not cells:
        return '<p class="note">No VRAM budget was emulated in these runs (it needs CUDA; see the lowvram-budget scenarios).</p>'
    order = sorted(budgets)
    head = "".join(f"<th>{e(fmt(b))} GiB</th>" for b in order)
    body = []
    for (label, base), verdicts in cells.items():
        tds = []
        for b in order:
            v = verdicts.get(b, "")
            cls = {"fits": "v-fits", "oom": "v-oom"}.get(v, "s-skipped")
            tds.append(f"<td>{badge(v, cls)}</td>" if v else "<td></td>")
        body.append(f"<tr><td>{e(label)}</td><td>{e(base)}</td>{''.join(tds)}</tr>")
    return (
        '<div class="tablewrap"><table><thead><tr><th>run</th><th>configuration</th>'
        f"{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
        '<p class="note">Budget emulation caps the process (torch allocator + the measured CUDA context) at the '
        "budget: <em>fits</em> means the whole generation ran under that cap, <em>oom</em> that it ran out of memory.</p>"
    )


def scaling_section(runs: Sequence[Run]) -> str:
    found = [sweep for run in runs for sweep in sweeps.find_sweeps(run)]
    if not found:
        return ""
    items = "".join(f"<li><b>{e(s.label)}</b> ({e(s.run.label)}): {e(sweeps.finding(s))}</li>" for s in found)
    return f"<h2>Scaling</h2><ul>{items}</ul>" + svg_figure(
        charts.scaling(found), "Seconds per call and peak memory against steps, batch and resolution", ""
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
                f'<tr data-status="{e(c.verdict)}"><td>{e(c.scenario)}</td>{td(c.a_s, True)}{td(c.b_s, True)}'
                f"{td(c.ratio, True, 4)}<td>{e(interval)}</td><td>{e(c.verdict)}</td>"
                f'<td class="reason">{e(c.note)}</td></tr>'
            )
        headers = (
            ("scenario", False),
            ("A s/image", True),
            ("B s/image", True),
            ("B/A", True),
            ("95% interval", False),
            ("verdict", False),
            ("note", False),
        )
        parts.append(f"<h3>{e(other.label)}</h3>")
        parts.append(table(f"compare-{len(parts)}", headers, rows))
    return "".join(parts)


COMPARE_RULE = (
    "B/A is the ratio of median seconds per image; a difference counts when the 95 % bootstrap "
    "interval of that ratio (2,000 resamples: worker processes first, then their repeats) excludes 1."
)


def _tile_data(path: Path) -> tuple[str | None, dict[str, Any]]:
    return thumbnail(path), audit_image(path)


MARK_BADGES = {"as embedded": "v-fits", "too small": "s-skipped", "unreadable": "s-skipped"}


def mark_lines(check: MarkCheck) -> str:
    """The tile's watermark check: verdict, what was embedded and found, p-value, message match."""
    found = ", ".join(scheme for scheme, _ in check.found) or "none"
    lines = [
        badge(check.verdict, MARK_BADGES.get(check.verdict, "v-oom")),
        f"embedded {e(check.embedded)} · found {e(found)}",
    ]
    if check.status != "ok":
        lines.append(e(check.error))
    elif check.p_value is not None:
        which = "p" if check.embedded != "none" else "smallest p"
        match = ""
        if check.exact:
            match = " · message exact"
        elif check.bit_accuracy is not None:
            match = f" · {check.bit_accuracy:.0%} of bits match"
        lines.append(f"{which} = {e(fmt(check.p_value, 2))}{e(match)}")
    return "".join(f"<div>{line}</div>" for line in lines)


GRID_LIMIT = 120  # thumbnails in a bench report's image grid


def grid_items(runs: Sequence[Run]) -> list[tuple[Run, Record, Path]]:
    """Every generated image: its run, its scenario's record and its path."""
    return [(run, r, run.path / rel) for run in runs for r in run.records for rel in r.images]


def image_grid(items: Sequence[tuple[Run, Record, Path]], checked: Iterator[tuple[str | None, dict[str, Any]]]) -> str:
    """Thumbnails with their watermark check; `checked` yields `_tile_data` of the first GRID_LIMIT items."""
    if not items:
        return '<p class="note">No images were generated in these runs.</p>'
    shown = items[:GRID_LIMIT]
    tiles, verdicts = [], Counter()
    for (run, r, path), (uri, audit) in zip(shown, checked, strict=True):
        check = mark_check(audit, (r.watermark or {}).get("scheme", "none"))
        verdicts[check.verdict] += 1
        img = f'<img src="{uri}" alt="{e(path.name)}">' if uri else '<p class="note">unreadable</p>'
        tiles.append(
            f'<div class="tile">{img}<div><b>{e(r.name)}</b></div>'
            f"<div>{e(run.environment.get('run_id', ''))}</div>{mark_lines(check)}</div>"
        )
    left = len(items) - len(shown)
    more = f'<p class="note">{left} more image(s) not shown.</p>' if left else ""
    counts = " ".join(f"<span>{badge(v, MARK_BADGES.get(v, 'v-oom'))} {n}</span>" for v, n in verdicts.items())
    note = (
        f'<p class="counts">Watermark check of {len(shown)} image(s): {counts}</p>'
        '<p class="note">Each image is checked by the audit\'s detector (<code>sdsuite audit</code>): the scheme found, '
        "its p-value, and whether the decoded bits spell the message exactly (the reference decoder's own test).</p>"
    )
    return f'{note}<div class="grid">{"".join(tiles)}</div>{more}'


def bench_report(runs: Sequence[Run]) -> str:
    items = grid_items(runs)
    with image_pool() as pool:
        checked = pool.map(_tile_data, [path for _, _, path in items[:GRID_LIMIT]])  # read while charts are drawn
        return page("sdsuite bench report", _subtitle(f"{len(runs)} run(s)"), _bench_body(runs, items, checked))


def _subtitle(what: str) -> str:
    return f"{what} · generated {time.strftime('%Y-%m-%d %H:%M')} by sdsuite {__version__}"


def _bench_body(runs: Sequence[Run], items: Sequence, checked: Iterator) -> str:
    headers = [(label, numeric) for _, label, numeric in SCENARIO_COLUMNS]
    memory_svg, memory_note = charts.memory(runs)
    no_gpu = "Not measured in these runs: it needs an NVIDIA GPU (NVML)."
    body = [
        "<h2>Machines</h2>",
        f'<div class="cards">{"".join(machine_card(r) for r in runs)}</div>',
        "<h2>Scenarios</h2>",
        '<p class="note">Every scenario and its outcome; failed ones keep their reason. Click a header to sort.</p>',
        table("scenarios", headers, scenario_rows(runs), STATUSES),
        trust.section(runs),
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
        capacity.section(runs),
        "<h2>Energy</h2>",
        svg_figure(charts.energy(runs), "Energy per image from the GPU's total-energy counter", no_gpu),
        "<h2>Compute</h2>",
        svg_figure(
            charts.tflops(runs), "UNet TFLOP per step divided by the median step time", "No compute figures recorded."
        ),
        speedups.section(runs),
        scaling_section(runs),
        comparison_section(runs),
        "<h2>Generated images</h2>",
        image_grid(items, checked),
    ]
    return "".join(body)


# ---- audits ------------------------------------------------------------------------------------


AUDIT_THUMBNAIL_PX = 96  # shown 64 CSS pixels wide: sharp on 1.5x screens, ~3 kB each
MAX_FILE_ROWS = 5000  # beyond this the file table keeps detections and failures first


def resolve(path: str, base: Path) -> Path:
    """A record's path as the audit saw it: relative to where it ran, which is usually where its
    JSONL was written, else the current directory."""
    candidate = Path(path)
    if candidate.is_absolute() or candidate.exists():
        return candidate
    return base / candidate


# Where each generator's metadata keeps its prompt (suite.audit.metadata's fields).
PROMPT_FIELDS = (
    ("a1111", "prompt", "A1111"),
    ("comfyui", "prompts", "ComfyUI"),
    ("invokeai", "positive_prompt", "InvokeAI"),
    ("invokeai", "prompt", "InvokeAI"),
    ("novelai", "prompt", "NovelAI"),
)


def _field(meta: dict[str, Any], section: str, key: str) -> Any:
    part = meta.get(section)
    return part.get(key) if isinstance(part, dict) else None


def provenance(meta: Any) -> str:
    """A line of what the file claims about its origin (untrusted; escaped by the caller)."""
    if not isinstance(meta, dict):
        return ""
    parts = []
    if meta.get("ai_claims"):
        parts.append("declares AI: " + ", ".join(map(str, meta["ai_claims"])))
    for section, key, label in PROMPT_FIELDS:
        prompt = _field(meta, section, key)
        if prompt:
            parts.append(f"{label} prompt: {prompt[0] if isinstance(prompt, list) else prompt}")
            break
    if _field(meta, "comfyui", "models"):
        parts.append("models: " + ", ".join(map(str, meta["comfyui"]["models"])))
    software = (
        _field(meta, "exif", "Software") or _field(meta, "text", "Software") or _field(meta, "xmp", "creator_tool")
    )
    if software:
        parts.append(f"software: {software}")
    generator = _field(meta, "c2pa", "claim_generator")
    if generator:
        parts.append(f"C2PA: {generator} ({_field(meta, 'c2pa', 'validation_state') or 'not validated'})")
    if meta.get("error"):
        parts.append(f"metadata unreadable: {meta['error']}")
    text = "; ".join(parts)
    return text if len(text) <= 300 else text[:299] + "…"


VERDICT_BADGES = {"error": "s-error", "too_small": "s-too_small", "none": "s-none"}


def _file_row(r: dict[str, Any], uri: str | None) -> str:
    """One audited file: thumbnail, path, verdict, the strongest test's p-value, bits and message."""
    marks = [m for m in r.get("watermarks") or [] if m.get("p_value") is not None]
    found = [m for m in marks if m.get("detected")]
    verdict = file_verdict(r)
    best = min(found or marks, key=lambda m: m["p_value"], default=None)
    p_cell = "<td></td>"
    if best is not None:
        text = fmt(best["p_value"], 2) + ("" if found else f" ({best['scheme']})")
        p_cell = f'<td class="num" data-v="{e(repr(best["p_value"]))}">{e(text)}</td>'
    accuracy = f"{found[0]['bit_accuracy']:.0%}" if found and found[0].get("bit_accuracy") is not None else ""
    decoded = found[0].get("decoded") if found else None
    message = f"{decoded}{' (exact)' if found[0].get('exact') else ''}" if decoded else ""
    search = found[0].get("search") if found else None
    if search and search["edit"] == "crop":  # the reference reads a moved grid's blocks wrong: no bits to show
        grid = "found by the crop search: grid at +{},+{} px".format(*search["grid_offset"])
        accuracy, message = "", grid + mirror_text(search)
    elif search and search.get("cut_from"):  # nor a resize's whose blocks were numbered in a longer original
        accuracy, message = "", f"found by the search, {search_text(search)}"
    elif search:
        message = f"found by the search, {search_text(search)}: {message}"
    img = f'<img src="{uri}" alt="" loading="lazy" decoding="async" width="64">' if uri else ""
    size = f"{r['width']}x{r['height']}" if r.get("width") else ""
    reason = "" if r.get("status") == "ok" else ": ".join(x for x in (r.get("error_kind"), r.get("error")) if x)
    meta = dict(r.get("metadata") or {})
    if r.get("status") == "error":
        meta.pop("error", None)  # the reason column says why the file could not be read
    return (
        f'<tr data-status="{e(verdict)}"><td>{img}</td><td class="mono path">{e(r.get("path"))}</td>'
        f'<td data-v="{e(verdict)}">{badge(verdict, VERDICT_BADGES.get(verdict, "s-ok"))}</td>'
        f"<td>{e(size)}</td>{p_cell}<td class='num'>{e(accuracy)}</td><td class='mono'>{e(message)}</td>"
        f'<td class="reason">{e(provenance(meta))}</td><td class="reason">{e(reason)}</td></tr>'
    )


def _rows_to_list(records: Sequence[dict[str, Any]]) -> list[int]:
    """Which records the file table lists: all, or past MAX_FILE_ROWS detections and failures first."""
    if len(records) <= MAX_FILE_ROWS:
        return list(range(len(records)))
    ranked = sorted(range(len(records)), key=lambda i: file_verdict(records[i]) == "none")
    return sorted(ranked[:MAX_FILE_ROWS])


def _audit_thumbnail(record: dict[str, Any], base: Path) -> str | None:
    if record.get("status") == "error":
        return None
    return thumbnail(resolve(record["path"], base), AUDIT_THUMBNAIL_PX)


def audit_report(records: Sequence[dict[str, Any]], source: str, base: Path) -> str:
    """The report of an audit's records: counts, p-values, failures, and every file with its thumbnail."""
    listed = _rows_to_list(records)
    with image_pool() as pool:
        uris = pool.map(lambda i: _audit_thumbnail(records[i], base), listed)  # read while charts are drawn
        return page("sdsuite audit report", _subtitle(source), _audit_body(records, listed, uris))


def audit_file_headers(name: str) -> tuple[tuple[str, bool], ...]:
    """The audit's file table columns (title, numeric), the one naming each image first."""
    return (
        ("", False),
        (name, False),
        ("verdict", False),
        ("size", False),
        ("smallest p", True),
        ("bits match", True),
        ("decoded message", False),
        ("provenance claims", False),
        ("reason", False),
    )


def _audit_body(records: Sequence[dict[str, Any]], listed: list[int], uris: Iterator[str | None]) -> str:
    summary = Summary.of(records)
    scheme_rows = "".join(
        f"<tr><td>{e(scheme)}</td><td class='num'>{c.detected:,}</td><td class='num'>{c.not_detected:,}</td>"
        f"<td class='num'>{c.detected / c.checked:.1%}</td><td class='num'>{c.exact:,}</td>"
        f"{td(c.min_p, True, 2)}</tr>"
        for scheme, c in summary.per_scheme.items()
    )
    order = ("ok", "too_small", "error")
    status_line = " ".join(
        f"<span>{badge(k)} {summary.status[k]:,}</span>"
        for k in sorted(summary.status, key=lambda k: order.index(k) if k in order else len(order))
    )
    by_scheme: dict[str, list[float]] = {}
    for r in records:
        for m in r.get("watermarks") or []:
            if m.get("p_value") is not None:
                by_scheme.setdefault(m["scheme"], []).append(m["p_value"])
    failed = [r for r in records if r.get("status") != "ok"]
    kinds = ", ".join(f"{kind} {n:,}" for kind, n in summary.error_kinds.most_common())
    error_rows = [
        f'<tr data-status="{e(r.get("status"))}"><td class="mono path">{e(r.get("path"))}</td>'
        f"<td>{badge(r.get('status') or 'error')}</td>"
        f"<td>{e(r.get('error_kind') or '')}</td><td class='reason'>{e(r.get('error'))}</td></tr>"
        for r in failed
    ]
    unlisted = (
        f'<p class="note">{len(records) - len(listed):,} files without a detection or failure are not listed '
        f"(the table keeps {MAX_FILE_ROWS:,} rows); the audit's output has every record.</p>"
        if len(listed) < len(records)
        else ""
    )
    file_headers = audit_file_headers("path")
    verdict_names = sorted(summary.verdicts, key=lambda v: (v in ("none", "too_small", "error"), v))
    body = [
        "<h2>Summary</h2>",
        f'<p class="counts">{len(records):,} file(s): {status_line}</p>',
        '<div class="row">',
        svg_figure(
            charts.verdicts(dict(summary.verdicts), list(summary.per_scheme)),
            "Files by verdict: the scheme(s) detected, none, too small to carry a mark, or unreadable",
            "No files in this audit.",
        ),
        '<div><div class="tablewrap"><table><thead><tr><th>scheme</th><th class="num">detected</th>'
        '<th class="num">not detected</th><th class="num">share</th><th class="num">message exact</th>'
        f'<th class="num">smallest p</th></tr></thead><tbody>{scheme_rows}</tbody></table></div>'
        '<p class="note">A scheme is detected when its p-value is at or below the audit\'s <code>--alpha</code> '
        f"(default {DEFAULT_ALPHA:g}); <em>message exact</em> counts detections whose decoded bits also spell "
        "the message, the reference decoder's own (brittle) test. Files that were too small or failed are "
        "not tested.</p></div></div>",
        svg_figure(
            charts.pvalues(by_scheme, DEFAULT_ALPHA),
            "The p-value of every scheme tested in every file. Left: unmarked files spread over [0, 1] "
            "(piling up at 1, as p-values are corrected over channel orders); right: marked files stand "
            "past the threshold.",
            "No scheme was tested in this audit.",
        ),
        "<h2>Not audited</h2>",
        (
            f'<p class="note">{sum(summary.error_kinds.values()):,} file(s) could not be audited'
            f"{f' ({e(kinds)})' if kinds else ''}; {summary.too_small:,} too small to carry "
            "a mark (the reference needs 256x256 pixels).</p>"
            + table(
                "audit-errors", (("path", False), ("status", False), ("kind", False), ("reason", False)), error_rows
            )
        )
        if failed
        else '<p class="note">Every file was audited.</p>',
        "<h2>Files</h2>",
        # the thumbnails are waited for only now, after the charts
        table(
            "audit-files",
            file_headers,
            (_file_row(records[i], uri) for i, uri in zip(listed, uris, strict=True)),
            verdict_names,
            "verdict",
        ),
        unlisted,
    ]
    return "".join(body)
