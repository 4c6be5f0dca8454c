#!/usr/bin/env bash
# Set up (first run only) and run the project's main job: a 4-validator testnet on
# loopback with load for 20 seconds, ending with a summary. Extra arguments go to
# `sedna testnet run` (e.g. --transport libp2p, --json, --perturb kill:1@5).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
exec sedna testnet run --nodes 4 --duration 20 --rate 2000 "$@"
