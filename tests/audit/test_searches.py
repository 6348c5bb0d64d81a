import io

import audit_corpus
import numpy as np
import pytest
from PIL import Image

from suite.audit import crops, detect, output, readers, resizes, rotations, searches, votes
from suite.audit.decode import read_blocks, u_planes
from suite.audit.detect import Realignment, examine, z_scores
from suite.audit.scan import AuditOptions, audit_file
from suite.report import html
from suite.watermark import SCHEMES, embed

ALL = list(SCHEMES.values())


def _found(rgb: np.ndarray) -> dict[str, object]:
    """The schemes detected with the crop search on, and their evidence."""
    evidence = searches.reexamine(rgb, u_planes(rgb), examine(rgb, ALL))
    return {e.scheme.name: e for e in evidence if e.detected}


def _aligned_z(rgb: np.ndarray, scheme) -> float:
    """The aligned test's strongest z on the readings the searches score."""
    blocks = read_blocks(rgb)
    soft = votes.soft(*votes.block_extremes(blocks.sums.astype(np.float32), scheme.float_path))
    return float(np.abs(z_scores(soft, scheme.bits)).max())


def test_the_search_contains_the_aligned_test(marked_samples, monkeypatch):
    # with the scales its own decoys give (no prior pooled over the offsets), at offset (0, 0), the
    # image's own row length and shift 0 the search scores what the aligned test scores (in float32:
    # to a few parts in a million); pooled, it still finds the mark where the encoder put it
    for sample in marked_samples[:9]:
        found = crops.search(u_planes(sample.rgb), [SCHEMES[sample.scheme]])[0]
        assert found.realignment == Realignment("crop", (0, 0)) and found.p_value <= 1e-6, sample.name
    monkeypatch.setattr(detect, "PRIOR_WEIGHT", 0.0)
    for sample in marked_samples[:9]:
        for scheme, found in zip(ALL, crops.search(u_planes(sample.rgb), ALL), strict=True):
            assert abs(found.z) >= _aligned_z(sample.rgb, scheme) * (1 - 1e-4), (sample.name, scheme.name)


def test_the_step_search_contains_the_aligned_step_test(marked_samples, monkeypatch):
    # the crop search's step readings compare each block's coefficient with the ring the aligned
    # test uses (decode.block_surround): at offset (0, 0), the image's own row length and shift 0
    # it scores what the aligned test's impulse paths score
    monkeypatch.setattr(detect, "PRIOR_WEIGHT", 0.0)
    for sample in marked_samples[:6]:
        readings = detect.Readings.of(read_blocks(sample.rgb), float_path=True)
        searched = crops.search(u_planes(sample.rgb), ALL, lattice=False, steps=True)
        for scheme, found in zip(ALL, searched, strict=True):
            paths = ["impulse", "float-impulse"] if scheme.float_path else ["impulse"]
            rows = [readings.paths.index(path) for path in paths]
            aligned = float(np.abs(z_scores(readings.soft[rows], scheme.bits)).max())
            assert abs(found.z) >= aligned * (1 - 1e-4), (sample.name, scheme.name)


def test_cropped_marks_are_found_where_the_grid_moved(edited_samples):
    cropped = [s for s in edited_samples if s.edit == "crop10%"]
    hits, offsets = [], set()
    for sample in cropped:
        found = _found(sample.rgb)
        hits.append(set(found) == {sample.scheme})
        if sample.scheme in found:
            offsets.add((sample.image.width, found[sample.scheme].realignment))
    share = float(np.mean(hits))
    print(f"crop10% with the search: {share:.1%} of {len(cropped)}")
    assert share >= 0.85
    # 10 % cut off the top and left: the first whole block starts where the old grid's next line is
    assert (461, Realignment("crop", (5, 5))) in offsets and (576, Realignment("crop", (3, 0))) in offsets


def test_a_crop_of_the_right_and_bottom_is_found_too():
    # the grid stays, but rows are shorter: every block after the first row carries another bit
    marked = embed(audit_corpus.fit(audit_corpus.photo("rocket"), (512, 512)), "sd-v1")
    rgb = np.asarray(marked.crop((0, 0, 440, 400)))
    assert not examine(rgb, ALL)[0].detected
    found = _found(rgb)
    assert set(found) == {"sd-v1"} and found["sd-v1"].realignment == Realignment("crop", (0, 0))


