#!/usr/bin/env bash
# Set up (first run only) and run the project's main job. Extra arguments go to `sedna demo`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
exec sedna demo "$@"
