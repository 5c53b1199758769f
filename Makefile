# strangler — every target sets up what it needs, so a fresh clone runs `make demo` / `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help setup demo test test-fast postgres bench bench-deps lint format clean

help:
	@echo "make demo   - run the gateway in front of the bundled legacy and new demo apps"
	@echo "make test   - run the whole test suite"
	@echo "make bench  - proxy throughput/latency vs nginx and direct; routing decision time"
	@echo "make lint   - ruff and mypy"

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "strangler needs Python >= 3.11 (found $$($(PYTHON) --version))"; exit 1; }
	@$(PYTHON) -m venv --help >/dev/null 2>&1 && $(PYTHON) -c 'import ensurepip' 2>/dev/null || \
		{ echo "installing python3-venv"; $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

demo: setup
	$(VENV)/bin/strangler demo

test: setup postgres
	$(PY) -m pytest -q

# The PostgreSQL store's tests want a server on 127.0.0.1:5432: start the local cluster if it is
# installed but stopped. Without one they skip, saying so (STRANGLER_REQUIRE_POSTGRES=1 fails).
postgres:
	@command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p 5432 || { \
	  [ -d /etc/postgresql ] && [ -n "$$(ls /etc/postgresql 2>/dev/null)" ] && \
	  { echo "starting the local PostgreSQL cluster for the store tests"; \
	    $(SUDO) pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | head -1) main start || true; } || \
	  echo "no local PostgreSQL: the PostgreSQL store tests will be skipped"; }

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

bench-deps:
	@command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] && command -v wrk >/dev/null 2>&1 || \
		{ echo "installing nginx and wrk (Debian packages) for the benchmark"; \
		  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq nginx-light wrk; }

bench: setup bench-deps
	$(PY) bench/bench_routing.py
	$(PY) bench/bench_diff.py
	$(PY) bench/proxy_bench.py
	$(PY) bench/proxy_bench.py --shadow

lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

format: setup
	$(VENV)/bin/ruff format src tests bench
	$(VENV)/bin/ruff check --fix src tests bench

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
