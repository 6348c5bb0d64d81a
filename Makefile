# sdsuite — every target sets itself up on a fresh machine (Python 3.10+ and make are all it needs).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Which scenario profile `make bench` runs: auto = reference where CUDA is present, quick otherwise.
PROFILE ?= auto
# Where the weights come from, overriding the profile's own (quick and reference: synthetic, full-size
# seeded random; smoke: tiny): synthetic, tiny, a diffusers folder, a .safetensors/.ckpt file, or a hub id.
WEIGHTS ?=
OUT ?=
BENCH_ARGS ?=
PATHS ?=
AUDIT_ARGS ?=
FUZZ_EXAMPLES ?= 500
CORPUS ?=
ROBUSTNESS_ARGS ?=
# CPU wheels of torch; used only when no NVIDIA GPU is present (falls back to PyPI's build).
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_CPU_VERSION ?= 2.13.0
HAS_NVIDIA := $(shell nvidia-smi -L >/dev/null 2>&1 && echo yes)

.DEFAULT_GOAL := help
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo -n)
LATEST_RUN = $(shell ls -td reports/*/ 2>/dev/null | grep -v '^reports/examples/' | head -1)

.PHONY: help install browser test fuzz bench bench-micro report audit robustness lint clean

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

browser: ## Debian's chromium, for the report's browser test (skipped where it cannot be installed)
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
		echo "installing Debian's chromium for the report's browser test"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	} || echo "warning: could not install chromium (needs apt and root): the browser test will be skipped"

test: install browser ## run the test suite (CPU, tiny models)
	$(PY) -m pytest -q tests --ignore=tests/benchmarks; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; exit $$rc

fuzz: install ## every sdsuite command against many more generated bad inputs than make test (FUZZ_EXAMPLES=500 per test)
	SDSUITE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -q tests/test_cli_fuzz.py

bench: install ## run the main benchmark: PROFILE=auto|quick|reference|smoke|fast|scaling|capacity|FILE [WEIGHTS=synthetic|tiny|PATH|HUB_ID]
	$(VENV)/bin/sdsuite bench $(PROFILE) $(if $(WEIGHTS),--weights $(WEIGHTS)) $(if $(OUT),--out $(OUT)) $(BENCH_ARGS)

bench-micro: install ## pytest-benchmark micro-benchmarks of the suite's own hot paths
	$(PY) -m pytest -q tests/benchmarks --benchmark-only; rc=$$?; if [ $$rc -eq 5 ]; then rc=0; fi; exit $$rc

report: install ## HTML report of the latest run under reports/ (or RUN=DIR)
	@run="$(or $(RUN),$(LATEST_RUN))"; [ -n "$$run" ] || { echo "no run under reports/: make bench first"; exit 1; }; \
	$(VENV)/bin/sdsuite report "$$run" -o "$${run%/}/report.html"

audit: install ## audit images for SD watermarks and provenance: PATHS="folder file.png ..." (AUDIT_ARGS="--format jsonl -o x.jsonl")
	@[ -n "$(PATHS)" ] || { echo 'usage: make audit PATHS="folder/ image.png ..." [AUDIT_ARGS="--format jsonl -o audit.jsonl"]'; exit 2; }
	@# read from the environment (make puts its command-line variables there), so quotes in a name
	@# are no shell syntax; PATHS that names one existing file or folder is that path, spaces and all
	@if [ -e "$$PATHS" ]; then set -x; $(VENV)/bin/sdsuite audit $$AUDIT_ARGS -- "$$PATHS"; \
	else set -x; $(VENV)/bin/sdsuite audit $$PATHS $$AUDIT_ARGS; fi

robustness: install ## how often the audit finds each mark after JPEG, WebP, resizes, crops, ...: [CORPUS=photos/] [ROBUSTNESS_ARGS="-o out --images 50"]
	$(VENV)/bin/sdsuite robustness $(CORPUS) $(ROBUSTNESS_ARGS)

lint: install ## ruff
	$(VENV)/bin/ruff check suite tests
	$(VENV)/bin/ruff format --check suite tests

clean: ## remove the virtualenv and caches (reports stay)
	rm -rf $(VENV) .pytest_cache .benchmarks .ruff_cache *.egg-info
