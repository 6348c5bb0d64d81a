"""What auditing a dataset costs: tar shards against files, Dask workers against one, images/s per
core, the searches on crawled sizes, and a 1,000-shard S3 job resumed after its driver was killed.

Run with `make bench-micro` (or `.venv/bin/pytest tests/benchmarks/test_dataset_speed.py
--benchmark-only -s`). Ratios are measured within one run; each prints its figures and stores them
in the benchmark's extra_info. SDSUITE_BENCH_WORKERS sets K for the scaling test (default: every
core), so the same test measures K = 16 on a bigger machine; SDSUITE_BENCH_SHARDS shrinks the
S3 job (default 1,000 shards of 100 images).
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import audit_corpus
import pytest
import shard_corpus

from suite.audit.engines import Engine, run_shards
from suite.audit.scan import AuditOptions, audit_bytes, new_record, scan, settle_process
from suite.audit.shards import ShardJob, audit_shard
from suite.audit.sources import Source
from suite.watermark import embed

SHARD_IMAGES = 40
ROUNDS = 2  # of the scaling test: the best round of each side is kept
OPTIONS = AuditOptions()


def _photos(size: tuple[int, int]) -> list:
    """Photographs and illustrations at `size`, every other one marked (sd-v1, sdxl in turn)."""
    images = [audit_corpus.fit(audit_corpus.photo(name), size) for name in audit_corpus.PHOTOS]
    images += [audit_corpus.illustration(seed, size) for seed in range(3)]
    schemes = itertools.cycle(["sd-v1", "sdxl"])
    return [embed(image, next(schemes)) if i % 2 else image for i, image in enumerate(images)]


@pytest.fixture(scope="module")
def jpeg_samples() -> list[shard_corpus.Sample]:
    photos = _photos((512, 512))
    return [
        (f"{i:06d}", "jpg", shard_corpus.encode(photos[i % len(photos)], "JPEG", quality=90))
        for i in range(SHARD_IMAGES)
    ]


def _best(fn, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def test_tar_shard_vs_the_same_files(benchmark, tmp_path, jpeg_samples):
    """One core each side: the shard's cost includes streaming the tar and committing its Parquet."""
    folder = tmp_path / "files"
    folder.mkdir()
    paths = []
    for key, extension, data in jpeg_samples:
        paths.append(str(folder / f"{key}.{extension}"))
        Path(paths[-1]).write_bytes(data)
    shard = tmp_path / "00000.tar"
    shard.write_bytes(shard_corpus.tar_bytes(jpeg_samples))
    outputs = (str(tmp_path / f"out{n}") for n in itertools.count())

    def files() -> None:
        assert len(list(scan(paths, OPTIONS, workers=1))) == SHARD_IMAGES

    def tar() -> None:
        assert audit_shard(str(shard), ShardJob(Source("webdataset"), OPTIONS, next(outputs)))["state"] == "written"

    files_s = tar_s = float("inf")
    for _ in range(4):  # interleaved, so a change in the machine's load hits both alike
        files_s = min(files_s, _best(files, 1))
        tar_s = min(tar_s, _best(tar, 1))
    benchmark.pedantic(tar, rounds=1, iterations=1)
    ratio = tar_s / files_s
    benchmark.extra_info.update(tar_vs_files=round(ratio, 3), files_s=round(files_s, 3), tar_s=round(tar_s, 3))
    print(f"\ntar shard / files: {ratio:.3f} ({SHARD_IMAGES} JPEGs: files {files_s:.3f} s, tar {tar_s:.3f} s)")
    assert ratio <= 1.1


