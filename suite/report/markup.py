"""The pieces every report page is made of: escaping, number formats, tables, figures, the page.

Everything that comes from a run or an image is untrusted and passes through `e()` before it
reaches the page; charts are SVG images, where no script can run.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Iterable, Sequence
from importlib import resources
from typing import Any


def e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def asset(name: str) -> str:
    return resources.files("suite.report").joinpath("assets", name).read_text(encoding="utf-8")


def fmt(value: Any, digits: int = 3) -> str:
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 10**digits else f"{value:.{digits}g}"  # 5,250 not 5.25e+03
    return str(value)


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
        f"<title>{e(title)}</title><style>{asset('report.css')}</style></head><body>"
        f"<header><h1>{e(title)}</h1><p>{e(subtitle)}</p></header><main>{body}</main>"
        f"<script>{asset('report.js')}</script></body></html>\n"
    )


def table(
    table_id: str,
    headers: Sequence[tuple[str, bool]],
    rows: Iterable[str],
    statuses: Sequence[str] = (),
    picker: str = "status",
) -> str:
    """A sortable, filterable table; `headers` are (label, numeric), `rows` ready-made <tr> elements,
    and `statuses` the values of the rows' data-status the `picker` menu filters on."""
    head = "".join(f'<th class="num">{e(h)}</th>' if num else f"<th>{e(h)}</th>" for h, num in headers)
    menu = ""
    if statuses:
        options = "".join(f'<option value="{e(s)}">{e(s)}</option>' for s in statuses)
        menu = (
            f'<select data-filter="{table_id}" aria-label="{e(picker)}">'
            f'<option value="">every {e(picker)}</option>{options}</select>'
        )
    body = "".join(rows)
    return (
        f'<div class="controls"><input type="search" placeholder="filter rows…" data-filter="{table_id}" '
        f'aria-label="filter">{menu}<span class="note" data-count="{table_id}"></span></div>'
        f'<div class="tablewrap"><table class="sortable" id="{table_id}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def td(value: Any, numeric: bool = False, digits: int = 3, cls: str = "") -> str:
    text = fmt(value, digits)
    classes = " ".join(c for c in ("num" if numeric else "", cls) if c)
    attr = f' class="{classes}"' if classes else ""
    sort = f' data-v="{e(value)}"' if numeric and text else ""
    return f"<td{attr}{sort}>{e(text)}</td>"


def quality_cell(verdict: Any) -> str:
    """The quality check's verdict: 'broken: why' gets the broken badge and its reason."""
    text = str(verdict or "")
    if text.startswith("broken"):
        return f'<td class="reason">{badge("broken", "q-broken")} {e(text.removeprefix("broken: "))}</td>'
    return td(text)


def badge(text: str, kind: str | None = None) -> str:
    """A coloured label: `kind` is its CSS class (a status's own, s-<status>, by default)."""
    return f'<span class="badge {e(kind or f"s-{text}")}">{e(text)}</span>'
