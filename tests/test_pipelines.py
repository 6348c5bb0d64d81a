import numpy as np
import pytest
import torch
from imwatermark import WatermarkDecoder

from suite import pipelines
from suite.pipelines import NotApplicable, check_applicable, generate, prepare, stage_times
from suite.scenario import Scenario
from suite.worker import classify

CPU = torch.device("cpu")


def _run(**fields):
    defaults = {"name": "t", "model": "sd-v1", "weights": "tiny", "width": 64, "height": 64, "steps": 3}
    scenario = Scenario(**{**defaults, **fields})
    return generate(prepare(scenario, check_applicable(scenario)))


def _reference_bits(image, length):
    bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
    return WatermarkDecoder("bytes", length).decode(bgr, "dwtDct")


@pytest.mark.parametrize(
    ("fields", "iterations"),
    [
        ({"sampler": "plms"}, 4),  # PNDM with skip_prk_steps runs one extra iteration, as diffusers does
        ({"sampler": "ddim"}, 3),
        ({"sampler": "euler-a"}, 3),
        ({"task": "img2img", "strength": 0.8, "steps": 5, "sampler": "ddim"}, 4),  # strength 0.8 of 5 steps
        ({"model": "sd-v2.1", "negative_prompt": "blurry", "sampler": "ddim"}, 3),
        ({"model": "sd-x4-upscaler", "task": "upscale", "sampler": "ddim", "noise_level": 20}, 3),
    ],
)
def test_every_task_and_sampler_runs_and_is_timed_by_stage_and_step(fields, iterations):
    g = _run(**fields)
    assert len(g.images) == 1 and g.images[0].size == (64, 64)
    assert len(g.step_s) == iterations and all(t > 0 for t in g.step_s)
    assert g.stages_s["text_encode"] > 0 and g.stages_s["vae_decode"] > 0
    assert g.stages_s["denoise"] == pytest.approx(sum(g.step_s))
    assert sum(g.stages_s.values()) <= g.latency_s
    assert g.check["problem"] == ""


def test_seeds_make_runs_reproducible():
    a, b, c = _run(seed=5), _run(seed=5), _run(seed=6)
    assert np.array_equal(np.asarray(a.images[0]), np.asarray(b.images[0]))
    assert not np.array_equal(np.asarray(a.images[0]), np.asarray(c.images[0]))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"model": "sd-v1"}, b"StableDiffusionV1"),
        ({"model": "sd-v2.1", "sampler": "ddim"}, b"SDV2"),
        ({"model": "sd-x4-upscaler", "task": "upscale", "sampler": "ddim"}, b"SDV2"),
    ],
)
def test_outputs_carry_the_reference_watermark_that_the_reference_decoder_reads(fields, message):
    g = _run(width=512, height=512, steps=2, **fields)
    assert g.watermark == {
        "scheme": "sd-v1" if message == b"StableDiffusionV1" else "sd-v2",
        "marked": 1,
        "too_small": 0,
    }
    assert _reference_bits(g.images[0], len(message) * 8) == message


def test_small_outputs_stay_unmarked_and_say_so():
    g = _run(width=128, height=128)
    assert g.watermark["too_small"] == 1 and "left unmarked" in g.watermark["note"]
    assert _run(watermark="none").watermark["scheme"] == "none"


@pytest.mark.parametrize(
    "modes", [("attention-slicing",), ("vae-slicing",), ("vae-tiling",), ("attention-slicing", "vae-tiling")]
)
def test_memory_modes_available_on_cpu(modes):
    g = _run(memory_modes=modes, batch=2)
    assert len(g.images) == 2


def test_offload_and_budgets_are_not_applicable_on_cpu():
    with pytest.raises(NotApplicable, match="on cpu there is none"):
        check_applicable(Scenario(name="t", model="sd-v1", device="cpu", memory_modes=("model-offload",)))
    with pytest.raises(NotApplicable, match="CUDA only"):
        check_applicable(Scenario(name="t", model="sd-v1", device="cpu", vram_budget_gib=8))
    if not torch.cuda.is_available():
        with pytest.raises(NotApplicable, match="needs CUDA"):
            check_applicable(Scenario(name="t", model="sd-v1", device="cuda"))


def test_half_precision_on_cpu_runs_or_is_classified_unsupported():
    try:
        g = _run(model="sd-v2.1", precision="fp16", device="cpu", steps=1, sampler="ddim")
    except Exception as exc:  # older torch: "slow_conv2d_cpu" not implemented for 'Half'
        assert classify(exc)[0] == "unsupported"
    else:
        assert g.check["problem"] == "" and g.images[0].size == (64, 64)
    status, reason = classify(RuntimeError("\"slow_conv2d_cpu\" not implemented for 'Half'"))
    assert status == "unsupported" and "Half" in reason
    assert classify(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))[0] == "oom"
    assert classify(RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate`"))[0] == "oom"
    assert classify(ValueError("something else"))[0] == "error"


def test_speed_techniques_apply_on_cpu():
    g = _run(channels_last=True, fuse_qkv=True, sdpa_backend="math", threads=1, cudnn_benchmark=True)
    assert g.check["problem"] == ""
    assert torch.get_num_threads() == 1 and torch.backends.cudnn.benchmark
    torch.set_num_threads(2)
    torch.backends.cudnn.benchmark = False
    s = Scenario(name="t", model="sd-v1", channels_last=True, cudnn_benchmark=True, compile="default")
    assert s.techniques == "channels-last+cudnn-benchmark+compile-default(unet+vae)"


def test_stage_times_from_marks():
    marks = [
        ("start", 0.0),
        ("text_encode_start", 0.1),
        ("text_encode_end", 0.3),
        ("denoise_start", 0.4),
        ("step", 1.4),
        ("step", 1.9),
        ("vae_decode_start", 2.0),
        ("vae_decode_end", 2.5),
        ("watermark_start", 2.6),
        ("watermark_end", 2.7),
    ]
    stages, steps = stage_times(marks)
    assert steps == pytest.approx([1.0, 0.5])
    assert stages == pytest.approx(
        {"text_encode": 0.2, "prepare": 0.1, "denoise": 1.5, "vae_decode": 0.5, "watermark": 0.1}
    )


def test_broken_outputs_are_caught():
    nan = np.full((1, 8, 8, 3), np.nan, dtype=np.float32)
    assert "NaN" in pipelines.check_pixels(nan)["problem"]
    black = np.zeros((1, 8, 8, 3), dtype=np.float32)
    assert "blank" in pipelines.check_pixels(black)["problem"]
    noise = np.random.default_rng(0).random((1, 8, 8, 3), dtype=np.float32)
    assert pipelines.check_pixels(noise)["problem"] == ""


def test_unknown_sampler_is_explained():
    with pytest.raises(ValueError, match="unknown sampler 'plms2'"):
        _run(sampler="plms2")
    assert _run(sampler="LMSDiscreteScheduler").images
