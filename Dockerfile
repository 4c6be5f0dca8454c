# One image for every validator; configs are generated inside the compose network by
# `sedna testnet init --layout docker` (the same code as the local launcher).
#
# Base: python:3.11.16-slim-bookworm, pinned by its multi-platform index digest so a
# rebuild never silently takes another base (to move on: `docker buildx imagetools
# inspect python:3.11-slim-bookworm` and replace the digest).
FROM python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b

# The node's dependencies only (no analysis extra: no scipy, no matplotlib). EXTRAS=fast
# adds uvloop. For the libp2p transport use EXTRAS=fast,libp2p (its pinned fastecdsa
# builds from source: add build-essential and libgmp-dev to an apt line).
ARG EXTRAS=fast

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 SEDNA_RPC_PORT=26657
WORKDIR /app
COPY pyproject.toml README.md ./
COPY consensus ./consensus
COPY netsim ./netsim
COPY node ./node
COPY mechanism ./mechanism
COPY campaign ./campaign
RUN pip install --no-cache-dir ".[${EXTRAS}]"

# Validators run as an unprivileged user. Each node's volume is mounted at
# /testnet/node<i>; the directories exist in the image, owned by that user, so a fresh
# named volume takes their owner and mode (0700: only the node reads its key).
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin sedna \
    && mkdir -m 0700 /testnet \
    && for i in $(seq 0 63); do mkdir -m 0700 "/testnet/node$i"; done \
    && chown -R sedna:sedna /testnet
USER sedna:sedna

# 26656: validator-to-validator transport, 26657: HTTP/JSON RPC and /metrics.
EXPOSE 26656 26657
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ['SEDNA_RPC_PORT']}/status\", timeout=2)"]
ENTRYPOINT ["sedna"]
CMD ["--help"]
