# The two commands a newcomer needs (see README.md):
#   make run    set up .venv with what the local stack needs (requirements-run.lock) and start it (python -m devstack)
#   make test   set up .venv with everything (requirements.lock) and run lint, format check, type check and the
#               whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install --disable-pip-version-check -q
# One stamp per lock, named by its checksum, so a changed lock installs again. requirements.lock holds every pin
# of requirements-run.lock (tests/test_requirements.py), so installing it stamps both.
STAMP     := $(VENV)/.installed-$(shell cksum < requirements.lock | cut -d' ' -f1)
RUN_STAMP := $(VENV)/.installed-run-$(shell cksum < requirements-run.lock | cut -d' ' -f1)

.PHONY: setup run demo test lint typecheck pytest bench clean

$(STAMP): requirements.lock requirements-run.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements.lock
	rm -f $(VENV)/.installed-* && touch $(STAMP) $(RUN_STAMP)

$(RUN_STAMP): requirements-run.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements-run.lock
	rm -f $(VENV)/.installed-run-* && touch $(RUN_STAMP)

# Everything: the tests, the checks and the Pulumi program (`pulumi up` runs in .venv, see Pulumi.yaml).
setup: $(STAMP)

run: $(RUN_STAMP)
	$(BIN)/python -m devstack $(ARGS)

demo: $(RUN_STAMP)
	$(BIN)/python -m devstack demo $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# -n auto: one pytest worker per core (each with its own embedded AWS: moto's state is per process).
pytest: $(STAMP)
	$(BIN)/python -m pytest -n auto $(PYTEST_ARGS)

test: lint typecheck pytest

bench: $(RUN_STAMP)
	$(BIN)/python -m benchmarks $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build
