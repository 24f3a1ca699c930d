# `make test` and `make demo` set everything up themselves on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
WORK ?= work

.PHONY: test lint bench walkthrough clean system-deps

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory system-deps
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# g++ compiles DeepSpeed's CPU ops on first use; ffmpeg libraries come inside the av/decord wheels.
system-deps:
	@command -v g++ >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq g++)

test: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench

bench: $(STAMP)
	$(PY) bench/bench_generate.py
	$(PY) bench/bench_decode.py
	$(PY) bench/bench_verify.py

# The README's CLI walk-through: tiny model -> synthetic data -> two Video-STaR cycles.
walkthrough: $(STAMP)
	bash scripts/walkthrough.sh $(WORK)

clean:
	rm -rf $(VENV) $(WORK) .pytest_cache .ruff_cache
