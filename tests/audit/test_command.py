import csv
import io
import json

import pytest
from imwatermark import WatermarkEncoder
from PIL import Image

from suite.audit.output import neutralise, printable
from suite.cli import main
from suite.watermark import embed


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    import audit_corpus

    root = tmp_path_factory.mktemp("audit-cli")
    photo = audit_corpus.fit(audit_corpus.photo("astronaut"), (512, 512))
    embed(photo, "sd-v1").save(root / "v1.png")
    embed(photo, "sdxl").save(root / "xl.png")
    photo.save(root / "clean.png")
    (root / "broken.png").write_bytes(b"\x89PNG not really")
    return root


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(["audit", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_jsonl_records_follow_the_design(folder, capsys):
    code, out, err = run(capsys, folder, "--format", "jsonl", "--workers", "2")
    assert code == 1  # broken.png could not be audited
    records = {r["path"].rsplit("/", 1)[-1]: r for r in map(json.loads, out.splitlines())}
    assert set(records) == {"v1.png", "xl.png", "clean.png", "broken.png"}
    v1 = records["v1.png"]
    assert set(v1) >= {"path", "status", "error", "width", "height", "watermarks", "metadata"}
    assert (v1["status"], v1["width"], v1["height"]) == ("ok", 512, 512)
    marks = {m["scheme"]: m for m in v1["watermarks"]}
    assert set(marks["sd-v1"]) >= {"scheme", "detected", "p_value", "bit_accuracy", "bits", "decoded"}
    assert marks["sd-v1"]["detected"] and marks["sd-v1"]["p_value"] < 1e-20
    assert len(marks["sd-v1"]["bits"]) == 136 and set(marks["sd-v1"]["bits"]) <= {"0", "1"}
    assert not marks["sd-v2"]["detected"]
    assert [m["scheme"] for m in records["xl.png"]["watermarks"] if m["detected"]] == ["sdxl"]
    assert not any(m["detected"] for m in records["clean.png"]["watermarks"])
    assert records["broken.png"]["status"] == "error"
    assert "audited 4 files" in err and "1 errors" in err and "sd-v1 1" in err


def test_json_csv_and_table_formats(folder, capsys, tmp_path):
    code, out, _ = run(capsys, folder, "--format", "json", "--workers", "1")
    assert code == 1 and len(json.loads(out)) == 4
    target = tmp_path / "audit.csv"
    code, out, _ = run(capsys, folder / "v1.png", "--format", "csv", "-o", target)
    assert code == 0 and out == ""
    rows = list(csv.DictReader(target.open()))
    assert rows[0]["sd-v1_detected"] == "True" and rows[0]["sdxl_detected"] == "False"
    assert float(rows[0]["sd-v1_p_value"]) < 1e-20
    code, out, err = run(capsys, folder / "v1.png", folder / "clean.png")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("STATUS") and "sd-v1" in lines[1] and "clean.png" in lines[2]
    assert "watermark detected: sd-v1 1, sd-v2 0, sdxl 0" in err


def test_a_cropped_mark_says_the_crop_search_found_it(folder, capsys, tmp_path):
    Image.open(folder / "v1.png").crop((30, 20, 480, 470)).save(tmp_path / "cropped.png")
    code, out, _ = run(capsys, tmp_path / "cropped.png")
    assert code == 0 and "sd-v1 (crop)" in out.splitlines()[1]
    code, out, _ = run(capsys, tmp_path / "cropped.png", "--format", "csv")
    row = next(csv.DictReader(io.StringIO(out)))
    assert (row["sd-v1_detected"], row["sd-v1_search"], row["sd-v2_search"]) == ("True", "crop +4,+2", "")
    code, out, _ = run(capsys, tmp_path / "cropped.png", "--search", "never", "--format", "jsonl")
    assert not any(m["detected"] for m in json.loads(out)["watermarks"])


def test_a_mirrored_mark_in_every_format_and_the_report(folder, capsys, tmp_path):
    """`-o FILE` without --format writes what FILE's suffix says; each format names the search that
    found the mark, and the report reads the JSONL back."""
    Image.open(folder / "v1.png").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(tmp_path / "mirrored.png")
    code, out, _ = run(capsys, tmp_path / "mirrored.png")
    assert code == 0 and "sd-v1 (mirror)" in out.splitlines()[1]
    code, _, _ = run(capsys, tmp_path / "mirrored.png", "-o", tmp_path / "audit.csv")
    row = next(csv.DictReader((tmp_path / "audit.csv").open()))
    assert code == 0 and (row["sd-v1_detected"], row["sd-v1_search"]) == ("True", "mirror horizontal")
    code, _, _ = run(capsys, tmp_path / "mirrored.png", "-o", tmp_path / "audit.jsonl")
    record = json.loads((tmp_path / "audit.jsonl").read_text())
    assert code == 0 and record["watermarks"][0]["search"] == {"edit": "mirror", "axis": "horizontal"}
    assert main(["report", str(tmp_path / "audit.jsonl"), "-o", str(tmp_path / "report.html")]) == 0
    assert "mirrored.png" in (tmp_path / "report.html").read_text()
    code, _, _ = run(capsys, tmp_path / "mirrored.png", "-o", tmp_path / "audit.txt")
    assert code == 0 and (tmp_path / "audit.txt").read_text().startswith("STATUS")


def test_user_messages(tmp_path, capsys):
    import audit_corpus

    photo = audit_corpus.fit(audit_corpus.photo("coffee"), (512, 512))
    encoder = WatermarkEncoder()
    encoder.set_watermark("bytes", b"ACME")
    bgr = encoder.encode(audit_corpus.np.ascontiguousarray(audit_corpus.np.asarray(photo)[:, :, ::-1]), "dwtDct")
    Image.fromarray(bgr[:, :, ::-1]).save(tmp_path / "acme.png")
    code, out, _ = run(
        capsys, tmp_path / "acme.png", "--format", "jsonl", "--schemes", "none",
        "--message-bytes", "ACME", "--message-bytes", "OTHER", "--message-bits", "0110" * 8,
    )  # fmt: skip
    assert code == 0
    marks = {m["scheme"]: m for m in json.loads(out)["watermarks"]}
    assert marks["bytes:ACME"]["detected"] and not marks["bytes:OTHER"]["detected"]
    assert not marks["bits:" + "0110" * 8]["detected"]


@pytest.mark.parametrize(
    "argv",
    [
        ["--schemes", "sd-v9"],
        ["--schemes", "none"],
        ["--message-bits", "012"],
        ["--workers", "0"],
        ["--format", "xml"],
        ["-o", "/nonexistent-dir/out.jsonl"],
    ],
)
def test_usage_errors_exit_2(folder, capsys, argv):
    try:
        code = main(["audit", str(folder / "v1.png"), *argv])
    except SystemExit as exc:  # argparse rejects some before run()
        code = exc.code
    assert code == 2


def test_csv_cells_cannot_become_formulas(tmp_path, capsys, monkeypatch):
    # file names are untrusted: relative paths starting with = + - @ would run in a spreadsheet
    monkeypatch.chdir(tmp_path)
    names = ["=HYPERLINK(1).png", "+1.png", "-2.png", "@SUM(A1).png"]
    for name in names:
        Image.new("RGB", (256, 256), (40, 90, 160)).save(tmp_path / name)
    code, out, _ = run(capsys, "--format", "csv", "--", *names)
    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))[1:]
    assert [row[0] for row in rows] == ["'" + name for name in names]
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row)
    assert neutralise("photo.png") == "photo.png" and neutralise(-1.5) == -1.5


def test_table_escapes_terminal_control_characters(tmp_path, capsys):
    name = "evil\x1b[2Jname.png"
    Image.new("RGB", (256, 256)).save(tmp_path / name)
    code, out, _ = run(capsys, tmp_path / name)
    assert code == 0 and "\x1b" not in out and "evil\\x1b[2Jname.png" in out
    assert printable("a\nb") == "a\\nb"


def test_help_imports_nothing_heavy():
    import subprocess
    import sys

    code = (
        "import sys; from suite.cli import build_parser; build_parser('audit'); "
        "print(sorted(m for m in ('torch', 'cv2', 'scipy', 'c2pa') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_progress_bar_counts_to_the_end():
    from suite.audit.command import Progress

    stream = io.StringIO()
    progress = Progress(3, stream)
    for _ in range(3):
        progress.step()
    assert "3/3 files" in stream.getvalue() and "#" * 30 in stream.getvalue()
    progress.close()
    assert stream.getvalue().endswith("\r")
