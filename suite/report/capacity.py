"""What fits in which card: the capacity searches' tables, and the article's 8 GB account beside them.

The article ran on an 8 GB card and says three things about memory: the original v1 code needs
12 GB or more ("CUDA out of memory" otherwise), optimizedSD's fp16 low-VRAM script ran in 8 GB,
and SD 2.1 and the x4 upscaler ran out of memory on it. Whatever a run measured about an 8 GiB
budget — a budget scenario's fits/oom, a min-budget search, a max-batch search at 8 GiB — is set
beside each claim, agreeing or not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from suite.record import Record
from suite.report.markup import badge, e, fmt
from suite.report.runs import Run
from suite.scenario import Scenario

ARTICLE_CARD_GIB = 8.0


@dataclass(frozen=True)
class Claim:
    text: str
    fits: bool  # what the article says happened on its 8 GB card
    matches: Callable[[Scenario], bool]


def _plain(model: str, size: int) -> Callable[[Scenario], bool]:
    return lambda s: s.model == model and s.width == s.height == size and s.memory_modes == ("none",) and s.batch == 1


def _optimized(s: Scenario) -> bool:
    low_vram = {"attention-slicing", "model-offload", "sequential-offload"}
    return (
        s.model == "sd-v1"
        and s.width == s.height == 512
        and s.precision == "fp16"
        and s.batch == 1
        and bool(low_vram & set(s.memory_modes))
    )


CLAIMS = (
    Claim("SD v1 txt2img.py needs 12 GB or more VRAM (CUDA out of memory on 8 GB)", False, _plain("sd-v1", 512)),
    Claim("optimizedSD (fp16, split model, sliced attention) ran on the 8 GB card", True, _optimized),
    Claim("SD 2.1 at 768x768 ran out of memory on the 8 GB card", False, _plain("sd-v2.1", 768)),
    Claim("the x4 upscaler (128 to 512) ran out of memory on the 8 GB card", False, _plain("sd-x4-upscaler", 512)),
)


def verdict(fits: bool, label: str = "") -> str:
    """The fits / oom badge (green / red), with its own label where given."""
    text = label or ("fits" if fits else "oom")
    return badge(text, "v-fits" if fits else "v-oom")


def _config(s: Scenario, searched: str = "") -> str:
    """The configuration in words; what a search varies (its `searched`) as N."""
    size = "NxN" if searched == "max-resolution" else f"{s.width}x{s.height}"
    batch = "N" if searched == "max-batch" else s.batch
    return f"{s.model} {size} x{batch} {s.precision} {s.memory_mode}"


def evidence_at(r: Record, gib: float) -> tuple[bool, str] | None:
    """Whether the record shows its configuration fitting in `gib` GiB, and how it shows it (None: it says nothing)."""
    search = r.capacity.search if r.capacity else ""
    if search == "min-budget":
        if r.status == "ok":
            return r.capacity.value <= gib, f"smallest budget that fits: {r.capacity.value:g} GiB"
        if r.status == "oom":
            return False, r.error or ""
        return None
    if search == "max-batch" and r.scenario.vram_budget_gib == gib and r.status in ("ok", "oom"):
        return r.status == "ok", f"largest batch under {gib:g} GiB: {r.capacity.value or 'none'}"
    if not r.capacity and r.scenario.vram_budget_gib == gib and r.status in ("ok", "oom"):
        return r.status == "ok", f"run under a {gib:g} GiB budget: {'fits' if r.status == 'ok' else 'oom'}"
    return None


def article_table(runs: Sequence[Run]) -> str:
    rows = []
    for claim in CLAIMS:
        found = []
        for run in runs:
            for r in run.records:
                s = r.scenario
                if r.capacity and r.capacity.search == "max-batch":
                    s = replace(s, batch=1)  # batch 1 fits exactly when the largest batch is at least 1
                if claim.matches(s):
                    ev = evidence_at(r, ARTICLE_CARD_GIB)
                    if ev is not None:
                        found.append((run, r, *ev))
        if not found:
            rows.append(
                f"<tr><td>{e(claim.text)}</td><td>{verdict(claim.fits)}</td>"
                '<td colspan="3" class="note">not measured in these runs (needs CUDA: the reference and capacity '
                "profiles)</td></tr>"
            )
        for run, r, fits, how in found:
            agrees = fits == claim.fits
            rows.append(
                f"<tr><td>{e(claim.text)}</td><td>{verdict(claim.fits)}</td><td>{e(_config(r.scenario))} "
                f'<span class="note">({e(run.label)})</span></td><td>{verdict(fits)} {e(how)}</td>'
                f"<td>{verdict(agrees, 'agrees' if agrees else 'disagrees')}</td></tr>"
            )
    return (
        '<div class="tablewrap"><table><thead><tr><th>the article says</th><th>on 8 GB</th><th>configuration here</th>'
        f"<th>measured at 8 GiB</th><th></th></tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


SEARCH_TITLES = {
    "max-batch": "Largest batch that fits each budget",
    "max-resolution": "Largest square image (multiples of 64) that fits each budget",
}


def _cell(r: Record) -> str:
    if r.status == "ok":
        note = r.capacity.note
        text = f"≥ {fmt(r.capacity.value)}" if note else fmt(r.capacity.value)
        return f'<td class="num" title="{e(note or "")}">{e(text)}</td>'
    shown = verdict(False, "none") if r.status == "oom" else badge(r.status)
    return f'<td title="{e(r.error or "")}">{shown}</td>'


def search_table(runs: Sequence[Run], search: str) -> str:
    """Configurations down, budgets across; each cell the value found."""
    cells: dict[tuple[str, str], dict[float, str]] = {}
    budgets: set[float] = set()
    for run in runs:
        for r in run.records:
            s = r.scenario
            if s.search != search or r.status == "skipped":
                continue
            cells.setdefault((run.label, _config(s, search)), {})[s.vram_budget_gib] = _cell(r)
            budgets.add(s.vram_budget_gib)
    if not cells:
        return ""
    order = sorted(budgets)
    head = "".join(f'<th class="num">{e(fmt(b))} GiB</th>' for b in order)
    body = "".join(
        f"<tr><td>{e(label)}</td><td>{e(config)}</td>{''.join(row.get(b, '<td></td>') for b in order)}</tr>"
        for (label, config), row in cells.items()
    )
    return (
        f"<h3>{e(SEARCH_TITLES[search])}</h3>"
        '<div class="tablewrap"><table><thead><tr><th>run</th><th>configuration</th>'
        f"{head}</tr></thead><tbody>{body}</tbody></table></div>"
    )


def min_budget_table(runs: Sequence[Run]) -> str:
    rows = []
    for run in runs:
        for r in run.records:
            if r.scenario.search != "min-budget" or r.status == "skipped":
                continue
            probes = r.capacity.probes_run if r.capacity else 0
            rows.append(
                f"<tr><td>{e(run.label)}</td><td>{e(_config(r.scenario))}</td>{_cell(r)}"
                f"<td class='num'>{probes}</td></tr>"
            )
    if not rows:
        return ""
    return (
        "<h3>Smallest budget that fits (GiB)</h3>"
        '<div class="tablewrap"><table><thead><tr><th>run</th><th>configuration</th><th class="num">GiB</th>'
        f'<th class="num">probes</th></tr></thead><tbody>{"".join(rows)}</tbody></table></div>'
    )


def section(runs: Sequence[Run]) -> str:
    searched = any(r.scenario.search for run in runs for r in run.records)
    skipped = searched and all(r.status == "skipped" for run in runs for r in run.records if r.scenario.search)
    parts = ["<h3>The article's 8 GB card</h3>", article_table(runs)]
    if skipped:
        parts.append('<p class="note">The capacity searches were skipped: budgets are emulated on CUDA only.</p>')
    tables = search_table(runs, "max-batch") + search_table(runs, "max-resolution") + min_budget_table(runs)
    if tables:
        parts.append(
            '<p class="note">Each value is found by a search over the candidates, every probe a short generation '
            "under the emulated budget (the torch allocator capped at the budget less what the process holds "
            "outside it: the CUDA context, kernels and libraries), in a worker that is replaced whenever a probe "
            "leaves memory behind. Probes: those run; outcomes that earlier probes imply are not run again. "
            "≥: the search's upper bound fits. none: even the smallest candidate ran out of memory.</p>"
        )
        parts.append(_probe_tally(runs))
        parts.append(tables)
    return "".join(parts)


def _probe_tally(runs: Sequence[Run]) -> str:
    """What the searches cost: probes run, outcomes implied, workers replaced after debris, side by side."""
    searches = [r.capacity for run in runs for r in run.records if r.capacity]
    entries = [p for c in searches for p in c.probes]
    implied = sum("implied_by" in p for p in entries)
    replaced = sum(bool(p.get("leftover_mib")) for p in entries)
    servers = max((c.probe_servers or 1 for c in searches), default=1)
    side_by_side = (
        f" Searches of up to {servers} configurations ran side by side, each worker under its own budget: "
        "a probe's time there is not a benchmark."
        if servers > 1
        else ""
    )
    return (
        f'<p class="note">{len(entries) - implied} probes run, {implied} outcomes implied by earlier probes, '
        f"{replaced} worker(s) replaced after a probe left memory allocated.{side_by_side}</p>"
    )
