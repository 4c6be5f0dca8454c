"""pytest plugin (scripts/run-tests.sh loads it): a skip for a missing module fails the run.

The default suite tests every extra the project ships (libp2p, uvloop, ...), and
scripts/bootstrap.sh installs them. A test or a whole file skipped because
`pytest.importorskip` could not import its module would hide that part of the suite, so
the run ends with exit 1 and names each such skip. `SEDNA_ALLOW_MISSING_DEPS=1` reports
them as a warning instead (a development machine without an extra; never in CI).
"""

from __future__ import annotations

import os
import re

import pytest

ALLOW_ENV = "SEDNA_ALLOW_MISSING_DEPS"
_MARK = "could not import"
_MODULE = re.compile(r"could not import '([^']+)'")
_missing: list[str] = []


def _note(report: pytest.CollectReport | pytest.TestReport) -> None:
    text = str(report.longrepr)
    if report.skipped and _MARK in text:
        found = _MODULE.search(text)
        module = found.group(1) if found else text
        _missing.append(f"{report.nodeid or report.fspath}: could not import {module}")


def pytest_collectreport(report: pytest.CollectReport) -> None:
    _note(report)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _note(report)


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if not _missing:
        return
    allowed = bool(os.environ.get(ALLOW_ENV))
    verdict = "allowed by " + ALLOW_ENV if allowed else "this fails the run"
    terminalreporter.section(f"skipped for a missing module ({verdict})", red=not allowed)
    for line in _missing:
        terminalreporter.line(line)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _missing and not os.environ.get(ALLOW_ENV) and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
