# The two commands a new user needs:  make run  (the app on the local stack)  ·  make test
# Everything else is a building block of those two.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP_PY := $(VENV)/.installed
STAMP_NODE := node_modules/.installed
WORKER_VENV := .venv-worker
STAMP_WORKER := $(WORKER_VENV)/.installed

.PHONY: setup run test lint typecheck unit reliability bench simulator demo smoke connect clean infra-check browser nss-tools trust results

setup: $(STAMP_PY) $(STAMP_NODE) $(STAMP_WORKER)  ## install Python packages (.venv, .venv-worker) and Azurite (node_modules)

$(STAMP_PY): requirements.txt requirements-dev.txt
	@echo "==> Python packages into $(VENV)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

# Microsoft's Python worker indexing code (azure-functions-runtime declares Python >= 3.13, so it
# gets its own venv and --ignore-requires-python); the app's requirements first, then the runtime
# without letting it swap azure-functions 1.x for 2.x.
$(STAMP_WORKER): requirements.txt requirements-worker.txt
	@echo "==> Python worker indexing code into $(WORKER_VENV)"
	@test -x $(WORKER_VENV)/bin/python || $(PYTHON) -m venv $(WORKER_VENV)
	@$(WORKER_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@$(WORKER_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --ignore-requires-python --no-deps -r requirements-worker.txt
	@touch $@

$(STAMP_NODE): package.json
	@echo "==> Azurite from npm into node_modules"
	@npm install --silent --no-audit --no-fund --no-package-lock
	@touch $@

# Debian's Chromium for the browser tests (tests/browser), driven by the Python playwright package:
# Playwright's own browser download is not reachable from CI. Installed with apt-get when missing and
# running as root (CI, fresh machines); otherwise the browser tests skip and say why, except under
# REQUIRE_BROWSER=1 (.ci/run), where they fail.
browser:  ## install Debian's chromium for the browser tests when missing (as root)
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "==> chromium from Debian (apt-get)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 \
	  || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1; } \
	  || echo "==> chromium could not be installed; the browser tests will say so"; \
	else echo "==> chromium is missing and this is not root: the browser tests will skip (sudo apt-get install chromium)"; fi

# NSS's certutil (Debian package libnss3-tools) for `make trust` and the browser tests, which trust
# the local CA in NSS databases (Chromium's ~/.pki/nssdb, Firefox profiles); as `browser` above.
nss-tools:  ## install NSS's certutil (libnss3-tools) when missing (as root)
	@if command -v certutil >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "==> certutil from Debian (apt-get install libnss3-tools)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q libnss3-tools >/dev/null 2>&1 \
	  || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q libnss3-tools >/dev/null 2>&1; } \
	  || echo "==> libnss3-tools could not be installed; \`make trust\` will say what is missing"; \
	else echo "==> certutil is missing and this is not root: sudo apt-get install libnss3-tools (Fedora: nss-tools)"; fi

# One local CA per user, kept across runs (devstack/localca.py); this trusts it in the system store
# (update-ca-certificates, through sudo unless root) and in Chromium's/Firefox's NSS databases.
# ARGS=--no-system: browsers only, no root; ARGS=--check: report only. See docs/local-https.md.
trust: setup nss-tools  ## trust the local HTTPS CA in the system store and the browsers' NSS databases
	@$(PY) -m devstack.trust $(ARGS)

run: setup  ## start Azurite + the simulator + the local Functions host; Ctrl-C stops all
	@$(PY) -m devstack up

simulator: setup  ## the Dataverse / Entra ID / Key Vault simulator alone
	@$(PY) -m devstack.simulator --state-dir .devstack

demo: setup  ## push sample leads through a running `make run`, watch them sync, and Hunter's rows (PostgreSQL + results consumer)
	@$(PY) -m devstack.demo

smoke: setup  ## smoke-test the Dataverse that the environment / local.settings.json names (add ARGS=--push-test-lead)
	@$(PY) -m shared.smoketest $(ARGS)

connect: setup  ## set up the Dataverse org for the app as its administrator (ARGS=--dry-run first; docs/deploy.md)
	@$(PY) -m shared.connect $(ARGS)

lint: setup
	@echo "==> ruff"
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .

typecheck: setup
	@echo "==> mypy"
	@$(VENV)/bin/mypy .

infra-check:  ## offline infra checks: Bicep structure tests (pycep-parser) + checkov; tools in .venv-infra
	@PYTHON=$(PYTHON) infra/check.sh

test: setup browser nss-tools lint typecheck infra-check  ## lint, type-check, the offline infra checks, then every test
	@echo "==> pytest"
	@$(PY) -m pytest -q

unit: setup
	@$(PY) -m pytest -q tests/unit

reliability: setup  ## the long reliability runs (bigger batches, same tests); several minutes
	@$(PY) -m pytest -q -m slow tests/e2e/test_reliability.py

results: setup  ## Hunter's results consumer, once, with settings from the environment (see docs/consumer.md)
	@$(PY) -m hunter_results --once

bench: setup  ## benchmarks: prints a table, writes benchmarks/results/latest.json; a few minutes
	@$(PY) -m benchmarks.run $(ARGS)

clean:
	rm -rf .devstack .pytest_cache .mypy_cache .ruff_cache