def test_likely_crops_are_the_middle_and_the_corners_of_sd_sizes():
    places = set(crops.likely_crops(461, 461))
    # the middle of 512 (51 pixels cut: 25 on one side, 26 on the other) and its corners
    assert {(25, 25, 512), (26, 26, 512), (25, 26, 512), (0, 0, 512), (51, 51, 512), (0, 51, 512)} <= places
    # originals from the crop's size up to LIKELY_ORIGINAL times it, nothing in between
    widths = {width for _, _, width in places}
    assert widths == {w for w in crops.ORIGINAL_WIDTHS if 461 <= w <= crops.LIKELY_ORIGINAL * 461}
    assert (13, 13, 512) not in places
    # a zoom keeps the shape: the middle of 640 wide by 512 high is no likely 461x461 crop, while a
    # portrait made square by cutting one side only is (512x768 to 512x512: 128 rows off the top)
    assert (25, 89, 640) not in places and (128, 0, 512) in crops.likely_crops(512, 512)
    # an image as large as any SD output has nowhere likely to come from
    assert crops.likely_crops(2048, 2048) == ((0, 0, 2048),)


def test_a_mark_cropped_in_the_middle_needs_less_evidence_than_one_cropped_anywhere(monkeypatch):
    # the same mark cut 461x461 out of the middle (a likely crop) and out of (13, 17) (not one),
    # searched with and without the likely crops' family: the middle's p falls by the ratio of the
    # families' sizes, the other's doubles (its family keeps half the search's alpha)
    marked = embed(audit_corpus.fit(audit_corpus.photo("coffee"), (512, 512)), "sd-v2")
    middle = u_planes(np.asarray(marked.crop((25, 25, 486, 486))))
    anywhere = u_planes(np.asarray(marked.crop((17, 13, 478, 474))))
    found = [crops.search(u, [SCHEMES["sd-v2"]])[0] for u in (middle, anywhere)]
    monkeypatch.setattr(crops, "LIKELY_SHARE", 1e-300)
    alone = [crops.search(u, [SCHEMES["sd-v2"]])[0] for u in (middle, anywhere)]
    assert [f.realignment for f in found] == [Realignment("crop", (7, 7)), Realignment("crop", (3, 7))]
    assert [f.z for f in found] == [f.z for f in alone]
    assert found[0].p_value * 30 < alone[0].p_value <= 1e-6
    assert found[1].p_value == pytest.approx(2 * alone[1].p_value, rel=1e-6)


def test_no_clean_image_is_flagged_by_the_search(clean_images):
    smallest = 1.0
    for name, image in clean_images[::2]:
        for variant in [image, *(edit(image) for edit in audit_corpus.EDITS.values())]:
            for evidence in crops.search(u_planes(np.asarray(variant)), ALL):
                assert evidence.p_value > 1e-3, f"{name}: {evidence}"
                smallest = min(smallest, evidence.p_value)
    print(f"smallest corrected p-value of the search on clean images: {smallest:.2g}")


@pytest.mark.parametrize(("policy", "searched"), [("auto", True), ("never", False)])
def test_the_audit_searches_sizes_sd_never_outputs(tmp_path, policy, searched):
    marked = embed(audit_corpus.fit(audit_corpus.photo("coffee"), (512, 512)), "sd-v2")
    marked.crop((37, 21, 512, 512)).save(tmp_path / "cropped.png")
    record = audit_file(str(tmp_path / "cropped.png"), AuditOptions(search=policy))
    mark = next(m for m in record["watermarks"] if m["scheme"] == "sd-v2")
    assert mark["detected"] is searched
    assert mark["search"] == ({"edit": "crop", "grid_offset": [3, 3]} if searched else None)


