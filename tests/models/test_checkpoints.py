"""Single-file checkpoints: what is loaded, what is refused, and how a wrong file is named."""

import os
import pickle
import shlex
import subprocess
import sys
import types
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest
import torch
from ldm_layout import pipeline_to_ldm
from safetensors.torch import save_file

from suite.cli import main
from suite.models import WeightsError, load_pipeline
from suite.models.architectures import ARCHITECTURES
from suite.models.checkpoints import LIGHTNING_CHECKPOINT, identify, missing_tensors
from suite.models.synthetic import shipped_meta_models

MODELS = list(ARCHITECTURES)


def _same_weights(a, b) -> None:
    for component in ("unet", "vae", "text_encoder"):
        sa, sb = getattr(a, component).state_dict(), getattr(b, component).state_dict()
        assert set(sa) == set(sb), component
        assert all(torch.equal(sa[k], sb[k]) for k in sa), component


def _full_size_shapes(model: str) -> dict[str, tuple[int, ...]]:
    """Names and shapes of a full-size checkpoint in the original layout, as released (meta: no memory)."""
    state = pipeline_to_ldm(SimpleNamespace(**shipped_meta_models(ARCHITECTURES[model])))
    return {k: tuple(v.shape) for k, v in state.items()}


def _reshaped(shapes: dict, pattern: str, shape: tuple[int, ...]) -> dict:
    return {k: (shape if pattern in k else v) for k, v in shapes.items()}


@pytest.mark.parametrize("model", MODELS)
def test_full_size_checkpoints_are_identified_and_complete(model):
    shapes = _full_size_shapes(model)
    info = identify(Path(f"{model}.ckpt"), shapes)
    assert (info.architecture, info.tiny) == (model, False)
    assert missing_tensors(shapes, model, tiny=False) == {"unet": [], "vae": [], "text_encoder": []}


@pytest.mark.parametrize(
    ("model", "pattern", "shape", "expected"),
    [
        (
            "sd-v2.1",
            "input_blocks.0.0.weight",
            (320, 9, 3, 3),
            r"UNet input channels 9 \(expected 4\); this looks like an SD 2 inpainting checkpoint; sdsuite supports",
        ),
        ("sd-v1", "input_blocks.0.0.weight", (320, 9, 3, 3), r"this looks like an SD 1.x inpainting checkpoint"),
        ("sd-v2.1", "input_blocks.0.0.weight", (320, 5, 3, 3), r"this looks like an SD 2 depth-to-image checkpoint"),
        (
            "sd-v1",
            "token_embedding.weight",
            (49408, 1024),
            r"sd-v1, but it has text encoder width 1024 \(expected 768\)",
        ),
        ("sd-v1", "attn2.to_k.weight", (320, 1024), r"sd-v1, but it has cross-attention width 1024 \(expected 768\)"),
        ("sd-v2.1", "first_stage_model.encoder.conv_in.weight", (64, 3, 3, 3), r"VAE width 64 \(expected 128\)"),
    ],
)
def test_a_variant_of_another_shape_is_refused_with_what_differs(model, pattern, shape, expected):
    shapes = _reshaped(_full_size_shapes(model), pattern, shape)
    with pytest.raises(
        WeightsError, match=r"^variant.ckpt: matches no architecture sdsuite ships; nearest .*" + expected
    ):
        identify(Path("variant.ckpt"), shapes)


def test_sdxl_and_lora_files_are_named_for_what_they_are():
    shapes = _full_size_shapes("sd-v1")
    sdxl = {
        k.replace("cond_stage_model.transformer.", "conditioner.embedders.0.transformer."): v for k, v in shapes.items()
    }
    with pytest.raises(WeightsError, match=r"no text encoder found .*this looks like an SDXL checkpoint"):
        identify(Path("sdxl.safetensors"), sdxl)
    with pytest.raises(WeightsError, match=r"not a Stable Diffusion checkpoint .*this looks like a LoRA"):
        identify(Path("lora.safetensors"), {"lora_unet_down_blocks_0.alpha": (1,)})


