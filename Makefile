# `make test` and `make demo` set everything up themselves on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
WORK ?= work

.PHONY: test demo lint bench walkthrough clean system-deps

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

# The cyclic KFP pipeline on this machine (kfp.local): tiny model, synthetic videos, 3 cycles, 2 shards.
demo: $(STAMP)
	test -f demo/base/videostar_model.json || $(VENV)/bin/videostar model tiny --out demo/base
	test -f demo/data/records.jsonl || $(VENV)/bin/videostar data synthetic --count 48 --seed 0 --out demo/data
	$(VENV)/bin/videostar --config configs/tiny.yaml run --local --root demo/runs

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench

bench: $(STAMP)
	$(PY) bench/bench_generate.py
	$(PY) bench/bench_decode.py
	$(PY) bench/bench_verify.py
	$(PY) bench/bench_local_runner.py

# The README's CLI walk-through: tiny model -> synthetic data -> two Video-STaR cycles.
walkthrough: $(STAMP)
	bash scripts/walkthrough.sh $(WORK)

clean:
	rm -rf $(VENV) $(WORK) demo .pytest_cache .ruff_cache
