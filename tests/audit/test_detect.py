import audit_corpus
import numpy as np
import pytest
from scipy.special import stdtr

from suite.audit.detect import PRIOR_WEIGHT, ScalePrior, degrees_of_freedom, examine, z_scores
from suite.watermark import SCHEMES, scheme_from_bits

ALL = list(SCHEMES.values())


def _z(soft: np.ndarray, bits: tuple[int, ...]) -> float:
    return float(z_scores(soft, bits))


def verdicts(sample_rgb: np.ndarray) -> dict[str, tuple[bool, float]]:
    return {e.scheme.name: (e.detected, e.p_value) for e in examine(sample_rgb, ALL)}


def shares(samples) -> dict[str | None, float]:
    """Per edit: the share of marked images found with their scheme and no other."""
    hits: dict[str | None, list[bool]] = {}
    for sample in samples:
        found = {name for name, (detected, _) in verdicts(sample.rgb).items() if detected}
        hits.setdefault(sample.edit, []).append(found == {sample.scheme})
    return {edit: float(np.mean(h)) for edit, h in hits.items()}


def test_no_clean_image_is_flagged(clean_images):
    # clean photographs and illustrations, and every edit of them (JPEG, brightness, resize, crop)
    p_values = []
    for name, image in clean_images:
        for variant in [image, *(edit(image) for edit in audit_corpus.EDITS.values())]:
            for scheme, (detected, p) in verdicts(np.asarray(variant)).items():
                assert not detected, f"{name}: {scheme} p={p:.2g}"
                p_values.append(p)
    # calibrated or conservative: no excess of small p-values on unmarked images
    assert len(p_values) >= 300
    assert np.mean(np.array(p_values) < 0.05) <= 0.08


def test_unedited_marks_are_found_with_the_right_scheme(marked_samples):
    share = shares(marked_samples)[None]
    print(f"unedited: {share:.1%} of {len(marked_samples)}")
    assert share >= 0.9


def test_edited_marks_are_found_as_far_as_the_evidence_allows(edited_samples):
    found = shares(edited_samples)
    print("edited:", {edit: f"{share:.1%}" for edit, share in found.items()})
    assert found["brightness1.2"] >= 0.7  # brightness rotates the lattice phase but keeps the pattern
    assert found["jpeg90"] >= 0.05  # JPEG's chroma quantisation erases most of the mark
    # a resize or a crop moves the 8-pixel block grid: the aligned test finds nothing (a crop's
    # mark is still there, at another alignment: test_crops.py)
    assert found["resize0.75"] == 0.0
    assert found["crop10%"] == 0.0


def test_votes_read_inverted_are_still_evidence(marked_samples):
    # The SDXL float path mirrors negative coefficients, so the reference reads many SDXL marks
    # inverted; the two-sided test with the float reading path finds them anyway.
    sdxl = [s for s in marked_samples if s.scheme == "sdxl" and s.order == "bgr"]
    evidence = [next(e for e in examine(s.rgb, ALL) if e.scheme.name == "sdxl") for s in sdxl]
    inverted_for_reference = [e for e in evidence if e.bit_accuracy < 0.5]
    assert inverted_for_reference  # the weakness exists in this corpus
    assert all(e.detected for e in inverted_for_reference)


def test_z_is_immune_to_an_all_zero_vote_bias():
    # A flat image gives every block the same vote: no variation, no evidence, whatever the message.
    flat = np.full(4096, 0.7)
    assert _z(flat, SCHEMES["sd-v2"].bits) == 0.0
    # Votes biased towards 0 everywhere (+ noise) do not favour a message rich in zeros.
    rng = np.random.default_rng(0)
    biased = 0.8 + 0.1 * rng.standard_normal(4096)
    zeros_heavy = scheme_from_bits("zeros", "0001" * 8)
    assert abs(_z(biased, zeros_heavy.bits)) < 4


