# The two commands of the README (`make run`, `make test`) do all the set-up on a machine with
# only python3: they create .venv and install the project on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/warehouse/dagster_home

.PHONY: run test ui synth status sql bench clean-warehouse compile

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

## run: land new drops (demo drops if the inbox is empty) and refresh everything once
run: $(BIN)/.installed
	$(BIN)/haic run

## test: the whole test suite
test: $(BIN)/.installed
	$(BIN)/python -m pytest -n 2 -q

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
