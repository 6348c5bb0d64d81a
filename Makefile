# sdsuite — every target sets itself up on a fresh machine (Python 3.10+ and make are all it needs).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Which scenario profile `make bench` runs: auto = reference where CUDA is present, quick otherwise.
PROFILE ?= auto
# Where the weights come from: synthetic (full-size, seeded random), a diffusers folder, a .safetensors/.ckpt file, or a hub id.
WEIGHTS ?= synthetic
OUT ?=
BENCH_ARGS ?=
# CPU wheels of torch; used only when no NVIDIA GPU is present (falls back to PyPI's build).
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_CPU_VERSION ?= 2.13.0
HAS_NVIDIA := $(shell nvidia-smi -L >/dev/null 2>&1 && echo yes)

.DEFAULT_GOAL := help
.PHONY: help install test bench bench-micro lint clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

install: $(VENV)/.installed ## create .venv with torch (CUDA build with an NVIDIA GPU, CPU build otherwise) and sdsuite

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
ifeq ($(HAS_NVIDIA),yes)
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install "torch>=2.1"
else
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install --retries 0 --timeout 15 --index-url $(TORCH_CPU_INDEX) "torch==$(TORCH_CPU_VERSION)" \
		|| $(PIP) install "torch==$(TORCH_CPU_VERSION)"
endif
	$(PIP) install -e ".[test]"
	touch $@

test: install ## run the test suite (CPU, tiny models)
	$(PY) -m pytest -q tests --ignore=tests/benchmarks; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; exit $$rc

bench: install ## run the main benchmark: PROFILE=auto|quick|reference|smoke|FILE WEIGHTS=synthetic|PATH|HUB_ID
	$(VENV)/bin/sdsuite bench $(PROFILE) --weights $(WEIGHTS) $(if $(OUT),--out $(OUT)) $(BENCH_ARGS)

bench-micro: install ## pytest-benchmark micro-benchmarks of the suite's own hot paths
	$(PY) -m pytest -q tests/benchmarks --benchmark-only; rc=$$?; if [ $$rc -eq 5 ]; then rc=0; fi; exit $$rc

lint: install ## ruff
	$(VENV)/bin/ruff check suite tests
	$(VENV)/bin/ruff format --check suite tests

clean: ## remove the virtualenv and caches (reports stay)
	rm -rf $(VENV) .pytest_cache .benchmarks .ruff_cache *.egg-info
