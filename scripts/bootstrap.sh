#!/usr/bin/env bash
# Create or refresh the project's virtual environment (.venv) from pyproject.toml.
# Sourced by the other scripts; re-installs only when pyproject.toml changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SEDNA_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.sedna-installed"
want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ]; then
    echo "bootstrap: creating virtual environment in $VENV" >&2
    "$PYTHON" -m venv "$VENV"
fi
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
    echo "bootstrap: installing sedna-bft and its dependencies (first run takes a minute)" >&2
    "$VENV/bin/python" -m pip install --quiet --upgrade pip wheel >&2
    "$VENV/bin/python" -m pip install --quiet -e "$ROOT[dev]" >&2
    echo "$want" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
