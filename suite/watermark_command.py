"""`sdsuite watermark embed`: mark images with a reference scheme, to test an audit on one's own images."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

from suite.errors import EXIT_CODES_TEXT, UsageError
from suite.safe_files import check_output, refuse_overwriting, regular_input, replaced_on_success
from suite.watermark import SCHEMES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    embed = sub.add_parser(
        "embed", help="write a copy of IN carrying a reference watermark to OUT", epilog=EXIT_CODES_TEXT
    )
    embed.add_argument("--scheme", required=True, choices=sorted(SCHEMES), help="which reference mark")
    embed.add_argument(
        "--channel-order",
        choices=["bgr", "rgb"],
        default="bgr",
        help="bgr: as the reference scripts; rgb: as encoders that passed RGB pixels (early diffusers SDXL)",
    )
    embed.add_argument("input", type=Path, metavar="IN")
    embed.add_argument("output", type=Path, metavar="OUT", help="output file; PNG keeps the mark intact")


def _image_format(output: Path) -> str:
    """PIL's format for OUT's extension; a UsageError before any work when there is none."""
    from PIL import Image

    Image.init()
    kind = Image.EXTENSION.get(output.suffix.lower())
    if kind is None or kind not in Image.SAVE:
        raise UsageError(f"{output}: no image format for {output.suffix or 'a name without extension'}; use .png")
    return kind


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    from suite.audit.defaults import MAX_PIXELS
    from suite.watermark import embed

    regular_input(args.input)
    check_output(args.output)
    refuse_overwriting(args.output, [args.input])
    kind = _image_format(args.output)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit below decides
            with Image.open(args.input) as image:
                if image.width * image.height > MAX_PIXELS:
                    raise UsageError(
                        f"{args.input}: {image.width}x{image.height} is over the {MAX_PIXELS:,}-pixel limit "
                        "(a decompression-bomb guard)"
                    )
                marked = embed(image, args.scheme, args.channel_order)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise UsageError(f"{args.input}: not an image that can be marked ({exc})") from None
    with replaced_on_success(args.output, "wb") as handle:
        marked.save(handle, kind)
    print(f"{args.output}: {args.scheme} ({SCHEMES[args.scheme].length} bits) embedded")
    return 0
