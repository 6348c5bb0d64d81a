"""The JPEG chroma reader against libjpeg's own planes, and marks found in JPEG, WebP and AVIF files."""

import io

import audit_corpus
import cv2
import numpy as np
import pytest
import webp
from PIL import Image

from suite.audit.decode import ORDERS, blocks_of, u_planes
from suite.audit.readers import (
    chroma_layout,
    decode_jpeg_rgb,
    is_lossy_webp,
    is_subsampled_avif,
    jpeg_chroma,
    read_pixels,
)
from suite.audit.scan import AuditOptions, audit_bytes, new_record
from suite.watermark import SCHEMES, embed


def encoded(image: Image.Image, kind: str = "JPEG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, kind, **options)
    return buffer.getvalue()


def opened(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return audit_corpus.fit(audit_corpus.photo("astronaut"), (512, 512))


def u_from_chroma(cb: np.ndarray, cr: np.ndarray) -> np.ndarray:
    """(orders, *cb.shape): OpenCV's U of each encoder order from JFIF Cb and Cr planes: U - 128 =
    0.492 (B - Y) and, R and B swapped, 0.492 (1.185 (R - Y) - 0.185 (B - Y)), with Cb - 128 =
    0.5 / 0.886 (B - Y) and Cr - 128 = 0.5 / 0.701 (R - Y)."""
    blue, red, swapped = 0.492 * 0.886 / 0.5, 0.492 * 0.701 / 0.5, 0.299 - 0.114
    weights = {"bgr": (blue, 0.0), "rgb": (-swapped * blue, (1 + swapped) * red)}
    cb, cr = (np.asarray(plane, np.float64) - 128 for plane in (cb, cr))
    return np.stack([128 + weights[order][0] * cb + weights[order][1] * cr for order in ORDERS]).astype(np.float32)


def libwebp_yuv(data: bytes) -> np.ndarray:
    """The chroma a lossy WebP stores, as libwebp's YUV output gives it (never upsampled), as U:
    VP8's BT.601 limited range has Cb - 128 = 224/255 of JFIF's."""
    config = webp.WebPDecoderConfig.new()
    source = webp.WebPData.from_buffer(data)
    assert webp.lib.WebPGetFeatures(source.ptr.bytes, source.size, webp.ffi.addressof(config.ptr, "input")) == 0
    height, width = config.input.height, config.input.width
    config.output.colorspace = webp.lib.MODE_YUV
    assert webp.lib.WebPDecode(source.ptr.bytes, source.size, config.ptr) == webp.lib.VP8_STATUS_OK
    try:
        rows, cols, yuva = (height + 1) // 2, (width + 1) // 2, config.output.u.YUVA
        planes = [
            np.frombuffer(webp.ffi.buffer(plane, size), np.uint8).reshape(-1, stride)[:rows, :cols].astype(np.float64)
            for plane, stride, size in ((yuva.u, yuva.u_stride, yuva.u_size), (yuva.v, yuva.v_stride, yuva.v_size))
        ]
    finally:
        webp.lib.WebPFreeDecBuffer(webp.ffi.addressof(config.ptr, "output"))
    return u_from_chroma(*((plane - 128) * 255 / 224 + 128 for plane in planes))


def test_u_of_both_orders_follows_from_jfif_chroma():
    # PIL's RGB->YCbCr is JFIF's; OpenCV's U for each encoder order must follow from Cb and Cr alone
    rgb = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    ycbcr = np.asarray(Image.fromarray(rgb).convert("YCbCr"), dtype=np.float32)
    rebuilt = u_from_chroma(ycbcr[..., 1], ycbcr[..., 2])
    exact = np.stack(
        [cv2.cvtColor(rgb.astype(np.float32), code)[..., 1] for code in (cv2.COLOR_RGB2YUV, cv2.COLOR_BGR2YUV)]
    )
    exact += 128 - 0.5  # OpenCV centres float U on 0.5, uint8 U on 128
    assert np.abs(rebuilt - exact).max() < 1.3  # PIL rounds Cb and Cr to integers


def test_layouts_are_read_from_the_file(photo):
    assert chroma_layout(opened(encoded(photo, quality=90))) == "420"  # PIL's default
    assert chroma_layout(opened(encoded(photo, quality=90, subsampling=1))) == "422"
    assert chroma_layout(opened(encoded(photo, quality=90, subsampling=0))) == "444"
    assert chroma_layout(opened(encoded(photo.convert("L"), quality=90))) is None
    assert chroma_layout(opened(encoded(photo.convert("CMYK"), quality=90))) is None
    assert chroma_layout(opened(encoded(photo, "PNG"))) is None


def recovered(data: bytes) -> tuple[np.ndarray, str]:
    image = opened(data)
    return jpeg_chroma(image, np.asarray(image.convert("RGB")))


def libjpeg_half_scale(data: bytes) -> np.ndarray:
    """The stored chroma as libjpeg's half-scale decode returns it, never upsampled, as U."""
    half = opened(data)
    half.draft("YCbCr", (half.width // 2, half.height // 2))
    assert half.mode == "YCbCr"
    ycbcr = np.asarray(half, dtype=np.float32)
    return u_from_chroma(ycbcr[..., 1], ycbcr[..., 2])


@pytest.mark.parametrize(
    "options",
    [{}, {"progressive": True}, {"restart_marker_blocks": 4}, {"subsampling": 1}],
    ids=["baseline", "progressive", "restart-markers", "422"],
)
def test_stored_chroma_is_the_mean_of_each_block_of_u(photo, options):
    # at quality 100 the stored 4:2:0 plane is the 2x2 mean of what was encoded, up to rounding:
    # the recovered U must equal the mean of the pixels' own U over each 2x2 block (both orders)
    samples, layout = recovered(encoded(photo, quality=100, **options))
    assert layout == ("422" if options.get("subsampling") == 1 else "420")
    assert samples.shape == (2, 256, 256) and samples.dtype == np.float32
    truth = u_planes(np.asarray(photo)).astype(np.float32)
    means = truth.reshape(2, 256, 2, 256, 2).mean(axis=(2, 4))
    assert np.abs(samples - means).mean() < 1.0


@pytest.mark.parametrize("quality", [95, 90, 75])
@pytest.mark.parametrize("size", [(512, 512), (301, 277)], ids=["512", "odd"])
def test_recovered_chroma_is_what_libjpeg_stored(photo, quality, size):
    # libjpeg's half-scale decode returns the stored 4:2:0 samples themselves; the samples recovered
    # from the full decode's pixels (its upsampling undone) must match them, far inside the +-9 the
    # encoder moves a coefficient by, and with a bias (0.06-0.14 measured: the upsampler's and the
    # colour conversion's rounding) far below anything a soft vote or a step notices
    data = encoded(photo.crop((0, 0, *size)), quality=quality)
    samples, _ = recovered(data)
    stored = libjpeg_half_scale(data)
    assert samples.shape == stored.shape
    inside = np.s_[:, 1:-1, 1:-1]  # libjpeg's edge samples are upsampled from one side only
    difference = samples[inside] - stored[inside]
    assert np.sqrt(np.mean(difference**2)) < 0.7 and abs(difference.mean()) < 0.2
    # half the samples within 0.3 and 90 % within 0.8; the last per cent, 1.2-7 off, are where the
    # decoded pixels clipped at 0 or 255, which the stored samples never did
    assert np.percentile(np.abs(difference), 50) < 0.3 and np.percentile(np.abs(difference), 90) < 0.8


@pytest.mark.parametrize(
    "options",
    [{}, {"progressive": True}, {"restart_marker_blocks": 4}, {"subsampling": 1}, {"subsampling": 0}],
    ids=["baseline", "progressive", "restart-markers", "422", "444"],
)
def test_fast_jpeg_decode_gives_pil_pixels(photo, options):
    for image in (photo, photo.crop((3, 5, 304, 282))):  # and an odd size, whose last MCU is partial
        data = encoded(image, quality=90, **options)
        assert np.array_equal(decode_jpeg_rgb(opened(data), data), np.asarray(opened(data).convert("RGB")))


def test_fast_jpeg_decode_leaves_the_rest_to_pil(photo):
    whole = encoded(photo, quality=90)
    for data in (
        encoded(photo.convert("L"), quality=90),
        encoded(photo.convert("CMYK"), quality=90),
        encoded(photo, "PNG"),
        whole[: len(whole) // 2],  # cut short: PIL says "truncated"
        whole[: len(whole) // 2] + whole[-2:],  # cut, with its end marker put back: libjpeg warns
    ):
        assert decode_jpeg_rgb(opened(data), data) is None


def test_odd_sizes_and_what_has_no_stored_chroma_read_from_pixels(photo):
    odd = photo.crop((0, 0, 301, 277))
    data = encoded(odd, quality=95)
    image = opened(data)
    pixels = read_pixels(np.asarray(image.convert("RGB")), image, data)
    assert pixels.reading == "jpeg-420" and pixels.samples.shape == (2, 139, 151)
    # the planes the searches read spread each sample over its 2x2 pixels; the aligned test's
    # blocks read the samples themselves, and both give the same LL band
    assert pixels.u.shape == (2, 277, 301)
    assert np.array_equal(pixels.u[:, 0::2, 0::2], pixels.samples)
    assert np.array_equal(pixels.u[:, 1::2, 1::2], pixels.samples[:, :138, :150])
    assert np.allclose(pixels.blocks().sums, blocks_of(pixels.u, ORDERS).sums)
    for data in (
        encoded(photo, quality=95, subsampling=0),
        encoded(photo, "WEBP", lossless=True),
        encoded(photo, "PNG"),
    ):
        image = opened(data)
        rgb = np.asarray(image.convert("RGB"))
        pixels = read_pixels(rgb, image, data)
        assert pixels.reading == "pixels" and pixels.samples is None and not pixels.lossy_chroma
        assert np.array_equal(pixels.u, u_planes(rgb, ORDERS))


def test_lossy_webp_is_told_from_lossless(photo):
    small = photo.resize((64, 64))
    with_alpha = small.convert("RGBA")  # an extended file: VP8X, then ALPH, then the VP8 image
    assert is_lossy_webp(encoded(small, "WEBP", quality=90))
    assert is_lossy_webp(encoded(with_alpha, "WEBP", quality=90))
    assert not is_lossy_webp(encoded(small, "WEBP", lossless=True))
    assert not is_lossy_webp(encoded(with_alpha, "WEBP", lossless=True))
    assert not is_lossy_webp(b"RIFF\x10\x00\x00\x00WEBPVP8X\xff\xff\xff\xff")  # a chunk past the end


@pytest.mark.parametrize("quality", [90, 75])
def test_recovered_webp_chroma_is_what_vp8_stored(photo, quality):
    # libwebp's upsampling is libjpeg's triangle: the samples recovered from the decoded pixels must
    # match what libwebp's YUV output says VP8 stored, as a JPEG's match libjpeg's half-scale decode
    data = encoded(photo.crop((0, 0, 301, 277)), "WEBP", quality=quality)
    image = opened(data)
    pixels = read_pixels(np.asarray(image.convert("RGB")), image, data)
    assert pixels.reading == "webp-420" and pixels.lossy_chroma
    stored = libwebp_yuv(data)
    assert pixels.samples.shape == stored.shape == (len(ORDERS), 139, 151)
    difference = (pixels.samples - stored)[:, 1:-1, 1:-1]
    assert np.sqrt(np.mean(difference**2)) < 0.7 and abs(difference.mean()) < 0.2
    assert np.percentile(np.abs(difference), 50) < 0.3 and np.percentile(np.abs(difference), 90) < 0.8
    lossless = encoded(photo, "WEBP", lossless=True)
    image = opened(lossless)
    assert read_pixels(np.asarray(image.convert("RGB")), image, lossless).reading == "pixels"


def _avif() -> None:
    from PIL import features

    if not features.check("avif"):
        pytest.skip("this PIL has no AVIF codec")


def test_subsampled_avif_is_told_from_full_chroma(photo):
    _avif()
    small = photo.resize((64, 64))
    assert is_subsampled_avif(encoded(small, "AVIF", quality=75))  # 4:2:0, the encoders' default
    assert is_subsampled_avif(encoded(small, "AVIF", quality=75, subsampling="4:2:2"))
    assert not is_subsampled_avif(encoded(small, "AVIF", quality=75, subsampling="4:4:4"))
    assert not is_subsampled_avif(encoded(small, "AVIF", quality=75, subsampling="4:0:0"))  # no chroma
    data = encoded(small, "AVIF", quality=75)
    assert not is_subsampled_avif(data[: data.find(b"av1C") + 5])  # cut inside the box
    assert not is_subsampled_avif(b"\x00\x00\x00\x0bav1C")


def _found(data: bytes, scheme: str) -> tuple[bool, dict]:
    record = audit_bytes(data, AuditOptions(search="never", metadata=False), new_record(path="x"))
    assert record["status"] == "ok", record["error"]
    by_scheme = {mark["scheme"]: mark for mark in record["watermarks"]}
    others = [name for name, mark in by_scheme.items() if mark["detected"] and name != scheme]
    assert not others, f"{others} detected in an image marked {scheme}"
    return by_scheme[scheme]["detected"], by_scheme[scheme]


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    return [audit_corpus.fit(audit_corpus.photo(name), (512, 512)) for name in audit_corpus.PHOTOS]


@pytest.mark.parametrize(
    ("kind", "options", "at_least"),
    [("JPEG", {"quality": 95}, 0.85), ("JPEG", {"quality": 90}, 0.4), ("WEBP", {"quality": 90}, 0.9)],
    ids=["jpeg95-420", "jpeg90-420", "webp90"],
)
def test_marks_survive_lossy_chroma(photos, kind, options, at_least):
    hits, readings = [], set()
    for image in photos:
        for scheme in SCHEMES:
            found, mark = _found(encoded(embed(image, scheme), kind, **options), scheme)
            hits.append(found)
            readings.add(mark["reading"])
            assert mark["bits"] and set(mark["bits"]) <= {"0", "1"}
    print(f"{kind} {options}: {np.mean(hits):.0%} of {len(hits)}")
    assert readings == {"jpeg-420" if kind == "JPEG" else "webp-420"}
    assert np.mean(hits) >= at_least


def test_clean_jpeg_and_webp_are_not_flagged(clean_images):
    p_values = []
    for _, image in clean_images:
        for kind, quality in (("JPEG", 95), ("JPEG", 75), ("WEBP", 90), ("WEBP", 75)):
            record = audit_bytes(
                encoded(image, kind, quality=quality), AuditOptions(search="never"), new_record(path="x")
            )
            for mark in record["watermarks"]:
                assert not mark["detected"], (kind, quality, mark["scheme"], mark["p_value"])
                p_values.append(mark["p_value"])
    assert np.mean(np.array(p_values) < 0.05) <= 0.08


def test_searched_clean_jpeg_and_webp_are_not_flagged(clean_images):
    """The searches read the encoder's mean step where chroma was coded lossily at half size."""
    from PIL import features

    smallest = 1.0
    for _, image in clean_images[::2]:
        for kind, quality in (("JPEG", 95), ("JPEG", 75), ("WEBP", 90), ("AVIF", 90)):
            if kind == "AVIF" and not features.check("avif"):
                continue
            cropped = image.crop((13, 21, image.width - 6, image.height - 2))  # every search runs
            for data in (encoded(image, kind, quality=quality), encoded(cropped, kind, quality=quality)):
                record = audit_bytes(data, AuditOptions(metadata=False), new_record(path="x"))
                smallest = min(smallest, *(mark["p_value"] for mark in record["watermarks"]))
    print(f"smallest p-value of a searched clean JPEG or WebP: {smallest:.2g}")
    assert smallest > 1e-3


def test_crops_saved_as_jpeg_are_found_on_the_step_readings(photos):
    # cropped 25 pixels off each side (an odd offset: each stored chroma sample mixes two LL
    # coefficients per axis) then JPEG q95 4:2:0: the lattice is gone, the encoder's mean step is not
    hits = []
    for image in photos:
        for scheme in SCHEMES:
            cropped = embed(image, scheme).crop((25, 25, 487, 487))
            record = audit_bytes(encoded(cropped, quality=95), AuditOptions(metadata=False), new_record(path="x"))
            mark = {m["scheme"]: m for m in record["watermarks"]}[scheme]
            hits.append(mark["detected"])
            if mark["detected"]:
                assert mark["search"]["edit"] == "crop" and mark["path"] in ("impulse", "float-impulse")
    print(f"crop 25 px then JPEG q95: {np.mean(hits):.0%} of {len(hits)}")
    assert np.mean(hits) >= 0.15  # 4 of 21 here; on the lattice 0


def test_crops_saved_as_avif_are_found_on_the_step_readings(photos):
    # AV1 keeps 4:2:0 chroma too: the crop search reads the encoder's step there, as for a JPEG
    # (on the robustness corpus cropped 10 % then AVIF q90: 30 of 42 marks, 11 on the lattice)
    _avif()
    hits = []
    for image in photos:
        for scheme in SCHEMES:
            data = encoded(embed(image, scheme).crop((25, 25, 487, 487)), "AVIF", quality=90)
            image_read = opened(data)
            assert read_pixels(np.asarray(image_read.convert("RGB")), image_read, data).lossy_chroma
            record = audit_bytes(data, AuditOptions(metadata=False), new_record(path="x"))
            mark = {m["scheme"]: m for m in record["watermarks"]}[scheme]
            hits.append(mark["detected"])
            if mark["detected"]:
                assert mark["search"]["edit"] == "crop" and mark["path"] in ("impulse", "float-impulse")
    print(f"crop 25 px then AVIF q90: {np.mean(hits):.0%} of {len(hits)}")
    assert np.mean(hits) >= 0.3  # 10 of 21 here


def test_thumbnails_saved_as_jpeg_are_found_by_the_resize_search(photos):
    # resized x0.75 then JPEG q95: the lattice is gone, the encoder's mean step survives (impulse)
    hits = []
    for image in photos:
        for scheme in SCHEMES:
            thumbnail = embed(image, scheme).resize((384, 384), Image.Resampling.LANCZOS)
            record = audit_bytes(encoded(thumbnail, quality=95), AuditOptions(metadata=False), new_record(path="x"))
            mark = {m["scheme"]: m for m in record["watermarks"]}[scheme]
            hits.append(mark["detected"])
            if mark["detected"]:
                assert mark["search"] == {"edit": "resize", "original_size": [512, 512]}
    print(f"resize x0.75 then JPEG q95: {np.mean(hits):.0%} of {len(hits)}")
    assert np.mean(hits) >= 0.2
