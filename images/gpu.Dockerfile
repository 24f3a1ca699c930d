# syntax=docker/dockerfile:1.7
# GPU step image: answer generation, rationalization and SFT (torch 2.15.0 built for CUDA 13.2,
# DeepSpeed with its Adam ops compiled ahead of time, decord). Build from the repository root:
#   docker build -f images/gpu.Dockerfile -t ghcr.io/videostar/videostar-gpu:0.1.0 .
# (`make images` does this). The tag must match `Images.gpu` in src/videostar/config/platform.py.

ARG CUDA_DEVEL_IMAGE=nvidia/cuda:13.2.1-devel-ubuntu24.04
# torch's wheels bring cuBLAS/cuDNN/NCCL pinned to its own build, so the runtime stage starts from
# the CUDA base image (cudart + driver compatibility); the -runtime/-cudnn variants would only
# duplicate about 3 GB of libraries.
ARG CUDA_RUNTIME_IMAGE=nvidia/cuda:13.2.1-base-ubuntu24.04
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.8
# FFmpeg's shared libraries for torchcodec (Ubuntu 24.04: FFmpeg 6.1); av and decord bring their own.
ARG FFMPEG_LIBS="libavcodec60 libavformat60 libavutil58 libavdevice60 libavfilter9 libswscale7 libswresample4"

FROM ${UV_IMAGE} AS uv

# ---- builder: a self-contained CPython 3.11 and a venv holding everything ---------------------
FROM ${CUDA_DEVEL_IMAGE} AS builder
ARG PYTHON_VERSION=3.11.14
ARG TORCH_CUDA_ARCH_LIST="8.0;8.6;8.9;9.0;10.0;12.0"
ARG FFMPEG_LIBS
ENV DEBIAN_FRONTEND=noninteractive \
    UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_PYTHON_PREFERENCE=only-managed \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN apt-get update \
 && apt-get install -y --no-install-recommends g++ ${FFMPEG_LIBS} \
 && rm -rf /var/lib/apt/lists/*
COPY --from=uv /uv /usr/local/bin/uv
# Ubuntu 24.04 ships Python 3.12; the project needs 3.11: a relocatable python-build-standalone build.
RUN uv python install ${PYTHON_VERSION} \
 && uv venv --seed --python ${PYTHON_VERSION} /opt/venv \
 && pip install --no-cache-dir setuptools==80.9.0 wheel==0.45.1 ninja==1.13.0
# The heavy, rarely changing layers first: torch (pinned as in pyproject.toml), then DeepSpeed with
# FusedAdam and CPUAdam compiled here, so no nvcc is needed at run time.
RUN pip install --no-cache-dir torch==2.15.0 torchvision==0.29.2 torchcodec==0.17.0
RUN DS_ACCELERATOR=cuda DS_BUILD_FUSED_ADAM=1 DS_BUILD_CPU_ADAM=1 TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST}" \
    pip install --no-cache-dir --no-build-isolation deepspeed==0.19.8
# The project as users get it: the wheel built from the same files as a release (setup.py maps
# components/, pipelines/ and configs/ into the package; the .dockerignore admits exactly these, no
# tests), installed with the [gpu] extra and its pinned dependencies — not the source folder, which
# is removed before the check. install_check imports every module and opens the package data, so
# a broken install fails this build, not the first cluster run.
COPY pyproject.toml setup.py README.md /build/
COPY src /build/src
COPY components /build/components
COPY pipelines /build/pipelines
COPY configs /build/configs
RUN pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheels /build \
 && pip install --no-cache-dir "$(ls /wheels/videostar-*.whl)[gpu]" \
 && rm -rf /build /wheels \
 && python -m videostar.install_check \
 && videostar --help >/dev/null \
 && python -c "import torch, deepspeed, decord, kfp, bitsandbytes; print('torch', torch.__version__)" \
 && python -c "from videostar.video import resolve_backend; assert resolve_backend('auto') == 'torchcodec'" \
 && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} +

# ---- runtime ----------------------------------------------------------------------------------
FROM ${CUDA_RUNTIME_IMAGE}
ARG FFMPEG_LIBS
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="videostar-gpu" \
      org.opencontainers.image.description="videostar GPU step image: generation, rationalization, SFT (torch 2.15.0+cu132, DeepSpeed 0.19.8, decord 0.6.0, torchcodec 0.17.0)" \
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
 && apt-get install -y --no-install-recommends ca-certificates libgomp1 ${FFMPEG_LIBS} \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 videostar \
 && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/videostar --shell /usr/sbin/nologin videostar \
 && mkdir -p /gcs /minio /s3 /oci \
 && chown 10001:10001 /gcs /minio /s3 /oci
COPY --from=builder /opt/python /opt/python
COPY --from=builder /opt/venv /opt/venv
# The components are built with install_kfp_package=False: kfp is in this venv (pinned by
# pyproject.toml), so a step starts straight away, with no pip run before it.
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
# The same check in the final image, as its user: the runtime base and the copied venv suffice.
RUN python -m videostar.install_check && videostar --help >/dev/null \
 && python -c "from videostar.video import resolve_backend; assert resolve_backend('auto') == 'torchcodec'"
ENTRYPOINT []
CMD ["videostar", "--help"]
