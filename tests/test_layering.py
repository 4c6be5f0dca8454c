"""Layering rules of docs/architecture: the consensus core is pure; imports flow one way."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN_IN_CONSENSUS = {
    "asyncio",
    "socket",
    "time",
    "random",
    "trio",
    "anyio",
    "threading",
    "selectors",
}


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
    return modules


def _python_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", _python_files("consensus"), ids=lambda p: str(p.relative_to(ROOT)))
def test_consensus_imports_no_io_clock_or_randomness(path: Path) -> None:
    top_level = {name.split(".")[0] for name in _imported_modules(path)}
    assert not (top_level & FORBIDDEN_IN_CONSENSUS), (
        f"{path} imports {top_level & FORBIDDEN_IN_CONSENSUS}"
    )


@pytest.mark.parametrize("package", ["consensus", "netsim", "mechanism"])
def test_nothing_but_the_cli_imports_node(package: str) -> None:
    for path in _python_files(package):
        top_level = {name.split(".")[0] for name in _imported_modules(path)}
        assert "node" not in top_level, f"{path} imports node"


@pytest.mark.parametrize(
    "path",
    [p for p in _python_files("node") if "tools" not in p.relative_to(ROOT).parts],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_node_core_does_not_import_tools(path: Path) -> None:
    """The launcher, load generators and benchmarks stay out of the node's own modules."""
    if path == ROOT / "node" / "cli.py":
        return  # the console script registers the tools' command groups
    imported = _imported_modules(path)
    assert not any(m == "node.tools" or m.startswith("node.tools.") for m in imported), (
        f"{path} imports node.tools"
    )


@pytest.mark.parametrize("path", _python_files("consensus"), ids=lambda p: str(p.relative_to(ROOT)))
def test_consensus_does_not_import_drivers(path: Path) -> None:
    top_level = {name.split(".")[0] for name in _imported_modules(path)}
    assert not (top_level & {"netsim", "mechanism"}), f"{path} imports a driver package"


def test_the_purity_check_detects_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import time\nfrom asyncio import sleep\n")
    assert {"time", "asyncio"} <= _imported_modules(bad)
