"""The shipped configs against the original Stable Diffusion configs they must reproduce.

The excerpts below are the network parts of the original yaml files, verbatim in substance:
CompVis/stable-diffusion configs/stable-diffusion/v1-inference.yaml, Stability-AI/stablediffusion
configs/stable-diffusion/v2-inference-v.yaml and x4-upscaling.yaml. diffusers' own converters (what
`from_single_file` runs with `original_config`) turn them into diffusers configs, which must equal
ours; schedules, scaling and text encoders are checked against the same files.
"""

import json

import pytest
import torch
import yaml
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.loaders.single_file_utils import (
    create_unet_diffusers_config_from_ldm,
    create_vae_diffusers_config_from_ldm,
)

from suite.models.architectures import ARCHITECTURES
from suite.models.synthetic import parameter_counts

V1_INFERENCE = """
model:
  params:
    linear_start: 0.00085
    linear_end: 0.0120
    timesteps: 1000
    image_size: 64
    channels: 4
    scale_factor: 0.18215
    unet_config:
      params:
        image_size: 32
        in_channels: 4
        out_channels: 4
        model_channels: 320
        attention_resolutions: [ 4, 2, 1 ]
        num_res_blocks: 2
        channel_mult: [ 1, 2, 4, 4 ]
        num_heads: 8
        use_spatial_transformer: True
        transformer_depth: 1
        context_dim: 768
        legacy: False
    first_stage_config:
      params:
        embed_dim: 4
        ddconfig: {double_z: true, z_channels: 4, resolution: 256, in_channels: 3, out_ch: 3, ch: 128,
                   ch_mult: [1, 2, 4, 4], num_res_blocks: 2, attn_resolutions: [], dropout: 0.0}
    cond_stage_config:
      target: ldm.modules.encoders.modules.FrozenCLIPEmbedder
"""
V2_INFERENCE_V = """
model:
  params:
    parameterization: "v"
    linear_start: 0.00085
    linear_end: 0.0120
    timesteps: 1000
    image_size: 96
    channels: 4
    scale_factor: 0.18215
    unet_config:
      params:
        image_size: 32
        in_channels: 4
        out_channels: 4
        model_channels: 320
        attention_resolutions: [ 4, 2, 1 ]
        num_res_blocks: 2
        channel_mult: [ 1, 2, 4, 4 ]
        num_head_channels: 64
        use_spatial_transformer: True
        use_linear_in_transformer: True
        transformer_depth: 1
        context_dim: 1024
        legacy: False
    first_stage_config:
      params:
        embed_dim: 4
        ddconfig: {double_z: true, z_channels: 4, resolution: 256, in_channels: 3, out_ch: 3, ch: 128,
                   ch_mult: [1, 2, 4, 4], num_res_blocks: 2, attn_resolutions: [], dropout: 0.0}
    cond_stage_config:
      target: ldm.modules.encoders.modules.FrozenOpenCLIPEmbedder
      params:
        freeze: True
        layer: "penultimate"
"""
X4_UPSCALING = """
model:
  params:
    parameterization: "v"
    linear_start: 0.0001
    linear_end: 0.02
    timesteps: 1000
    image_size: 128
    channels: 4
    scale_factor: 0.08333
    low_scale_config:
      params:
        noise_schedule_config:
          linear_start: 0.0001
          linear_end: 0.02
        max_noise_level: 350
    unet_config:
      params:
        num_classes: 1000
        image_size: 128
        in_channels: 7
        out_channels: 4
        model_channels: 256
        attention_resolutions: [ 2,4,8]
        num_res_blocks: 2
        channel_mult: [ 1, 2, 2, 4]
        disable_self_attentions: [True, True, True, False]
        disable_middle_self_attn: False
        num_heads: 8
        use_spatial_transformer: True
        transformer_depth: 1
        context_dim: 1024
        legacy: False
        use_linear_in_transformer: True
    first_stage_config:
      params:
        embed_dim: 4
        ddconfig: {double_z: True, z_channels: 4, resolution: 256, in_channels: 3, out_ch: 3, ch: 128,
                   ch_mult: [1, 2, 4], num_res_blocks: 2, attn_resolutions: [], dropout: 0.0}
    cond_stage_config:
      target: ldm.modules.encoders.modules.FrozenOpenCLIPEmbedder
      params:
        freeze: True
        layer: "penultimate"
"""
ORIGINAL = {
    name: yaml.safe_load(text)
    for name, text in [("sd-v1", V1_INFERENCE), ("sd-v2.1", V2_INFERENCE_V), ("sd-x4-upscaler", X4_UPSCALING)]
}
# The text towers the cond_stage targets load: OpenAI's CLIP ViT-L/14 and OpenCLIP's ViT-H-14, whose
# "penultimate" layer means the last of its 24 blocks is not used.
TEXT_ENCODERS = {
    "ldm.modules.encoders.modules.FrozenCLIPEmbedder": dict(
        hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, hidden_act="quick_gelu"
    ),
    "ldm.modules.encoders.modules.FrozenOpenCLIPEmbedder": dict(
        hidden_size=1024, num_hidden_layers=23, num_attention_heads=16, intermediate_size=4096, hidden_act="gelu"
    ),
}
# Where the shipped configs deliberately differ from diffusers' reading of the yaml: SD 2.1 computes
# attention scores in fp32 (ATTN_PRECISION in Stability's attention.py, not in the yaml), which diffusers
# calls upcast_attention; the x4 VAE's sample_size is the yaml's `resolution: 256`, where the converter
# puts the output size (512).
DEPARTURES = {("sd-v2.1", "unet"): {"upcast_attention"}, ("sd-x4-upscaler", "vae"): {"sample_size"}}


