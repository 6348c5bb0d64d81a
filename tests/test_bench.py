"""The bench as a user runs it: `sdsuite bench` in a subprocess, results read back from disk."""

import json
import os
import signal
import time
from pathlib import Path

import pytest
from support import sdsuite

from suite import results
from suite.cli import main
from suite.scenario import load, resolve_profile

SMOKE_FAMILIES = {"v1-txt2img", "v1-img2img", "v2-txt2img", "lowvram", "cpu-fp32", "cpu-fp16", "upscale-x4"}
DESIGN_COLUMNS = [
    "schema_version",
    "run_id",
    "scenario",
    "family",
    "model",
    "weights",
    "task",
    "sampler",
    "device",
    "precision",
    "memory_mode",
    "width",
    "height",
    "steps",
    "batch",
    "status",
    "error",
    "latency_s_median",
    "latency_s_p90",
    "latency_s_min",
    "latency_s_max",
    "repeats",
    "it_per_s",
    "images_per_s",
    "load_s",
    "text_encode_s",
    "denoise_s",
    "vae_decode_s",
    "watermark_s",
    "peak_rss_mib",
    "peak_vram_allocated_mib",
    "peak_vram_reserved_mib",
    "peak_vram_device_mib",
    "energy_j_per_image",
    "unet_tflop_per_step",
    "achieved_tflops",
    "watermark_scheme",
    "cpu",
    "cpu_cores",
    "ram_gib",
    "gpu",
    "gpu_vram_gib",
    "driver",
    "cuda",
    "torch",
    "diffusers",
    "suite_version",
    "git_sha",
]


def test_smoke_run_has_every_family_and_every_design_column(smoke_run):
    df = results.load(smoke_run)
    assert set(DESIGN_COLUMNS) <= set(df.columns)
    assert set(df["family"]) >= SMOKE_FAMILIES
    scenarios = load(resolve_profile("smoke"))
    assert sorted(df["scenario"]) == sorted(s.name for s in scenarios)
    ok = df[df["status"] == "ok"]
    assert len(ok) >= 8
    assert (ok["latency_s_median"] > 0).all() and (ok["step_s_median"] > 0).all() and (ok["peak_rss_mib"] > 100).all()
    assert (ok["latency_s_min"] <= ok["latency_s_median"]).all() and (
        ok["latency_s_median"] <= ok["latency_s_max"]
    ).all()
    assert (ok["unet_tflop_per_step"] > 0).all() and (ok["weights_source"] == "tiny").all()
    assert set(df["schema_version"]) == {results.SCHEMA_VERSION}


def test_cuda_only_scenarios_are_skipped_with_the_reason_on_a_cpu_machine(smoke_run):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    df = results.load(smoke_run)
    cuda = df[df["scenario"].str.startswith("lowvram-cuda")]
    assert len(cuda) == 3 and set(cuda["status"]) == {"skipped"}
    assert cuda["error"].str.contains("needs CUDA").all()


def test_run_directory_holds_images_environment_and_full_records(smoke_run):
    env = json.loads((smoke_run / "environment.json").read_text())
    assert env["profile"] == "smoke" and env["fingerprint"]["cpu_cores"] >= 1 and env["peak_tflops"]["fp32"] > 0
    records = results.load_records(smoke_run)
    v1 = next(r for r in records if r["scenario"]["name"] == "v1-txt2img")
    assert len(v1["step_s"]) == v1["scenario"]["repeats"] and len(v1["step_s"][0]) == v1["scenario"]["steps"] + 1
    assert v1["watermark"]["scheme"] == "sd-v1" and (smoke_run / v1["images"][0]).is_file()
    assert v1["memory"]["memory_sample_hz"] > 50
    stdout = (smoke_run / "stdout.txt").read_text()
    assert "results:" in stdout and "v1-txt2img" in stdout


def test_a_copy_of_the_tree_without_its_git_names_its_commit_from_the_environment(tmp_path, monkeypatch):
    from suite.measure import fingerprint

    assert fingerprint.git_sha()  # this checkout
    monkeypatch.setattr(fingerprint, "_REPO", tmp_path)  # a copy without .git, as a lent GPU machine gets
    monkeypatch.delenv("SDSUITE_GIT_SHA", raising=False)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert fingerprint.git_sha() == ""
    monkeypatch.setenv("SDSUITE_GIT_SHA", "a934535")
    assert fingerprint.git_sha() == "a934535"


def test_a_run_directory_with_results_is_not_overwritten(smoke_run, capsys):
    assert main(["bench", "smoke", "--out", str(smoke_run)]) == 2
    assert "--resume" in capsys.readouterr().err


