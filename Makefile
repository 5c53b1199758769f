# strangler — every target sets up what it needs, so a fresh clone runs `make demo` / `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
# The benchmark's own Python packages (the `bench` extra: reladiff), installed by `make bench`.
BENCH_STAMP := $(VENV)/.bench-installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# The hot path compiled with mypyc (src/strangler/native.py lists the modules). Rebuilt when any
# source changes: compiled modules inline what they import, and a stale build would run old code.
NATIVE_STAMP := build/native/.built
NATIVE_INPUTS := $(shell find src/strangler -name '*.py') tools/build_native.py setup.py
# The dashboard (dashboard/, React + Vite) is built into the package's admin/static/, which the
# admin listener serves at / and the wheel ships. Rebuilt when its sources or lockfile change.
DASHBOARD_STAMP := src/strangler/admin/static/index.html
DASHBOARD_MODULES := dashboard/node_modules/.package-lock.json
DASHBOARD_INPUTS := $(shell find dashboard/src dashboard/scripts -type f 2>/dev/null) \
	$(addprefix dashboard/,index.html package.json package-lock.json tsconfig.json vite.config.ts)

.PHONY: mariadb help setup native native-deps dashboard node-deps browser-deps demo test test-fast postgres \
	prometheus-deps systemd-deps bench bench-deps lint format clean

help:
	@echo "make demo   - run the gateway in front of the bundled legacy and new demo apps"
	@echo "make test   - run the whole test suite"
	@echo "make bench  - proxy throughput/latency vs nginx and direct; routing decision time;"
	@echo "              data diff rows/s vs reladiff (1M rows in MariaDB and PostgreSQL)"
	@echo "make lint   - ruff and mypy"
	@echo "make native - compile the hot path with mypyc (every target above does it when needed)"

setup: $(STAMP) $(NATIVE_STAMP) $(DASHBOARD_STAMP)

# The editable install is not compiled by pip (STRANGLER_PURE_PYTHON=1): `make native` compiles
# in place. It builds with the venv's own setuptools, so the mypyc build's requirements (setup.py)
# are not fetched for an install that does not compile.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "strangler needs Python >= 3.11 (found $$($(PYTHON) --version))"; exit 1; }
	@$(PYTHON) -m venv --help >/dev/null 2>&1 && $(PYTHON) -c 'import ensurepip' 2>/dev/null || \
		{ echo "installing python3-venv"; $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip 'setuptools>=77'
	STRANGLER_PURE_PYTHON=1 $(PY) -m pip install -q --no-build-isolation -e '.[dev,demo]'
	@rm -f $(VENV)/.installed-*
	@touch $@

native: $(NATIVE_STAMP)

$(NATIVE_STAMP): $(STAMP) $(NATIVE_INPUTS)
	@$(MAKE) -s native-deps
	$(PY) tools/build_native.py
	@touch $@

native-deps:
	@command -v gcc >/dev/null 2>&1 && \
	  [ -f "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" ] || \
		{ echo "installing gcc and the Python headers (Debian packages) to compile the hot path"; \
		  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq gcc python3-dev; }

dashboard: $(DASHBOARD_STAMP)

# npm packages come from the committed lockfile only (`npm ci`), never a fresh resolution.
$(DASHBOARD_MODULES): dashboard/package-lock.json
	@$(MAKE) -s node-deps
	cd dashboard && npm ci --no-audit --no-fund
	@touch $@

# The build type-checks (tsc, strict), bundles, and prints the gzipped size (budget 300 kB).
$(DASHBOARD_STAMP): $(DASHBOARD_MODULES) $(DASHBOARD_INPUTS)
	cd dashboard && npm run build
	@touch $@

node-deps:
	@command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || \
		{ echo "installing nodejs and npm (Debian packages) to build the dashboard"; \
		  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends nodejs npm; }

# The dashboard's end-to-end tests drive Debian's Chromium (tests/e2e/); Playwright's own browser
# download is not used. Without it they skip, saying so (STRANGLER_REQUIRE_BROWSER=1 fails).
browser-deps:
	@[ -x /usr/bin/chromium ] || \
		{ echo "installing chromium (Debian package) for the dashboard's browser tests"; \
		  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends chromium; }

demo: setup
	$(VENV)/bin/strangler demo

# The suite runs against the compiled hot path, and checks that it does. Its tests spend most of
# their time waiting on real servers, so they run in TEST_WORKERS processes (pytest-xdist): on 2
# cores, 3 workers keep both busy (clean clone: pytest 9m49s with 3, 13m54s with 2). TEST_WORKERS=0 runs them in one process. A costly build that
# several tests share (the wheel in test_packaging.py) is made once per run, under a file lock.
TEST_WORKERS ?= 3
test: setup postgres mariadb prometheus-deps systemd-deps browser-deps
	cd dashboard && npm test
	STRANGLER_REQUIRE_NATIVE=1 STRANGLER_REQUIRE_PROMETHEUS=1 STRANGLER_REQUIRE_BROWSER=1 \
		$(PY) -m pytest -q -n $(TEST_WORKERS) --durations=10

# The PostgreSQL store's tests want a server on 127.0.0.1:5432: start the local cluster if it is
# installed but stopped. Without one they skip, saying so (STRANGLER_REQUIRE_POSTGRES=1 fails).
postgres:
	@command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p 5432 || { \
	  [ -d /etc/postgresql ] && [ -n "$$(ls /etc/postgresql 2>/dev/null)" ] && \
	  { echo "starting the local PostgreSQL cluster for the store tests"; \
	    $(SUDO) pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | head -1) main start || true; } || \
	  echo "no local PostgreSQL: the PostgreSQL store tests will be skipped"; }

