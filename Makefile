# Two commands for a new user: `make run` and `make test`. Both bootstrap .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The local CPU wheel. Elsewhere: TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cpu"
TORCH_SPEC ?= torch==2.13.0
# Stage commands call `python`; make it the venv's.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test install bench ui flow clean-venv

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_SPEC)
	$(BIN)/pip install --quiet -e '.[dev]'
	@# Optional: kaldi-native-fbank's C entry point (needs a C++ compiler). Without it, the same features, slower.
	$(BIN)/python -m vgs.features.knf_bulk || true
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)

run: $(STAMP)
	$(BIN)/dvc repro
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
