"""Every command against the bad inputs of issue 15, as a new user would try them: one line on
stderr naming the file, a documented exit code, no traceback, no hang, no input changed."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
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
    code, out, err = run(capsys, "audit", locked / "inner", "--format", "jsonl", "--workers", "1")
    assert code == 1 and json.loads(out)["error_kind"] == "unreadable" and "audited 1 files" in err


def test_ctrl_c_stops_an_audit_without_worker_tracebacks(tmp_path):
    # enough work that the interrupt lands mid-scan: a searched 512x512 image takes tens of ms
    for i in range(400):
        Image.new("RGB", (512, 512), (i % 256, 90, 160)).save(tmp_path / f"{i:03d}.png")
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


@pytest.fixture
def bench_run(tmp_path) -> Path:
    from report_inputs import write_run

    return write_run(tmp_path / "runs", scenarios=3)


@pytest.fixture
def audit_jsonl(capsys, image, tmp_path) -> Path:
    out = tmp_path / "audit.jsonl"
    assert main(["audit", str(image), "--format", "jsonl", "-o", str(out), "--workers", "1"]) == 0
    capsys.readouterr()
    return out


def test_report_never_opens_a_fifo(audit_jsonl, image, bench_run):
    image.unlink()
    os.mkfifo(image)  # the audited image became a pipe: reading it would block forever
    first = next((bench_run / "images").iterdir())
    first.unlink()
    os.mkfifo(first)
    for source in (audit_jsonl, bench_run):
        proc = sdsuite("report", str(source), "-o", str(source.parent / "r.html"))
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and "Traceback" not in err


@pytest.mark.parametrize("where", ["folder", "/dev/full", "missing/r.html", "input"])
def test_report_output_that_cannot_be_written_is_one_line(capsys, audit_jsonl, tmp_path, where):
    output = {"folder": tmp_path, "missing/r.html": tmp_path / "missing/r.html", "input": audit_jsonl}.get(where, where)
    before = digest(audit_jsonl)
    code, _, err = run(capsys, "report", audit_jsonl, "-o", output)
    assert code == 2 and len(err.strip().splitlines()) == 1 and str(output) in err
    assert digest(audit_jsonl) == before and not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize(
    ("appended", "words"),
    [
        ("42\n", "results.jsonl:4: not a bench record (not a JSON object)"),
        ('{"status": 5}\n', "results.jsonl:4: not a bench record (status 5 is not one of"),
        ('{"status": "ok", "scenario": {"name": "x"}}\n', "results.jsonl:4: not a bench record (KeyError"),
        ('{"torn": \n{"status": "ok"}\n', "results.jsonl:4: not a JSON record"),
        ("\xff\n", "results.jsonl: not UTF-8 text"),
    ],
)
def test_report_of_a_damaged_results_file_names_the_line(capsys, bench_run, appended, words):
    with open(bench_run / "results.jsonl", "a", encoding="latin-1") as f:
        f.write(appended)
    for command in (["report", bench_run], ["compare", bench_run, bench_run]):
        code, _, err = run(capsys, *command)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err


def test_a_torn_last_line_is_still_dropped(capsys, bench_run):
    with open(bench_run / "results.jsonl", "a") as f:
        f.write('{"status": "ok", "scen')
    code, _, _ = run(capsys, "report", bench_run, "-o", bench_run / "r.html")
    assert code == 0


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ('{"path": "a.png", "status": 5}', "record 2 is not an audit record (status 5"),
        ('{"path": "a.png", "status": "ok", "watermarks": [1]}', "record 2 is not an audit record (watermarks"),
        ("42", "record 2 is not an audit record (not a JSON object)"),
        ('{"path": "", "status": "too_small", "error": [null]}', "record 2 is not an audit record (error is not text)"),
        ('{"path": "a", "status": "ok", "watermarks": [{"scheme": "x", "search": {"edit": "crop"}}]}', "(watermarks"),
    ],
)
def test_report_of_a_damaged_audit_names_the_record(capsys, audit_jsonl, line, words):
    with open(audit_jsonl, "a") as f:
        f.write(line + "\n")
    code, _, err = run(capsys, "report", audit_jsonl)
    assert code == 2 and words in err


def test_report_of_a_non_utf8_audit_names_the_file(capsys, audit_jsonl):
    with open(audit_jsonl, "ab") as f:
        f.write(b"\xff\n")
    code, _, err = run(capsys, "report", audit_jsonl)
    assert code == 2 and f"{audit_jsonl}: not UTF-8 text" in err


def test_report_positional_argument_has_help(capsys):
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    assert "bench run directories" in capsys.readouterr().out


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims `width` x `height` pixels (a decompression bomb's header) with one empty row."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


def test_watermark_embed_never_opens_a_fifo(tmp_path):
    os.mkfifo(tmp_path / "fifo.png")
    proc = sdsuite("watermark", "embed", "--scheme", "sd-v1", str(tmp_path / "fifo.png"), str(tmp_path / "o.png"))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "not a regular file" in err and "Traceback" not in err


@pytest.mark.parametrize("case", ["bomb", "folder", "o.xyz", "no-extension", "missing/o.png", "same-as-input"])
def test_watermark_embed_refuses_what_it_cannot_do(capsys, image, tmp_path, case):
    source, output = image, tmp_path / "o.png"
    if case == "bomb":
        source = tmp_path / "bomb.png"
        source.write_bytes(png_header(60000, 60000))
    else:
        outputs = {"folder": tmp_path, "same-as-input": image, "no-extension": tmp_path / "o"}
        output = outputs.get(case, tmp_path / case)
    before = digest(image)
    code, _, err = run(capsys, "watermark", "embed", "--scheme", "sd-v1", source, output)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert digest(image) == before and not (tmp_path / "missing").exists()


SCENARIO = """
[[scenario]]
name = "s"
model = "sd-v1"
weights = "tiny"
device = "cpu"
size = 64
steps = 2
repeats = 1
warmup = 0
"""


def scenario_file(tmp_path: Path, text: str = SCENARIO, **fields) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(text + "".join(f"{key} = {value}\n" for key, value in fields.items()))
    return path


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"sampler": '"nosuch"'}, "unknown sampler 'nosuch'"),
        ({"weights": '"./no/such/folder"'}, "weights ./no/such/folder: no such file or folder"),
        ({"weights": '"missing.safetensors"'}, "weights missing.safetensors: no such file"),
        ({"size": "100000"}, "field 'width': 100000 is over 16384 pixels"),
        ({"steps": "100000000"}, "field 'steps': 100000000 is over the 10,000"),
        ({"steps": "1e8"}, "field 'steps': expected int, got float"),
    ],
)
def test_bench_list_refuses_what_would_fail_later(capsys, tmp_path, fields, words):
    text = SCENARIO.replace("size = 64\n", "") if "size" in fields else SCENARIO
    text = text.replace("steps = 2\n", "") if "steps" in fields else text
    text = text.replace('weights = "tiny"\n', "") if "weights" in fields else text
    code, out, err = run(capsys, "bench", scenario_file(tmp_path, text, **fields), "--list")
    assert code == 2 and words in err and out == "", err


def test_bench_a_scenario_file_that_is_not_utf8(capsys, tmp_path):
    path = tmp_path / "s.toml"
    path.write_bytes(SCENARIO.encode() + b'prompt = "caf\xe9"\n')
    code, _, err = run(capsys, "bench", path, "--list")
    assert code == 2 and f"{path}: not UTF-8 text" in err


def test_readme_scenario_example_parses(capsys, tmp_path):
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    example = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    code, out, err = run(capsys, "bench", scenario_file(tmp_path, example), "--list")
    assert code == 0, err
    names = [line.split()[0] for line in out.splitlines()]
    assert len(names) == 9 and "lowvram-4gib-attention-slicing" in names
    assert "budget 12 GiB" in out


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--only", "nosuch"], "--only: no scenario or family named nosuch"),
        (["--repeats", "-1"], "argument --repeats: must be at least 1"),
        (["--warmup", "x"], "argument --warmup: 'x' is not a whole number"),
        (["--timeout", "nan"], "argument --timeout: must be a positive number"),
    ],
)
def test_bench_usage_errors_exit_2_and_blame_the_option(capsys, tmp_path, argv, words):
    try:
        code, _, err = run(capsys, "bench", scenario_file(tmp_path), "--list", *argv)
    except SystemExit as exc:  # argparse's own errors
        code, err = exc.code, capsys.readouterr().err
    assert code == 2 and words in err and "s.toml" not in err, err


def test_bench_names_a_folder_as_a_folder(capsys, tmp_path):
    code, _, err = run(capsys, "bench", tmp_path, "--list")
    assert code == 2 and f"{tmp_path}: is a folder" in err


@pytest.mark.parametrize("case", ["existing-file", "resume-nothing"])
def test_bench_out_that_is_no_run_directory(capsys, tmp_path, case):
    out = tmp_path / "run"
    argv = ["--out", out]
    if case == "existing-file":
        out.write_text("x")
    else:
        argv.append("--resume")
    code, _, err = run(capsys, "bench", scenario_file(tmp_path), *argv)
    assert code == 2 and str(out) in err and len(err.strip().splitlines()) == 1, err
    assert case == "existing-file" or not out.exists()


def test_a_failed_cpu_allocation_is_out_of_memory():
    from suite.worker import classify

    message = "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried to allocate 21474836480 bytes. Error code 12 (Cannot allocate memory)"
    assert classify(RuntimeError(message))[0] == "oom"
    assert classify(MemoryError())[0] == "oom"
    assert classify(RuntimeError("CUDA error: an illegal memory access"))[0] == "error"


def test_bench_exits_1_when_a_scenario_errs_and_shows_its_whole_reason(tmp_path):
    (tmp_path / "broken.safetensors").write_text("not weights")
    text = SCENARIO.replace('weights = "tiny"', 'weights = "broken.safetensors"')
    proc = sdsuite("bench", str(scenario_file(tmp_path, text)), "--out", str(tmp_path / "run"), cwd=tmp_path)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err
    reason = json.loads((tmp_path / "run/results.jsonl").read_text())["error"]
    assert len(reason) > 70 and f"s: {reason}" in out.split("reasons in full:")[1]


def audit_records(capsys, *argv) -> tuple[int, list[dict], str]:
    code, out, err = run(capsys, "audit", "--format", "jsonl", "--workers", "1", *argv)
    return code, [json.loads(line) for line in out.splitlines()], err


def test_audit_reads_gifs_in_folders_and_each_file_once(capsys, image, tmp_path):
    frames = [Image.new("RGB", (256, 256), (i * 40, 90, 160)) for i in range(3)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    os.symlink(image, tmp_path / "link.png")
    code, records, err = audit_records(capsys, tmp_path, image, str(image), tmp_path / "link.png")
    assert code == 0 and [Path(r["path"]).name for r in records] == ["a.png", "anim.gif"]
    assert "audited 2 files" in err


@pytest.mark.parametrize("alpha", ["2", "0", "-1", "nan", "x"])
def test_audit_alpha_must_be_a_p_value(capsys, image, alpha):
    with pytest.raises(SystemExit) as exit_:
        main(["audit", str(image), "--alpha", alpha])
    assert exit_.value.code == 2 and "--alpha" in capsys.readouterr().err


def test_audit_max_pixels_decides_not_pils_own_limit(capsys, tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header(60000, 60000))
    _, [record], _ = audit_records(capsys, bomb)
    assert record["error_kind"] == "decompression_bomb" and "--max-pixels" in record["error"]
    _, [record], _ = audit_records(capsys, bomb, "--max-pixels", str(60000 * 60000))
    assert record["error_kind"] != "decompression_bomb" and record["width"] == 60000


def test_audit_reports_a_damaged_image_data_crc(capsys, tmp_path):
    import audit_corpus

    path = tmp_path / "damaged.png"
    audit_corpus.fit(audit_corpus.photo("astronaut"), (256, 256)).save(path)
    data = bytearray(path.read_bytes())
    idat = data.index(b"IDAT")
    length = int.from_bytes(data[idat - 4 : idat], "big")
    data[idat + 4 + length] ^= 0xFF  # the first byte of IDAT's CRC
    path.write_bytes(bytes(data))
    code, [record], _ = audit_records(capsys, path)
    assert code == 1 and record["error_kind"] == "corrupt" and "IDAT chunk fails its CRC" in record["error"]


def test_models_list_says_what_it_is_doing_at_once():
    proc = sdsuite("models", "list")
    first = proc.stderr.readline()  # before the seconds the parameter counts take
    out, _ = proc.communicate(timeout=120)
    assert "counting" in first and proc.returncode == 0 and "sd-v1" in out


def test_models_check_never_opens_a_fifo(tmp_path):
    os.mkfifo(tmp_path / "weights.ckpt")
    proc = sdsuite("models", "check", str(tmp_path / "weights.ckpt"))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "not a regular file" in err


def test_make_audit_keeps_a_path_with_spaces_and_quotes_whole(tmp_path):
    repo = Path(__file__).parent.parent
    path = tmp_path / "it's a photo.png"
    Image.new("RGB", (256, 256), (40, 90, 160)).save(path)
    args = ["PATHS=" + str(path), "AUDIT_ARGS=--format jsonl --workers 1 --search never"]
    done = subprocess.run(["make", "-s", "-o", "install", "audit", *args], cwd=repo, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["path"] == str(path)


@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "photos"
    root.mkdir()
    for i in range(4):
        Image.new("RGB", (256, 256), (i * 50, 90, 160)).save(root / f"{i}.png")
    (root / "broken.png").write_bytes(b"\x89PNG not really")
    return root


@pytest.mark.parametrize("kind", ["jsonl", "csv"])
def test_audit_resume_skips_what_a_killed_run_recorded(capsys, folder, tmp_path, kind):
    out = tmp_path / f"audit.{kind}"
    argv = ["audit", folder, "--format", kind, "-o", out, "--workers", "1", "--search", "never"]
    assert run(capsys, *argv)[0] == 1  # broken.png
    whole = out.read_text()
    lines = whole.splitlines(keepends=True)
    out.write_text("".join(lines[:3]) + lines[3][:20])  # killed in the middle of a line
    code, _, err = run(capsys, *argv, "--resume")
    kept = 3 if kind == "jsonl" else 2  # the CSV's first line is its header
    assert code == 1 and f"audited {5 - kept} files" in err and f"resumed: {kept} files were already recorded" in err
    assert out.read_text() == whole


def test_audit_resume_refuses_other_settings_and_missing_outputs(capsys, folder, tmp_path):
    out = tmp_path / "audit.jsonl"
    argv = ["audit", folder, "--format", "jsonl", "-o", out, "--workers", "1", "--search", "never"]
    run(capsys, *argv)
    before = digest(out)
    code, _, err = run(capsys, *argv, "--resume", "--alpha", "0.001")
    assert code == 2 and "written with other alpha" in err and digest(out) == before
    code, _, err = run(capsys, *argv[:-6], "--format", "jsonl", "-o", tmp_path / "none.jsonl", "--resume")
    assert code == 2 and "none.jsonl: no such file" in err
    code, _, err = run(capsys, "audit", folder, "--format", "json", "-o", tmp_path / "a.json", "--resume")
    assert code == 2 and "jsonl or csv" in err


def test_audit_report_finds_thumbnails_from_another_folder(capsys, folder, tmp_path, monkeypatch):
    monkeypatch.chdir(folder)
    out = tmp_path / "elsewhere" / "audit.jsonl"
    out.parent.mkdir()
    run(capsys, "audit", "0.png", "1.png", "--format", "jsonl", "-o", out, "--workers", "1")
    monkeypatch.chdir(tmp_path)
    code, _, _ = run(capsys, "report", out, "-o", tmp_path / "r.html")
    assert code == 0 and (tmp_path / "r.html").read_text().count("data:image/jpeg;base64") == 2


def test_kill_9_never_leaves_a_half_written_json_output(tmp_path):
    for i in range(30):
        Image.new("RGB", (512, 512), (i, 90, 160)).save(tmp_path / f"{i:02d}.png")
    out = tmp_path / "audit.json"
    out.write_text("[]\n")  # an earlier audit's output
    proc = sdsuite("audit", str(tmp_path), "-o", str(out), "--format", "json", "--workers", "1", "--search", "always")
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".audit.json.*.tmp")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1)
    proc.kill()
    proc.communicate(timeout=60)
    assert json.loads(out.read_text()) == []


def test_debug_shows_the_traceback_and_a_bug_keeps_its_own(capsys, monkeypatch):
    from suite.errors import UsageError

    with pytest.raises(UsageError) as caught:
        main(["--debug", "report", "/nonexistent-run"])
    assert isinstance(caught.value.__cause__, FileNotFoundError)  # the whole story
    import suite.report.command

    def broken(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(suite.report.command, "run", broken)
    with pytest.raises(RuntimeError):
        main(["report", "/nonexistent-run"])


@pytest.mark.parametrize(
    "argv",
    [
        ["audit", "a.png", "-o", "ro/x.json", "--format", "json"],
        ["audit", "a.png", "-o", "ro/x.jsonl", "--format", "jsonl"],
        ["report", "audit.jsonl", "-o", "ro/r.html"],
        ["bench", "s.toml", "--out", "ro/run"],
        ["watermark", "embed", "--scheme", "sd-v1", "a.png", "ro/o.png"],
    ],
)
def test_outputs_in_a_read_only_folder_are_one_line(argv):
    """As an unprivileged user (root writes anywhere: the test drops to nobody where it runs as root)."""
    root = Path(tempfile.mkdtemp())
    try:
        root.chmod(0o777)
        Image.new("RGB", (256, 256), (40, 90, 160)).save(root / "a.png")
        record = {"path": "a.png", "status": "ok", "width": 256, "height": 256, "watermarks": [], "metadata": {}}
        (root / "audit.jsonl").write_text(json.dumps(record) + "\n")
        (root / "s.toml").write_text(SCENARIO)
        (root / "ro").mkdir(mode=0o555)
        for path in root.iterdir():
            path.chmod(0o555 if path.is_dir() else 0o644)
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
        if nobody and not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv (util-linux) to drop to an unprivileged user")
        done = subprocess.run(
            [*nobody, sys.executable, "-m", "suite", *argv],
            cwd=root,
            capture_output=True,
            text=True,
            env={**os.environ, "HOME": str(root)},
        )
        err = done.stderr
        # the last line (matplotlib may first say it builds its font cache in the new HOME)
        assert done.returncode == 2 and "Traceback" not in err, err
        assert err.strip().splitlines()[-1].startswith(f"sdsuite {argv[0]}: ro/") and "Permission denied" in err
    finally:
        shutil.rmtree(root)


@pytest.mark.parametrize("name", ["results.jsonl", "results.csv", "environment.json"])
def test_report_never_writes_over_a_run_file(capsys, bench_run, name):
    before = digest(bench_run / name)
    code, _, err = run(capsys, "report", bench_run, "-o", bench_run / name)
    assert code == 2 and "one of the inputs" in err and digest(bench_run / name) == before


@pytest.mark.parametrize(
    "argv",
    [["audit"], ["bench"], ["report"], ["compare"], ["watermark", "embed"], ["models", "check"], ["models", "list"]],
)
def test_every_command_documents_its_exit_codes(capsys, argv):
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    assert "exit codes: 0" in " ".join(capsys.readouterr().out.split())


def test_bench_resume_of_a_damaged_run_names_the_line(capsys, bench_run, tmp_path):
    lines = (bench_run / "results.jsonl").read_text().splitlines(keepends=True)
    (bench_run / "results.jsonl").write_text(lines[0] + '{"torn\n' + "".join(lines[1:]))
    code, _, err = run(capsys, "bench", scenario_file(tmp_path), "--out", bench_run, "--resume")
    assert code == 2 and "results.jsonl:2: not a JSON record" in err


def test_report_of_records_with_null_sections(capsys, bench_run):
    """Found by the fuzz test: `"capacity": null` (or memory, fingerprint) ended the report in a traceback."""
    records = [json.loads(line) for line in (bench_run / "results.jsonl").read_text().splitlines()]
    for record in records:
        record.update(capacity=None, memory=None, fingerprint=None)
    (bench_run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    environment = json.loads((bench_run / "environment.json").read_text())
    (bench_run / "environment.json").write_text(json.dumps({**environment, "fingerprint": None}))
    code, _, err = run(capsys, "report", bench_run, "-o", bench_run / "r.html")
    assert code == 0, err


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("latency_s", [None], "latency_s is not a list of seconds"),
        ("step_s", [[1.0, "x"]], "step_s is not a list of lists of seconds"),
        ("stages_s", {"denoise": [True]}, "stages_s is not an object of lists of seconds"),
    ],
)
def test_report_of_records_with_unmeasured_times_names_the_line(capsys, bench_run, key, value, words):
    """Found by the fuzz test: a time that is no number ended the report in a TypeError."""
    lines = (bench_run / "results.jsonl").read_text().splitlines()
    record = json.loads(lines[0])
    record[key] = value
    (bench_run / "results.jsonl").write_text("\n".join([json.dumps(record), *lines[1:]]) + "\n")
    for command in (["report", bench_run], ["compare", bench_run, bench_run]):
        code, _, err = run(capsys, *command)
        assert code == 2 and f"results.jsonl:1: not a bench record ({words})" in err
