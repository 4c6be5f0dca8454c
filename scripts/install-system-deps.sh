#!/usr/bin/env bash
# System packages the test suite needs beyond Python: the Prometheus server (Debian package
# `prometheus`, for tests/node/test_observability*.py). Run as root (CI does, from .ci/run);
# does nothing when everything is there already.
set -euo pipefail
if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-system-deps: needs root: sudo apt-get install prometheus" >&2
    exit 1
fi
echo "install-system-deps: installing the Debian package prometheus" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends prometheus >&2
# The package may start a server of its own where an init system runs; the tests start
# theirs on loopback ports of their own, so it does not matter either way.
command -v prometheus >/dev/null && command -v promtool >/dev/null