def test_local_cluster_k_workers_vs_one(benchmark, tmp_path, jpeg_samples):
    from distributed import Client, LocalCluster

    workers = int(os.environ.get("SDSUITE_BENCH_WORKERS", os.cpu_count() or 1))
    folder = tmp_path / "in"
    folder.mkdir()
    urls = []
    for n in range(8 * workers):
        urls.append(str(folder / f"{n:05d}.tar"))
        Path(urls[-1]).write_bytes(shard_corpus.tar_bytes(jpeg_samples[: SHARD_IMAGES // 2]))
    images = len(urls) * (SHARD_IMAGES // 2)
    rates = dict.fromkeys((1, workers), 0.0)
    for run, count in enumerate([1, workers] * ROUNDS):  # interleaved: a change in load hits both alike
        with (
            LocalCluster(n_workers=count, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
            Client(cluster) as client,
        ):
            # each worker's first image (imports, first calls) before the clock starts: a job of a
            # billion images pays it once per worker, not once per shard
            client.run(lambda data: audit_bytes(data, OPTIONS, new_record(path="warm-up")), jpeg_samples[0][2])
            engine = Engine("dask", count, cluster.scheduler_address)
            start = time.perf_counter()
            outcomes = list(
                run_shards(urls, ShardJob(Source("webdataset"), OPTIONS, str(tmp_path / f"o{run}")), engine)
            )
            rates[count] = max(rates[count], images / (time.perf_counter() - start))
            assert [o["state"] for o in outcomes] == ["written"] * len(urls)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    ratio = rates[workers] / rates[1]
    benchmark.extra_info.update(
        workers=workers, speedup=round(ratio, 3), **{f"images_per_s_{k}": round(v, 1) for k, v in rates.items()}
    )
    print(f"\nLocalCluster {workers} workers vs 1: {ratio:.2f}x ({rates[1]:.1f} -> {rates[workers]:.1f} images/s)")
    assert ratio >= 0.9 * workers


@pytest.mark.parametrize(("fmt", "target"), [("JPEG", 400), ("PNG", 150)])
def test_images_per_second_per_core(benchmark, fmt, target):
    """The default options against the target; `--search never` beside them (interleaved), since
    the default searches every image the aligned test finds nothing in (half of these)."""
    settle_process()  # as an audit worker is set up
    params = {"quality": 90} if fmt == "JPEG" else {}
    samples = [shard_corpus.encode(image, fmt, **params) for image in _photos((512, 512))]

    def audit_all(options: AuditOptions) -> None:
        for data in samples:
            assert audit_bytes(data, options, new_record(path="x"))["status"] == "ok"

    best = {"auto": float("inf"), "never": float("inf")}
    for _ in range(3):
        for search in best:
            best[search] = min(best[search], _best(functools.partial(audit_all, AuditOptions(search=search)), 1))
    benchmark.pedantic(audit_all, (OPTIONS,), rounds=1, iterations=1)
    rate, never = len(samples) / best["auto"], len(samples) / best["never"]
    benchmark.extra_info.update(images_per_s=round(rate, 1), images_per_s_search_never=round(never, 1))
    print(
        f"\n512x512 {fmt}, one core: {rate:.1f} images/s with the default options (target {target}), {never:.1f} --search never"
    )
    assert rate >= target


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_searches_on_crawled_sizes(benchmark, fmt):
    """img2dataset's LAION recipe: short side resized to 384 (ratio kept), JPEG at quality 95 (its
    default) or PNG. SD's 640x448 becomes 548x384, which `auto` searches, and 512x768 becomes
    384x576, a multiple of 64, which only `always` searches; half the images are marked."""
    settle_process()
    samples = []
    for size in ((640, 448), (448, 640), (512, 768), (768, 512)):
        for i, image in enumerate(_photos(size)):
            scale = 384 / min(image.size)
            resized = image.resize((round(image.width * scale), round(image.height * scale)))
            samples.append(
                (i % 2 == 1, shard_corpus.encode(resized, fmt, **({"quality": 95} if fmt == "JPEG" else {})))
            )
    results = {}
    for search in ("always", "auto", "never"):
        options = AuditOptions(search=search)
        start = time.perf_counter()
        records = [audit_bytes(data, options, new_record(path="x")) for _, data in samples]
        seconds = time.perf_counter() - start
        found = sum(any(m["detected"] for m in r["watermarks"]) for r in records)
        false = sum(
            any(m["detected"] for m in r["watermarks"])
            for r, (marked, _) in zip(records, samples, strict=True)
            if not marked
        )
        results[search] = (len(samples) / seconds, found, false)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    marked = sum(m for m, _ in samples)
    for search, (rate, found, false) in results.items():
        benchmark.extra_info[f"search_{search}"] = {"images_per_s": round(rate, 1), "detected": found, "false": false}
        print(f"\n{fmt} --search {search}: {rate:.1f} images/s, {found} detected of {marked} marked ({false} unmarked)")
    assert results["always"][2] == results["auto"][2] == results["never"][2] == 0


def test_thousand_shards_on_s3_resumed_after_a_driver_kill(benchmark, monkeypatch):
    import pyarrow.parquet as pq
    import s3fs
    from moto.server import ThreadedMotoServer

    shards = int(os.environ.get("SDSUITE_BENCH_SHARDS", 1000))
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(name, env[name])  # for this process's s3fs too
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        storage = {"endpoint_url": f"http://{host}:{port}"}
        fs = s3fs.S3FileSystem(**storage)
        fs.mkdir("laion")
        start = time.perf_counter()
        fs.pipe(
            {
                f"laion/shards/{n:05d}.tar": shard_corpus.tar_bytes(shard_corpus.tiny_samples(100, f"{n}-"))
                for n in range(shards)
            }
        )
        upload_s = time.perf_counter() - start
        command = [
            str(Path(sys.executable).parent / "sdsuite"), "audit", f"s3://laion/shards/{{00000..{shards - 1:05d}}}.tar",
            "-o", "s3://laion/audit", "--storage-options", json.dumps(storage), "--engine", "dask", "--workers", "2",
        ]  # fmt: skip
        start = time.perf_counter()
        driver = subprocess.Popen(command, env=env, start_new_session=True, stderr=subprocess.DEVNULL)
        while driver.poll() is None and len(_outputs(fs)) < shards * 3 // 10:
            time.sleep(0.5)
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
        first_s, done = time.perf_counter() - start, len(_outputs(fs))
        rerun = subprocess.run(command, env=env, stderr=subprocess.PIPE, text=True, timeout=1800)
        total_s = time.perf_counter() - start
        assert rerun.returncode == 0, rerun.stderr
        assert f"{done} already done" in rerun.stderr
        outputs = _outputs(fs)
        rows = sum(pq.read_metadata(fs.open(path)).num_rows for path in outputs)
        summary = json.loads(fs.cat_file("laion/audit/_summary.json"))
        assert len(outputs) == shards and rows == summary["images"] == shards * 100
        assert fs.cat_file("laion/audit/_failed.jsonl") == b""
    finally:
        server.stop()
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    benchmark.extra_info.update(shards=shards, rows=rows, done_before_kill=done, seconds=round(total_s, 1))
    print(
        f"\n{shards} shards x 100 images on moto S3, LocalCluster of 2: upload {upload_s:.0f} s, killed after "
        f"{first_s:.0f} s with {done} shards done, finished after {total_s:.0f} s in all: {rows:,} rows "
        f"({rows / total_s:.0f} images/s overall)"
    )


def _outputs(fs) -> list[str]:
    fs.invalidate_cache()
    return [p for p in fs.ls("laion/audit", detail=False) if p.endswith(".parquet")] if fs.exists("laion/audit") else []
