"""Every subcommand against generated bad arguments and bad files (issue 15): never a traceback,
never a hang, never an input changed, always a documented exit code (0, 1, 2, 130).

Cases are in-process `suite.cli.main` calls under an alarm (a hang fails the case), with a few
in subprocesses for what only a real process shows (pipes, the exit status). SDSUITE_FUZZ_EXAMPLES
sets the examples per subcommand (`make fuzz` runs many more); each run prints how many cases
each subcommand tried.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import string
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from support import sdsuite

from suite.cli import main
from suite.errors import EXIT_FAILURES, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from suite.scenario import _FIELD_TYPES, MODELS

EXAMPLES = int(os.environ.get("SDSUITE_FUZZ_EXAMPLES", "50"))
CALL_TIMEOUT_S = 60  # a call still running after this is a hang
DOCUMENTED = {EXIT_OK, EXIT_FAILURES, EXIT_USAGE, EXIT_INTERRUPTED}
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # no .hypothesis folder in the tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
CASES: Counter[str] = Counter()


class Hang(Exception):
    """A call that did not return within CALL_TIMEOUT_S."""


def _seed_images() -> list[bytes]:
    """Small valid PNG, JPEG and WebP files (256x256, so a mutated one still gets decoded)."""
    out = []
    pixels = Image.effect_noise((256, 256), 60).convert("RGB")
    for kind in ("PNG", "JPEG", "WEBP"):
        buf = io.BytesIO()
        pixels.save(buf, kind)
        out.append(buf.getvalue())
    return out


SEED_IMAGES = _seed_images()


@st.composite
def mutated_image(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEED_IMAGES)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
        at = draw(st.integers(0, len(data) - 1)) if data else 0
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif data:
            del data[at : at + draw(st.integers(1, 64))]
    return bytes(data)


def _png_claiming(width: int, height: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


BAD_BYTES = st.one_of(
    st.binary(max_size=4096),
    mutated_image(),
    st.sampled_from([b"", _png_claiming(60000, 60000), _png_claiming(0, 0), b"\xff\xfe\x00bad", *SEED_IMAGES]),
)

# --- scenario files from a small grammar ---------------------------------------------------------
TOML_KEYS = st.sampled_from([*_FIELD_TYPES, "size", "memory_mode", "nosuch", "name", "model", "model"])
TOML_SCALARS = st.one_of(
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=12),
    st.sampled_from([*MODELS, "tiny", "synthetic", "cpu", "fp16", "pndm", "nosuch", "attention-slicing"]),
)


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return (
            "nan" if value != value else ("inf" if value > 0 else "-inf") if abs(value) == float("inf") else repr(value)
        )
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return str(value)


TOML_VALUES = st.one_of(TOML_SCALARS, st.lists(TOML_SCALARS, max_size=3))
TOML_PAIRS = st.lists(st.tuples(TOML_KEYS, TOML_VALUES), max_size=5)


@st.composite
def scenario_text(draw) -> str:
    lines = []
    if draw(st.booleans()):
        lines.append("[defaults]")
        lines += [f"{k} = {toml_value(v)}" for k, v in draw(TOML_PAIRS)]
    for i in range(draw(st.integers(0, 3))):
        lines += ["[[scenario]]", f'name = "s{i}"', f'model = "{draw(st.sampled_from(MODELS))}"', 'weights = "tiny"']
        lines += [f"{k} = {toml_value(v)}" for k, v in draw(TOML_PAIRS)]
        if draw(st.booleans()):
            lines.append("[scenario.matrix]")
            lines += [f"{k} = {toml_value(v)}" for k, v in draw(TOML_PAIRS)]
    if draw(st.booleans()):
        lines.append(draw(st.text(alphabet=string.printable, max_size=40)))  # anything at all
    return "\n".join(lines) + "\n"


# --- JSONL lines ------------------------------------------------------------------------------
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
META_KEYS = ["a1111", "comfyui", "invokeai", "novelai", "c2pa", "exif", "xmp", "text", "ai_claims", "error", "format"]
AUDIT_FIELDS = st.fixed_dictionaries(
    {"path": st.one_of(st.text(max_size=20), JSON_VALUES), "status": st.sampled_from(["ok", "too_small", "error", 5])},
    optional={
        "width": JSON_VALUES,
        "height": JSON_VALUES,
        "error": JSON_VALUES,
        "error_kind": JSON_VALUES,
        "watermarks": st.one_of(JSON_VALUES, st.lists(st.dictionaries(st.sampled_from(["scheme", "detected", "p_value", "bit_accuracy", "search", "exact", "decoded"]), JSON_VALUES), max_size=3)),
        "metadata": st.one_of(JSON_VALUES, st.dictionaries(st.sampled_from(META_KEYS), JSON_VALUES, max_size=3)),
    },
)  # fmt: skip
JSONL_LINES = st.lists(
    st.one_of(JSON_VALUES.map(json.dumps), AUDIT_FIELDS.map(json.dumps), st.text(max_size=30)), max_size=6
)


BENCH_KEYS = [
    *("scenario", "status", "latency_s", "step_s", "memory", "run_id", "stages_s", "quality", "capacity"),
    *("watermark", "images", "energy", "compute", "fingerprint", "weights", "warmup_latency_s", "device"),
]


def bench_record(status: str) -> dict:
    from suite.scenario import Scenario

    scenario = Scenario(name="s", model="sd-v1", family="s").to_dict()
    return {"schema_version": 1, "run_id": "r", "scenario": scenario, "status": status, "error": None}


@st.composite
def results_text(draw) -> str:
    lines = [json.dumps(bench_record(draw(st.sampled_from(["ok", "error", "oom"]))))]
    for line in draw(JSONL_LINES):
        lines.insert(draw(st.integers(0, len(lines))), line)
    record = bench_record("ok")
    record[draw(st.sampled_from(BENCH_KEYS))] = draw(JSON_VALUES)
    lines.append(json.dumps(record))
    text = "\n".join(lines)
    return text + ("\n" if draw(st.booleans()) else "")


# --- files a case runs on -----------------------------------------------------------------------
class Files:
    """A case's folder: inputs (hashed before and after the call) and a place for outputs."""

    def __init__(self, root: Path):
        self.root = root
        self.inputs = root / "in"
        self.outputs = root / "out"
        self.inputs.mkdir()
        self.outputs.mkdir()

    def write(self, name: str, data: bytes | str) -> Path:
        path = self.inputs / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
        return path

    def special(self, kind: str, name: str) -> Path:
        path = self.inputs / name
        if kind == "fifo":
            os.mkfifo(path)
        elif kind == "folder":
            path.mkdir()
        elif kind == "loop":
            os.symlink(path, path)
        elif kind == "dangling":
            os.symlink(self.inputs / "nowhere", path)
        return path

    def output(self, kind: str, inputs: list[Path], suffix: str) -> str:
        return {
            "new": str(self.outputs / f"o{suffix}"),
            "full": "/dev/full",
            "folder": str(self.outputs),
            "missing": str(self.outputs / "missing" / f"o{suffix}"),
            "input": str(inputs[0]) if inputs else str(self.outputs / "o"),
            "odd": str(self.outputs / "o.xyz"),
        }[kind]

    def digests(self) -> dict[str, str]:
        out = {}
        for path in sorted(self.inputs.rglob("*")):
            if path.is_file() and not path.is_symlink() and not stat_is_fifo(path):
                out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
        return out


