"""Watermark checks shown in reports: of a generated image, and counts over an audit's records."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any


def watermark_check(path: Path) -> str:
    """Which reference mark the reference decoder reads back from a generated image, if any."""
    import numpy as np
    from imwatermark import WatermarkDecoder
    from PIL import Image

    from suite.watermark import MIN_PIXELS, SCHEMES

    try:
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB"))
    except OSError as exc:
        return f"unreadable ({exc})"
    if rgb.shape[0] * rgb.shape[1] < MIN_PIXELS:
        return "too small to carry a mark"
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    for name in ("sd-v1", "sd-v2"):
        scheme = SCHEMES[name]
        if WatermarkDecoder("bytes", scheme.length).decode(bgr, "dwtDct") == scheme.message:
            return f"{name} found"
    return "no reference mark read back"


def summarise_audit(records: list[dict[str, Any]]) -> dict[str, Any]:
    status = Counter(r.get("status", "error") for r in records)
    per_scheme: dict[str, tuple[int, int]] = {}
    for r in records:
        for w in r.get("watermarks") or []:
            detected, checked = per_scheme.get(w["scheme"], (0, 0))
            per_scheme[w["scheme"]] = (detected + bool(w.get("detected")), checked + 1)
    return {"status": dict(sorted(status.items())), "per_scheme": per_scheme}
