# One command per task; CI runs `make test` through .ci/run.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
PORT   ?= 8000
DATABASE_URL ?= sqlite:///./dynoscope.db
export DATABASE_URL

.PHONY: install run test lint format bench clean services stack stack-down

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/dynoscope db upgrade
	$(BIN)/dynoscope seed --properties 500 --if-empty
	$(BIN)/dynoscope serve --port $(PORT)

services:
	deploy/native/ensure-services.sh
	deploy/native/ensure-prometheus.sh
	deploy/native/ensure-nginx.sh

# The production topology on loopback without containers (README: "Native stack").
STACK_DIR ?= .stack
stack: install
	deploy/native/ensure-prometheus.sh
	deploy/native/ensure-nginx.sh
	$(BIN)/python deploy/native/stack.py up --dir $(STACK_DIR) $(STACK_ARGS)

stack-down:
	$(BIN)/python deploy/native/stack.py down --dir $(STACK_DIR)

test: install services
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install services
	deploy/native/ensure-bench-tools.sh
	$(BIN)/python -m bench $(BENCH)

clean:
	rm -rf $(VENV) dynoscope.db dynoscope.db-* .mypy_cache .ruff_cache
