#!/usr/bin/env bash
# Set up (first run only) and run the default test suite. Extra arguments go to pytest.
# The run fails when pytest collects no test (exit 5: a selection that deselects
# everything is not a green suite) and when a test is skipped because a module it needs
# could not be imported (tests/required_deps.py; SEDNA_ALLOW_MISSING_DEPS=1 turns that
# into a warning on a machine without an extra, never in CI).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
set +e
python -m pytest -m "not slow" -p tests.required_deps "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "run-tests: no tests were collected; a suite that ran nothing did not pass" >&2
fi
exit "$status"
