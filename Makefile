# The two commands a newcomer needs (see README.md):
#   make run    set up .venv from requirements.lock and start the local stack (python -m devstack)
#   make test   set up .venv and run lint, format check, type check, the whole test suite and the fuzzing
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum < requirements.lock | cut -d' ' -f1)
# Schemathesis resolves only in a venv of its own (see requirements-fuzz.in).
FUZZ_VENV  ?= .venv-fuzz
FUZZ_STAMP := $(FUZZ_VENV)/.installed-$(shell cksum < requirements-fuzz.lock | cut -d' ' -f1)

.PHONY: setup run demo test lint typecheck pytest test-modules fuzz bench clean

$(STAMP): requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -r requirements.lock
	rm -f $(VENV)/.installed-* && touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m devstack $(ARGS)

demo: $(STAMP)
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

bench: $(STAMP)
	$(BIN)/python -m benchmarks $(ARGS)

clean:
	rm -rf $(VENV) $(FUZZ_VENV) .pytest_cache .mypy_cache .ruff_cache build