def stat_is_fifo(path: Path) -> bool:
    import stat

    return stat.S_ISFIFO(os.lstat(path).st_mode)


OUTPUT_KINDS = st.sampled_from(["new", "full", "folder", "missing", "input", "odd"])
SPECIALS = st.sampled_from(["fifo", "folder", "loop", "dangling"])


@contextlib.contextmanager
def case_files() -> Iterator[Files]:
    with tempfile.TemporaryDirectory(prefix="sdsuite-fuzz-") as root:
        yield Files(Path(root))


def _on_alarm(signum, frame):
    raise Hang(f"no answer within {CALL_TIMEOUT_S} s")


def call(command: str, argv: list[str], files: Files) -> tuple[int, str]:
    """Run `sdsuite ARGV` in this process under an alarm; check what issue 15 asks of every call."""
    CASES[command] += 1
    before = files.digests()
    out, err = io.StringIO(), io.StringIO()
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(CALL_TIMEOUT_S)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse's own usage errors
                code = exc.code if isinstance(exc.code, int) else EXIT_USAGE
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    stderr = err.getvalue()
    assert "Traceback" not in stderr, f"sdsuite {argv}:\n{stderr}"
    assert code in DOCUMENTED, f"sdsuite {argv}: exit {code}\n{stderr}"
    after = files.digests()
    assert {path: after.get(path) for path in before} == before, f"sdsuite {argv} changed an input"
    return code, stderr


