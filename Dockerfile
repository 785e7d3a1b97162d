# ezlink on CPU: the default model is inside the image and its ONNX export is
# done at build time, so a replica is ready seconds after it starts.
#   docker build -t ezlink .
#   docker run -p 8000:8000 -e EZLINK_MASTER_KEY=sk-... ezlink
# See docs/deployment.md for the multi-replica layout and every variable.
FROM python:3.11-slim

# The extra index gives the CPU build of torch (constraints.txt pins the
# version); PyPI's default Linux wheel pulls gigabytes of CUDA libraries.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu

WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY src ./src
RUN pip install -c constraints.txt . \
    && useradd --create-home --uid 10001 ezlink \
    && mkdir -p /data /cache \
    && chown ezlink:ezlink /data /cache

USER ezlink
ENV EZLINK_DATA_DIR=/data \
    EZLINK_CACHE_DIR=/cache \
    EZLINK_LOG_FORMAT=json \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1
# Load the default model once: exports and caches its ONNX graph in /cache.
RUN ezlink embed "warm up the model cache"

EXPOSE 8000
# Liveness only; a load balancer should route on /ready (models loaded, database reachable).
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2).status != 200)"]
# SIGTERM: stop accepting, finish in-flight requests (server.shutdown_grace_seconds,
# default 30 s), write pending usage, exit 0. Give `docker stop -t` more than that.
STOPSIGNAL SIGTERM
# A non-loopback bind needs EZLINK_MASTER_KEY (or --insecure-no-auth).
CMD ["ezlink", "serve", "--host", "0.0.0.0", "--port", "8000"]
