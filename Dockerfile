# syntax=docker/dockerfile:1
# sectorstorage: one image for index, manager, worker and sectorctl.
#   docker build -t sectorstorage:0.1.0 .
#   docker build -t sectorstorage:0.1.0-cuda --build-arg RUST_CORE_FEATURES=cuda .   # GPU workers
#   docker run --rm sectorstorage:0.1.0 sectorstorage-index --listen 0.0.0.0:9090 --data-dir /var/lib/sectorstorage/data
# The container's arguments name the console script (see [project.scripts] in pyproject.toml); the
# Kubernetes manifests in k8s/ pass `sectorstorage-NAME --config /etc/sectorstorage/NAME.toml`.

ARG PYTHON_VERSION=3.11
ARG DEBIAN_RELEASE=bookworm

# ---- builder: Rust + Python 3.11 + maturin build the wheel (rust_core and the services) ----
FROM rust:1-slim-${DEBIAN_RELEASE} AS builder
ARG RUST_CORE_FEATURES=""
# Debian bookworm's python3 is 3.11, the runtime's version: rust_core is built for abi3-py311.
# Versions come with the pinned Debian release (DL3008: no per-package pins).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/build \
 && /opt/build/bin/pip install --no-cache-dir "maturin>=1.7,<2"
WORKDIR /src
COPY pyproject.toml README.md rust_core.pyi ./
COPY rust_core/ rust_core/
COPY protos/ protos/
COPY services/ services/
# Cache mounts keep downloaded crates and incremental builds between image builds.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/rust_core/target \
    /opt/build/bin/maturin build --release --locked --out /dist \
      ${RUST_CORE_FEATURES:+--features "python,${RUST_CORE_FEATURES}"}

# ---- runtime: slim Python, the wheel in a virtualenv, a non-root user ----
FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS runtime
ARG PYTHON_VERSION
ARG RUST_CORE_FEATURES=""
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/sectorstorage \
    PATH=/opt/sectorstorage/bin:$PATH \
    LD_LIBRARY_PATH=/opt/sectorstorage/lib/python${PYTHON_VERSION}/site-packages/nvidia/cuda_nvrtc/lib
# tini as PID 1: forwards SIGTERM (the services drain on it) and reaps children.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 sectorstorage \
 && useradd --system --uid 10001 --gid sectorstorage --no-create-home \
      --home-dir /var/lib/sectorstorage --shell /usr/sbin/nologin sectorstorage
# The postgres extra (psycopg) is always in: the same image serves SQLite and PostgreSQL fleets.
# A CUDA build also gets NVRTC (the cuda extra: the version CI compiles the kernels with; rust_core
# compiles them at run time; libcuda comes from the node's driver through the NVIDIA container
# toolkit).
RUN --mount=type=bind,from=builder,source=/dist,target=/dist \
    python -m venv "$VIRTUAL_ENV" \
 && pip install --no-cache-dir "$(ls /dist/sectorstorage-*.whl)[postgres]" \
 && case ",${RUST_CORE_FEATURES}," in *,cuda,*) pip install --no-cache-dir "$(ls /dist/sectorstorage-*.whl)[postgres,cuda]" ;; esac \
 && sectorstorage-index --help > /dev/null
# Mount points of the manifests' volumes; the services write nowhere else (read-only root works).
RUN mkdir -p /etc/sectorstorage /var/lib/sectorstorage/data /var/lib/sectorstorage/seal /var/lib/sectorstorage/store \
 && chown -R 10001:10001 /var/lib/sectorstorage
WORKDIR /var/lib/sectorstorage
USER 10001:10001
# gRPC and Prometheus /metrics, as in k8s/base/config/*.toml; the dashboard's HTTP (web.toml).
EXPOSE 9090 9100 8080
ENTRYPOINT ["tini", "--"]
CMD ["sectorctl", "--help"]
