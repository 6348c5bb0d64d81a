import os
import signal
import socket
import sys
from pathlib import Path

import pytest

# huggingface_hub reads this once, at import: set before any test imports it, as the CLI does
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# gcsfs reads this once, at import: its experimental hierarchical-namespace probe speaks gRPC over TLS
# to the bucket's host, which the GCS emulator of the dataset tests does not (each probe waits 60 s)
os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"
# test support modules (tests/support.py, tests/ldm_layout.py) import as top-level modules
sys.path.insert(0, str(Path(__file__).parent))

from browser import CHROMIUM, LAUNCH_ARGS
from support import sdsuite

LOOPBACK = {"localhost", "127.0.0.1", "::1"}

# Ctrl-C as on a terminal, even where the tests were started in the background: a shell ignores
# SIGINT for its background jobs and every child inherits that, so the interrupt tests (and the
# sdsuite processes they start) would never see their Ctrl-C.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch):
    """Tests run offline: a lookup of or connection to another host fails the test, even where the
    code under test would catch the error. Local sockets (forkserver, a browser on loopback) are fine."""
    attempts = []
    lookup = socket.getaddrinfo
    connect = socket.socket.connect

    def guarded_lookup(host, *args, **kwargs):
        if host not in LOOPBACK and host is not None:
            attempts.append(host)
            raise OSError(f"network access attempted in a test: {host}")
        return lookup(host, *args, **kwargs)

    def guarded_connect(sock: socket.socket, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOOPBACK:
            attempts.append(address)
            raise OSError(f"network access attempted in a test: {address}")
        return connect(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", guarded_lookup)
    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect)
    yield
    assert not attempts, f"network access attempted: {attempts}"


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