# The data parity tests want MariaDB on 127.0.0.1:3306 (root, no password): start the local
# server if it is installed but stopped. Without one they skip, saying so
# (STRANGLER_REQUIRE_MARIADB=1 fails).
mariadb:
	@command -v mariadb-admin >/dev/null 2>&1 && mariadb-admin -h 127.0.0.1 -u root ping >/dev/null 2>&1 || { \
	  [ -x /etc/init.d/mariadb ] && \
	  { echo "starting the local MariaDB server for the data parity tests"; \
	    $(SUDO) /etc/init.d/mariadb start >/dev/null || true; } || \
	  echo "no local MariaDB: the data parity tests against MariaDB will be skipped"; }

# The metrics tests scrape the gateway with a real Prometheus and lint /metrics with promtool
# (Debian package `prometheus`). They run their own on a free loopback port with storage in a
# temporary folder, so a system service the package may start on :9090 is neither used nor in
# the way. Without it they skip, saying so (STRANGLER_REQUIRE_PROMETHEUS=1 fails).
prometheus-deps:
	@command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || \
		{ echo "installing prometheus and promtool (Debian package) for the metrics tests"; \
		  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends prometheus; }

# The systemd unit in deploy/ is checked with `systemd-analyze verify` (Debian package `systemd`;
# nothing is started). Without it that test skips, saying so.
systemd-deps:
	@command -v systemd-analyze >/dev/null 2>&1 || \
		{ echo "installing systemd-analyze (Debian package systemd) to verify deploy/strangler.service"; \
		  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends systemd; }

test-fast: setup
	$(PY) -m pytest -q -n $(TEST_WORKERS) -m "not slow"

bench-deps:
	@command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] && command -v wrk >/dev/null 2>&1 || \
		{ echo "installing nginx and wrk (Debian packages) for the benchmark"; \
		  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq nginx-light wrk; }

# The `bench` extra goes into the same venv, re-installing the editable package with it.
$(BENCH_STAMP): $(STAMP)
	STRANGLER_PURE_PYTHON=1 $(PY) -m pip install -q --no-build-isolation -e '.[dev,demo,bench]'
	@rm -f $(VENV)/.bench-installed-*
	@touch $@

# bench_data.py loads its 1M-row tables into the local MariaDB and PostgreSQL on its first run
# (~2 minutes) and reuses them afterwards.
bench: setup bench-deps $(BENCH_STAMP) postgres mariadb
	$(PY) bench/bench_routing.py
	$(PY) bench/bench_diff.py
	$(PY) bench/proxy_bench.py
	$(PY) bench/proxy_bench.py --shadow
	$(PY) bench/proxy_bench.py --observability
	$(PY) bench/proxy_bench.py --tls
	$(PY) bench/bench_metrics_scrape.py
	$(PY) bench/bench_data.py

lint: setup
	$(VENV)/bin/ruff check src tests bench tools setup.py
	$(VENV)/bin/ruff format --check src tests bench tools setup.py
	$(VENV)/bin/mypy

format: setup
	$(VENV)/bin/ruff format src tests bench tools setup.py
	$(VENV)/bin/ruff check --fix src tests bench tools setup.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache \
		src/strangler/admin/static dashboard/node_modules
	find src -name '*.so' -delete
