import pickle

import pytest
import torch
from ldm_layout import pipeline_to_ldm
from safetensors.torch import save_file

from suite.cli import main
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


@pytest.fixture(scope="module")
def tiny():
    return {m: load_pipeline(m, "tiny", task=t, seed=7)[0] for m, t in TASK.items()}


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
    tiny["sd-v1"].save_pretrained(tmp_path / "sd15")
    pipe, info = load_pipeline("sd-v1", str(tmp_path / "sd15"))
    _same_weights(tiny["sd-v1"], pipe)
    assert info.source == "folder" and info.hash.startswith("sha256-sample:") and info.size_bytes > 0


@pytest.mark.parametrize("model", list(TASK))
@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt"])
def test_single_file_in_the_original_layout_loads_offline(tiny, tmp_path, model, suffix):
    state = pipeline_to_ldm(tiny[model])
    path = tmp_path / f"{model}{suffix}"
    if suffix == ".safetensors":
        save_file(state, path)
    else:
        torch.save({"state_dict": state, "global_step": 470000}, path)
    pipe, info = load_pipeline(model, str(path), task=TASK[model])
    _same_weights(tiny[model], pipe)
    assert info.source == "single-file" and info.size == "tiny" and info.location == str(path)


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_ckpt_that_would_run_code_is_refused_and_runs_nothing(tiny, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": pipeline_to_ldm(tiny["sd-v1"]), "payload": _RunsCode(str(marker))}, path)
    with pytest.raises(WeightsError, match=r"evil.ckpt: refused: .*could run code"):
        load_pipeline("sd-v1", str(path))
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError):  # the payload is real: weights_only=False would have run it
        torch.load(path, weights_only=True)


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
    save_file(pipeline_to_ldm(tiny["sd-v1"]), path)
    with pytest.raises(WeightsError, match=r"v1-5.safetensors: expected an sd-v2.1 checkpoint .*found an sd-v1 one"):
        load_pipeline("sd-v2.1", str(path))
    tiny["sd-v2.1"].save_pretrained(tmp_path / "sd21")
    with pytest.raises(WeightsError, match=r"sd21: expected an sd-x4-upscaler pipeline"):
        load_pipeline("sd-x4-upscaler", str(tmp_path / "sd21"), task="upscale")


def test_unknown_weights_and_tasks_are_explained(tmp_path):
    with pytest.raises(WeightsError, match="no such file or folder, and not a hub id"):
        load_pipeline("sd-v1", "not a thing")
    with pytest.raises(WeightsError, match="no such file"):
        load_pipeline("sd-v1", str(tmp_path / "missing.safetensors"))
    with pytest.raises(ValueError, match="does not do 'upscale'"):
        load_pipeline("sd-v1", "tiny", task="upscale")


def test_hub_ids_fail_clearly_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError, match="could not load from the Hugging Face hub"):
        load_pipeline("sd-v1", "someone/some-model-that-is-not-cached")


def test_models_command_lists_and_checks(tiny, tmp_path, capsys):
    assert main(["models"]) == 0
    assert "sd-x4-upscaler" in capsys.readouterr().out
    path = tmp_path / "up.safetensors"
    save_file(pipeline_to_ldm(tiny["sd-x4-upscaler"]), path)
    assert main(["models", "check", str(path)]) == 0
    assert "sd-x4-upscaler (tiny test size), OpenCLIP" in capsys.readouterr().out
    assert main(["models", "check", str(path), "--model", "sd-v1"]) == 1
    assert "expected an sd-v1 checkpoint" in capsys.readouterr().err
