# The two commands a newcomer needs (see README.md):
#   make run    set up .venv with what the local stack needs (requirements-run.lock) and start it (python -m devstack)
#   make test   set up .venv with everything (requirements.lock) and run lint, format check, type check, the
#               whole test suite and the fuzzing of the local API
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install --disable-pip-version-check -q
# One stamp per lock, named by its checksum, so a changed lock installs again. requirements.lock holds every pin
# of requirements-run.lock (tests/test_requirements.py), so installing it stamps both.
STAMP     := $(VENV)/.installed-$(shell cksum < requirements.lock | cut -d' ' -f1)
RUN_STAMP := $(VENV)/.installed-run-$(shell cksum < requirements-run.lock | cut -d' ' -f1)
# Schemathesis resolves only in a venv of its own (see requirements-fuzz.in).
FUZZ_VENV  ?= .venv-fuzz
FUZZ_STAMP := $(FUZZ_VENV)/.installed-$(shell cksum < requirements-fuzz.lock | cut -d' ' -f1)

.PHONY: setup run demo test lint typecheck pytest test-modules fuzz bench clean

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
# The order is random (pytest-randomly): the seed is printed in the header ("Using --randomly-seed=N") and
# again under the results. To repeat a run's order:
#   make pytest PYTEST_ARGS="--randomly-seed=N"         (N from the output; --randomly-seed=last: the last run)
#   make pytest PYTEST_ARGS="-n 0 --randomly-seed=N"    (the same order in one process: xdist hands tests to
#                                                        whichever worker is free, so -n auto may split it anew)
#   make pytest PYTEST_ARGS="-p no:randomly"            (file order, no shuffling)
pytest: $(STAMP)
	$(BIN)/python -m pytest -n auto $(PYTEST_ARGS)

# Every test module alone, in a pytest process of its own, two at a time: a module must not lean on what
# another one set up. Pass pytest options after --, e.g. make test-modules ARGS="-- --randomly-seed=1".
test-modules: $(STAMP)
	$(BIN)/python -m tests.each_module $(ARGS)

$(FUZZ_STAMP): requirements-fuzz.lock
	test -x $(FUZZ_VENV)/bin/python || $(PYTHON) -m venv $(FUZZ_VENV)
	$(FUZZ_VENV)/bin/python -m pip install --disable-pip-version-check -q -r requirements-fuzz.lock
	rm -f $(FUZZ_VENV)/.installed-* && touch $(FUZZ_STAMP)

# Schemathesis with every check against the whole local stack (started in-process on free ports): fails on any
# check, any 5xx, any request slower than 20 s. FUZZ_ARGS e.g. "--seed 7 --max-examples 100".
fuzz: $(STAMP) $(FUZZ_STAMP)
	$(BIN)/python -m tests.fuzz.run_schemathesis --schemathesis $(FUZZ_VENV)/bin/schemathesis $(FUZZ_ARGS)

test: lint typecheck pytest fuzz

bench: $(RUN_STAMP)
	$(BIN)/python -m benchmarks $(ARGS)

clean:
	rm -rf $(VENV) $(FUZZ_VENV) .pytest_cache .mypy_cache .ruff_cache build
