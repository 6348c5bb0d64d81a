import pytest

from suite.scenario import ScenarioError, load, parse, resolve_profile

GOOD = """
[defaults]
weights = "tiny"
repeats = 2

[[scenario]]
name = "v1"
model = "sd-v1"
width = 256
height = 256

[[scenario]]
name = "lowvram"
family = "lowvram"
model = "sd-v1"
precision = "fp16"
[scenario.matrix]
memory_mode = ["attention-slicing", "model-offload"]
vram_budget_gib = [4, 8]
"""


def test_defaults_apply_and_matrix_expands_in_order():
    scenarios = parse(GOOD, "good.toml")
    names = [s.name for s in scenarios]
    assert names == [
        "v1",
        "lowvram-attention-slicing-4gib",
        "lowvram-attention-slicing-8gib",
        "lowvram-model-offload-4gib",
        "lowvram-model-offload-8gib",
    ]
    assert all(s.weights == "tiny" and s.repeats == 2 for s in scenarios)
    assert scenarios[0].family == "v1"
    assert {s.family for s in scenarios[1:]} == {"lowvram"}
    assert scenarios[3].memory_modes == ("model-offload",) and scenarios[3].vram_budget_gib == 4


def test_overrides_win_over_file_values():
    scenarios = parse(GOOD, overrides={"weights": "/models/sd15.safetensors"})
    assert {s.weights for s in scenarios} == {"/models/sd15.safetensors"}


def test_combined_memory_modes_in_one_string():
    text = '[[scenario]]\nname = "x"\nmodel = "sd-v1"\nmemory_modes = "attention-slicing+vae-tiling"\n'
    (s,) = parse(text)
    assert s.memory_modes == ("attention-slicing", "vae-tiling")
    assert s.memory_mode == "attention-slicing+vae-tiling"


@pytest.mark.parametrize(
    ("body", "line", "field", "why"),
    [
        ('model = "sd-v3"', 4, "model", "not one of"),
        ('model = "sd-v1"\nprecision = "fp8"', 5, "precision", "not one of"),
        ('model = "sd-v1"\nwidth = 500', 5, "width", "multiple of 8"),
        ('model = "sd-v1"\nsteps = "fifty"', 5, "steps", "expected int"),
        ('model = "sd-v1"\ntask = "upscale"', 5, "task", "does not fit"),
        ('model = "sd-v1"\nmemory_modes = ["model-offload", "sequential-offload"]', 5, "memory_modes", "choose one"),
        ('model = "sd-v1"\ncolour = "blue"', 5, "colour", "unknown field"),
    ],
)
def test_errors_name_file_line_and_field(body, line, field, why):
    text = '# profile\n[[scenario]]\nname = "bad"\n' + body + "\n"
    with pytest.raises(ScenarioError) as err:
        parse(text, "bad.toml")
    message = str(err.value)
    assert message.startswith(f"bad.toml:{line}: scenario 'bad', field '{field}'"), message
    assert why in message


def test_toml_syntax_error_gives_position():
    with pytest.raises(ScenarioError, match=r"bad.toml: not valid TOML: .*line 2"):
        parse('[[scenario]]\nname = "x\n', "bad.toml")


def test_duplicate_names_are_refused():
    text = '[[scenario]]\nname = "a"\nmodel = "sd-v1"\n[[scenario]]\nname = "a"\nmodel = "sd-v1"\n'
    with pytest.raises(ScenarioError, match="used twice"):
        parse(text)


@pytest.mark.parametrize("profile", ["smoke", "quick", "reference"])
def test_shipped_profiles_are_valid(profile):
    scenarios = load(resolve_profile(profile))
    families = {s.family for s in scenarios}
    assert {"v1-txt2img", "v1-img2img", "v2-txt2img", "upscale-x4"} <= families
    assert any(f.startswith("lowvram") for f in families)
    assert any(f.startswith("cpu") for f in families)


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(ScenarioError, match="smoke"):
        resolve_profile("nonexistent")
