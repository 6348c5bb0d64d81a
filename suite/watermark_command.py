"""`sdsuite watermark embed`: mark images with a reference scheme, to test an audit on one's own images."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from suite.watermark import SCHEMES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    embed = sub.add_parser("embed", help="write a copy of IN carrying a reference watermark to OUT")
    embed.add_argument("--scheme", required=True, choices=sorted(SCHEMES), help="which reference mark")
    embed.add_argument(
        "--channel-order",
        choices=["bgr", "rgb"],
        default="bgr",
        help="bgr: as the reference scripts; rgb: as encoders that passed RGB pixels (early diffusers SDXL)",
    )
    embed.add_argument("input", type=Path, metavar="IN")
    embed.add_argument("output", type=Path, metavar="OUT", help="output file; PNG keeps the mark intact")


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    from suite.watermark import embed

    try:
        with Image.open(args.input) as image:
            marked = embed(image, args.scheme, args.channel_order)
    except (OSError, ValueError) as exc:
        print(f"sdsuite watermark: {args.input}: {exc}", file=sys.stderr)
        return 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    marked.save(args.output)
    print(f"{args.output}: {args.scheme} ({SCHEMES[args.scheme].length} bits) embedded")
    return 0