def _save_lightning_checkpoint(path: Path, state: dict) -> None:
    """Save as sd-v1-4.ckpt is: Lightning's ModelCheckpoint class keys the callback state.

    A stand-in class is registered under Lightning's module path only while saving, as pickle requires.
    """
    module_name, _, class_name = LIGHTNING_CHECKPOINT.rpartition(".")
    modules = {
        name: types.ModuleType(name) for name in ("pytorch_lightning", "pytorch_lightning.callbacks", module_name)
    }
    stand_in = type(class_name, (), {"__module__": module_name})
    setattr(modules[module_name], class_name, stand_in)
    with mock.patch.dict(sys.modules, modules):
        callbacks = {stand_in: {"monitor": None, "best_model_score": None, "best_model_path": "/fsx/sd-v1-4.ckpt"}}
        torch.save({"state_dict": state, "global_step": 470000, "callbacks": callbacks}, path)


def test_a_lightning_checkpoint_like_sd_v1_4_loads_without_lightning(tiny, tmp_path):
    path = tmp_path / "sd-v1-4.ckpt"
    _save_lightning_checkpoint(path, pipeline_to_ldm(tiny("sd-v1")))
    with pytest.raises(pickle.UnpicklingError, match=LIGHTNING_CHECKPOINT.replace(".", r"\.")):
        torch.load(path, weights_only=True)  # the global is really there: torch alone refuses the file
    pipe, info = load_pipeline("sd-v1", str(path))
    _same_weights(tiny("sd-v1"), pipe)
    assert info.source == "single-file" and "pytorch_lightning" not in sys.modules


class _RunsShell:
    """Unpickling this runs a shell command: what a malicious .ckpt does."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_a_ckpt_that_would_run_code_is_refused_and_runs_nothing(tiny, tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.ckpt"
    payload = _RunsShell(f"touch {shlex.quote(str(marker))}")
    torch.save({"state_dict": pipeline_to_ldm(tiny("sd-v1")), "payload": payload}, path)

    with pytest.raises(WeightsError) as refused:
        load_pipeline("sd-v1", str(path))
    message = str(refused.value)
    assert message.startswith(f"{path}: refused: its pickle refers to GLOBAL {os.system.__module__}.system,")
    assert "weights_only=False" not in message and "add_safe_globals" not in message
    assert not marker.exists()

    # the payload is live: an ordinary unpickling, in another process, runs it
    subprocess.run([sys.executable, "-c", f"import torch; torch.load({str(path)!r}, weights_only=False)"], check=True)
    assert marker.exists()


@pytest.mark.parametrize(
    ("model", "key", "lacks"),
    [
        ("sd-v1", "model.diffusion_model.out.2.weight", r"1 unet tensor \(conv_out.weight\)"),
        ("sd-v1", "first_stage_model.decoder.conv_out.weight", r"1 vae tensor \(decoder.conv_out.weight\)"),
        (
            "sd-v1",
            "cond_stage_model.transformer.text_model.encoder.layers.1.mlp.fc2.weight",
            r"1 text_encoder tensor \(encoder.layers.1.mlp.fc2.weight\)",
        ),
        (
            "sd-v2.1",
            "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight",
            r"3 text_encoder tensors \(encoder.layers.0.self_attn.k_proj.weight, .*q_proj.*v_proj.weight\)",
        ),
    ],
)
def test_a_checkpoint_missing_tensors_is_refused_before_loading(tiny, tmp_path, capsys, model, key, lacks):
    state = pipeline_to_ldm(tiny(model))
    del state[key]
    path = tmp_path / "pruned.safetensors"
    save_file(state, path)
    expected = rf"^{path}: incomplete: it lacks {lacks}$"
    with pytest.raises(WeightsError, match=expected):
        load_pipeline(model, str(path))
    assert main(["models", "check", str(path)]) == 1
    assert "incomplete: it lacks" in capsys.readouterr().err


def test_models_check_describes_a_complete_file(tiny, tmp_path, capsys):
    path = tmp_path / "up.safetensors"
    save_file(pipeline_to_ldm(tiny("sd-x4-upscaler")), path)
    assert main(["models", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "sd-x4-upscaler (tiny test size), complete" in out and "UNet 7 input channels" in out
    assert main(["models", "check", str(path), "--model", "sd-v1"]) == 1
    assert "expected an sd-v1 checkpoint" in capsys.readouterr().err
