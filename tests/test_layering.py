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


@pytest.mark.parametrize("path", _python_files("campaign"), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_campaign_executor_imports_no_project_package(path: Path) -> None:
    """netsim and mechanism both use it, so it depends on neither (nor on node)."""
    top_level = {name.split(".")[0] for name in _imported_modules(path)}
    assert not (top_level & {"consensus", "netsim", "mechanism", "node"}), path


def test_the_purity_check_detects_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import time\nfrom asyncio import sleep\n")
    assert {"time", "asyncio"} <= _imported_modules(bad)


# --------------------------------------------------------------------------- the node's rooms

# Project modules each room of `node/` may import (docs/architecture.md, "The node's rooms").
# The standard library and third-party packages are not restricted here.
ROOM_IMPORTS: dict[str, set[str]] = {
    "node/runtime.py": {
        "consensus.codec",
        "consensus.events",
        "consensus.messages",
        "node.api_view",
        "node.availability_room",
        "node.lane_tracker",
        "node.lanes_node",
        "node.ledger",
        "node.logs",
        "node.metrics",
        "node.router",
        "node.sync_server",
        "node.timers",
        "node.txforward",
        "node.txpool",
    },
    "node/txforward.py": set(),
    "node/sync_server.py": {"consensus.codec", "consensus.messages", "node.metrics"},
    "node/router.py": {
        "consensus.codec",
        "consensus.events",
        "consensus.messages",
        "node.logs",
        "node.metrics",
        "node.transport",
    },
    "node/timers.py": {"consensus.events"},
    "node/ledger.py": {
        "consensus.codec",
        "consensus.events",
        "consensus.messages",
        "consensus.safety",
        "node.logs",
        "node.mempool",
        "node.metrics",
        "node.storage",
    },
    "node/txpool.py": {
        "consensus.events",
        "consensus.lanes.chain",
        "consensus.lanes.cut",
        "consensus.lanes.payload",
        "consensus.lanes.wire",
        "consensus.messages",
        "node.lanes_node",
        "node.ledger",
        "node.logs",
        "node.mempool",
        "node.metrics",
        "node.txforward",
        "node.availability_room",
    },
    "node/lane_tracker.py": {
        "consensus.events",
        "consensus.lanes.availability",
        "consensus.lanes.tracker",
        "consensus.lanes.wire",
        "consensus.messages",
        "node.lanes_node",
        "node.logs",
        "node.metrics",
        "node.storage",
        "node.availability_room",
    },
    "node/api_view.py": {
        "consensus.crypto",
        "consensus.lanes.proposer",
        "node.availability_room",
        "node.lane_tracker",
        "node.lanes_node",
        "node.ledger",
        "node.metrics",
        "node.router",
        "node.storage",
        "node.txpool",
    },
    # certified lanes: drives the pure availability layer, runs its commands
    "node/availability_room.py": {
        "consensus.crypto",
        "consensus.events",
        "consensus.lanes.availability",
        "consensus.lanes.chain",
        "consensus.lanes.cut",
        "consensus.lanes.wire",
        "consensus.messages",
        "consensus.validators",
        "node.lanes_node",
        "node.logs",
        "node.metrics",
        "node.router",
        "node.storage",
    },
    "node/faults.py": {
        "consensus.byzantine",
        "consensus.certificates",
        "consensus.crypto",
        "consensus.events",
        "consensus.lanes.wire",
        "consensus.messages",
        "node.cartel_pool",
        "node.config",
        "node.logs",
        "node.router",
    },
}
PROJECT_PACKAGES = {"consensus", "netsim", "mechanism", "node"}


def _project_imports(path: Path) -> set[str]:
    """Project modules `path` imports, counting `from package import module` as the module."""
    modules = {m for m in _imported_modules(path) if m.split(".")[0] in PROJECT_PACKAGES}
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module in PROJECT_PACKAGES:
            for alias in node.names:
                if (ROOT / node.module / f"{alias.name}.py").exists():
                    modules.add(f"{node.module}.{alias.name}")
                    modules.discard(node.module)
    return modules


@pytest.mark.parametrize("room", sorted(ROOM_IMPORTS))
def test_each_node_room_imports_only_what_its_allow_list_names(room: str) -> None:
    extra = _project_imports(ROOT / room) - ROOM_IMPORTS[room]
    assert not extra, f"{room} imports {sorted(extra)}, outside its allow-list"


def test_only_the_assembly_imports_the_faults_and_only_the_cli_the_assembly() -> None:
    for path in _python_files("node"):
        imports = _project_imports(path)
        name = str(path.relative_to(ROOT))
        if "node.faults" in imports:
            assert name == "node/assembly.py", f"{name} imports the test-only faults"
        if "node.assembly" in imports:
            assert name == "node/node_cli.py", f"{name} imports the assembly"


def test_the_room_check_detects_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "timers.py"
    bad.write_text(
        "from node.storage import Storage\nimport consensus.events\nfrom node import faults\n"
    )
    assert _project_imports(bad) - ROOM_IMPORTS["node/timers.py"] == {"node.storage", "node.faults"}
