# syntax=docker/dockerfile:1.7
# CPU step image for the light steps (verify, decide, summaries): the same package with the CPU
# build of torch, so it stays small. Build from the repository root:
#   docker build -f images/cpu.Dockerfile -t ghcr.io/videostar/videostar-cpu:0.1.0 .
# (`make images` does this). The tag must match `Images.cpu` in src/videostar/config/platform.py.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
# FFmpeg's shared libraries for torchcodec (Debian 12: FFmpeg 5.1); av and decord bring their own.
ARG FFMPEG_LIBS="libavcodec59 libavformat59 libavutil57 libavdevice59 libavfilter8 libswscale6 libswresample4"

# ---- builder: a venv holding everything -------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder
ARG FFMPEG_LIBS
RUN apt-get update \
 && apt-get install -y --no-install-recommends ${FFMPEG_LIBS} \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv \
 && pip install --no-cache-dir setuptools==80.9.0 wheel==0.45.1
# torch/torchvision/torchcodec from the CPU index (`2.15.0+cpu` satisfies the `torch==2.15.0` pin)
# instead of PyPI's CUDA builds and their ~3 GB of NVIDIA libraries (PyPI's torchcodec needs them).
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu \
        torch==2.15.0+cpu torchvision==0.29.2+cpu torchcodec==0.17.0
# The project as users get it: the wheel built from the same files as a release (setup.py maps
# components/, pipelines/ and configs/ into the package; the .dockerignore admits exactly these, no
# tests), installed with its pinned dependencies — not the source folder, which is removed before
# the check. install_check imports every module and opens the package data, so a broken install
# fails this build, not the first cluster run.
COPY pyproject.toml setup.py README.md /build/
COPY src /build/src
COPY components /build/components
COPY pipelines /build/pipelines
COPY configs /build/configs
RUN pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheels /build \
 && pip install --no-cache-dir "$(ls /wheels/videostar-*.whl)" \
 && rm -rf /build /wheels \
 && python -m videostar.install_check \
 && videostar --help >/dev/null \
 && python -c "import torch, decord, kfp; print('torch', torch.__version__)" \
 && python -c "from videostar.video import resolve_backend; assert resolve_backend('auto') == 'torchcodec'" \
 && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} +

# ---- runtime ----------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
ARG FFMPEG_LIBS
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="videostar-cpu" \
      org.opencontainers.image.description="videostar CPU step image: verify, decide and other light steps (torch 2.15.0+cpu)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="https://github.com/videostar/videostar" \
      org.opencontainers.image.url="https://github.com/videostar/videostar" \
      org.opencontainers.image.vendor="videostar" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="python:3.11.14-slim-bookworm"
# KFP's launcher stages artifacts under /gcs, /minio, /s3 (and /oci for models): writable by 10001.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ${FFMPEG_LIBS} \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 videostar \
 && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/videostar --shell /usr/sbin/nologin videostar \
 && mkdir -p /gcs /minio /s3 /oci \
 && chown 10001:10001 /gcs /minio /s3 /oci
COPY --from=builder /opt/venv /opt/venv
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/home/videostar \
    VIDEOSTAR_CACHE=/home/videostar/.cache/videostar
USER 10001:10001
WORKDIR /home/videostar
# The same check in the final image, as its user: the runtime base and the copied venv suffice.
RUN python -m videostar.install_check && videostar --help >/dev/null \
 && python -c "from videostar.video import resolve_backend; assert resolve_backend('auto') == 'torchcodec'"
CMD ["videostar", "--help"]
