"""Launcher pieces without processes: specs, generated configs, the compose file, CLI input."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from node.cli import main
from node.config import load_config, load_key
from node.tools.testnet import (
    DOCKER_P2P_PORT,
    DOCKER_ROOT,
    DOCKER_RPC_PORT,
    LOCAL_RPC_BASE,
    ByzantineSpec,
    TestnetError,
    _longest_stall,
    byzantine_nodes,
    compose_document,
    find_port_bases,
    generate_network,
    parse_byzantine,
    parse_perturbation,
    render_compose,
    senders_bundles_per_slot,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("kill:1@5", ("kill", 1, 5.0, 5.0)),
        ("kill:1:2.5@5", ("kill", 1, 2.5, 5.0)),
        ("pause:2:10@5", ("pause", 2, 10.0, 5.0)),
        ("restart:1@8", ("restart", 1, 0.0, 8.0)),
        ("disconnect:3:10@5", ("disconnect", 3, 10.0, 5.0)),
    ],
)
def test_perturbation_specs(spec: str, expected: tuple) -> None:
    p = parse_perturbation(spec, nodes=4)
    assert (p.action, p.node, p.seconds, p.at_s) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("kill:1", "missing '@AT'"),
        ("explode:1@5", "unknown action"),
        ("kill:4@5", "not in 0..3"),
        ("kill:x@5", "not an integer"),
        ("pause:1:ten@5", "must be numbers"),
        ("pause:1:-1@5", ">= 0"),
        ("kill:1:2:3@5", "expected ACTION"),
        ("kill:1@nan", "finite"),
    ],
)
def test_bad_perturbation_specs(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_perturbation(spec, nodes=4)


def test_byzantine_specs() -> None:
    assert parse_byzantine("silent:3", 4) == ByzantineSpec("silent:3", "silent", (3,))
    spec = parse_byzantine("withhold_bundles:4,5,6:strategy=withhold_all", 7)
    assert spec.behaviour == "withhold_bundles" and spec.nodes == (4, 5, 6)
    assert spec.options == "strategy=withhold_all"
    assert parse_byzantine("equivocate:1:targets=0,2", 4).options == "targets=0,2"
    for bad, message in (
        ("silent", "expected BEHAVIOUR:NODES"),
        ("silent:", "expected BEHAVIOUR:NODES"),
        ("evil:1", "unknown behaviour"),
        ("silent:9", "node 9 not in 0..3"),
        ("silent:x", "not integers"),
        ("silent:1,1", "named twice"),
        ("equivocate:1:targets=7", r"\[7\] not in 0..3"),
        ("equivocate:1:strategy=withhold_all", "unknown for equivocate"),
        ("tail_fork:1:targets=0", "unknown for tail_fork"),
        ("withhold_bundles:1:strategy=nope", "unknown cartel strategy"),
        ("withhold_bundles:1:strategy=threshold", "needs m"),
        ("withhold_bundles:1:strategy=threshold:m=2:theta=0", "theta must be >= 1"),
        ("withhold_bundles:1:theta", "expected KEY=VALUE"),
        ("withhold_bundles:1:strategy=withhold_all:strategy=withhold_all", "given twice"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_byzantine(bad, 4)


def test_the_senders_follow_the_cartels_m() -> None:
    """`sedna testnet run --byzantine withhold_bundles:4,5,6:strategy=threshold:m=3`: the
    Sedna client sends m = 3 bundles a slot, the policy the strategy assumes (without it,
    every lane in one slot, and the cartel's slot index and Δ would be wrong); an explicit
    client m (the experiment's) wins; no cartel m: every lane (0)."""
    from node.tools.testnet import RunOptions, cartel_options

    def options(*specs: str) -> RunOptions:
        assigned = byzantine_nodes([parse_byzantine(s, 7) for s in specs], 7)
        return RunOptions(
            nodes=7,
            byzantine={n: s.behaviour for n, s in assigned.items()},
            byzantine_options={n: s.options for n, s in assigned.items() if s.options},
        )

    assert senders_bundles_per_slot(options("withhold_bundles:4,5,6:strategy=threshold:m=3")) == 3
    assert senders_bundles_per_slot(options("equivocate:1", "withhold_bundles:5:m=2")) == 2
    assert senders_bundles_per_slot(options("withhold_bundles:4,5,6")) == 0
    assert senders_bundles_per_slot(options()) == 0
    explicit = cartel_options(
        nodes=7, cartel=[6], strategy="adaptive", m=2, sedna_bundles_per_slot=4
    )
    assert senders_bundles_per_slot(explicit) == 4


def test_byzantine_nodes_bound_consensus_attackers_by_f() -> None:
    specs = [parse_byzantine(s, 7) for s in ("equivocate:1", "ne_spam:2")]
    assert {n: s.behaviour for n, s in byzantine_nodes(specs, 7).items()} == {
        1: "equivocate",
        2: "ne_spam",
    }
    with pytest.raises(ValueError, match="more than f = 2"):
        byzantine_nodes([*specs, parse_byzantine("silent:3", 7)], 7)
    # lane behaviours do not count against f: a 4-lane cartel on 7 validators
    cartel = parse_byzantine("withhold_bundles:3,4,5,6", 7)
    assert len(byzantine_nodes([*specs, cartel], 7)) == 6
    with pytest.raises(ValueError, match="already runs 'equivocate'"):
        byzantine_nodes([*specs, parse_byzantine("drop_lane_blocks:1", 7)], 7)


def test_generated_network_loads_with_the_node_validation(tmp_path: Path) -> None:
    manifest = generate_network(tmp_path / "net", 4, node_test={2: {"log_votes": True}})
    assert manifest["nodes"] == 4 and len(manifest["members"]) == 4
    configs = [load_config(tmp_path / "net" / m["config"]) for m in manifest["members"]]
    ports = {c.network.listen_port for c in configs} | {c.network.rpc_port for c in configs}
    assert len(ports) == 8  # every port distinct
    for config in configs:
        assert load_key(config).public == config.validators[config.index].public_key
        assert [v.port for v in config.validators] == [c.network.listen_port for c in configs]
    assert configs[2].test.log_votes and not configs[1].test.log_votes
    assert configs[0].network.admin_rpc  # local layout: loopback admin RPC for `disconnect`
    with pytest.raises(TestnetError, match="already holds"):
        generate_network(tmp_path / "net", 4)
    with pytest.raises(TestnetError, match="--nodes"):
        generate_network(tmp_path / "other", 0)


def test_port_search_skips_ports_in_use() -> None:
    p2p, _rpc = find_port_bases(2)
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", p2p))
        busy.listen()
        with pytest.raises(TestnetError, match="in use"):
            find_port_bases(2, p2p_base=p2p)
        moved, _ = find_port_bases(2)
        assert moved != p2p


def test_port_search_stays_below_the_ephemeral_range(monkeypatch: pytest.MonkeyPatch) -> None:
    # A free-looking port in the ephemeral range can be taken by an outgoing connection
    # before the node binds it (CI: "rpc_port ... is already in use").
    import node.tools.testnet as testnet

    monkeypatch.setattr(testnet, "ephemeral_port_range", lambda: (20_700, 60_999))
    monkeypatch.setattr(testnet, "_port_free", lambda port: port >= 20_600)
    monkeypatch.setenv("SEDNA_PORT_BASE", "20000")
    with pytest.raises(TestnetError, match="no free port range"):
        find_port_bases(4)
    monkeypatch.setattr(testnet, "_port_free", lambda port: port >= 20_200)
    assert find_port_bases(4) == (20_200, 20_300)


def test_port_search_counts_a_time_wait_port_as_free() -> None:
    port, _ = find_port_bases(1)
    server = socket.create_server(("127.0.0.1", port))
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    accepted.close()  # the server side closes first: its port is left in TIME_WAIT
    client.close()
    server.close()
    moved, _ = find_port_bases(1, p2p_base=port)
    assert moved == port


def test_port_search_starts_at_the_environment_base(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEDNA_PORT_BASE", "41000")
    p2p, rpc = find_port_bases(2)
    assert 41000 <= p2p < rpc
    for bad in ("80", "lots", "70000"):
        monkeypatch.setenv("SEDNA_PORT_BASE", bad)
        with pytest.raises(TestnetError, match="SEDNA_PORT_BASE"):
            find_port_bases(2)


def test_compose_file_is_what_the_launcher_generates(tmp_path: Path) -> None:
    """docker-compose.yml == render_compose(4), and it matches the docker-layout configs."""
    assert (ROOT / "docker-compose.yml").read_text() == render_compose(4)
    document = compose_document(4)
    services = document["services"]
    # The init service runs the launcher itself, with the layout the nodes expect.
    init = services["init"]["command"]
    assert init[:2] == ["testnet", "init"] and init[init.index("--layout") + 1] == "docker"
    assert init[init.index("--dir") + 1] == DOCKER_ROOT
    nodes = int(init[init.index("--nodes") + 1])
    # Generate exactly what init would generate, and check every validator service against it.
    manifest = generate_network(tmp_path, nodes, layout="docker")
    validator_services = {k: v for k, v in services.items() if k.startswith("node")}
    assert set(services) == {"init", "prometheus", "grafana", *validator_services}
    assert sorted(validator_services) == sorted(m["name"] for m in manifest["members"])
    for member in manifest["members"]:
        service = validator_services[member["name"]]
        config_arg = service["command"][service["command"].index("--config") + 1]
        assert config_arg == f"{DOCKER_ROOT}/{member['config']}"
        config = load_config(tmp_path / member["config"])
        assert service["hostname"] == member["name"]
        assert service["image"] == services["init"]["image"]
        # Rule: a validator container mounts its own directory only (its key, no other's).
        assert service["volumes"] == [f"{member['name']}:{DOCKER_ROOT}/{member['name']}"]
        assert service["volumes"][0] in services["init"]["volumes"]
        assert service["pull_policy"] == "never"  # the image init built, never a registry's
        assert service["depends_on"]["init"]["condition"] == "service_completed_successfully"
        # peers reach each validator by its service name on the transport port
        for validator in config.validators:
            assert validator.host in validator_services and validator.port == DOCKER_P2P_PORT
        assert config.network.listen_host == "0.0.0.0"
        assert config.network.listen_port == DOCKER_P2P_PORT
        # Rule: RPC ports are published on the host's loopback only.
        bind, host_port, container_port = service["ports"][0].split(":")
        assert bind == "127.0.0.1"
        assert int(container_port) == config.network.rpc_port == DOCKER_RPC_PORT
        assert int(host_port) == LOCAL_RPC_BASE + member["index"]
        assert not config.network.admin_rpc  # the admin RPC is not exposed from containers
    assert "build" in services["init"] and services["init"]["pull_policy"] == "build"
    # every key file the nodes read lies in exactly one node volume
    for member in manifest["members"]:
        assert (tmp_path / member["name"] / "key.toml").stat().st_mode & 0o077 == 0
    assert sorted(document["volumes"]) == sorted(
        ["testnet", "prometheus", "grafana", *validator_services]
    )


def test_dockerfile_runs_unprivileged_pinned_and_health_checked() -> None:
    import re

    text = (ROOT / "Dockerfile").read_text()
    lines = [
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    ]
    (base,) = [line for line in lines if line.startswith("FROM ")]
    assert re.fullmatch(r"FROM python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}", base)
    users = [line for line in lines if line.startswith("USER ")]
    assert users and users[-1].split()[1].split(":")[0] not in ("root", "0")
    assert lines.index(users[-1]) < lines.index('ENTRYPOINT ["sedna"]')
    health = " ".join(lines[lines.index(next(x for x in lines if x.startswith("HEALTHCHECK"))) :])
    assert "/status" in health
    # the image installs the node's extras only: no analysis stack
    assert "ARG EXTRAS=fast" in lines and "analysis" not in text.split("ARG EXTRAS")[1]
    assert text.count('ENTRYPOINT ["sedna"]') == 1


def test_the_image_holds_every_package_the_project_installs() -> None:
    """`pip install .` in the image installs the packages pyproject.toml names from the
    copied tree only: a package left out (campaign/, imported by `sedna`'s own parser
    through netsim.cli) built an image whose `sedna` raised ModuleNotFoundError."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = project["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = sorted(pattern.rstrip("*") for pattern in include)
    assert all((ROOT / name / "__init__.py").is_file() for name in packages), packages
    copied = {
        line.split()[1]
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.startswith("COPY ")
    }
    assert [name for name in packages if name not in copied] == []


_WITHOUT_EXTRAS = """
import importlib.abc, sys
HIDDEN = {"scipy", "matplotlib", "dask", "distributed", "libp2p", "trio"}
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, Hide())
import node.assembly  # what `sedna node run` builds a node with
from node.cli import main
try:
    main(["--help"])
except SystemExit as exit:
    assert exit.code == 0, exit.code
"""


def test_the_node_commands_run_without_the_analysis_and_cluster_extras(tmp_path: Path) -> None:
    """The image installs the node's dependencies only: `sedna` (its parser imports every
    subcommand's module), the node's runtime and `testnet init` work with scipy,
    matplotlib, dask and libp2p absent."""
    import subprocess
    import sys

    code = _WITHOUT_EXTRAS + (
        f"assert main(['testnet', 'init', '--nodes', '2', '--layout', 'docker', "
        f"'--dir', {str(tmp_path / 'net')!r}]) == 0\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "net" / "node1" / "config.toml").is_file()


def test_longest_stall() -> None:
    assert _longest_stall([]) == 0.0
    assert _longest_stall([(0.0, 1), (1.0, 2), (5.0, 2), (6.0, 3)]) == 4.0


def test_cli_bad_input_exits_2_and_creates_nothing(tmp_path: Path, capsys) -> None:
    target = tmp_path / "net"
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    for argv in (
        ["testnet", "run", "--out", str(a_file), "--dir", str(target)],
        ["testnet", "run", "--nodes", "0", "--dir", str(target)],
        ["testnet", "run", "--duration", "-1", "--dir", str(target)],
        ["testnet", "run", "--rate", "nan", "--dir", str(target)],
        ["testnet", "run", "--rate", "-1", "--dir", str(target)],
        ["testnet", "run", "--rate", "0", "--sedna-rate", "0", "--dir", str(target)],
        ["testnet", "run", "--sedna-rate", "inf", "--dir", str(target)],
        ["testnet", "run", "--sedna-bytes", "10", "--dir", str(target)],
        ["testnet", "run", "--sedna-bytes", "70000", "--dir", str(target)],
        ["testnet", "run", "--perturb", "kill:9@1", "--dir", str(target)],
        ["testnet", "run", "--byzantine", "evil:1", "--dir", str(target)],
        ["testnet", "run", "--byzantine", "equivocate:4", "--dir", str(target)],
        ["testnet", "run", "--byzantine", "equivocate:1,2", "--dir", str(target)],
        ["testnet", "run", "--byzantine", "silent:1:strategy=x", "--dir", str(target)],
        ["testnet", "status", "--dir", str(target)],
        ["testnet", "down", "--dir", str(target)],
        ["testnet", "logs", "--dir", str(target)],
    ):
        assert main(argv) == 2, argv
        assert not target.exists()
    errors = capsys.readouterr().err.strip().splitlines()
    assert all(line.startswith("sedna testnet:") for line in errors)


def test_init_writes_a_docker_network_once(tmp_path: Path) -> None:
    args = ["testnet", "init", "--nodes", "4", "--layout", "docker", "--dir", str(tmp_path)]
    assert main(args) == 0
    first = (tmp_path / "network.json").read_text()
    assert main([*args, "--if-missing"]) == 0
    assert (tmp_path / "network.json").read_text() == first  # keys were not regenerated
    assert main(args) == 2
    assert json.loads(first)["layout"] == "docker"
