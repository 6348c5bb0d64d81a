"""`sdsuite robustness`: the attacks do what they say, the rates are counted right, the audit finds
unedited marks and flags no clean image, and the command writes its tables and report."""

import csv
import io
import json
import math

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin
from scipy.stats import binomtest
from support import sdsuite

from suite.robustness import attacks, benchmark, corpus, output, tally
from suite.robustness.attacks import ATTACKS


@pytest.fixture(scope="module")
def photo512() -> Image.Image:
    return corpus.fit(corpus.photo("coffee"), (512, 512))


def _open(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize(
    ("name", "size"),
    [
        ("none", (512, 512)),
        ("resize0.5", (256, 256)),
        ("resize0.75", (384, 384)),
        ("resize1.5", (768, 768)),
        ("resize-sd", (576, 576)),
        ("crop5", (486, 486)),
        ("crop10", (461, 461)),
        ("crop25", (384, 384)),
        ("crop10-topleft", (461, 461)),
        ("rotate2", (512, 512)),
        ("resize0.75+jpeg90", (384, 384)),
        ("crop10+jpeg95", (461, 461)),
        ("jpeg90+crop10", (461, 461)),
    ],
)
def test_attacks_give_the_sizes_they_promise(photo512, name, size):
    assert _open(ATTACKS[name].apply(photo512)).size == size


def test_other_sd_size_keeps_the_aspect_ratio_on_multiples_of_64():
    assert attacks.other_sd_size(512, 512) == (576, 576)
    assert attacks.other_sd_size(640, 448) == (832, 576)  # 1.1 % wider
    assert attacks.other_sd_size(512, 768) == (640, 960)


@pytest.mark.parametrize(
    ("name", "fmt", "sampling"),
    [
        ("jpeg95-420", "JPEG", 2),
        ("jpeg50-420", "JPEG", 2),
        ("jpeg90-444", "JPEG", 0),
        ("jpeg75-444", "JPEG", 0),
        ("resize0.75+jpeg95", "JPEG", 2),
        ("webp90", "WEBP", None),
        ("jpeg90+crop10", "PNG", None),
        ("flip-h", "PNG", None),
    ],
)
def test_each_attack_is_written_in_its_native_format(photo512, name, fmt, sampling):
    """JPEG chroma subsampling as the file itself declares it (libjpeg's sampling factors)."""
    data = ATTACKS[name].apply(photo512)
    image = _open(data)
    assert image.format == fmt
    assert ATTACKS[name].suffix == {"JPEG": "jpg", "WEBP": "webp", "PNG": "png"}[fmt]
    if fmt == "JPEG":
        assert JpegImagePlugin.get_sampling(image) == sampling
    if fmt == "WEBP":
        assert b"VP8 " in data[:64] and b"VP8L" not in data[:64]  # lossy, not lossless


@pytest.mark.skipif(not attacks.can_save("AVIF"), reason="this Pillow writes no AVIF")
@pytest.mark.parametrize("name", ["avif90", "avif75", "crop10+avif90"])
def test_avif_attacks_are_written_as_avif_with_half_resolution_chroma(photo512, name):
    from suite.audit.readers import is_subsampled_avif

    data = ATTACKS[name].apply(photo512)
    assert _open(data).format == "AVIF" and ATTACKS[name].suffix == "avif"
    assert is_subsampled_avif(data)  # what makes the audit read the encoder's step after a crop


def test_lower_jpeg_quality_gives_smaller_files(photo512):
    sizes = [len(ATTACKS[f"jpeg{q}-420"].apply(photo512)) for q in (95, 90, 80, 75, 50)]
    assert sizes == sorted(sizes, reverse=True)
    assert len(ATTACKS["jpeg90-444"].apply(photo512)) > len(ATTACKS["jpeg90-420"].apply(photo512))


def test_pixel_edits_do_what_they_say(photo512):
    pixels = np.asarray(photo512, dtype=np.float64)

    def edited(name: str) -> np.ndarray:
        return np.asarray(_open(ATTACKS[name].apply(photo512)).convert("RGB"), dtype=np.float64)

    assert np.array_equal(edited("none"), pixels)
    assert np.array_equal(edited("flip-h"), pixels[:, ::-1])
    assert np.array_equal(edited("flip-v"), pixels[::-1])
    assert np.array_equal(edited("rotate90"), np.rot90(pixels))  # counter-clockwise
    assert np.array_equal(edited("transpose"), pixels.swapaxes(0, 1))
    assert np.array_equal(edited("crop10"), pixels[25:486, 25:486])  # (512 - 461) // 2 = 25 on each side
    assert np.array_equal(edited("crop10-topleft"), pixels[51:, 51:])
    noise = edited("noise5") - pixels
    assert 4.5 < noise[(pixels > 20) & (pixels < 235)].std() < 5.5
    assert edited("brightness1.2").mean() == pytest.approx(min(255, 1.2 * pixels.mean()), rel=0.05)
    assert edited("contrast1.2").std() > 1.1 * pixels.std()
    assert edited("blur1").std() < pixels.std()
    rotated = edited("rotate1")
    assert rotated[0, 0].sum() == 0 and not np.array_equal(rotated, pixels)  # the corners come in black


def test_unknown_attack_names_are_refused():
    assert [a.name for a in attacks.pick("flip-v,none")] == ["none", "flip-v"]
    with pytest.raises(ValueError, match="jpeg101"):
        attacks.pick("none,jpeg101")


def test_nearest_sd_size_follows_the_aspect_ratio():
    assert corpus.nearest_sd_size(4000, 3000) == (768, 576)
    assert corpus.nearest_sd_size(1000, 1000) == (768, 768)
    assert corpus.nearest_sd_size(600, 400) == (768, 512)
    assert corpus.nearest_sd_size(400, 570) == (448, 640)
    assert corpus.nearest_sd_size(400, 700) == (512, 768)


def _record(attack, embedded, found=(), exact=False, p=0.5, status="ok", seconds=0.01, search=None):
    marks = [
        {
            "scheme": s,
            "detected": s in found,
            "p_value": 1e-12 if s in found else p,
            "exact": exact and s == embedded,
            "search": search if s in found else None,
        }
        for s in ("sd-v1", "sd-v2")
    ]
    return {
        "path": "x",
        "status": status,
        "attack": attack,
        "embedded": embedded,
        "image": "i",
        "watermarks": marks if status == "ok" else [],
        "seconds": seconds,
        "cpu_seconds": None if seconds is None else seconds / 2,
    }


def test_rates_are_counted_from_the_records():
    records = [
        _record("crop10", "sd-v1", found=("sd-v1",), exact=True, seconds=0.1),
        _record("crop10", "sd-v1", found=("sd-v1", "sd-v2"), search={"edit": "crop", "grid_offset": [1, 2]}),
        _record("crop10", "sd-v1", found=("sd-v2",)),
        _record("crop10", "sd-v1", status="error", seconds=None),
        _record("crop10", None, p=0.03),
        _record("crop10", None, found=("sd-v2",)),
        _record("crop10", None, p=0.2),
        _record("crop10", "sd-v2", found=("sd-v2",)),
    ]
    rows = tally.tabulate(records, ["none", "crop10"], ["sd-v1", "sd-v2"])
    assert [(r.attack, r.scheme) for r in rows] == [("crop10", "sd-v1"), ("crop10", "sd-v2")]
    v1 = rows[0]
    assert (v1.marked.hits, v1.marked.total) == (2, 4)
    ci = binomtest(2, 4).proportion_ci(0.95, method="exact")
    assert v1.marked.interval == pytest.approx((ci.low, ci.high))
    assert v1.wrong_scheme == 2
    assert (v1.exact.hits, v1.exact.total) == (1, 4)
    assert (v1.clean.hits, v1.clean.total) == (1, 3)
    assert v1.min_clean_p == 1e-12  # the flagged clean image's
    assert v1.found_by == {"uint8": 1, "uint8 crop": 1}
    assert v1.errors == 1
    assert v1.ms_marked == pytest.approx(1000 * (0.1 + 0.01 + 0.01) / 3)
    assert v1.cpu_ms_marked == pytest.approx(v1.ms_marked / 2)
    v2 = rows[1]
    assert (v2.marked.hits, v2.marked.total, v2.wrong_scheme) == (1, 1, 0)
    assert v2.marked.interval == pytest.approx((0.025, 1.0))


def test_how_found_names_the_reading_where_the_record_gives_one():
    assert tally.how_found({"search": None}) == "uint8"
    assert tally.how_found({"search": {"edit": "resize"}, "path": "uint8"}) == "uint8 resize"
    assert tally.how_found({"search": None, "reading": "pixels", "path": "float"}) == "float"
    assert tally.how_found({"search": None, "reading": "jpeg-420", "path": "impulse"}) == "jpeg-420 impulse"
    counts = {"uint8": 3, "uint8 crop": 5, "impulse": 1, "float": 1}
    assert tally.found_by_text(counts) == "uint8 crop 5, uint8 3, float 1, impulse 1"
    assert tally.found_by_text(counts, most=2) == "uint8 crop 5, uint8 3, 2 more"


def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised():
    rows = tally.tabulate(
        [_record("=HYPERLINK(1)", "sd-v1"), _record("=HYPERLINK(1)", None)], ["=HYPERLINK(1)"], ["sd-v1"]
    )
    stream = io.StringIO()
    output.write_csv(rows, stream)
    table = list(csv.DictReader(io.StringIO(stream.getvalue())))
    assert table[0]["attack"] == "'=HYPERLINK(1)"
    assert (table[0]["tpr"], table[0]["fpr"], table[0]["found_by"]) == ("0", "0", "")


@pytest.fixture(scope="module")
def audited() -> list[dict]:
    """Two photographs, clean and with every scheme, unedited and under two mild attacks, in this process."""
    images = list(corpus.default_corpus())[:2]
    return list(benchmark.run(images, ["sd-v1", "sd-v2", "sdxl"], attacks.pick("none,jpeg90-444,flip-v"), workers=1))


def test_unedited_marks_are_found_and_no_clean_image_is_flagged(audited):
    assert len(audited) == 2 * 4 * 3
    assert {r["format"] for r in audited if r["attack"] == "jpeg90-444"} == {"JPEG"}
    assert all(r["status"] == "ok" and r["seconds"] > 0 and r["cpu_seconds"] > 0 for r in audited)
    rows = tally.tabulate(audited, ["none", "jpeg90-444", "flip-v"], ["sd-v1", "sd-v2", "sdxl"])
    unedited = [r for r in rows if r.attack == "none"]
    assert [r.marked.share for r in unedited] == [1.0, 1.0, 1.0]
    assert all(r.wrong_scheme == 0 for r in rows)
    assert all(r.clean.hits == 0 and r.clean.total == 2 for r in rows)
    assert all(r.min_clean_p > 1e-4 for r in rows)


def test_the_command_writes_its_tables_and_report(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    corpus.photo("rocket").save(photos / "rocket.jpg")  # 640x427: fitted to 768x512
    corpus.photo("astronaut").save(photos / "<b>astronaut.png")
    (photos / "notes.png").write_text("not an image")
    out = tmp_path / "out"
    process = sdsuite(
        "robustness", str(photos), "-o", str(out), "--attacks", "none,webp90", "--schemes", "sd-v1", "--workers", "2"
    )
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    assert "skipped" in stderr and "notes.png" in stderr
    assert stdout.splitlines()[0].split()[:3] == ["attack", "sd-v1", "found"]
    assert stdout.splitlines()[1].split()[:3] == ["none", "100", "%"]
    records = [json.loads(line) for line in (out / "robustness.jsonl").read_text().splitlines()]
    assert len(records) == 2 * 2 * 2
    assert {(r["width"], r["height"]) for r in records if "rocket" in r["image"]} == {(768, 512)}
    rows = list(csv.DictReader((out / "robustness.csv").open()))
    assert [(r["attack"], r["scheme"], r["marked"], r["clean"]) for r in rows] == [
        ("none", "sd-v1", "2", "2"),
        ("webp90", "sd-v1", "2", "2"),
    ]
    facts = json.loads((out / "robustness.json").read_text())
    assert facts["images"] == ["<b>astronaut.png-512x512", "rocket.jpg-768x512"]
    page = (out / "report.html").read_text()
    assert "<h2>Robustness</h2>" in page and "data:image/svg+xml;base64," in page
    assert (out / "robustness.md").read_text().startswith("| attack | sd-v1 found |")
    assert math.isclose(float(rows[0]["tpr"]), 1.0)
    again = sdsuite("report", str(out), "-o", str(tmp_path / "again.html"))
    assert again.wait(timeout=120) == 0, again.stderr.read()
    assert "<h2>Robustness</h2>" in (tmp_path / "again.html").read_text()


def test_the_report_escapes_what_the_records_say():
    from suite.report.robustness import report

    hostile = "<script>alert(1)</script>"
    records = [
        {**_record(hostile, "sd-v1", found=("sd-v1",)), "embedded": "sd-v1"},
        {**_record(hostile, None), "image": hostile},
    ]
    page = report(records, hostile)
    assert hostile not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
