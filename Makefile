# One command per task; CI runs `make lint` and `make test` through .ci/run.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The committed lock decides what every machine installs: exact versions with hashes, for the
# package and its dev and bench extras, and the build backend of the editable install.
LOCK   := requirements.lock
# The container image's lock: the package without its extras, at the versions of LOCK.
IMAGE_LOCK := deploy/requirements.lock
STAMP  := $(VENV)/.installed-$(shell cat $(LOCK) pyproject.toml | cksum | cut -d' ' -f1)
# The newest versions pyproject.toml's ranges allow, for `make test-latest`.
LATEST := .venv-latest
PORT   ?= 8000
DATABASE_URL ?= sqlite:///./dynoscope.db
export DATABASE_URL

# Resolves the lock: pyproject.toml's ranges plus the build backend, every platform and
# Python the package supports, hashes for every file.
UV_COMPILE = printf 'setuptools>=77\nwheel\n' | $(BIN)/uv pip compile pyproject.toml - \
	--universal --python-version 3.11 --generate-hashes \
	--custom-compile-command "make lock" --quiet

.PHONY: install run test test-latest lint format bench clean services stack stack-down \
	lock lock-upgrade

# A changed lock or pyproject.toml builds the environment anew, so it holds exactly the lock:
# nothing left over from an older one, nothing resolved at install time.
$(STAMP): $(LOCK) pyproject.toml
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -qq --disable-pip-version-check --no-deps \
		--require-hashes --only-binary :all: -r $(LOCK)
	$(BIN)/python -m pip install -qq --disable-pip-version-check --no-deps \
		--no-build-isolation --editable .
	$(BIN)/python -m deploy.lockfile check $(LOCK)
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
	deploy/native/ensure-chromium.sh

# The production topology on loopback without containers (docs/operations.md: "The native stack").
STACK_DIR ?= .stack
stack: install
	deploy/native/ensure-prometheus.sh
	deploy/native/ensure-nginx.sh
	$(BIN)/python deploy/native/stack.py up --dir $(STACK_DIR) $(STACK_ARGS)

stack-down:
	$(BIN)/python deploy/native/stack.py down --dir $(STACK_DIR)

test: install services
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Each dependency at the newest version the ranges allow, in a virtualenv of its own: what
# differs from the lock is printed first, then the suite runs there. Drift shows up here as
# a report, never as a broken main.
test-latest: install services
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(BIN)/uv pip install --quiet --python $(LATEST)/bin/python --upgrade \
		--editable '.[dev,bench]' 'setuptools>=77' wheel
	$(BIN)/python -m deploy.lockfile diff $(LOCK) --python $(LATEST)/bin/python
	$(LATEST)/bin/python -m pytest $(PYTEST_ARGS)

# Re-resolve after a change to pyproject.toml, keeping every pin that still fits; then the
# image's lock (no extras), held to the same versions.
lock: install
	$(UV_COMPILE) --extra dev --extra bench --output-file $(LOCK)
	$(UV_COMPILE) --constraint $(LOCK) --output-file $(IMAGE_LOCK)

# Move every pin to the newest version the ranges allow (run `make test-latest` first).
lock-upgrade: install
	$(UV_COMPILE) --extra dev --extra bench --upgrade --output-file $(LOCK)
	$(UV_COMPILE) --constraint $(LOCK) --output-file $(IMAGE_LOCK)

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
	rm -rf $(VENV) $(LATEST) dynoscope.db dynoscope.db-* .mypy_cache .ruff_cache
