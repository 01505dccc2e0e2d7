# Everything sets itself up: `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
UV     := $(VENV)/bin/uv
LOCK   := .ci/requirements.lock
SAMPLE := training/sample_data/ml-100k
# One torch version everywhere: pyproject.toml's training extra and training/Dockerfile pin it too.
TORCH  := 2.13.0
SETUP_LOG := runs/setup.log

.PHONY: setup demo test test-slow test-all lint format bench-quality bench-runtime bench-api layer lock serve clean

setup: $(STAMP)

# Installed from .ci/requirements.lock (exact versions, hashes checked) by uv, itself taken
# from that lock: a release upstream changes nothing until `make lock`. torch is installed
# beside the lock, exactly (a looser spec would pull a multi-GB CUDA build). The venv is made
# anew whenever the lock or pyproject.toml changes, so nothing stale stays in it.
# pip's and uv's output goes to $(SETUP_LOG); its last lines are shown if a step fails.
$(STAMP): pyproject.toml $(LOCK)
	@mkdir -p $(dir $(SETUP_LOG))
	@echo "setting up $(VENV) from $(LOCK), then torch $(TORCH) (log: $(SETUP_LOG))"
	@{ rm -rf $(VENV) && $(PYTHON) -m venv $(VENV) \
	  && $(PYTHON) .ci/lock.py --bootstrap > $(VENV)/uv-requirements.txt \
	  && $(PY) -m pip install --require-hashes --no-deps -r $(VENV)/uv-requirements.txt \
	  && $(UV) pip install --python $(PY) --require-hashes --no-deps --compile-bytecode -r $(LOCK) \
	  && $(PY) -m pip install --no-deps torch==$(TORCH) \
	  && $(UV) pip install --python $(PY) --no-deps --no-build-isolation -e . \
	  && $(PY) -m pip check; } > $(SETUP_LOG) 2>&1 \
	  || { tail -n 20 $(SETUP_LOG); echo "setup failed; the whole log: $(SETUP_LOG)"; exit 1; }
	@touch $(STAMP)

# Resolve again (needs the network): the dev lock, then the training image's and the Lambda
# layer's, constrained by it (.ci/lock.py). Versions already pinned stay unless
# LOCK_ARGS=--upgrade. Review the diff, run the tests, commit the three.
lock: $(STAMP)
	$(PY) .ci/lock.py $(LOCK_ARGS)

# The whole lifecycle on the embedded local stack (no AWS account): upload MovieLens 100K,
# retrain, train, promote, serve the API on localhost. DEMO_ARGS=--exit stops at the end.
demo: $(STAMP)
	@$(VENV)/bin/lmrec demo $(DEMO_ARGS)

# The default suite (pyproject: tests marked slow, gpu or benchmark are left out; the
# end-to-end lifecycle is in). test-slow: only the slow ones; test-all: every test.
test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m "slow and not gpu"

test-all: $(STAMP)
	$(PY) -m pytest -q -m ""

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/cfn-lint template.yaml

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Quality benchmark on ../shared/data (not shipped): prints JSON.
bench-quality: $(STAMP)
	$(PY) benchmarks/quality.py

# Serving benchmarks on the Games bundle that bench-quality writes (JSON on stdout).
GAMES_BUNDLE := runs/bench-quality/games
bench-runtime: $(STAMP)
	$(PY) benchmarks/runtime.py --bundle $(GAMES_BUNDLE) --data ../shared/data/games/interactions.csv

bench-api: $(STAMP)
	$(PY) benchmarks/api_latency.py --bundle $(GAMES_BUNDLE)
	$(PY) benchmarks/load_api.py --bundle $(GAMES_BUNDLE) --clients 50 --seconds 30
	$(PY) benchmarks/fuzz_api.py --bundle $(GAMES_BUNDLE) --examples 1500

# The API on localhost: one trained model (MODEL=runs/my-model) or a store's production model
# (STORE=s3://bucket, file:///dir or a directory).
serve: $(STAMP)
	@test -n "$(MODEL)$(STORE)" || { echo "usage: make serve MODEL=runs/my-model | STORE=s3://bucket"; exit 2; }
	$(VENV)/bin/lmrec serve $(MODEL) $(if $(STORE),--store $(STORE))

# Lambda layers built for python3.12 / x86_64 without Docker; prints their unzipped sizes.
# The deps layer installs layers/deps/requirements.lock exactly (written by `make lock`).
layer: $(STAMP)
	$(PY) layers/build.py

clean:
	rm -rf runs .pytest_cache .ruff_cache
