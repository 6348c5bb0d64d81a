import sys
from pathlib import Path

import pytest

# test support modules (tests/support.py, tests/ldm_layout.py) import as top-level modules
sys.path.insert(0, str(Path(__file__).parent))

from browser import CHROMIUM, LAUNCH_ARGS
from support import sdsuite


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench") / "smoke"
    proc = sdsuite("bench", "smoke", "--out", str(out))
    stdout, stderr = proc.communicate(timeout=900)
    assert proc.returncode == 0, stderr[-3000:]
    (out / "stdout.txt").write_text(stdout)
    return out


@pytest.fixture(scope="session")
def browser():
    """Debian's chromium driven by playwright; the test is skipped where it is not installed."""
    if not CHROMIUM:
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield b
        b.close()