def test_a_mirrored_crop_is_found_with_search_always(tmp_path):
    # flipped left to right, then 10 % cut from each side: flipped back it is a crop of the original
    marked = embed(audit_corpus.fit(audit_corpus.photo("coffee"), (512, 512)), "sd-v2")
    mirrored = marked.transpose(Image.Transpose.FLIP_LEFT_RIGHT).crop((25, 25, 486, 486))
    mirrored.save(tmp_path / "m.png")
    always = audit_file(str(tmp_path / "m.png"), AuditOptions(search="always"))
    auto = audit_file(str(tmp_path / "m.png"), AuditOptions())
    mark = next(m for m in always["watermarks"] if m["scheme"] == "sd-v2")
    assert [m["scheme"] for m in always["watermarks"] if m["detected"]] == ["sd-v2"]
    # flipped back, the crop starts 26 pixels in (512 - 486): the first whole block 6 pixels further
    assert mark["search"] == {"edit": "crop", "grid_offset": [7, 6], "mirror": "horizontal"}
    assert output.search_text(mark["search"]) == "crop +7,+6 of the horizontal mirror"
    row = html._file_row(always, None)
    assert "found by the crop search: grid at +7,+6 px of the horizontal mirror" in row
    assert not any(m["detected"] for m in auto["watermarks"])  # two more crop searches: `always` only


def test_sd_sized_images_are_searched_by_default(tmp_path):
    # a 512x512 mark resized to 384x384, another size SD outputs: only a search finds it
    marked = embed(audit_corpus.fit(audit_corpus.photo("coffee"), (512, 512)), "sd-v1")
    marked.resize((384, 384), Image.Resampling.LANCZOS).save(tmp_path / "a.png")
    assert searches.wanted("auto") and searches.wanted("always") and not searches.wanted("never")
    auto = audit_file(str(tmp_path / "a.png"), AuditOptions())
    never = audit_file(str(tmp_path / "a.png"), AuditOptions(search="never"))
    assert [m["scheme"] for m in auto["watermarks"] if m["detected"]] == ["sd-v1"]
    assert auto["watermarks"][0]["search"] == {"edit": "resize", "original_size": [512, 512]}
    assert not any(m["detected"] for m in never["watermarks"])


@pytest.mark.parametrize(
    ("transpose", "axis"),
    [(Image.Transpose.FLIP_LEFT_RIGHT, "horizontal"), (Image.Transpose.FLIP_TOP_BOTTOM, "vertical")],
)
def test_a_mirrored_mark_is_read_backwards(tmp_path, transpose, axis):
    marked = embed(audit_corpus.fit(audit_corpus.photo("astronaut"), (640, 448)), "sdxl")
    marked.transpose(transpose).save(tmp_path / "mirrored.png")
    record = audit_file(str(tmp_path / "mirrored.png"), AuditOptions())
    mark = next(m for m in record["watermarks"] if m["scheme"] == "sdxl")
    assert mark["detected"] and mark["search"] == {"edit": "mirror", "axis": axis}
    assert mark["bit_accuracy"] > 0.8  # the reference's bits, read on the image flipped back
    assert [m["scheme"] for m in record["watermarks"] if m["detected"]] == ["sdxl"]


TURNED = [
    (Image.Transpose.ROTATE_90, {"edit": "rotation", "degrees": 90.0}),
    (Image.Transpose.ROTATE_180, {"edit": "rotation", "degrees": 180.0}),
    (Image.Transpose.ROTATE_270, {"edit": "rotation", "degrees": 270.0}),
    (Image.Transpose.TRANSPOSE, {"edit": "mirror", "axis": "diagonal"}),
    (Image.Transpose.TRANSVERSE, {"edit": "mirror", "axis": "anti-diagonal"}),
]


@pytest.mark.parametrize(("transpose", "search"), TURNED)
@pytest.mark.parametrize("size", [(640, 448), (515, 449)])  # odd sides: the 2x2 squares move off the even grid
def test_a_mark_turned_by_quarter_turns_or_along_a_diagonal_is_turned_back(tmp_path, transpose, search, size):
    marked = embed(audit_corpus.fit(audit_corpus.photo("astronaut"), size), "sd-v1")
    marked.transpose(transpose).save(tmp_path / "turned.png")
    record = audit_file(str(tmp_path / "turned.png"), AuditOptions())
    mark = next(m for m in record["watermarks"] if m["scheme"] == "sd-v1")
    assert mark["detected"] and mark["search"] == search and mark["p_value"] < 1e-20
    assert mark["bit_accuracy"] > 0.8  # the reference's bits, read on the image turned back
    assert [m["scheme"] for m in record["watermarks"] if m["detected"]] == ["sd-v1"]


