# Two entry points for a fresh machine: `make demo` (the main job) and `make test` (the suite).
# Both create or reuse .venv and install the project into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Every package of the development and test environment, pinned with hashes (`make lock` refreshes it).
LOCK := requirements.lock
UV_VERSION := 0.13.10
LATEST_VENV := .venv-latest

.PHONY: demo demo-runs test fast lint docs bench bench-scale chaos clean model scenarios lock test-latest go-test go-bench control-plane

# The lock holds the build backend too, so the editable install needs nothing unpinned.
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Re-resolve requirements.lock from pyproject.toml (its extras and its build requirements), then the
# operator image's subset of it (same versions: the lock is its constraint); needs PyPI.
UV_COMPILE = .venv-uv/bin/uv pip compile pyproject.toml - --universal --python-version 3.11 --generate-hashes --quiet
BUILD_REQUIRES = $(PYTHON) -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")'
lock:
	$(PYTHON) -m venv .venv-uv
	.venv-uv/bin/pip install --quiet uv==$(UV_VERSION)
	$(BUILD_REQUIRES) | $(UV_COMPILE) --extra test -o $(LOCK)
	$(BUILD_REQUIRES) | $(UV_COMPILE) --extra operator --constraint $(LOCK) -o requirements-operator.lock

# The newest releases pyproject.toml allows, in a throwaway venv: lint and the fast tests. Run it before
# `make lock` and before a release, to learn early what the next lock will break. Not part of `make test`.
test-latest:
	rm -rf $(LATEST_VENV)
	$(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/pip install --quiet --upgrade pip
	$(LATEST_VENV)/bin/pip install --quiet --upgrade -e '.[test]'
	touch $(LATEST_VENV)/.installed
	$(MAKE) --no-print-directory lint VENV=$(LATEST_VENV)
	$(LATEST_VENV)/bin/pytest -q -m "not e2e" --deselect tests/unit/test_lock_file.py::test_the_environment_is_the_lock

# Silent, so that `make demo ARGS=--json` prints only the JSON.
demo: $(STAMP)
	@$(BIN)/stateful-route demo $(ARGS)

# The last line runs luacheck on the Lua scripts as Redis runs them (includes resolved, written to
# build/lua; see operator/stateful_route/store/lua/README.md). Debian: apt-get install lua-check.
lint: $(STAMP)
	$(BIN)/ruff check operator tests bench
	$(BIN)/ruff format --check operator tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m stateful_route.store.lua_tool lint

# The documentation site (mkdocs.yml, docs/), built strictly: a broken link or anchor, a missing page
# or a page left out of the nav fails it. Part of `make test`; tests/docs runs the pages' examples.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

test: lint docs go-test control-plane
	$(BIN)/pytest --durations=25 $(ARGS)

# The fast loop: every test that starts no servers or processes of its own (`-m "not e2e"`), in four
# pytest-xdist workers: on 2 cores, because these tests mostly wait for Redis round trips and short
# expiries, four beat two (each worker starts a private redis-server when REDIS_URL and 6379 give none;
# the tests share one Redis safely: each writes under its own key prefix).
fast: $(STAMP)
	$(BIN)/pytest -q -m "not e2e" -n 4 $(ARGS)

# The Go client (clients/go, Go >= 1.26 and redis-server on PATH): gofmt, go build (the examples
# too), go vet, staticcheck
# (pinned in clients/go/tools.mod, checksums in tools.sum), the tests with the race detector
# (they start a private redis-server and play the conformance vectors). One package at a time:
# the machines this runs on are small. The Python side of the vectors runs in pytest.
GO ?= $(shell command -v go || echo /usr/local/go/bin/go)
GOFMT ?= $(dir $(GO))gofmt
go-test:
	cd clients/go && unformatted="$$($(GOFMT) -l .)" && test -z "$$unformatted" || { echo "gofmt: $$unformatted"; exit 1; }
	cd clients/go && GOFLAGS=-p=1 $(GO) build ./...
	cd clients/go && GOFLAGS=-p=1 $(GO) vet ./...
	cd clients/go && GOFLAGS=-p=1 $(GO) tool -modfile=tools.mod staticcheck ./...
	cd clients/go && GOFLAGS=-p=1 $(GO) test -race -count=1 ./...

# The Go client's benchmarks (BENCHMARKS.md, "The Go client"): cache hit, first placement with 1
# and 16 clients next to a no-op EVALSHA and the original design's plain SET, a batch of 10,000
# next to MGET; against the tests' private redis-server. Not part of `make test`.
go-bench:
	cd clients/go && GOFLAGS=-p=1 $(GO) test -run '^$$' -bench . -benchmem -count=1 $(ARGS) .

# etcd, kube-apiserver and kube-controller-manager for the `controlplane` tests, built from the Go
# module proxy into ~/.cache/stateful-route/control-plane/<version>/ (kept there; KUBEBUILDER_ASSETS
# binaries are used instead when set). The first build takes long: see the README.
control-plane:
	GO=$(GO) controlplane/build.sh

# A long exploration of the model-based test (tests/store/test_model.py); `make test` runs a short one.
model: $(STAMP)
	SR_MODEL_EXAMPLES=$${SR_MODEL_EXAMPLES:-400} SR_MODEL_STEPS=$${SR_MODEL_STEPS:-50} \
		$(BIN)/pytest -q -p no:logging --timeout=0 tests/store/test_model.py $(ARGS)

# The randomized operator scenarios at length (tests/e2e/test_operator_scenarios.py); `make test` runs 3.
scenarios: $(STAMP)
	SR_SCENARIOS=$${SR_SCENARIOS:-50} $(BIN)/pytest -q tests/e2e/test_operator_scenarios.py $(ARGS)

# The demo's 50-run check (RELIABILITY.md): seeds 1-25 at --duration 20, 26-50 at the default; ~20 minutes.
demo-runs: $(STAMP)
	bench/demo_runs.sh $(BIN)/stateful-route

bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)

# Figure 12 (BENCHMARKS.md): the operator at 1,000 pods against the real control plane (its binaries
# from `make control-plane`), ~10 minutes; `python -m bench.operator_scale --help`. Not part of `make test`.
bench-scale: $(STAMP)
	$(BIN)/python -m bench.operator_scale $(ARGS)

# Every fault at once for 5 minutes (ARGS="--duration 60 --seed 7"); not part of `make test`.
chaos: $(STAMP)
	$(BIN)/python -m bench.chaos $(ARGS)

clean:
	rm -rf $(VENV) $(LATEST_VENV) .venv-uv .pytest_cache .mypy_cache .ruff_cache build/lua build/site
