# `make demo` and `make test` each create .venv when it is missing. torch is installed first, pinned to
# 2.13.0 (on this project's machines pip finds the CPU wheel on disk), so that no other package's
# dependency range pulls a newer torch with its CUDA wheels; the rest is held to constraints.txt.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.seqstruct-installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1

.PHONY: demo test lint venv clean bench-deps sysdeps

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "seqstruct needs Python >= 3.11"'
	@# A half-made .venv (venv failed after creating bin/python) is rebuilt, not trusted.
	$(BIN)/python -m pip --version >/dev/null 2>&1 || { rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# mmseqs2 (Debian) clusters proteins by homology for the swissprot-go splits and runs the homology-transfer
# baseline. Installed when missing, which needs apt-get and root (as on this project's machines).
sysdeps:
	@command -v mmseqs >/dev/null || { \
		{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; } || \
			{ echo "mmseqs not found: install the Debian package mmseqs2 (apt-get install -y mmseqs2)" >&2; exit 1; }; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmseqs2 >/dev/null; }

demo: $(STAMP) sysdeps
	$(BIN)/seqstruct demo

test: $(STAMP) sysdeps
	$(BIN)/python -m pytest

# performer-pytorch for `seqstruct bench attention`; --no-deps because its requirements would pull other
# torch builds (see the `bench` extra in pyproject.toml for why these four).
bench-deps: $(STAMP)
	$(BIN)/python -m pip install --quiet --no-deps performer-pytorch==1.1.4 einops==0.8.2 \
		local-attention==1.9.15 axial-positional-embedding==0.3.12

lint: $(STAMP)
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts

clean:  # the environment only: runs/ holds results
	rm -rf $(VENV)