def test_turning_back_undoes_every_turn():
    image = np.arange(5 * 7 * 3).reshape(5, 7, 3)
    for transpose, search in TURNED:
        edited = np.asarray(Image.fromarray(image.astype(np.uint8)).transpose(transpose))
        turn = Realignment(search["edit"], search.get("degrees", search.get("axis")))
        assert np.array_equal(searches.turned_back(edited, turn), image)


def test_no_clean_image_is_flagged_turned_back(clean_images):
    smallest = 1.0
    for _, image in clean_images:
        for found in searches._turned(u_planes(np.asarray(image)), ALL):
            smallest = min(smallest, *(evidence.p_value for evidence in found))
    print(f"smallest corrected p-value of the turned-back tests on clean images: {smallest:.2g}")
    assert smallest > 1e-3


def test_horizontally_flipped_marks_are_found(marked_samples):
    flipped = marked_samples[::3]
    hits = []
    for sample in flipped:
        rgb = np.ascontiguousarray(sample.rgb[:, ::-1])
        hits.append(set(_found(rgb)) == {sample.scheme})
    share = float(np.mean(hits))
    print(f"horizontal flip: {share:.1%} of {len(flipped)}")
    assert share >= 0.95


def test_resize_candidates_are_sd_sizes_of_the_same_shape():
    assert (512, 512) in resizes.originals(384, 384) and (384, 384) not in resizes.originals(384, 384)
    assert resizes.originals(480, 336) == [(640, 448)]  # 640x448 at x0.75 (1280x896 would be x0.375)
    assert all(
        w % 64 == 0 and h % 64 == 0 and w * h <= resizes.MAX_ORIGINAL_PIXELS for w, h in resizes.originals(461, 461)
    )
    assert resizes.originals(100, 3000) == []  # no SD shape


def test_resized_marks_are_found_resized_back(edited_samples):
    resized = [s for s in edited_samples if s.edit == "resize0.75"][::2]
    hits = []
    for sample in resized:
        searched = resizes.search(u_planes(sample.rgb), ALL)
        found = {scheme.name for scheme, r in zip(ALL, searched, strict=True) if r.p_value <= 1e-6}
        hits.append(found == {sample.scheme})
    share = float(np.mean(hits))
    print(f"resize0.75 with the search: {share:.1%} of {len(resized)}")
    assert share >= 0.9


def test_no_clean_image_is_flagged_resized_back(clean_images):
    smallest = 1.0
    for name, image in clean_images[1::2]:
        for variant in [image, *(edit(image) for edit in audit_corpus.EDITS.values())]:
            for found in resizes.search(u_planes(np.asarray(variant)), ALL):
                if found is not None:
                    assert found.p_value > 1e-4, f"{name}: {found}"
                    smallest = min(smallest, found.p_value)
    print(f"smallest corrected p-value of the resize search on clean images: {smallest:.2g}")


