"""Helpers shared by tests."""

import subprocess
import sys

from suite.scenario import Scenario


def sdsuite(*args: str, **kwargs) -> subprocess.Popen:
    """`sdsuite ARGS` in a subprocess, as a user would run it."""
    return subprocess.Popen(
        [sys.executable, "-m", "suite", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def cpu_probe(weights: str = "tiny", **fields) -> Scenario:
    """A capacity probe as the runner sends it (one run, no warm-up, no watermark), on CPU at 64x64."""
    defaults = {"name": "s.probe-1", "model": "sd-v1", "weights": weights, "device": "cpu", "width": 64, "height": 64}
    return Scenario(**{**defaults, "steps": 2, "repeats": 1, "warmup": 0, "watermark": "none", **fields})
