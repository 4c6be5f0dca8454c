"""The rule-coverage mutation matrix: disable each named rule in turn, run the suites.

Each TEST-ONLY rule switch (`consensus.mutations.RULE_SWITCHES`) disables one rule of
docs/protocol.md. For each switch, `run_matrix` starts one pytest process over the
matrix's test selection with `-p tests.netsim.mutant_plugin --mutant NAME`, so every
core those tests build runs without the rule, and records which tests fail: the
switch's *killers*. A switch no test kills is a rule the suite does not enforce.

Selections (`SUITES`):
- `matrix` (default): the unit tests of the core (`tests/consensus`) and the netsim tests
  that run attack scenarios, Byzantine behaviours, Twins and stateful samples (a few
  seconds each);
- `full`: `tests/consensus` and every non-slow test of `tests/netsim` (long: about a
  minute per switch).

Needs the source checkout (the tests are not installed with the package).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from consensus.mutations import RULE_SWITCHES
from netsim.engine import derive_rng

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = "tests.netsim.mutant_plugin"
SUITES: dict[str, tuple[str, ...]] = {
    "matrix": (
        "tests/consensus",
        "tests/netsim/test_attack_scenarios.py",
        "tests/netsim/test_behaviours.py",
        "tests/netsim/test_runner.py",
        "tests/netsim/test_s4_revert.py",
        "tests/netsim/test_reproposal_revert.py",
    ),
    "full": ("tests/consensus", "tests/netsim"),
}
# Tests of the switch mechanism itself: they would fail under any switch.
META_MARKER = "rule_switch_meta"
DEFAULT_TIMEOUT_S = 1800.0


@dataclass
class MutantResult:
    name: str
    rule: str
    status: str  # "killed" | "survived" | "error" | "timeout"
    killed_by: list[str] = field(default_factory=list)
    seconds: float = 0.0
    detail: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "rule": self.rule,
            "status": self.status,
            "killed_by": self.killed_by,
            "seconds": round(self.seconds, 1),
            "detail": self.detail,
        }


def checkout_root() -> Path | None:
    """The source checkout holding the tests, or None when running from an install."""
    return ROOT if (ROOT / "tests" / "netsim" / "mutant_plugin.py").is_file() else None


def select(only: Sequence[str] = (), sample: int | None = None, seed: int = 1) -> list[str]:
    """The switches to run: `only` (checked), else all, else a seeded sample of them."""
    unknown = [name for name in only if name not in RULE_SWITCHES]
    if unknown:
        raise ValueError(f"unknown rule switch {unknown[0]!r}")
    names = list(only) if only else sorted(RULE_SWITCHES)
    if sample is not None:
        if not 1 <= sample <= len(names):
            raise ValueError(f"sample must be in 1..{len(names)}")
        names = sorted(derive_rng(seed, "mutants").sample(names, sample))
    return names


def failed_tests(output: str) -> list[str]:
    """Test ids pytest's `-rfE` summary reports as FAILED or ERROR."""
    found = []
    for line in output.splitlines():
        for prefix in ("FAILED ", "ERROR "):
            if line.startswith(prefix):
                found.append(line[len(prefix) :].split(" - ", 1)[0].strip())
    return found


def run_mutant(
    name: str,
    tests: Iterable[str],
    *,
    root: Path,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> MutantResult:
    """One pytest process over `tests` with switch `name` on."""
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        PLUGIN,
        f"--mutant={name}",
        "-m",
        f"not slow and not {META_MARKER}",
        "-q",
        "--tb=no",
        "-rfE",
        "-p",
        "no:cacheprovider",
        *tests,
    ]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    started = time.perf_counter()
    rule = RULE_SWITCHES[name]
    try:
        done = subprocess.run(
            command, cwd=root, env=env, capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        return MutantResult(name, rule, "timeout", seconds=time.perf_counter() - started)
    seconds = time.perf_counter() - started
    killers = failed_tests(done.stdout)
    if done.returncode == 0:
        return MutantResult(name, rule, "survived", seconds=seconds)
    if done.returncode == 1 and killers:
        return MutantResult(name, rule, "killed", killers, seconds)
    tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
    return MutantResult(
        name, rule, "error", killers, seconds, f"pytest exit {done.returncode}: {' | '.join(tail)}"
    )


def run_matrix(
    names: Sequence[str],
    *,
    suite: str = "matrix",
    jobs: int = 1,
    root: Path | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    progress: Callable[[MutantResult, int, int], None] | None = None,
) -> list[MutantResult]:
    """Run every switch in `names` against the suite; results in `names` order."""
    root = root or checkout_root()
    if root is None:
        raise RuntimeError("the mutation matrix needs the source checkout (tests/ not found)")
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; choose one of {sorted(SUITES)}")
    tests = SUITES[suite]
    results: dict[str, MutantResult] = {}

    def one(name: str) -> MutantResult:
        result = run_mutant(name, tests, root=root, timeout_s=timeout_s)
        results[name] = result
        if progress is not None:
            progress(result, len(results), len(names))
        return result

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        list(pool.map(one, names))
    return [results[name] for name in names]


def format_matrix(results: Sequence[MutantResult], max_killers: int = 3) -> str:
    """The matrix as a Markdown table: switch, rule, status, killers (first few, and count)."""
    lines = ["| switch | rule it disables | status | killed by |", "|---|---|---|---|"]
    for result in results:
        shown = [_short(test) for test in result.killed_by[:max_killers]]
        more = len(result.killed_by) - len(shown)
        killers = ", ".join(f"`{t}`" for t in shown) + (f" (+{more} more)" if more > 0 else "")
        status = result.status if not result.detail else f"{result.status}: {result.detail}"
        lines.append(f"| `{result.name}` | {result.rule} | {status} | {killers} |")
    return "\n".join(lines)


def _short(test_id: str) -> str:
    """`tests/consensus/test_core.py::test_x[p]` -> `test_core::test_x[p]`."""
    path, _, name = test_id.partition("::")
    return f"{Path(path).stem}::{name}" if name else Path(path).stem
