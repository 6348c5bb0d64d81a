"""Every command against the bad inputs of issue 15, as a new user would try them: one line on
stderr naming the file, a documented exit code, no traceback, no hang, no input changed."""

import hashlib
import json
import os
import signal
import time
from pathlib import Path

import psutil
import pytest
from PIL import Image
from support import sdsuite

from suite.cli import main


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([*map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def image(tmp_path) -> Path:
    path = tmp_path / "a.png"
    Image.new("RGB", (256, 256), (40, 90, 160)).save(path)
    return path


@pytest.mark.parametrize("kind", ["jsonl", "csv", "json", "table"])
def test_audit_never_writes_over_an_input(capsys, image, tmp_path, kind):
    before = digest(image)
    os.link(image, tmp_path / "same-inode.png")
    for output in (image, tmp_path / "same-inode.png"):
        code, _, err = run(capsys, "audit", image, "-o", output, "--format", kind)
        assert code == 2 and "one of the inputs" in err and "Traceback" not in err
        assert digest(image) == before
    code, _, err = run(capsys, "audit", tmp_path, "-o", image, "--format", kind)
    assert code == 2 and digest(image) == before


@pytest.mark.parametrize("kind", ["jsonl", "json"])
def test_audit_to_a_full_disk_is_one_line(capsys, image, kind):
    code, _, err = run(capsys, "audit", image, "-o", "/dev/full", "--format", kind)
    assert code == 2 and err.strip() == "sdsuite audit: /dev/full: cannot write: No space left on device"


def test_audit_json_output_is_renamed_into_place_whole(capsys, image, tmp_path):
    out = tmp_path / "audit.json"
    code, _, _ = run(capsys, "audit", image, "-o", out, "--format", "json")
    assert code == 0 and len(json.loads(out.read_text())) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "audit.json"]


def test_audit_counts_a_folder_it_cannot_list(capsys, image, tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    (locked / "inner").mkdir(parents=True)
    scandir = os.scandir

    def refusing(path="."):
        if Path(path) == locked / "inner":
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refusing)
    code, out, err = run(capsys, "audit", tmp_path, "--format", "jsonl", "--workers", "1")
    records = [json.loads(line) for line in out.splitlines()]
    assert [(r["path"], r["status"], r["error_kind"]) for r in records] == [
        (str(image), "ok", None),
        (str(locked / "inner"), "error", "unreadable"),
    ]
    assert "Permission denied" in records[1]["error"]
    assert code == 1 and "audited 2 files" in err and "unreadable 1" in err


def test_ctrl_c_stops_an_audit_without_worker_tracebacks(tmp_path):
    for i in range(40):
        Image.new("RGB", (512, 512), (i, 90, 160)).save(tmp_path / f"{i:02d}.png")
    out = tmp_path / "audit.jsonl"
    proc = sdsuite(
        "audit", str(tmp_path), "-o", str(out), "--format", "jsonl", "--workers", "2", "--search", "always",
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not (out.exists() and out.read_text().count("\n") >= 2) and time.monotonic() < deadline:
        time.sleep(0.1)
    # a terminal's Ctrl-C signals the whole process group; the workers first, so none can be
    # stopped by its parent before it has seen the signal
    for child in psutil.Process(proc.pid).children(recursive=True):
        os.kill(child.pid, signal.SIGINT)
    time.sleep(1)
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert err.strip().splitlines()[-1] == "sdsuite audit: interrupted"
    assert all(json.loads(line)["status"] == "ok" for line in out.read_text().splitlines())