@pytest.mark.parametrize("model", list(ARCHITECTURES))
@pytest.mark.parametrize(
    ("component", "model_class", "convert"),
    [
        ("unet", UNet2DConditionModel, create_unet_diffusers_config_from_ldm),
        ("vae", AutoencoderKL, create_vae_diffusers_config_from_ldm),
    ],
)
@pytest.mark.filterwarnings("ignore::FutureWarning")  # image_size is deprecated, and the only offline way
def test_shipped_unet_and_vae_are_diffusers_reading_of_the_original_yaml(model, component, model_class, convert):
    params = ORIGINAL[model]["model"]["params"]
    # the output size: latent size times the VAE's downscaling (2 per level after the first)
    image_size = params["image_size"] * 2 ** (len(params["first_stage_config"]["params"]["ddconfig"]["ch_mult"]) - 1)
    with torch.device("meta"):  # built, so that defaults on either side are filled in alike
        ours = model_class.from_config(ARCHITECTURES[model].component_config(component)).config
        theirs = model_class.from_config(convert(ORIGINAL[model], {}, image_size=image_size)).config
    keys = {k for k in ours.keys() | theirs.keys() if not k.startswith("_")}
    differing = {k: (ours.get(k), theirs.get(k)) for k in keys if ours.get(k) != theirs.get(k)}
    assert set(differing) == DEPARTURES.get((model, component), set()), differing


@pytest.mark.parametrize("model", list(ARCHITECTURES))
def test_shipped_schedules_scaling_and_text_encoders_match_the_original_yaml(model):
    arch, params = ARCHITECTURES[model], ORIGINAL[model]["model"]["params"]
    scheduler = arch.component_config("scheduler")
    # LDM's "linear" schedule is linear in sqrt(beta): diffusers' scaled_linear
    assert (scheduler["beta_start"], scheduler["beta_end"]) == (params["linear_start"], params["linear_end"])
    assert (scheduler["beta_schedule"], scheduler["num_train_timesteps"]) == ("scaled_linear", params["timesteps"])
    v = params.get("parameterization") == "v"
    assert scheduler.get("prediction_type", "epsilon") == ("v_prediction" if v else "epsilon")
    assert arch.component_config("vae")["scaling_factor"] == params["scale_factor"]
    text = arch.component_config("text_encoder")
    assert {k: text[k] for k in TEXT_ENCODERS[params["cond_stage_config"]["target"]]} == (
        TEXT_ENCODERS[params["cond_stage_config"]["target"]]
    )
    if "low_scale_config" in params:
        low = params["low_scale_config"]["params"]
        low_res = arch.component_config("low_res_scheduler")
        noise = low["noise_schedule_config"]
        assert (low_res["beta_start"], low_res["beta_end"]) == (noise["linear_start"], noise["linear_end"])
        assert arch.pipeline_index()["max_noise_level"] == low["max_noise_level"]


# What shrinking may change; everything else (block types, channels in and out, class embeddings,
# projections, attention options, activations, schedulers, scaling) must stay as in the full model.
SIZE_KEYS = {
    "unet": {"block_out_channels", "attention_head_dim", "cross_attention_dim", "norm_num_groups", "sample_size"},
    "vae": {"block_out_channels", "norm_num_groups", "layers_per_block", "sample_size"},
    "text_encoder": {"hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers", "projection_dim"},
}


@pytest.mark.parametrize("model", list(ARCHITECTURES))
def test_tiny_models_keep_the_layout_of_the_full_ones(model):
    full, tiny = ARCHITECTURES[model].config_dir(False), ARCHITECTURES[model].config_dir(True)
    files = sorted(p.relative_to(full) for p in full.rglob("*.json"))
    assert files == sorted(p.relative_to(tiny) for p in tiny.rglob("*.json"))
    for relative in files:
        a, b = (json.loads((root / relative).read_text()) for root in (full, tiny))
        shrunk = SIZE_KEYS.get(relative.parts[0], set())
        assert a.keys() == b.keys(), relative
        assert {k: v for k, v in a.items() if k not in shrunk} == {k: v for k, v in b.items() if k not in shrunk}
    assert sum(parameter_counts(ARCHITECTURES[model], tiny=True).values()) < 10_000_000
