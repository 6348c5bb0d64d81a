"""Write a diffusers pipeline's weights in the original LDM single-file layout (test support).

The inverse of diffusers' own single-file converter, so tests can write `.safetensors` / `.ckpt`
files shaped like the checkpoints users download (sd-v1-4.ckpt, v2-1_768-ema-pruned.safetensors,
x4-upscaler-ema.safetensors) from tiny models, and check they load back bit for bit.
"""

from __future__ import annotations

import torch


def _resnet(key: str) -> str:
    return (
        key.replace("norm1", "in_layers.0")
        .replace("conv1", "in_layers.2")
        .replace("norm2", "out_layers.0")
        .replace("conv2", "out_layers.3")
        .replace("time_emb_proj", "emb_layers.1")
        .replace("conv_shortcut", "skip_connection")
    )


def unet_to_ldm(state: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    per_block = config["layers_per_block"]
    fixed = {
        "time_embedding.linear_1": "time_embed.0",
        "time_embedding.linear_2": "time_embed.2",
        "conv_in": "input_blocks.0.0",
        "conv_norm_out": "out.0",
        "conv_out": "out.2",
        "class_embedding": "label_emb",
    }
    up_has_attention = ["CrossAttn" in t for t in config["up_block_types"]]
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        head = ".".join(parts[:2]) if parts[0] in ("time_embedding",) else parts[0]
        if head in fixed:
            new = key.replace(head, fixed[head], 1)
        elif parts[0] == "down_blocks":
            block, kind, index = int(parts[1]), parts[2], int(parts[3])
            rest = ".".join(parts[4:])
            if kind == "resnets":
                new = f"input_blocks.{3 * block + index + 1}.0.{_resnet(rest)}"
            elif kind == "attentions":
                new = f"input_blocks.{3 * block + index + 1}.1.{rest}"
            else:  # downsamplers.0.conv
                new = f"input_blocks.{3 * (block + 1)}.0.op.{parts[-1]}"
        elif parts[0] == "up_blocks":
            block, kind, index = int(parts[1]), parts[2], int(parts[3])
            rest = ".".join(parts[4:])
            base = (per_block + 1) * block
            if kind == "resnets":
                new = f"output_blocks.{base + index}.0.{_resnet(rest)}"
            elif kind == "attentions":
                new = f"output_blocks.{base + index}.1.{rest}"
            else:  # upsamplers.0.conv
                slot = 2 if up_has_attention[block] else 1
                new = f"output_blocks.{base + per_block}.{slot}.conv.{parts[-1]}"
        elif parts[0] == "mid_block":
            kind, index = parts[1], int(parts[2])
            rest = ".".join(parts[3:])
            new = f"middle_block.{2 * index}.{_resnet(rest)}" if kind == "resnets" else f"middle_block.1.{rest}"
        else:
            raise KeyError(f"no LDM name for UNet key {key}")
        out["model.diffusion_model." + new] = value
    return out


def _vae_attention(rest: str, value: torch.Tensor) -> tuple[str, torch.Tensor]:
    names = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
    for new, old in names.items():
        if rest.startswith(new + "."):
            rest = old + rest[len(new) :]
            break
    if value.dim() == 2:  # linear in diffusers, 1x1 conv in LDM
        value = value[:, :, None, None]
    return rest, value


def vae_to_ldm(state: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    n_up = len(config["up_block_types"])
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[1] in ("down_blocks", "up_blocks"):
            side, block, kind = parts[0], int(parts[2]), parts[3]
            rest = ".".join(parts[5:])
            ldm_block = block if side == "encoder" else n_up - 1 - block
            stage = "down" if side == "encoder" else "up"
            if kind == "resnets":
                new = f"{side}.{stage}.{ldm_block}.block.{parts[4]}.{rest.replace('conv_shortcut', 'nin_shortcut')}"
            else:
                sampler = "downsample" if kind == "downsamplers" else "upsample"
                new = f"{side}.{stage}.{ldm_block}.{sampler}.{parts[-2]}.{parts[-1]}"
        elif parts[1] == "mid_block":
            side, kind, index = parts[0], parts[2], int(parts[3])
            rest = ".".join(parts[4:])
            if kind == "resnets":
                new = f"{side}.mid.block_{index + 1}.{rest.replace('conv_shortcut', 'nin_shortcut')}"
            else:
                rest, value = _vae_attention(rest, value)
                new = f"{side}.mid.attn_1.{rest}"
        else:
            new = key.replace("conv_norm_out", "norm_out")
        out["first_stage_model." + new] = value
    return out


def _text_model_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers 5 dropped the `text_model.` level that the original layout (and transformers 4) has."""
    return {(k if k.startswith("text_model.") else "text_model." + k): v for k, v in state.items()}


def clip_to_ldm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = _text_model_keys(state)
    return {"cond_stage_model.transformer." + k: v for k, v in state.items() if not k.endswith("position_ids")}


def open_clip_to_ldm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = _text_model_keys(state)
    prefix = "cond_stage_model.model."
    fixed = {
        "text_model.embeddings.position_embedding.weight": "positional_embedding",
        "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
        "text_model.final_layer_norm.weight": "ln_final.weight",
        "text_model.final_layer_norm.bias": "ln_final.bias",
    }
    out = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if key in fixed:
            out[prefix + fixed[key]] = value
            continue
        if not key.startswith("text_model.encoder.layers."):
            continue
        layer = key.split(".")[3]
        rest = ".".join(key.split(".")[4:])
        base = f"{prefix}transformer.resblocks.{layer}."
        if rest.startswith("self_attn.") and rest.split(".")[1] in ("q_proj", "k_proj", "v_proj"):
            qkv.setdefault(f"{base}attn.in_proj_{rest.split('.')[-1]}", {})[rest.split(".")[1]] = value
            continue
        rest = (
            rest.replace("layer_norm1", "ln_1")
            .replace("layer_norm2", "ln_2")
            .replace("mlp.fc1", "mlp.c_fc")
            .replace("mlp.fc2", "mlp.c_proj")
            .replace("self_attn.out_proj", "attn.out_proj")
        )
        out[base + rest] = value
    for key, parts in qkv.items():
        out[key] = torch.cat([parts["q_proj"], parts["k_proj"], parts["v_proj"]])
    hidden = state["text_model.final_layer_norm.weight"].shape[0]
    out[prefix + "text_projection"] = torch.eye(hidden)
    return out


def pipeline_to_ldm(pipe) -> dict[str, torch.Tensor]:
    state = {}
    state |= unet_to_ldm(pipe.unet.state_dict(), dict(pipe.unet.config))
    state |= vae_to_ldm(pipe.vae.state_dict(), dict(pipe.vae.config))
    text = pipe.text_encoder.state_dict()
    state |= open_clip_to_ldm(text) if pipe.text_encoder.config.hidden_act == "gelu" else clip_to_ldm(text)
    return {k: v.contiguous() for k, v in state.items()}