@pytest.fixture(scope="module", autouse=True)
def case_counts(request):
    """How many cases each subcommand tried, printed at the end of the run."""
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter and capture and CASES:
        counts = ", ".join(f"{name} {n}" for name, n in sorted(CASES.items()))
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\nCLI fuzz: {sum(CASES.values())} cases ({counts}), {EXAMPLES} examples per test")


def maybe(strategy, *flag: str) -> st.SearchStrategy[list[str]]:
    return st.one_of(st.just([]), strategy.map(lambda v: [*flag, str(v)]))


AUDIT_OPTIONS = st.lists(
    st.one_of(
        maybe(st.sampled_from(["table", "jsonl", "csv", "json", "xml"]), "--format"),
        maybe(st.sampled_from(["0.01", "2", "0", "-1", "nan", "x", "1e-300"]), "--alpha"),
        maybe(st.sampled_from(["1", "100", "0", "-5", "99999999999"]), "--max-pixels"),
        maybe(st.sampled_from(["sd-v1", "none", "sd-v9", "", ",,"]), "--schemes"),
        maybe(st.sampled_from(["0110", "012", "", "1" * 300]), "--message-bits"),
        maybe(st.sampled_from(["ACME", ""]), "--message-bytes"),
        maybe(st.sampled_from(["never", "always", "sometimes"]), "--search"),
        maybe(st.sampled_from(["0", "-1", "x"]), "--workers"),
        st.sampled_from([["--resume"], ["--no-metadata"], ["--all-files"], ["--nosuch"], []]),
    ),
    max_size=4,
).map(lambda parts: [arg for part in parts for arg in part])


@FUZZ
@given(
    files_data=st.lists(BAD_BYTES, min_size=0, max_size=3),
    specials=st.lists(SPECIALS, max_size=2),
    output=st.one_of(st.none(), OUTPUT_KINDS),
    options=AUDIT_OPTIONS,
    whole_folder=st.booleans(),
)
def test_audit(files_data, specials, output, options, whole_folder):
    with case_files() as files:
        paths = [files.write(f"f{i}.png", data) for i, data in enumerate(files_data)]
        paths += [files.special(kind, f"s{i}.png") for i, kind in enumerate(specials)]
        argv = ["audit", "--workers", "1", *options]
        if output:
            argv += ["-o", files.output(output, paths, ".jsonl")]
        argv += ["--", *([str(files.inputs)] if whole_folder or not paths else map(str, paths))]
        call("audit", argv, files)


