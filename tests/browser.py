"""Headless Chromium (Debian's package) for the report tests: a page opened from disk, with what it tried."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]

# Navigation timing as the browser measured it, in milliseconds from the start of navigation.
TIMING_JS = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const paint = Object.fromEntries(performance.getEntriesByType("paint").map(p => [p.name, p.startTime]));
  return {load_ms: nav.loadEventEnd, dom_ms: nav.domContentLoadedEventEnd,
          first_paint_ms: paint["first-contentful-paint"] ?? paint["first-paint"] ?? null};
}"""


def open_page(browser, path: Path, width: int = 1400) -> tuple[Any, dict[str, Any]]:
    """Open `path`, recording console errors, network requests, dialogs and the load timing."""
    page = browser.new_page(viewport={"width": width, "height": 1000})
    seen: dict[str, Any] = {"errors": [], "requests": [], "dialogs": []}
    page.on("console", lambda m: m.type == "error" and seen["errors"].append(m.text))
    page.on("pageerror", lambda e: seen["errors"].append(str(e)))
    page.on("request", lambda r: r.url.startswith(("file:", "data:")) or seen["requests"].append(r.url))
    page.on("dialog", lambda d: (seen["dialogs"].append(d.message), d.dismiss()))
    t0 = time.perf_counter()
    page.goto(path.as_uri(), wait_until="load")
    seen["load_s"] = time.perf_counter() - t0
    page.wait_for_function('performance.getEntriesByType("navigation")[0].loadEventEnd > 0')
    seen["timing"] = page.evaluate(TIMING_JS)
    return page, seen
