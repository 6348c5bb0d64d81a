import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from suite.audit import scan as scan_module
from suite.audit.scan import AuditOptions, audit_file, expand, load_rgb, scan
from suite.audit.summary import Summary
from suite.watermark import embed


def _photo(size=(512, 512)) -> Image.Image:
    import audit_corpus

    return audit_corpus.fit(audit_corpus.photo("coffee"), size)


def _png_claiming(path: Path, width: int, height: int) -> None:
    """A valid small PNG whose header then claims another size (how decompression bombs look)."""
    Image.new("L", (8, 8)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = bytes(data[12:16]) + struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr[4:]
    data[29:33] = struct.pack(">I", zlib.crc32(ihdr))
    path.write_bytes(bytes(data))


@pytest.fixture
def bad_folder(tmp_path) -> tuple[Path, dict[str, str]]:
    """A folder with one file of every bad kind beside two good images; name -> expected kind."""
    folder = tmp_path / "mixed"
    (folder / "sub").mkdir(parents=True)
    embed(_photo(), "sd-v1").save(folder / "good-marked.png")
    _photo((300, 400)).save(folder / "sub" / "good-clean.jpg")
    expected = {}
    (folder / "empty.png").write_bytes(b"")
    expected["empty.png"] = "empty"
    full = folder / "full.png"
    _photo().save(full)
    (folder / "truncated.png").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    full.unlink()
    expected["truncated.png"] = "truncated"
    jpeg = folder / "truncated.jpg"
    _photo().save(jpeg, quality=90)
    jpeg.write_bytes(jpeg.read_bytes()[:5000])
    expected["truncated.jpg"] = "truncated"
    (folder / "notes.png").write_text("this is not an image")
    expected["notes.png"] = "not_an_image"
    os.symlink("loop-b.png", folder / "loop-a.png")
    os.symlink("loop-a.png", folder / "loop-b.png")
    expected["loop-a.png"] = expected["loop-b.png"] = "symlink_loop"
    os.symlink("missing.png", folder / "dangling.png")
    expected["dangling.png"] = "not_found"
    os.mkfifo(folder / "pipe.png")  # opening it would block the scan forever
    expected["pipe.png"] = "not_a_file"
    _png_claiming(folder / "bomb.png", 30000, 30000)
    expected["bomb.png"] = "decompression_bomb"
    Image.new("RGB", (20000, 4), (200, 10, 10)).save(folder / "sliver.png")
    expected["sliver.png"] = "no_blocks"
    _photo((200, 200)).save(folder / "small.png")
    (folder / "README.txt").write_text("ignored: not an image extension")
    return folder, expected


@pytest.mark.parametrize("workers", [1, 2])
def test_a_folder_of_bad_files_is_scanned_to_the_end(bad_folder, workers):
    folder, expected = bad_folder
    records = list(scan(list(expand([str(folder)])), AuditOptions(), workers=workers))
    by_name = {Path(r["path"]).name: r for r in records}
    assert len(records) == len(expected) + 3  # + two good images + one too small
    for name, kind in expected.items():
        record = by_name[name]
        assert (record["status"], record["error_kind"]) == ("error", kind), record
        assert record["error"]
    assert by_name["small.png"]["status"] == "too_small"
    assert "256x256" in by_name["small.png"]["error"]
    marked = by_name["good-marked.png"]
    assert marked["status"] == "ok"
    assert [m["scheme"] for m in marked["watermarks"] if m["detected"]] == ["sd-v1"]
    assert by_name["good-clean.jpg"]["status"] == "ok"
    summary = Summary()
    for record in records:
        summary.add(record)
    assert summary.errors == len(expected)
    assert summary.error_kinds["symlink_loop"] == 2
    assert summary.detected == {"sd-v1": 1, "sd-v2": 0, "sdxl": 0}


def test_unreadable_file_is_one_error_record(tmp_path, monkeypatch):
    path = tmp_path / "locked.png"
    _photo().save(path)
    if os.geteuid() != 0:
        path.chmod(0)
    else:  # root reads anything: make the read itself fail as it does for other users
        real_open = open

        def deny(file, *args, **kwargs):
            if str(file) == str(path):
                raise PermissionError(13, "Permission denied")
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(scan_module, "open", deny, raising=False)
    record = audit_file(str(path), AuditOptions())
    assert (record["status"], record["error_kind"]) == ("error", "unreadable")
    assert "Permission denied" in record["error"]


def test_huge_files_are_not_read(tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    _photo().save(path)
    monkeypatch.setattr(scan_module, "MAX_FILE_BYTES", 1000)
    record = audit_file(str(path), AuditOptions())
    assert (record["status"], record["error_kind"]) == ("error", "too_large")


def test_pixel_limit_is_configurable(tmp_path):
    path = tmp_path / "big.png"
    _photo((640, 640)).save(path)
    assert audit_file(str(path), AuditOptions(max_pixels=600 * 600))["error_kind"] == "decompression_bomb"
    assert audit_file(str(path), AuditOptions(max_pixels=640 * 640))["status"] == "ok"


def test_expand_takes_files_folders_and_globs(tmp_path):
    for name in ("a.png", "b.JPG", "c.txt", "sub/d.webp"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    folder = sorted(expand([str(tmp_path)]))
    assert [Path(p).name for p in folder] == ["a.png", "b.JPG", "d.webp"]
    assert len(list(expand([str(tmp_path)], all_files=True))) == 4
    assert [Path(p).name for p in expand([str(tmp_path / "*.png")])] == ["a.png"]
    assert [Path(p).name for p in expand([str(tmp_path / "**" / "*.webp")])] == ["d.webp"]
    assert list(expand([str(tmp_path / "nothing-*.png")])) == [str(tmp_path / "nothing-*.png")]
    assert list(expand([str(tmp_path / "c.txt")])) == [str(tmp_path / "c.txt")]  # named files are read


@pytest.mark.parametrize("mode", ["RGBA", "P", "L", "I;16"])
def test_image_modes_are_converted_as_the_reference_path_sees_them(mode):
    base = embed(_photo(), "sd-v1")
    if mode == "RGBA":
        converted = base.copy()
        converted.putalpha(128)  # alpha is dropped, not composited: the mark survives
        np.testing.assert_array_equal(load_rgb(converted), np.asarray(base))
    elif mode == "I;16":
        gray = np.asarray(base.convert("L"))
        wide = Image.fromarray(gray.astype("<u2") * 257)
        assert wide.mode == "I;16"
        np.testing.assert_array_equal(load_rgb(wide), np.repeat(gray[:, :, None], 3, axis=2))
    else:
        converted = base.convert(mode)
        np.testing.assert_array_equal(load_rgb(converted), np.asarray(converted.convert("RGB")))


def test_marked_rgba_png_is_detected(tmp_path):
    marked = embed(_photo(), "sd-v2")
    marked.putalpha(255)
    marked.save(tmp_path / "rgba.png")
    record = audit_file(str(tmp_path / "rgba.png"), AuditOptions())
    assert [m["scheme"] for m in record["watermarks"] if m["detected"]] == ["sd-v2"]
    assert record["metadata"]["mode"] == "RGBA"


def test_an_unexpected_decoder_exception_is_one_error_record(tmp_path, monkeypatch):
    import struct as struct_module

    _photo().save(tmp_path / "odd.png")

    def choke(image_or_bytes):
        raise struct_module.error("unpack requires a buffer of 4 bytes")

    monkeypatch.setattr(scan_module, "load_rgb", choke)
    monkeypatch.setattr(scan_module, "decode_rgb", choke)
    record = audit_file(str(tmp_path / "odd.png"), AuditOptions())
    assert (record["status"], record["error_kind"]) == ("error", "corrupt")
    assert record["error"].startswith("error: unpack")


def test_formats_outside_the_audits_list_are_not_decoded(tmp_path, monkeypatch):
    """PIL would open an EPS file and run Ghostscript on it to rasterise it; the audit reads it as
    no image at all, whatever its name, and never reaches Ghostscript."""
    from PIL import EpsImagePlugin

    path = tmp_path / "drawing.png"
    path.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 512 512\nshowpage\n%%EOF\n")
    with Image.open(path) as opened:
        assert opened.format == "EPS"  # what PIL alone makes of it

    def ghostscript(*args, **kwargs):
        raise AssertionError("Ghostscript was run on an audited file")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", ghostscript)
    record = audit_file(str(path), AuditOptions())
    assert record["error_kind"] == "not_an_image"
    assert "EPS" not in record["error"] and "PNG" in record["error"]


def test_avif_files_are_found_in_folders_and_audited(tmp_path):
    from PIL import features

    if not features.check("avif"):
        pytest.skip("this PIL has no AVIF codec")
    embed(_photo(), "sd-v1").save(tmp_path / "marked.avif", quality=90)
    assert [Path(p).name for p in expand([str(tmp_path)])] == ["marked.avif"]
    record = audit_file(str(tmp_path / "marked.avif"), AuditOptions())
    assert record["status"] == "ok"
    assert [m["scheme"] for m in record["watermarks"] if m["detected"]] == ["sd-v1"]
