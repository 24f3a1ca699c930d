# syntax=docker/dockerfile:1.7
# vLLM generation image: answer generation and rationalization with `generate.backend: vllm`
# (videostar.generation). Build from the repository root:
#   docker build -f images/vllm.Dockerfile -t ghcr.io/videostar/videostar-vllm:0.1.0 .
# vLLM pins its own torch and transformers (vLLM 0.33.0: torch==2.14.0, torchvision==0.29.0,
# transformers<5.21), the main install pins torch 2.15.0 and transformers 5.23.0: pip cannot resolve
# both, so this image installs vLLM first and lets its pins win (see docs/generation.md). The
# SFT/PPO steps keep the gpu image (torch 2.15.0, DeepSpeed with prebuilt ops).

ARG CUDA_IMAGE=nvidia/cuda:13.2.1-base-ubuntu24.04
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.8

FROM ${UV_IMAGE} AS uv

# ---- builder: a self-contained CPython 3.11 and a venv holding everything ---------------------
# vLLM's wheel is prebuilt (CUDA kernels included) and torch's wheels bring their CUDA libraries:
# nothing compiles here, so the builder needs no CUDA devel image.
FROM ${CUDA_IMAGE} AS builder
ARG PYTHON_VERSION=3.11.14
ENV DEBIAN_FRONTEND=noninteractive \
    UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_PYTHON_PREFERENCE=only-managed \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
COPY --from=uv /uv /usr/local/bin/uv
RUN uv python install ${PYTHON_VERSION} \
 && uv venv --seed --python ${PYTHON_VERSION} /opt/venv \
 && pip install --no-cache-dir setuptools==80.9.0 wheel==0.45.1
# The heavy layer first: vLLM with the torch, torchvision, torchcodec and transformers it pins.
RUN pip install --no-cache-dir vllm==0.33.0
# The project as users get it: the wheel built from the same files as a release, installed without
# its dependencies (its torch/transformers pins would replace vLLM's), then every other dependency
# the wheel declares, at its own pins. install_check imports every module and opens the package
# data, so a broken install fails this build.
COPY pyproject.toml setup.py README.md /build/
COPY src /build/src
COPY components /build/components
COPY pipelines /build/pipelines
COPY configs /build/configs
RUN pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheels /build \
 && pip install --no-cache-dir --no-deps "$(ls /wheels/videostar-*.whl)" \
 && rm -rf /build /wheels
RUN python -c "from importlib.metadata import requires; from packaging.requirements import Requirement as R; \
vllm_owns = {'torch', 'torchvision', 'torchcodec', 'transformers'}; \
print('\n'.join(str(r) for r in map(R, requires('videostar')) if r.marker is None and r.name not in vllm_owns))" \
    > /tmp/requirements.txt \
 && pip install --no-cache-dir --no-build-isolation -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt \
 && python -m videostar.install_check \
 && videostar --help >/dev/null \
 && python -c "import torch, vllm, transformers, videostar.generation; print('torch', torch.__version__, 'vllm', vllm.__version__)" \
 && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} +

# ---- runtime ----------------------------------------------------------------------------------
FROM ${CUDA_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="videostar-vllm" \
      org.opencontainers.image.description="videostar vLLM generation image (vLLM 0.33.0 with its torch 2.14.0)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="https://github.com/videostar/videostar" \
      org.opencontainers.image.url="https://github.com/videostar/videostar" \
      org.opencontainers.image.vendor="videostar" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="nvidia/cuda:13.2.1-base-ubuntu24.04"
# KFP's launcher stages artifacts under /gcs, /minio, /s3 (and /oci for models): writable by 10001.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 videostar \
 && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/videostar --shell /usr/sbin/nologin videostar \
 && mkdir -p /gcs /minio /s3 /oci \
 && chown 10001:10001 /gcs /minio /s3 /oci
COPY --from=builder /opt/python /opt/python
COPY --from=builder /opt/venv /opt/venv
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/home/videostar \
    HF_HOME=/home/videostar/.cache/huggingface \
    VIDEOSTAR_CACHE=/home/videostar/.cache/videostar
USER 10001:10001
WORKDIR /home/videostar
RUN python -m videostar.install_check && videostar --help >/dev/null
ENTRYPOINT []
CMD ["videostar", "--help"]
