# The README's commands. Each creates .venv when missing and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.segassist-installed

.PHONY: setup system-deps run test lint bench

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first, pinned: this pair lies on the build machines' disk (see README).
	$(BIN)/pip install torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -e '.[dev,transformers,ray]'
	# SAM 2 (optional extra) is source-only and its isolated build would pull a second torch: build it
	# against the torch above, without the optional CUDA extension.
	$(BIN)/pip install 'hydra-core>=1.3.2' 'iopath>=0.1.10'
	SAM2_BUILD_CUDA=0 $(BIN)/pip install --no-build-isolation --no-deps 'sam2>=1.1'
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/segassist serve

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# Headless Chromium renders the QA HTML report in the tests (Debian's package; the build machines run as root).
system-deps:
	@command -v chromium >/dev/null 2>&1 || { \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: lint system-deps
	$(BIN)/pytest

bench: setup
	$(BIN)/python benchmarks/run_all.py
