#!/usr/bin/env bash
# Set up (first run only) and run the default test suite. Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
set +e
python -m pytest -m "not slow" "$@"
status=$?
set -e
# pytest exits 5 when it collected no test; that is not a failure of the suite itself.
if [ "$status" -eq 5 ]; then
    echo "run-tests: no tests were collected" >&2
    exit 0
fi
exit "$status"