def test_z_follows_the_message_and_its_inversion():
    rng = np.random.default_rng(1)
    bits = SCHEMES["sd-v2"].bits
    pattern = 1.0 - 2.0 * np.resize(np.array(bits, dtype=float), 4096)
    noisy = 0.3 * pattern + rng.standard_normal(4096)
    assert _z(noisy, bits) > 8
    assert _z(-noisy, bits) < -8
    assert abs(_z(rng.standard_normal(4096), bits)) < 4


def test_degrees_of_freedom_follow_the_message_spectrum():
    alternating = tuple([0, 1] * 16)  # all power at one frequency: the decoys carry one dof
    assert degrees_of_freedom(alternating) == pytest.approx(1.0)
    rng = np.random.default_rng(2)
    random_bits = tuple(int(b) for b in rng.integers(0, 2, 128))
    assert 40 < degrees_of_freedom(random_bits) < 127
    assert 10 < degrees_of_freedom(SCHEMES["sd-v2"].bits) < 31


def _pools(rng: np.random.Generator, inflation: np.ndarray, dof: float, tests: int = 64) -> tuple[np.ndarray, ...]:
    """Decoy mean squares of `tests` tests per pool whose true squared scale is `inflation` times
    their spread, each estimated with `dof` degrees of freedom (a scaled chi-square)."""
    spread = rng.uniform(50, 500, (inflation.size, tests))
    true = inflation[:, None] * spread
    return true * rng.chisquare(dof, spread.shape) / dof, spread


def test_a_pool_of_consistent_scales_gives_its_tests_the_prior_s_full_weight():
    rng = np.random.default_rng(3)
    dof = degrees_of_freedom(SCHEMES["sd-v2"].bits)
    ms, spread = _pools(rng, np.full(20, 1.7), dof)  # every test's scale inflated alike
    prior = ScalePrior.of(ms, spread, dof, axis=1)
    assert np.allclose(prior.dof, PRIOR_WEIGHT * dof)
    assert np.allclose(prior.ratio, 1.7, rtol=0.15)
    shrunk, total = prior.shrink(ms, spread, dof)
    assert np.allclose(total, (1 + PRIOR_WEIGHT) * dof)
    # shrunk towards the truth: its estimates of each scale err less than the tests' own
    assert np.std(np.log(shrunk / (1.7 * spread))) < 0.6 * np.std(np.log(ms / (1.7 * spread)))


def test_a_pool_whose_scales_differ_lends_them_little_weight():
    rng = np.random.default_rng(4)
    dof = degrees_of_freedom(SCHEMES["sd-v2"].bits)
    spread = rng.uniform(50, 500, (20, 64))
    inflation = np.exp(rng.normal(0, 1.0, spread.shape))  # one test's correlation says nothing of the next
    ms = inflation * spread * rng.chisquare(dof, spread.shape) / dof
    prior = ScalePrior.of(ms, spread, dof, axis=1)
    assert np.all(prior.dof < 0.5 * dof) and np.median(prior.dof) < 0.25 * dof
    small = ScalePrior.of(ms[:, :10], spread[:, :10], dof, axis=1)  # too few tests to pool
    assert np.all(small.dof == 0)
    assert np.allclose(small.shrink(ms[:, :10], spread[:, :10], dof)[0], ms[:, :10])


def test_the_prior_keeps_the_moderated_t_calibrated_under_the_null():
    # tests whose T is normal with its true scale, which differs between pools and a little within
    # them: the moderated p-values stay uniform in the tail
    rng = np.random.default_rng(5)
    dof = degrees_of_freedom(SCHEMES["sd-v2"].bits)
    spread = rng.uniform(50, 500, (400, 64))
    true = np.exp(rng.normal(0, 0.5, (400, 1)) + rng.normal(0, 0.15, spread.shape)) * spread
    ms = true * rng.chisquare(dof, spread.shape) / dof
    t = rng.standard_normal(spread.shape) * np.sqrt(true)
    prior = ScalePrior.of(ms, spread, dof, axis=1)
    shrunk, total = prior.shrink(ms, spread, dof)
    p = 2 * stdtr(total, -np.abs(t / np.sqrt(shrunk)))
    assert np.mean(p < 0.01) < 0.013 and np.mean(p < 0.001) < 0.0015