@FUZZ
@given(
    kind=st.sampled_from(["jsonl", "csv"]),
    content=st.one_of(JSONL_LINES.map("\n".join), st.binary(max_size=300)),
    sidecar=st.one_of(st.none(), JSON_VALUES.map(json.dumps), st.just("{not json")),
)
def test_audit_resume_of_a_damaged_output(kind, content, sidecar):
    with case_files() as files:
        image = files.write("a.png", SEED_IMAGES[0])
        output = files.outputs / f"audit.{kind}"
        argv = ["audit", str(image), "--format", kind, "-o", str(output), "--workers", "1", "--search", "never"]
        call("audit", argv, files)
        output.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
        if sidecar is not None:
            Path(f"{output}.options.json").write_text(sidecar)
        call("audit", [*argv, "--resume"], files)


@FUZZ
@given(
    lines=JSONL_LINES,
    torn=st.booleans(),
    image=st.one_of(st.none(), BAD_BYTES, SPECIALS),
    output=st.one_of(st.none(), OUTPUT_KINDS),
    non_utf8=st.booleans(),
)
def test_report_of_an_audit(lines, torn, image, output, non_utf8):
    with case_files() as files:
        target = files.inputs / "image.png"
        if isinstance(image, bytes):
            files.write("image.png", image)
        elif image:
            files.special(image, "image.png")
        record = {"path": str(target), "status": "ok", "width": 256, "height": 256, "watermarks": [], "metadata": {}}
        text = "\n".join([json.dumps(record), *lines]) + ("" if torn else "\n")
        audit = files.write("audit.jsonl", text.encode("utf-8", "surrogatepass") + (b"\xff\n" if non_utf8 else b""))
        argv = ["report", str(audit)] + (["-o", files.output(output, [audit], ".html")] if output else [])
        call("report", argv, files)


@FUZZ
@given(
    results=results_text(),
    environment=st.one_of(
        st.none(),
        JSON_VALUES.map(json.dumps),
        st.just("{not json"),
        st.dictionaries(st.sampled_from(["fingerprint", "run_id", "peak_tflops", "profile"]), JSON_VALUES).map(
            json.dumps
        ),
    ),
    output=st.one_of(st.none(), OUTPUT_KINDS),
    command=st.sampled_from(["report", "compare"]),
)
def test_report_and_compare_of_bench_runs(results, environment, output, command):
    with case_files() as files:
        files.write("run/results.jsonl", results)
        if environment is not None:
            files.write("run/environment.json", environment)
        run_dir = files.inputs / "run"
        argv = [command, str(run_dir), str(run_dir)]
        if command == "report" and output:
            argv += ["-o", files.output(output, [run_dir / "results.jsonl"], ".html")]
        call(command, argv, files)


BENCH_OPTIONS = st.lists(
    st.one_of(
        maybe(st.sampled_from(["nosuch", "s0", "s0-1"]), "--only"),
        maybe(st.sampled_from(["-1", "0", "x", "3"]), "--repeats"),
        maybe(st.sampled_from(["-1", "x", "0"]), "--warmup"),
        maybe(st.sampled_from(["0", "-1", "nan", "inf", "x"]), "--timeout"),
        maybe(st.sampled_from(["0", "-2", "x"]), "--threads"),
        maybe(st.sampled_from(["0", "x"]), "--probe-servers"),
        maybe(st.sampled_from(["synthetic", "nosuch/folder/", "missing.ckpt", "org/name"]), "--weights"),
    ),
    max_size=3,
).map(lambda parts: [arg for part in parts for arg in part])


@FUZZ
@given(text=scenario_text(), options=BENCH_OPTIONS, non_utf8=st.booleans(), as_folder=st.booleans())
def test_bench_list(text, options, non_utf8, as_folder):
    with case_files() as files:
        path = files.write("s.toml", text.encode("utf-8", "surrogatepass") + (b"# \xe9\n" if non_utf8 else b""))
        target = files.inputs if as_folder else path
        call("bench", ["bench", str(target), "--list", *options], files)