def jpeg_then_cropped(image: Image.Image, quality: int = 90) -> np.ndarray:
    """Saved as JPEG 4:2:0, then 10 % cut off each side (as the robustness benchmark's jpeg90+crop10)."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    decoded = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    cut_x, cut_y = image.width // 10, image.height // 10
    return np.asarray(decoded.crop((cut_x, cut_y, image.width - cut_x, image.height - cut_y)))


def test_the_grid_of_an_earlier_jpeg_is_seen_wherever_a_crop_moved_it():
    photo = audit_corpus.fit(audit_corpus.photo("chelsea"), (512, 512))
    assert readers.shows_jpeg_grid(jpeg_then_cropped(photo, 75))
    assert readers.shows_jpeg_grid(jpeg_then_cropped(photo, 90))
    assert not readers.shows_jpeg_grid(np.asarray(photo))  # (flat illustrations whose edges fall on it may)
    assert not readers.shows_jpeg_grid(np.asarray(photo.resize((384, 384), Image.Resampling.LANCZOS)))
    assert not readers.shows_jpeg_grid(np.zeros((16, 16, 3), np.uint8))  # too small to tell


def test_a_jpeg_cropped_and_saved_as_png_is_read_for_the_step(monkeypatch):
    # its chroma was coded lossily before the crop: the crop search reads the encoder's step there
    # too, where the lattice alone finds nothing
    rgb = jpeg_then_cropped(embed(audit_corpus.fit(audit_corpus.photo("chelsea"), (512, 512)), "sd-v1"))
    found = _found(rgb)
    assert set(found) == {"sd-v1"} and found["sd-v1"].realignment.edit == "crop"
    assert found["sd-v1"].path == "impulse"
    monkeypatch.setattr(readers, "JPEG_GRID", float("inf"))
    assert not _found(rgb)


def test_the_middles_a_resized_image_may_have_been_cut_from():
    # a 512x512 band: originals up to twice as long on one side, one side cut on both ends by a
    # multiple of 32 pixels, so the first whole block is a block of the original's grid
    cut = dict(resizes.cuts(512, 512))
    assert cut[(768, 512)] == 128 // 8  # 128 pixels cut from the left: block 16 of row 0
    assert cut[(512, 768)] == 128 // 8 * 64  # 128 from the top: row 16 of a 64-block row
    assert (1088, 512) not in cut and (512, 512) not in cut  # longer than twice; no cut at all
    assert all(w * h <= resizes.MAX_ORIGINAL_PIXELS for (w, h), _ in resizes.cuts(1024, 1024))


def centre_cropped_384(image: Image.Image) -> Image.Image:
    """What img2dataset's center_crop does: the short side resized to 384, the middle kept."""
    scale = 384 / min(image.size)
    resized = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    left, top = (resized.width - 384) // 2, (resized.height - 384) // 2
    return resized.crop((left, top, left + 384, top + 384))


@pytest.mark.parametrize("size", [(768, 512), (448, 640)])
def test_a_centre_cropped_resize_is_found_with_search_always(tmp_path, size):
    marked = embed(audit_corpus.fit(audit_corpus.photo("chelsea"), size), "sd-v1")
    centre_cropped_384(marked).save(tmp_path / "square.png")
    always = audit_file(str(tmp_path / "square.png"), AuditOptions(search="always"))
    mark = always["watermarks"][0]
    assert [m["scheme"] for m in always["watermarks"] if m["detected"]] == ["sd-v1"]
    short = min(size)
    assert mark["search"] == {"edit": "resize", "original_size": [short, short], "cut_from": list(size)}
    text = f"resize from {short}x{short}, the middle of {size[0]}x{size[1]}"
    assert output.search_text(mark["search"]) == text
    row = html._file_row(always, None)  # no bits shown: the reference numbers the blocks wrong
    assert f"found by the search, {text}</td>" in row and f"found by the search, {text}:" not in row


def test_no_clean_image_is_flagged_in_the_middles(clean_images):
    smallest = 1.0
    for name, image in clean_images[::3]:
        for variant in (image, centre_cropped_384(image)):
            for found in resizes.search(u_planes(np.asarray(variant)), ALL, cut=True):
                if found is not None:
                    assert found.p_value > 1e-4, f"{name}: {found}"
                    smallest = min(smallest, found.p_value)
    print(f"smallest corrected p-value of the resize search with cuts on clean images: {smallest:.2g}")


def test_the_audit_says_which_size_a_resized_mark_came_from(tmp_path):
    marked = embed(audit_corpus.fit(audit_corpus.photo("rocket"), (512, 512)), "sd-v1")
    marked.resize((400, 400), Image.Resampling.BICUBIC).save(tmp_path / "small.png")
    record = audit_file(str(tmp_path / "small.png"), AuditOptions())
    mark = next(m for m in record["watermarks"] if m["detected"])
    assert (mark["scheme"], mark["search"]) == ("sd-v1", {"edit": "resize", "original_size": [512, 512]})
    assert mark["bit_accuracy"] > 0.8  # the reference's own bits, read on the image resized back


