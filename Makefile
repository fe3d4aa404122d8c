# eemt-cleanup developer and newcomer entry points.
#   make demo   build a sample EEMT base directory and clean it (dry run, then real)
#   make test   install into .venv and run the test suite (what CI runs)
#   make check  ruff + mypy + tests: run before every commit
#   make wheel  build dist/eemt_cleanup-<version>-py3-none-any.whl to install in production

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_DIR ?= /tmp/eemt-cleanup-demo
DEMO_CONFIG := $(DEMO_DIR)/cleanup_config.yaml

.PHONY: demo test check lint typecheck format clean bench bench-quick compile wheel

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# Byte-compile the package as a regular (non-editable) install does, so every start does not
# recompile it where PYTHONDONTWRITEBYTECODE is set (about 30 ms of each run).
compile: $(VENV)/.installed
	$(BIN)/python -m compileall -q eemt_cleanup

demo: compile
	$(BIN)/python scripts/make_demo_base.py $(DEMO_DIR) --force
	$(BIN)/eemt-cleanup config init $(DEMO_CONFIG) --force
	@echo
	@echo "== Dry run (from /, as cron would; paths come from $(DEMO_CONFIG)) =="
	cd / && $(CURDIR)/$(BIN)/eemt-cleanup run --dry-run --config $(DEMO_CONFIG)
	@echo
	@echo "== Real run =="
	cd / && $(CURDIR)/$(BIN)/eemt-cleanup run --config $(DEMO_CONFIG)
	@echo
	@echo "== A second run has nothing left to do =="
	cd / && $(CURDIR)/$(BIN)/eemt-cleanup run --config $(DEMO_CONFIG)
	@echo
	$(BIN)/eemt-cleanup status --config $(DEMO_CONFIG)
	@echo
	$(BIN)/eemt-cleanup history --config $(DEMO_CONFIG)
	@echo
	@echo "== Prometheus metrics (counters from the database; see README 'Dashboards, chat and mail') =="
	$(BIN)/eemt-cleanup metrics --config $(DEMO_CONFIG) | grep -v '^#' | grep -E 'runs_total|cleaned_total|freed_bytes|storage_usage_bytes'
	@echo
	$(BIN)/eemt-cleanup report --config $(DEMO_CONFIG)
	@echo
	@echo "The demo base directory is $(DEMO_DIR) (log: $(DEMO_DIR)/logs/cleanup.log)."

test: $(VENV)/.installed
	scripts/ensure_test_tools.sh
	scripts/ensure_browser.sh
	$(BIN)/python -m pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check eemt_cleanup scripts tests benchmarks
	$(BIN)/ruff format --check eemt_cleanup scripts tests benchmarks

typecheck: $(VENV)/.installed
	$(BIN)/mypy

check: lint typecheck test

format: $(VENV)/.installed
	$(BIN)/ruff format eemt_cleanup scripts tests benchmarks
	$(BIN)/ruff check --fix eemt_cleanup scripts tests benchmarks

# The project's own wheel (no dependencies: the install fetches them). Not part of make test.
wheel: | $(BIN)/python
	$(BIN)/python -m pip wheel --quiet --no-deps --wheel-dir dist .
	@ls dist/eemt_cleanup-*.whl

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

# Speed, honesty and planning benchmarks (minutes; --quick for a smoke run). See benchmarks/README.md.
bench: compile
	$(BIN)/python benchmarks/run_all.py

bench-quick: compile
	$(BIN)/python benchmarks/run_all.py --quick
