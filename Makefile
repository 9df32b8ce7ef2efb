# The table of contents of the project. `make help` lists the targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
NMT := $(BIN)/nmt
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo-output

.PHONY: help install demo test test-fast lint format bench reproduce clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(STAMP)  ## create .venv with the CPU build of torch and nmt (editable, with dev tools)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The pinned CPU wheel first: an open-ended torch requirement could pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)  ## the main job on the embedded synthetic corpus (CPU, offline, about 15 minutes)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m cli.demo --out $(DEMO_DIR)

test: $(STAMP)  ## run the test suite
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest -q

lint: $(STAMP)  ## ruff: lint and formatting check
	$(BIN)/ruff check nmt cli tests
	$(BIN)/ruff format --check nmt cli tests

format: $(STAMP)  ## ruff: fix what can be fixed automatically
	$(BIN)/ruff check --fix nmt cli tests
	$(BIN)/ruff format nmt cli tests

clean:  ## remove the virtual environment, caches and demo output
	rm -rf $(VENV) .pytest_cache .ruff_cache $(DEMO_DIR) *.egg-info
