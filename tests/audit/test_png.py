"""The libspng fast path must report exactly what the PIL path reports, on good files and damaged ones."""

import dataclasses
import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from suite.audit import scan as scan_module
from suite.audit.png import SIGNATURE, decode_rgb, read_chunks
from suite.audit.scan import AuditOptions, audit_file
from suite.watermark import embed

A1111 = "a lighthouse\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 99, Size: 512x512"


def _photo() -> Image.Image:
    import audit_corpus

    return audit_corpus.fit(audit_corpus.photo("coffee"), (512, 512))


def _png_bytes(image: Image.Image, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **params)
    return buffer.getvalue()


def _split(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, offset = [], len(SIGNATURE)
    while offset < len(data):
        length, kind = struct.unpack_from(">I4s", data, offset)
        chunks.append((kind, data[offset + 8 : offset + 8 + length]))
        offset += 12 + length
    return chunks


def _join(chunks: list[tuple[bytes, bytes]]) -> bytes:
    parts = [SIGNATURE]
    for kind, payload in chunks:
        parts.append(struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload)))
    return b"".join(parts)


def _audit_with_pil_only(path: str, monkeypatch: pytest.MonkeyPatch) -> dict:
    with monkeypatch.context() as patch:
        # libspng's decode off; the CRC check, which is the audit's own and not libspng's, stays
        patch.setattr(scan_module, "read_chunks", lambda data: dataclasses.replace(read_chunks(data), simple=False))
        return audit_file(path, AuditOptions())


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_fast_decode_gives_pils_pixels(mode):
    rgb = np.asarray(embed(_photo(), "sd-v1"))
    alpha = np.random.default_rng(0).integers(0, 256, rgb.shape[:2], dtype=np.uint8)
    image = Image.fromarray(np.dstack([rgb, alpha]) if mode == "RGBA" else rgb, mode)
    data = _png_bytes(image)
    assert read_chunks(data).fast
    np.testing.assert_array_equal(decode_rgb(data), np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))


def test_other_pngs_are_left_to_pil():
    photo = _photo()
    wide = cv2.imencode(".png", np.asarray(photo).astype(np.uint16) * 257)[1].tobytes()  # 16-bit RGB
    frames = io.BytesIO()
    photo.save(frames, "PNG", save_all=True, append_images=[photo.rotate(90)])
    for data in (_png_bytes(photo.convert("P")), _png_bytes(photo.convert("L")), wide):
        assert not read_chunks(data).simple
    assert read_chunks(frames.getvalue()).animated
    assert not read_chunks(b"GIF89a" + bytes(100)).fast


def test_text_and_exif_after_the_pixels_are_still_read(tmp_path):
    exif = Image.Exif()
    exif[0x0131] = "SomeGenerator 2.0"
    info = PngInfo()
    info.add_text("parameters", A1111)
    chunks = _split(_png_bytes(embed(_photo(), "sd-v1"), pnginfo=info, exif=exif))
    late = [c for c in chunks if c[0] in (b"tEXt", b"eXIf")]
    assert len(late) == 2
    rest = [c for c in chunks if c not in late]
    data = _join([*rest[:-1], *late, rest[-1]])  # text and EXIF between the last IDAT and IEND
    assert read_chunks(data).trailing_metadata and not read_chunks(data).fast
    (tmp_path / "late.png").write_bytes(data)
    record = audit_file(str(tmp_path / "late.png"), AuditOptions())
    assert record["metadata"]["a1111"]["settings"]["Seed"] == "99"
    assert record["metadata"]["exif"] == {"Software": "SomeGenerator 2.0"}
    assert [m["scheme"] for m in record["watermarks"] if m["detected"]] == ["sd-v1"]


def test_good_files_get_the_same_record_on_both_paths(tmp_path, monkeypatch):
    info = PngInfo()
    info.add_text("parameters", A1111)
    marked = embed(_photo(), "sd-v2")
    marked.putalpha(200)
    for name, image in (("rgb.png", embed(_photo(), "sd-v1")), ("rgba.png", marked)):
        path = str(tmp_path / name)
        image.save(path, pnginfo=info)
        assert read_chunks((tmp_path / name).read_bytes()).fast
        assert audit_file(path, AuditOptions()) == _audit_with_pil_only(path, monkeypatch)


def test_damaged_files_get_the_same_record_on_both_paths(tmp_path, monkeypatch):
    """libspng checks no checksum: damage must still end in PIL's verdict, never in silent pixels."""
    data = _png_bytes(embed(_photo(), "sd-v1"))
    rng = np.random.default_rng(7)
    outcomes = set()
    for trial in range(24):
        damaged = bytearray(data)
        damaged[int(rng.integers(len(SIGNATURE), len(data)))] ^= 1 << int(rng.integers(8))
        path = tmp_path / f"damaged-{trial}.png"
        path.write_bytes(bytes(damaged))
        record = audit_file(str(path), AuditOptions())
        assert record == _audit_with_pil_only(str(path), monkeypatch)
        outcomes.add(record["error_kind"])
    cut = tmp_path / "cut.png"
    cut.write_bytes(data[: len(data) - 30])
    assert audit_file(str(cut), AuditOptions()) == _audit_with_pil_only(str(cut), monkeypatch)
    assert outcomes - {None}, "no trial damaged the file enough to be refused"
