import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL
from ldm_layout import pipeline_to_ldm
from safetensors.torch import load_file, save_file

from suite.models import WeightsError, load_pipeline
from suite.models.architectures import ARCHITECTURES
from suite.models.synthetic import parameter_counts

TASK = {"sd-v1": "txt2img", "sd-v2.1": "txt2img", "sd-x4-upscaler": "upscale"}


def _same_weights(a, b) -> None:
    for component in ("unet", "vae", "text_encoder"):
        sa, sb = getattr(a, component).state_dict(), getattr(b, component).state_dict()
        assert set(sa) == set(sb), component
        for key in sa:
            assert torch.equal(sa[key], sb[key]), f"{component}.{key}"


def test_full_size_architectures_have_their_published_sizes():
    counts = {name: parameter_counts(arch) for name, arch in ARCHITECTURES.items()}
    assert round(counts["sd-v1"]["unet"] / 1e6, 1) == 859.5
    assert round(counts["sd-v2.1"]["unet"] / 1e6, 1) == 865.9
    assert round(counts["sd-x4-upscaler"]["unet"] / 1e6, 1) == 473.4
    assert round(counts["sd-v1"]["text_encoder"] / 1e6, 1) == 123.1  # CLIP ViT-L/14 text tower
    assert round(counts["sd-v2.1"]["text_encoder"] / 1e6, 1) == 340.4  # OpenCLIP ViT-H, 23 of 24 layers
    assert round(counts["sd-v1"]["vae"] / 1e6, 1) == 83.7


def test_synthetic_weights_are_seeded_and_made_on_the_target_device():
    a, info = load_pipeline("sd-v1", "tiny", seed=1)
    b, _ = load_pipeline("sd-v1", "tiny", seed=1)
    c, _ = load_pipeline("sd-v1", "tiny", seed=2)
    _same_weights(a, b)
    assert not torch.equal(a.unet.conv_in.weight, c.unet.conv_in.weight)
    assert all(p.device.type == "cpu" for p in a.unet.parameters())
    assert info.source == "tiny" and info.hash == "seed:1" and info.parameters["unet"] > 0


def test_half_precision_synthetic_weights_stay_finite():
    pipe, info = load_pipeline("sd-v2.1", "tiny", dtype=torch.float16)
    assert pipe.unet.dtype == torch.float16 and info.dtype == "float16"
    assert all(torch.isfinite(p).all() for p in pipe.unet.parameters())


def test_diffusers_folder_loads_offline_with_identical_weights(tiny, tmp_path):
    tiny("sd-v1").save_pretrained(tmp_path / "sd15")
    pipe, info = load_pipeline("sd-v1", str(tmp_path / "sd15"))
    _same_weights(tiny("sd-v1"), pipe)
    assert (info.source, info.size) == ("folder", "tiny")
    assert info.hash.startswith("sha256-sample:") and info.size_bytes > 0


def test_a_folder_of_other_widths_loads_and_is_recorded_as_custom(tiny, tmp_path):
    folder = tmp_path / "odd"
    tiny("sd-v1").save_pretrained(folder)
    wider = dict(tiny("sd-v1").vae.config) | {"block_out_channels": [16, 16, 32, 32], "norm_num_groups": 8}
    AutoencoderKL.from_config(wider).save_pretrained(folder / "vae")
    pipe, info = load_pipeline("sd-v1", str(folder))
    assert info.size == "custom" and pipe.vae.encoder.conv_in.out_channels == 16


@pytest.mark.parametrize("component", ["unet", "text_encoder"])
def test_a_folder_missing_tensors_is_refused(tiny, tmp_path, component):
    # unloaded UNet tensors would crash later as meta tensors; text encoder ones would stay random
    folder = tmp_path / "sd15"
    tiny("sd-v1").save_pretrained(folder)
    weights = next((folder / component).glob("*.safetensors"))
    state = load_file(weights)
    key = sorted(state)[0]
    del state[key]
    save_file(state, weights)
    with pytest.raises(
        WeightsError,
        match=rf"^{re.escape(str(folder))}: incomplete: it lacks 1 {component} tensor \({re.escape(key)}\)$",
    ):
        load_pipeline("sd-v1", str(folder))


@pytest.mark.parametrize("model", list(TASK))
@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt"])
def test_single_file_in_the_original_layout_loads_offline(tiny, tmp_path, model, suffix):
    state = pipeline_to_ldm(tiny(model))
    path = tmp_path / f"{model}{suffix}"
    if suffix == ".safetensors":
        save_file(state, path)
    else:
        torch.save({"state_dict": state, "global_step": 470000}, path)
    pipe, info = load_pipeline(model, str(path), task=TASK[model])
    _same_weights(tiny(model), pipe)
    assert info.source == "single-file" and info.size == "tiny" and info.location == str(path)


def test_files_that_are_not_checkpoints_get_one_clear_error(tmp_path):
    junk = tmp_path / "model.ckpt"
    junk.write_bytes(b"\x00not a checkpoint" * 100)
    with pytest.raises(WeightsError, match=r"model.ckpt: not a PyTorch checkpoint"):
        load_pipeline("sd-v1", str(junk))
    text = tmp_path / "model.safetensors"
    text.write_text("hello")
    with pytest.raises(WeightsError, match=r"model.safetensors: not a readable .safetensors file"):
        load_pipeline("sd-v1", str(text))
    other = tmp_path / "lora.safetensors"
    save_file({"lora_unet_down.weight": torch.zeros(4, 4)}, other)
    with pytest.raises(WeightsError, match=r"lora.safetensors: not a Stable Diffusion checkpoint in the original"):
        load_pipeline("sd-v1", str(other))