def test_images_larger_than_any_sd_output_are_not_crop_searched():
    wide = np.zeros((300, 2100, 3), np.uint8)
    assert crops.search(u_planes(wide), ALL) == [None] * len(ALL)
    assert rotations.search(u_planes(wide), ALL) == [None] * len(ALL)
    evidence = searches.reexamine(wide, u_planes(wide), examine(wide, ALL))
    assert not any(e.detected for e in evidence)


def test_the_searches_read_float_planes_as_uint8_ones():
    # the native JPEG/WebP readers hand over float32 U planes; integer ones are looked up instead
    marked = embed(audit_corpus.fit(audit_corpus.photo("coffee"), (512, 512)), "sdxl")
    cropped = np.asarray(marked)[37:, 21:]
    resized = np.asarray(marked.resize((384, 384), Image.Resampling.LANCZOS))
    for rgb, search in ((cropped, crops.search), (resized, resizes.search)):
        u = u_planes(np.ascontiguousarray(rgb))
        exact, rebuilt = search(u, ALL), search(u.astype(np.float32), ALL)
        for a, b in zip(exact, rebuilt, strict=True):
            assert b.z == pytest.approx(a.z, rel=1e-4) and (a.order, a.path) == (b.order, b.path)
        assert exact[2].p_value <= 1e-6  # sdxl found


def test_a_rotated_mark_is_found_rotated_back_with_search_always(tmp_path):
    marked = embed(audit_corpus.fit(audit_corpus.photo("astronaut"), (512, 512)), "sd-v1")
    marked.rotate(2, resample=Image.Resampling.BICUBIC).save(tmp_path / "rotated.png")
    always = audit_file(str(tmp_path / "rotated.png"), AuditOptions(search="always"))
    mark = always["watermarks"][0]
    assert [m["scheme"] for m in always["watermarks"] if m["detected"]] == ["sd-v1"]
    assert mark["search"] == {"edit": "rotation", "degrees": 2.0}
    assert mark["bit_accuracy"] > 0.7  # the reference's bits, read on the image rotated back
    auto = audit_file(str(tmp_path / "rotated.png"), AuditOptions(search="auto"))
    assert auto["watermarks"][0]["search"] != {"edit": "rotation", "degrees": 2.0}


def test_no_clean_image_is_flagged_rotated_back(clean_images):
    smallest = 1.0
    for name, image in clean_images[::3]:
        for variant in [image, *(edit(image) for edit in audit_corpus.EDITS.values())]:
            for found in rotations.search(u_planes(np.asarray(variant)), ALL):
                assert found is not None and found.p_value > 1e-3, f"{name}: {found}"
                smallest = min(smallest, found.p_value)
    print(f"smallest corrected p-value of the rotation search on clean images: {smallest:.2g}")


def test_a_jpeg_cropped_is_found_on_the_step_readings_only():
    # a JPEG's quantised chroma keeps little of the lattice but much of the encoder's mean step; the
    # crop moved the grid by (13, 21) pixels, so the first whole block is at (3, 3)
    import io

    photo = audit_corpus.fit(audit_corpus.photo("chelsea"), (512, 512))
    buffer = io.BytesIO()
    embed(photo, "sd-v1").save(buffer, "JPEG", quality=90)
    box = (21, 13, 21 + 448, 13 + 448)
    u = u_planes(np.asarray(Image.open(buffer).convert("RGB").crop(box)))
    lattice = crops.search(u, [SCHEMES["sd-v1"]])[0]
    steps = crops.search(u, [SCHEMES["sd-v1"]], steps=True)[0]
    assert lattice.p_value > 1e-6
    assert steps.p_value <= 1e-6 and steps.path == "impulse" and steps.realignment.edit == "crop"
    # the decoder's chroma upsampling blurs the mark over a pixel: the offsets next to (3, 3) score
    # within a few per cent of it (12.4 and 12.3), so the strongest is within a pixel of the grid
    assert max(abs(a - b) for a, b in zip(steps.realignment.where, (3, 3), strict=True)) <= 1
    assert crops.tests_per_scheme(SCHEMES["sd-v1"], 448, steps=True) == 2 * crops.tests_per_scheme(
        SCHEMES["sd-v1"], 448
    )
    clean = u_planes(np.asarray(photo.crop(box)))
    assert all(e.p_value > 1e-3 for e in crops.search(clean, ALL, steps=True))