def test_failures_are_outcomes_not_crashes(tmp_path):
    scenarios = tmp_path / "bad.toml"
    scenarios.write_text(
        """
[defaults]
weights = "tiny"
width = 64
height = 64
steps = 2
repeats = 1
warmup = 0

[[scenario]]
name = "broken-weights"
model = "sd-v1"
weights = "broken.ckpt"

[[scenario]]
name = "too-slow"
model = "sd-v1"
steps = 900
batch = 4
width = 128
height = 128
timeout_s = 12

[[scenario]]
name = "fine"
model = "sd-v1"
"""
    )
    (tmp_path / "broken.ckpt").write_bytes(b"not a checkpoint")
    out = tmp_path / "run"
    proc = sdsuite("bench", str(scenarios), "--out", str(out), cwd=tmp_path)
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 1, stderr[-2000:]  # the run went on; one scenario ended in error
    rows = {r["scenario"]: r for r in results.load(out).to_dict("records")}
    assert rows["broken-weights"]["status"] == "error"
    assert "broken.ckpt" in rows["broken-weights"]["error"]
    assert rows["too-slow"]["status"] == "timeout" and "no result within 12 s" in rows["too-slow"]["error"]
    assert rows["fine"]["status"] == "ok"


def _holders(folder: Path) -> list[int]:
    """Processes with a file open under `folder`: workers write their log under the run directory."""
    import psutil

    holders = []
    for proc in psutil.process_iter():
        try:
            if any(str(folder) in f.path for f in proc.open_files()):
                holders.append(proc.pid)
        except psutil.Error:
            continue
    return holders


def _no_process_holds_files_under(folder: Path, wait_s: float = 15.0) -> bool:
    deadline = time.monotonic() + wait_s
    while _holders(folder):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def test_kill_9_then_resume_ends_with_every_scenario_exactly_once(tmp_path):
    out = tmp_path / "run"
    proc = sdsuite("bench", "smoke", "--out", str(out), start_new_session=True)
    deadline = time.monotonic() + 600
    jsonl = out / "results.jsonl"
    while time.monotonic() < deadline:
        done = len(jsonl.read_text().splitlines()) if jsonl.exists() else 0
        if done >= 4:
            break
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)  # the runner only: its workers must die with it
    proc.wait()
    killed_at = len(jsonl.read_text().splitlines())
    assert _no_process_holds_files_under(out), "a worker outlived the killed runner"
    resumed = sdsuite("bench", "smoke", "--out", str(out), "--resume")
    _, stderr = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, stderr[-2000:]
    names = [r["scenario"]["name"] for r in results.load_records(out)]
    expected = sorted(s.name for s in load(resolve_profile("smoke")))
    assert sorted(names) == expected, f"killed after {killed_at} records"
    assert sorted(results.load(out)["scenario"]) == expected
    assert f"{len(expected) - killed_at} of {len(expected)} scenario(s) to run" in stderr


def test_a_killed_runner_takes_its_running_worker_with_it(tmp_path):
    # killed while the worker builds a full-size model (seconds without a word to the runner): the
    # worker must go at once, not at its next message, nor when it is done (a GPU it holds is lost)
    scenario = tmp_path / "long.toml"
    scenario.write_text('[[scenario]]\nname = "long"\nmodel = "sd-v1"\nwidth = 64\nheight = 64\nsteps = 2\n')
    out = tmp_path / "run"
    proc = sdsuite("bench", str(scenario), "--out", str(out), start_new_session=True)
    deadline = time.monotonic() + 120
    while not set(_holders(out / "logs")) - {proc.pid}:  # the scenario's worker has opened its log
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()[1][-2000:]
        time.sleep(0.2)
    time.sleep(1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _no_process_holds_files_under(out, wait_s=2), "the worker outlived the killed runner"


def test_every_png_a_run_writes_carries_the_reference_watermark(tmp_path):
    import cv2
    from imwatermark import WatermarkDecoder

    profile = tmp_path / "marked.toml"
    profile.write_text(
        '[defaults]\nweights = "tiny"\nsteps = 2\nrepeats = 1\nwarmup = 0\nsampler = "ddim"\n'
        '[[scenario]]\nname = "v1"\nmodel = "sd-v1"\nwidth = 512\nheight = 512\nbatch = 2\n'
        '[[scenario]]\nname = "v2"\nmodel = "sd-v2.1"\nwidth = 768\nheight = 768\n'
    )
    out = tmp_path / "run"
    assert main(["bench", str(profile), "--out", str(out)]) == 0
    expected = {"v1": b"StableDiffusionV1", "v2": b"SDV2"}
    pngs = sorted((out / "images").glob("*.png"))
    assert [p.name for p in pngs] == ["v1-0.png", "v1-1.png", "v2-0.png"]
    for png in pngs:
        message = expected[png.name.split("-")[0]]
        bgr = cv2.imread(str(png), cv2.IMREAD_COLOR)
        assert WatermarkDecoder("bytes", len(message) * 8).decode(bgr, "dwtDct") == message, png.name
