# One image for every validator; configs are generated inside the compose network by
# `sedna testnet init --layout docker` (the same code as the local launcher).
FROM python:3.11-slim

# EXTRAS=fast adds uvloop. For the libp2p transport use EXTRAS=fast,libp2p (its pinned
# fastecdsa builds from source: add build-essential and libgmp-dev to the apt line).
ARG EXTRAS=fast

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY consensus ./consensus
COPY netsim ./netsim
COPY node ./node
COPY mechanism ./mechanism
RUN pip install --no-cache-dir ".[${EXTRAS}]"

# 26656: validator-to-validator transport, 26657: HTTP/JSON RPC and /metrics.
EXPOSE 26656 26657
ENTRYPOINT ["sedna"]
CMD ["--help"]
