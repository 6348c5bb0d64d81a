"""Helpers shared by tests."""

import subprocess
import sys


def sdsuite(*args: str, **kwargs) -> subprocess.Popen:
    """`sdsuite ARGS` in a subprocess, as a user would run it."""
    return subprocess.Popen(
        [sys.executable, "-m", "suite", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )
