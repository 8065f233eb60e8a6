# Two commands for a new user: `make run` and `make test`. Both bootstrap .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The local CPU wheel. Elsewhere: TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cpu"
TORCH_SPEC ?= torch==2.13.0
# Stage commands call `python`; make it the venv's.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# A .pth line that every interpreter of the venv runs at start-up: it puts the venv's bin/ first on
# PATH, so that `.venv/bin/dvc repro` (venv not activated) runs the stage commands' `python` from the
# venv too, and so does anything else a venv process starts. An empty PATH gets the system default
# after it, never an empty entry (which would mean the current directory).
VENV_PATH_PTH := import os, sys; _vgs_bin = os.path.dirname(os.path.abspath(sys.executable)) if sys.executable and sys.prefix != sys.base_prefix else ""; _vgs_path = os.environ.get("PATH") or os.defpath; os.environ["PATH"] = _vgs_bin + os.pathsep + _vgs_path if _vgs_bin and _vgs_path.split(os.pathsep)[0] != _vgs_bin else _vgs_path

.PHONY: run test install bench ui flow clean-venv

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_SPEC)
	$(BIN)/pip install --quiet -e '.[dev]'
	printf '%s\n' '$(VENV_PATH_PTH)' > "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/vgs-venv-path.pth"
	@# Optional: kaldi-native-fbank's C entry point (needs a C++ compiler). Without it, the same features, slower.
	$(BIN)/python -m vgs.features.knf_bulk || true
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)

# Stages at once for `make run` (default: one per core). `dvc repro` builds the same, one at a time.
JOBS ?=

run: $(STAMP)
	$(BIN)/vgs repro $(if $(JOBS),-j $(JOBS))
	@# DVC copies a persist output (training run directories) into its cache; link it instead.
	$(BIN)/dvc checkout --relink -q
	@echo
	@echo "Results: $(CURDIR)/results/<paper-id>/ (report.md, table*.csv, figures)"
	@ls -d results/*/ 2>/dev/null || true

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/features.py

ui: $(STAMP)
	$(BIN)/vgs ui

# The whole pipeline once as a Prefect flow, against the server `make ui` started.
flow: $(STAMP)
	$(BIN)/vgs flow

clean-venv:
	rm -rf $(VENV)
