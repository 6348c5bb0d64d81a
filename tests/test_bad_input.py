"""Every command against the bad inputs of issue 15, as a new user would try them: one line on
stderr naming the file, a documented exit code, no traceback, no hang, no input changed."""

import hashlib
import json
import os
from pathlib import Path

import pytest
from PIL import Image

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
