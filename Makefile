# The two commands of the README (`make run`, `make test`) do all the set-up on a machine with
# only python3: on first use they install uv (pinned, from PyPI) into .tools/ and create .venv
# from uv.lock, the committed lock of every direct and transitive dependency (hashes included),
# so every machine computes with the same libraries. `make lock` updates the lock.
# The libraries are installed compiled to bytecode: a machine that sets PYTHONDONTWRITEBYTECODE,
# or a service user who cannot write into .venv, would otherwise compile Dagster, Great
# Expectations and pandas from source in every process (seconds each). The libraries' own test
# suites (`*/tests/`, a quarter of the source, never imported here) are left uncompiled.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TOOLS  := .tools
UV     := $(TOOLS)/bin/uv
UV_VERSION := 0.13.9
export DAGSTER_HOME ?= $(CURDIR)/warehouse/dagster_home
# the interpreter is the machine's python3, never a download; the packages are hard links into
# uv's cache (a copy where the cache is on another file system): nothing edits a file in .venv
export UV_PYTHON_DOWNLOADS := never
export UV_LINK_MODE := hardlink

.PHONY: install run test ui synth status sql bench clean-warehouse compile lock

# uv goes into a venv of its own, installed there by the machine's pip (`pip --python`, pip >= 22.3);
# a python3 without pip gets pip in that venv first (ensurepip, seconds slower)
$(UV):
	$(PYTHON) -m venv --without-pip $(TOOLS)
	$(PYTHON) -m pip --python $(TOOLS)/bin/python install --quiet --disable-pip-version-check uv==$(UV_VERSION) \
	  || { $(TOOLS)/bin/python -m ensurepip --default-pip > /dev/null \
	       && $(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION); }

$(BIN)/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --extra dev --python $(PYTHON) --quiet
	$(BIN)/python -m compileall -q -j 0 -x '/tests/' $(VENV)/lib > /dev/null
	touch $@

## install: create .venv exactly as uv.lock says (what a server runs: docs/production.md)
install: $(BIN)/.installed

## lock: re-resolve uv.lock after a change of pyproject.toml's dependencies (newest allowed versions)
lock: $(UV)
	$(UV) lock --upgrade

## run: land new drops (demo drops if the inbox is empty) and refresh everything once
run: $(BIN)/.installed
	$(BIN)/haic run

## test: the whole test suite. Three workers on the project's two cores: the end-to-end tests spend
## much of their minute waiting on a sensor interval or a browser, which the third worker fills.
test: $(BIN)/.installed
	$(BIN)/python -m compileall -q haic_pipeline haic_pipeline_tests
	$(BIN)/python -m pytest -n 3 -q

## ui: the Dagster web UI (http://127.0.0.1:3000) with a persistent DAGSTER_HOME
ui: $(BIN)/.installed
	mkdir -p "$(DAGSTER_HOME)"
	test -f "$(DAGSTER_HOME)/dagster.yaml" || cp deploy/dagster.yaml "$(DAGSTER_HOME)/dagster.yaml"
	$(BIN)/dagster dev -w workspace.yaml

synth: $(BIN)/.installed
	$(BIN)/haic synth

status: $(BIN)/.installed
	$(BIN)/haic status

sql: $(BIN)/.installed
	$(BIN)/haic sql

## compile: regenerate the staging SQL models from data_contracts/
compile: $(BIN)/.installed
	$(BIN)/python -m haic_pipeline.warehouse.compile

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/bench_refresh.py

## clean-warehouse: delete the demo warehouse, inbox, reports and run history
clean-warehouse:
	rm -rf warehouse/haic.duckdb warehouse/haic.duckdb.wal warehouse/analytics.duckdb \
	       warehouse/inbox/[0-9]* warehouse/reports/[!.]* warehouse/dagster_home/[!.]*
