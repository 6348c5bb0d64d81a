import numpy as np
import pytest
from imwatermark import WatermarkDecoder
from PIL import Image

from suite.cli import main
from suite.watermark import SCHEMES, embed, too_small


def _photo(size=(512, 512)) -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut()).resize(size)


def _reference_decode(image: Image.Image, length: int, kind: str = "bytes", order: str = "bgr"):
    rgb = np.asarray(image.convert("RGB"))
    pixels = rgb[:, :, ::-1] if order == "bgr" else rgb
    return WatermarkDecoder(kind, length).decode(np.ascontiguousarray(pixels), "dwtDct")


@pytest.mark.parametrize(("scheme", "message"), [("sd-v1", b"StableDiffusionV1"), ("sd-v2", b"SDV2")])
def test_embedded_text_marks_decode_with_the_reference_decoder(scheme, message):
    marked = embed(_photo(), scheme)
    assert _reference_decode(marked, len(message) * 8) == message


def test_scheme_lengths_match_the_reference():
    assert SCHEMES["sd-v1"].length == 136
    assert SCHEMES["sd-v2"].length == 32
    assert SCHEMES["sdxl"].bit_string == bin(0b101100111110110010010000011110111011000110011110)[2:]


def test_sdxl_float_path_marks_the_channel_order_it_was_given():
    # The float path rounds after encoding, which flips some votes (docs/audit.md, "Float path"): the reference
    # decoder reads most bits back in the matching order, and chance in the other one.
    bits = np.array(SCHEMES["sdxl"].bits)
    for order, other in (("bgr", "rgb"), ("rgb", "bgr")):
        marked = embed(_photo(), "sdxl", channel_order=order)
        matching = np.mean(np.array(_reference_decode(marked, 48, "bits", order)) == bits)
        crossed = np.mean(np.array(_reference_decode(marked, 48, "bits", other)) == bits)
        assert matching > 0.75
        assert crossed < 0.65


def test_small_images_are_refused_like_the_reference():
    small = Image.new("RGB", (255, 256))
    assert too_small(small)
    with pytest.raises(ValueError, match="256x256"):
        embed(small, "sd-v1")


def test_watermark_embed_command(tmp_path, capsys):
    src = tmp_path / "in.png"
    _photo().save(src)
    out = tmp_path / "out.png"
    assert main(["watermark", "embed", "--scheme", "sd-v1", str(src), str(out)]) == 0
    assert _reference_decode(Image.open(out), 136) == b"StableDiffusionV1"
    assert main(["watermark", "embed", "--scheme", "sd-v1", str(tmp_path / "missing.png"), str(out)]) == 2
    assert "missing.png" in capsys.readouterr().err