@FUZZ
@given(
    data=st.one_of(BAD_BYTES, SPECIALS),
    output=OUTPUT_KINDS,
    scheme=st.sampled_from(["sd-v1", "sdxl", "nosuch"]),
    order=st.sampled_from(["bgr", "rgb", "xyz"]),
)
def test_watermark_embed(data, output, scheme, order):
    with case_files() as files:
        source = files.write("in.png", data) if isinstance(data, bytes) else files.special(data, "in.png")
        target = files.output(output, [source], ".png")
        argv = ["watermark", "embed", "--scheme", scheme, "--channel-order", order, str(source), target]
        call("watermark", argv, files)


@FUZZ
@given(
    data=st.one_of(BAD_BYTES, SPECIALS),
    suffix=st.sampled_from([".safetensors", ".ckpt", ".bin", ""]),
    model=st.sampled_from([[], ["--model", "sd-v1"], ["--model", "nosuch"]]),
)
def test_models_check(data, suffix, model):
    with case_files() as files:
        name = f"weights{suffix}"
        path = files.write(name, data) if isinstance(data, bytes) else files.special(data, name)
        call("models", ["models", "check", str(path), *model], files)


ROBUSTNESS_OPTIONS = st.lists(
    st.one_of(
        maybe(st.sampled_from(["0", "-1", "x"]), "--images"),
        maybe(st.sampled_from(["nosuch", "", ",", "sd-v9"]), "--schemes"),
        maybe(st.sampled_from(["nosuch", "", ","]), "--attacks"),
        maybe(st.sampled_from(["0", "x"]), "--workers"),
    ),
    max_size=2,
).map(lambda parts: [arg for part in parts for arg in part])


@settings(FUZZ, max_examples=max(1, EXAMPLES // 5))  # a corpus that holds an image runs a whole (small) benchmark
@given(
    files_data=st.lists(BAD_BYTES, max_size=2),
    specials=st.lists(SPECIALS, max_size=2),
    output=st.one_of(st.none(), OUTPUT_KINDS),
    options=ROBUSTNESS_OPTIONS,
)
def test_robustness(files_data, specials, output, options):
    with case_files() as files:
        corpus = files.inputs / "corpus"
        corpus.mkdir()
        paths = [files.write(f"corpus/f{i}.png", data) for i, data in enumerate(files_data)]
        paths += [files.special(kind, f"corpus/s{i}.png") for i, kind in enumerate(specials)]
        argv = ["robustness", str(corpus), "--images", "1", "--attacks", "none", "--schemes", "sd-v1", "--workers", "1"]
        argv += [*options, "-o", files.output(output or "new", paths, "")]
        call("robustness", argv, files)


SUBPROCESS_CASES: dict[str, Callable[[Files], list[str]]] = {
    "audit": lambda f: ["audit", str(f.special("fifo", "p.png")), str(f.write("b.png", b"\x89PNG")), "-o", "/dev/full"],
    "report": lambda f: ["report", str(f.special("fifo", "a.jsonl")), "-o", str(f.outputs)],
    "bench": lambda f: ["bench", str(f.special("fifo", "s.toml")), "--list"],
    "watermark": lambda f: ["watermark", "embed", "--scheme", "sd-v1", str(f.special("fifo", "i.png")), "o.png"],
    "models": lambda f: ["models", "check", str(f.special("fifo", "w.ckpt"))],
    "robustness": lambda f: ["robustness", str(f.special("fifo", "corpus")), "-o", "/dev/full"],
    "compare": lambda f: ["compare", str(f.special("folder", "a")), str(f.special("fifo", "b"))],
}


@pytest.mark.parametrize("command", sorted(SUBPROCESS_CASES))
def test_in_a_subprocess(command):
    with case_files() as files:
        argv = SUBPROCESS_CASES[command](files)
        CASES[command] += 1
        proc = sdsuite(*argv, cwd=files.outputs)
        _, err = proc.communicate(timeout=CALL_TIMEOUT_S)
        assert "Traceback" not in err and proc.returncode in DOCUMENTED, (proc.returncode, err)
