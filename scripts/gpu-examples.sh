#!/usr/bin/env bash
# The GPU runs behind reports/examples/fast-gpu-* and capacity-gpu-*, in one command on a machine
# with an NVIDIA GPU and a Python that has torch, transformers and accelerate. Packages it lacks
# (diffusers, invisible-watermark, PyWavelets, pyspng) may come as wheels in .whl/, fetched where
# pip can reach PyPI:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 -d .whl diffusers==0.42.1 invisible-watermark==0.2.0 \
#     PyWavelets==1.9.0 pyspng==0.1.4 importlib_metadata==8.7.0
# Usage: [SDSUITE_GIT_SHA=<commit>] scripts/gpu-examples.sh OUT_DIR [fast|capacity|all] [SECONDS]
# (SDSUITE_GIT_SHA: the commit the results name, where the tree came without its .git)
# Whatever is still running SECONDS (default 540) after the start is stopped; every scenario finished
# by then is kept (results are written as they are produced). Each run directory is packed into
# OUT_DIR/<name>.tar.gz, its report beside it; run again with those files in OUT_DIR, and each bench
# resumes where it stopped.
set -u
out=${1:?usage: scripts/gpu-examples.sh OUT_DIR [fast|capacity|all] [SECONDS]}
what=${2:-all}
deadline=$((SECONDS + ${3:-540}))
mkdir -p "$out"
export PYTHONUNBUFFERED=1 TRANSFORMERS_VERBOSITY=error
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, diffusers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'diffusers', diffusers.__version__)" || exit 1

bench() {  # NAME PROFILE ARGS...: run, or resume from OUT_DIR/NAME.tar.gz, until the deadline; then pack it
  local name=$1 profile=$2
  shift 2
  local dir="$out/$name" left=$((deadline - SECONDS))
  [ "$left" -gt 30 ] || { echo "no time left for $name"; return; }
  [ -e "$out/$name.tar.gz" ] && [ ! -d "$dir" ] && tar -xzf "$out/$name.tar.gz" -C "$out"
  timeout --signal=TERM --kill-after=20 "$left" \
    python3 -m suite bench "$profile" --out "$dir" $([ -e "$dir/results.jsonl" ] && echo --resume) "$@" 2>&1 \
    | grep -v -E '^\s*$' | tail -n 60
  python3 -m suite report "$dir" -o "$out/$name-report.html" >/dev/null 2>&1 || echo "no report for $name"
  tar -czf "$out/$name.tar.gz" -C "$out" "$name" && rm -rf "${dir:?}"
}

if [ "$what" = fast ] || [ "$what" = all ]; then
  # the article's run (SD v1 fp16 512x512, 50 PLMS steps) against fp32 eager, and the UNet at batch 8
  # (--timeout: a compile that has not finished in 5 minutes is stopped and recorded, not waited for)
  bench fast-gpu fast --timeout 300 --only gpu-eager-fp32 gpu-eager-fp16 gpu-fp16-compile-reduce-overhead \
    gpu-eager-fp16-batch8 gpu-fp16-compile-batch8-reduce-overhead gpu-fp16-compile-batch8-reduce-overhead-cudnn-benchmark
fi
if [ "$what" = capacity ] || [ "$what" = all ]; then
  # the article's 8 GB claims first (smallest budgets), then every table of the profile
  bench capacity-gpu capacity --only v1-min-budget-fp32-none v1-min-budget-fp16-attention-slicing \
    v1-min-budget-fp16-sequential-offload v2-min-budget-fp16-none v2-min-budget-fp32-none \
    x4-min-budget-fp16-none
  bench capacity-gpu capacity
  # the same searches one at a time, a fresh worker per probe: the values must agree with the tables',
  # whose searches shared one worker per configuration and ran side by side where the card allowed
  check=/tmp/isolation-check.toml
  {
    echo '[defaults]'
    echo 'model = "sd-v1"'
    echo 'device = "cuda"'
    echo 'precision = "fp16"'
    echo 'sampler = "ddim"'
    echo 'steps = 2'
    echo 'probe_isolation = "process"'
    echo '[[scenario]]'
    echo 'name = "v1-max-batch-none-8gib"'
    echo 'search = "max-batch"'
    echo 'search_max = 48'
    echo 'vram_budget_gib = 8'
    echo '[[scenario]]'
    echo 'name = "v1-min-budget-fp16-model-offload"'
    echo 'search = "min-budget"'
    echo 'search_max = 24'
    echo 'memory_mode = "model-offload"'
  } >"$check"
  bench isolation-check "$check" --probe-servers 1
fi
ls -la "$out"