def test_a_checkpoint_of_another_architecture_is_named_as_such(tiny, tmp_path):
    path = tmp_path / "v1-5.safetensors"
    save_file(pipeline_to_ldm(tiny("sd-v1")), path)
    with pytest.raises(WeightsError, match=r"v1-5.safetensors: expected an sd-v2.1 checkpoint .*found an sd-v1 one"):
        load_pipeline("sd-v2.1", str(path))
    tiny("sd-v2.1").save_pretrained(tmp_path / "sd21")
    with pytest.raises(WeightsError, match=r"sd21: expected an sd-x4-upscaler pipeline"):
        load_pipeline("sd-x4-upscaler", str(tmp_path / "sd21"), task="upscale")


def test_unknown_weights_and_tasks_are_explained(tmp_path):
    with pytest.raises(WeightsError, match="no such file or folder, and not a hub id"):
        load_pipeline("sd-v1", "not a thing")
    with pytest.raises(WeightsError, match="no such file"):
        load_pipeline("sd-v1", str(tmp_path / "missing.safetensors"))
    with pytest.raises(ValueError, match="does not do 'upscale'"):
        load_pipeline("sd-v1", "tiny", task="upscale")


def test_a_tensor_left_unloaded_anyway_is_a_weights_error_not_a_crash(tiny, tmp_path, monkeypatch):
    # the last line of defence, for whatever the checks before loading do not foresee
    monkeypatch.setattr("suite.models.checkpoints.require_complete", lambda location, missing: None)
    folder = tmp_path / "sd15"
    tiny("sd-v1").save_pretrained(folder)
    weights = next((folder / "unet").glob("*.safetensors"))
    state = load_file(weights)
    del state["conv_out.weight"]
    save_file(state, weights)
    with pytest.raises(WeightsError, match=rf"^{re.escape(str(folder))}: some weights were never loaded"):
        load_pipeline("sd-v1", str(folder))


def _cache_snapshot(cache: Path, repo_id: str, pipe) -> None:
    """A hub repository as huggingface_hub keeps it in its cache: refs/main naming a snapshot folder."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    revision = "0123456789abcdef0123456789abcdef01234567"
    pipe.save_pretrained(repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)


def test_a_hub_id_in_the_cache_loads_offline_with_the_folder_checks(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    _cache_snapshot(tmp_path, "sdsuite-tests/tiny-sd", tiny("sd-v1"))
    pipe, info = load_pipeline("sd-v1", "sdsuite-tests/tiny-sd")
    _same_weights(tiny("sd-v1"), pipe)
    assert (info.source, info.location, info.size) == ("hub", "sdsuite-tests/tiny-sd", "tiny")
    assert info.hash.startswith("sha256-sample:") and info.size_bytes > 0
    with pytest.raises(
        WeightsError,
        match=r"^sdsuite-tests/tiny-sd \(downloaded to .*\): expected an sd-x4-upscaler pipeline, found .*this is an sd-v1",
    ):
        load_pipeline("sd-x4-upscaler", "sdsuite-tests/tiny-sd", task="upscale")


def test_a_hub_id_offline_and_not_cached_is_explained():
    with pytest.raises(WeightsError, match=r"^someone/absent: no such file or folder, and HF_HUB_OFFLINE is set"):
        load_pipeline("sd-v1", "someone/absent")


def test_a_hub_id_without_a_network_is_explained(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)

    def unreachable(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", unreachable)  # in place of the tests' guard, which would fail the test
    with pytest.raises(WeightsError, match=r"^someone/absent: no such file or folder, and it could not be fetched"):
        load_pipeline("sd-v1", "someone/absent")


def test_the_bench_command_goes_offline_before_huggingface_hub_is_imported(tmp_path):
    # what the workers' forkserver inherits: HF_HUB_OFFLINE=1 unless a hub id is to be loaded
    code = """
import os, sys
from suite.cli import main
os.environ.pop("HF_HUB_OFFLINE", None)
main(["bench", "smoke", "--list"])
print(os.environ.get("HF_HUB_OFFLINE"), "huggingface_hub" in sys.modules)
os.environ.pop("HF_HUB_OFFLINE", None)
main(["bench", "smoke", "--list", "--weights", "someone/sd-model"])
print(os.environ.get("HF_HUB_OFFLINE"), "huggingface_hub" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    assert [line for line in out.splitlines() if line.endswith(("True", "False"))] == ["1 False", "None False"]


def test_bench_weights_run_only_the_scenarios_of_their_architecture(tiny, tmp_path, capsys):
    from suite.cli import main

    path = tmp_path / "v1.safetensors"
    save_file(pipeline_to_ldm(tiny("sd-v1")), path)
    assert main(["bench", "smoke", "--list", "--weights", str(path)]) == 0
    out, err = capsys.readouterr()
    listed = [line.split()[1] for line in out.splitlines()]
    assert listed and set(listed) == {"sd-v1"}
    assert "holds an sd-v1 model: leaving out" in err and "v2-txt2img" in err

    assert main(["bench", "smoke", "--list", "--weights", str(tmp_path / "absent.safetensors")]) == 2
    assert "absent.safetensors: no such file" in capsys.readouterr().err
