# Two entry points for a fresh machine: `make demo` (the main job) and `make test` (the suite).
# Both create or reuse .venv and install the project into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench chaos clean model scenarios

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/stateful-route demo $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check operator tests bench
	$(BIN)/ruff format --check operator tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest $(ARGS)

# A long exploration of the model-based test (tests/store/test_model.py); `make test` runs a short one.
model: $(STAMP)
	SR_MODEL_EXAMPLES=$${SR_MODEL_EXAMPLES:-400} SR_MODEL_STEPS=$${SR_MODEL_STEPS:-50} \
		$(BIN)/pytest -q -p no:logging --timeout=0 tests/store/test_model.py $(ARGS)

# The randomized operator scenarios at length (tests/e2e/test_operator_scenarios.py); `make test` runs 3.
scenarios: $(STAMP)
	SR_SCENARIOS=$${SR_SCENARIOS:-50} $(BIN)/pytest -q tests/e2e/test_operator_scenarios.py $(ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)

# Every fault at once for 5 minutes (ARGS="--duration 60 --seed 7"); not part of `make test`.
chaos: $(STAMP)
	$(BIN)/python -m bench.chaos $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
