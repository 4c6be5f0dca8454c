"""The test runner is honest about what it ran (scripts/run-tests.sh, tests/required_deps.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def pytest_run(
    directory: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
    command += ["-p", "tests.required_deps", "--rootdir", str(directory), str(directory)]
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )


def test_a_file_skipped_for_a_missing_module_fails_the_run(tmp_path: Path) -> None:
    (tmp_path / "test_needs_extra.py").write_text(
        "import pytest\npytest.importorskip('sedna_no_such_module')\ndef test_a():\n    pass\n"
    )
    (tmp_path / "test_inside.py").write_text(
        "import pytest\ndef test_b():\n    pytest.importorskip('sedna_no_such_module_either')\n"
    )
    (tmp_path / "test_fine.py").write_text(
        "import pytest\ndef test_c():\n    pass\n"
        "@pytest.mark.skip(reason='an ordinary skip')\ndef test_d():\n    pass\n"
    )
    done = pytest_run(tmp_path, env={"SEDNA_ALLOW_MISSING_DEPS": ""})
    assert done.returncode == 1, done.stdout
    named = [line for line in done.stdout.splitlines() if ": could not import " in line]
    assert len(named) == 2, done.stdout  # the two import skips, not the ordinary skip
    assert any(line.endswith("could not import sedna_no_such_module") for line in named)
    assert any(line.endswith("could not import sedna_no_such_module_either") for line in named)
    assert "1 passed, 3 skipped" in done.stdout  # the other tests did run
    allowed = pytest_run(tmp_path, env={"SEDNA_ALLOW_MISSING_DEPS": "1"})
    assert allowed.returncode == 0, allowed.stdout


def test_run_tests_fails_when_nothing_is_collected() -> None:
    done = subprocess.run(
        [
            "bash",
            "scripts/run-tests.sh",
            "-q",
            "-k",
            "sedna_matches_no_test",
            "tests/test_layering.py",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 5, (done.stdout, done.stderr)
    assert "no tests were collected" in done.stderr
