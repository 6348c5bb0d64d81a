"""`sdsuite models`: the architectures the suite ships, and a check of a checkpoint file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from suite.errors import EXIT_CODES_TEXT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.add_parser(
        "list", help="the shipped architectures with their parameter counts (default)", epilog=EXIT_CODES_TEXT
    )
    check = sub.add_parser(
        "check",
        help="say which architecture a .safetensors/.ckpt file holds, without running it",
        epilog="exit codes: 0 the file holds a complete checkpoint (of --model when given); 1 it does not, or "
        "cannot be read as one; 2 usage error; 130 interrupted",
    )
    check.add_argument("path", type=Path)
    check.add_argument("--model", help="fail unless the file is this architecture (sd-v1, sd-v2.1, sd-x4-upscaler)")


def _list() -> int:
    print("sdsuite models: counting each architecture's parameters (a few seconds)", file=sys.stderr, flush=True)
    from suite.models.architectures import ARCHITECTURES
    from suite.models.synthetic import parameter_counts

    for arch in ARCHITECTURES.values():
        counts = parameter_counts(arch)
        parts = ", ".join(f"{name} {n / 1e6:.1f}M" for name, n in counts.items())
        print(f"{arch.name:15s} {arch.native_size}px  {', '.join(arch.tasks):16s} {parts}")
        print(f"{'':15s} {arch.description}")
    return 0


def _check(path: Path, model: str | None) -> int:
    from suite.models.checkpoints import inspect, sample_hash
    from suite.models.errors import WeightsError

    try:
        info = inspect(path, model)
    except WeightsError as exc:
        print(f"sdsuite models: {exc}", file=sys.stderr)
        return 1
    size = "tiny test size" if info.tiny else "full size"
    found = info.signature
    print(
        f"{path}: {info.architecture} ({size}), complete: {info.tensors} tensors; {found.text_encoder} text encoder "
        f"{found.text_width} wide, UNet {found.unet_in_channels} input channels, width {found.unet_width}, "
        f"cross-attention {found.cross_attention}, VAE width {found.vae_width}; {sample_hash(path)}"
    )
    return 0


def run(args: argparse.Namespace) -> int:
    from suite.models.hub import offline_unless_hub

    offline_unless_hub(())  # nothing here needs the hub: keep huggingface_hub from asking it anything
    if args.action == "check":
        return _check(args.path, args.model)
    return _list()
