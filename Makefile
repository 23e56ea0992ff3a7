# greenroute's developer entry points. Every target makes its own virtualenv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
CONSTRAINTS := requirements/constraints.txt
STAMP := $(VENV)/.installed-dev
CORE_STAMP := $(VENV)/.installed-core
REPORT_STAMP := $(VENV)/.installed-report
# Azurite (Azure Blob emulator) comes from npm; moto and the GCS emulator come with the dev extra.
TOOLS := .tools
AZURITE := $(TOOLS)/node_modules/.bin/azurite-blob
AZURITE_VERSION := 3.35.0

.PHONY: help venv servers lint test test-fast demo bench bench-smoke lock clean

help:
	@echo "make demo    write a generated dataset through the router (embedded data, no keys)"
	@echo "make test    lint, then the whole test suite (installs and starts its local servers)"
	@echo "make lint    ruff and mypy --strict over src/ and adapters/"
	@echo "make bench   the benchmark suite (~6 min); regenerates benchmarks/results and the README table"
	@echo "make bench-smoke   every benchmark at tiny sizes (~30 s); asserts nothing about timings"
	@echo "make lock    re-resolve and pin dependencies into $(CONSTRAINTS)"

# The demo needs the core (and the report extra for its HTML report); tests need the dev extra.
$(CORE_STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check --upgrade "pip>=24"
	$(PIP) install --quiet --disable-pip-version-check -c $(CONSTRAINTS) -e .
	@touch $@

$(STAMP): $(CORE_STAMP)
	$(PIP) install --quiet --disable-pip-version-check -c $(CONSTRAINTS) -e '.[dev]'
	@touch $@

venv: $(STAMP)

$(AZURITE):
	npm install --silent --no-audit --no-fund --prefix $(TOOLS) azurite@$(AZURITE_VERSION)

# Headless Chromium opens the HTML report in its test (Debian's package, installed once). Without it
# (no root, no apt) the test skips saying why, and fails under GREENROUTE_REQUIRE_INTEGRATION=1.
servers: $(STAMP) $(AZURITE)
	@command -v chromium >/dev/null || (apt-get update -q && apt-get install -y -q chromium) \
		|| echo "could not install chromium: the HTML report test will skip"

lint: $(STAMP)
	$(VENV)/bin/ruff check --no-cache src adapters tests benchmarks tools
	$(VENV)/bin/mypy

test: lint servers
	$(VENV)/bin/pytest

test-fast: servers
	$(VENV)/bin/pytest -m "not slow"

$(REPORT_STAMP): $(CORE_STAMP)
	$(PIP) install --quiet --disable-pip-version-check -c $(CONSTRAINTS) -e '.[report]'
	@touch $@

demo: $(REPORT_STAMP)
	$(VENV)/bin/greenroute demo

bench: $(STAMP)
	$(PY) benchmarks/run.py --readme README.md

bench-smoke: $(STAMP)
	$(PY) benchmarks/run.py --smoke --out build/bench-smoke

lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet --upgrade "pip>=24"
	.venv-lock/bin/pip install --quiet '.[dev]' 'boto3==1.43.117' 's3fs==2026.9.0'
	( sed -n '1,3p' $(CONSTRAINTS); .venv-lock/bin/pip freeze | grep -v -i '^greenroute' ) > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)
	rm -rf .venv-lock

clean:
	rm -rf $(VENV) $(TOOLS) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache
	@# the demo folder only if the demo made it (it carries the demo's marker file)
	@if [ -f .greenroute-demo/.greenroute-demo ] && [ ! -L .greenroute-demo ]; then rm -rf .greenroute-demo; fi
