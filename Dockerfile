# syntax=docker/dockerfile:1
# The medswarm peer: one hospital per container. Used by docker-compose.yml:
#   docker compose up --build
# or on its own: docker build -t medswarm . && docker run --rm medswarm --help
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: compilers and headers for libp2p's native dependencies (fastecdsa needs GMP)
FROM ${PYTHON_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev libgmp-dev \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/medswarm
ENV PATH=/opt/medswarm/bin:$PATH
WORKDIR /src
# The CPU build of PyTorch FIRST, pinned by constraints.txt (as scripts/setup.sh does):
# a bare `torch`, pulled in by the project's requirements, would be a multi-GB CUDA build.
COPY constraints.txt ./
RUN pip install -c constraints.txt --index-url https://download.pytorch.org/whl/cpu torch
# then the project, under the same constraints (torch is already satisfied)
COPY setup.cfg pyproject.toml README.md ./
COPY gossip ./gossip
COPY swarm ./swarm
COPY peers ./peers
RUN pip install -c constraints.txt . \
 && medswarm --help > /dev/null

# ---- runtime: no compilers, a non-root user, key/state/data as volumes
FROM ${PYTHON_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgmp10 \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 medswarm \
 && useradd --system --uid 10001 --gid medswarm --home-dir /var/lib/medswarm \
        --shell /usr/sbin/nologin medswarm \
 && mkdir -p /var/lib/medswarm/key /var/lib/medswarm/state /var/lib/medswarm/enrol /data \
 && chown -R medswarm:medswarm /var/lib/medswarm /data \
 && chmod 0700 /var/lib/medswarm/key
COPY --from=build /opt/medswarm /opt/medswarm
COPY docker/entrypoint.sh /usr/local/bin/medswarm-entrypoint
ENV PATH=/opt/medswarm/bin:$PATH PYTHONUNBUFFERED=1
USER medswarm:medswarm
WORKDIR /var/lib/medswarm
# key: the hospital's identity (created on first start); state: checkpoints and report;
# data: the hospital's own .npz (--data /data/NAME.npz); enrol: peer IDs of the demo's members
VOLUME ["/var/lib/medswarm/key", "/var/lib/medswarm/state", "/var/lib/medswarm/enrol", "/data"]
# libp2p (TCP) and the /status endpoint
EXPOSE 4001 8080
ENTRYPOINT ["/usr/local/bin/medswarm-entrypoint"]
CMD ["--help"]
