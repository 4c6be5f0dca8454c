"""Multi-host testnets: the hosts file, the per-host bundles (each with its own keys only),
their manifests and compose files. Real processes on several loopback addresses acting as
hosts are in test_hosts_e2e.py."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from consensus.crypto import derive_keys
from node.cli import main
from node.config import load_config, load_key
from node.tools.hosts import (
    HostsFileError,
    generate_hosts_network,
    parse_hosts,
)
from node.tools.testnet import Testnet, TestnetError

KEYS = derive_keys(5, b"tests/node/hosts")


def _hosts(**top: Any) -> dict[str, Any]:
    return {
        "p2p_port": 30000,
        "rpc_port": 30100,
        "host": [
            {"name": "alpha", "address": "10.1.0.1"},
            {"name": "beta", "address": "10.1.0.2", "validators": 2},
            {"name": "gamma", "address": "gamma.example", "rpc_host": "0.0.0.0"},
            {"name": "delta", "address": "10.1.0.1", "p2p_port": 30001, "rpc_port": 30101},
        ],
        **top,
    }


def test_bundles_hold_their_own_validators_and_keys_only(tmp_path: Path) -> None:
    hosts = parse_hosts(_hosts())
    assert hosts.validators == 5
    manifest = generate_hosts_network(tmp_path, hosts, keys=KEYS)
    assert manifest["layout"] == "hosts" and manifest["nodes"] == 5
    where = {m["index"]: m["bundle"] for m in manifest["members"]}
    assert where == {0: "alpha", 1: "beta", 2: "beta", 3: "gamma", 4: "delta"}
    # Rule: no secret key outside the bundle of the host that runs the validator.
    secrets = {i: k.seed.hex() for i, k in enumerate(KEYS)}
    for path in tmp_path.rglob("*"):
        if not path.is_file():
            continue
        text = path.read_text()
        parts = path.relative_to(tmp_path).parts
        own = (
            {m["index"] for m in manifest["members"] if m["bundle"] == parts[1]}
            if parts[0] == "hosts"
            else set()
        )
        for index, secret in secrets.items():
            if index not in own or path.name != "key.toml":
                assert secret not in text, f"{path} holds the key of validator {index}"
    for member in manifest["members"]:
        bundle = tmp_path / "hosts" / member["bundle"]
        assert sorted(p.name for p in bundle.glob("node*")) == sorted(
            m["name"] for m in manifest["members"] if m["bundle"] == member["bundle"]
        )
        config = load_config(tmp_path / member["config"])
        assert load_key(config).public == KEYS[member["index"]].public
        assert (tmp_path / member["config"]).parent.joinpath("key.toml").stat().st_mode & 0o077 == 0
        assert not config.network.admin_rpc  # beyond one machine the admin RPC stays off
        # Every config lists every validator where its peers reach it.
        assert [(v.host, v.port) for v in config.validators] == [
            ("10.1.0.1", 30000),
            ("10.1.0.2", 30000),
            ("10.1.0.2", 30001),
            ("gamma.example", 30000),
            ("10.1.0.1", 30001),
        ]
    beta = load_config(tmp_path / "hosts/beta/node2/config.toml")
    assert (beta.network.listen_host, beta.network.listen_port) == ("10.1.0.2", 30001)
    assert (beta.network.rpc_host, beta.network.rpc_port) == ("10.1.0.2", 30101)
    gamma = load_config(tmp_path / "hosts/gamma/node3/config.toml")
    assert gamma.network.rpc_host == "0.0.0.0"
    # Prometheus (beside the whole-network manifest) scrapes every validator.
    prometheus = yaml.safe_load((tmp_path / "prometheus.yml").read_text())
    targets = [c["targets"][0] for c in prometheus["scrape_configs"][0]["static_configs"]]
    assert targets == [
        "10.1.0.1:30100",
        "10.1.0.2:30100",
        "10.1.0.2:30101",
        "gamma.example:30100",
        "10.1.0.1:30101",
    ]


def test_a_host_bundle_is_a_network_directory_of_its_validators(tmp_path: Path) -> None:
    generate_hosts_network(tmp_path, parse_hosts(_hosts()), keys=KEYS)
    beta = Testnet(tmp_path / "hosts" / "beta")
    assert [m.index for m in beta.members] == [1, 2] and beta.validators == 5
    assert beta.member(2).config == (tmp_path / "hosts/beta/node2/config.toml").resolve()
    with pytest.raises(KeyError):
        beta.member(0)
    gamma = Testnet(tmp_path / "hosts" / "gamma")
    assert gamma.member(3).rpc_host == "127.0.0.1"  # RPC on every interface: local client
    # Rule: the whole-network directory starts nothing (each host runs its bundle).
    whole = Testnet(tmp_path)
    with pytest.raises(TestnetError, match="multi-host network"):
        whole.start(0)
    assert not (tmp_path / "hosts/alpha/node0/pid").exists()
    compose = yaml.safe_load((tmp_path / "hosts/beta/docker-compose.yml").read_text())
    assert sorted(compose["services"]) == ["node1", "node2"]
    for name, service in compose["services"].items():
        assert service["network_mode"] == "host" and service["pull_policy"] == "never"
        # Rule: a container mounts only its own validator's directory.
        assert service["volumes"] == [f"./{name}:/testnet/{name}"]
        assert service["command"][-1] == f"/testnet/{name}/config.toml"
    health = compose["services"]["node2"]["healthcheck"]["test"][-1]
    assert "http://10.1.0.2:30101/status" in health


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"host": []}, r"no \[\[host\]\]"),
        ({"colour": "red"}, "unknown keys"),
        ({"transport": "smoke"}, "transport"),
        ({"host": [{"name": "a"}]}, r"host\[0\]\.address: missing"),
        ({"host": [{"address": "999.1.1.1"}]}, r"host\[0\]\.address.*not a valid IPv4"),
        ({"host": [{"address": "0.0.0.0"}]}, r"host\[0\]\.address: peers cannot dial"),
        ({"host": [{"address": "a", "name": "../up"}]}, r"host\[0\]\.name"),
        ({"host": [{"address": "a", "validators": 0}]}, r"host\[0\]\.validators"),
        ({"host": [{"address": "a", "p2p_port": 65535, "validators": 2}]}, r"p2p_port"),
        ({"host": [{"address": "a", "rpc_port": 30000}]}, r"rpc_port.*overlaps"),
        ({"host": [{"address": "a", "listen_host": "-x"}]}, r"host\[0\]\.listen_host"),
        ({"host": [{"address": "a", "port": 1}]}, r"host\[0\]: unknown keys \['port'\]"),
        ({"host": [{"address": "a", "validators": "2"}]}, r"validators: expected an integer"),
        (
            {"host": [{"address": "a", "name": "x"}, {"address": "b", "name": "x"}]},
            "names repeat",
        ),
        ({"host": [{"address": "a"}, {"address": "a"}]}, r"a:30000 is used twice"),
        ({"host": [{"address": "a", "validators": 65}]}, r"validators: must be in 1\.\.64"),
    ],
)
def test_bad_hosts_files_name_the_key(change: dict[str, Any], message: str) -> None:
    with pytest.raises(HostsFileError, match=message):
        parse_hosts({"p2p_port": 30000, "rpc_port": 30100, "host": [], **change})


def test_init_hosts_cli(tmp_path: Path, capsys) -> None:
    hosts_file = tmp_path / "hosts.toml"
    hosts_file.write_text(
        'transport = "tcp"\n' + "".join(f'[[host]]\naddress = "10.2.0.{k}"\n' for k in range(1, 5))
    )
    assert tomllib.loads(hosts_file.read_text())["host"][3]["address"] == "10.2.0.4"
    net = tmp_path / "net"
    assert main(["testnet", "init", "--hosts", str(hosts_file), "--dir", str(net)]) == 0
    manifest = json.loads((net / "network.json").read_text())
    assert [m["bundle"] for m in manifest["members"]] == ["host0", "host1", "host2", "host3"]
    assert "copy" in capsys.readouterr().err
    # Once is enough: a second init refuses, --if-missing does nothing.
    assert main(["testnet", "init", "--hosts", str(hosts_file), "--dir", str(net)]) == 2
    assert (
        main(["testnet", "init", "--hosts", str(hosts_file), "--dir", str(net), "--if-missing"])
        == 0
    )
    # `up` on the whole-network directory or --fresh on a bundle refuses, starting nothing.
    try:
        assert main(["testnet", "up", "--dir", str(net)]) == 2
        assert main(["testnet", "up", "--fresh", "--dir", str(net / "hosts/host1")]) == 2
        assert not list(net.rglob("pid"))
    finally:  # had one started anyway, stop it
        for directory in (net, net / "hosts/host1"):
            if list(directory.rglob("pid")):
                main(["testnet", "down", "--dir", str(directory)])
    err = capsys.readouterr().err
    assert "multi-host network" in err and "would not match" in err
    # Bad input exits 2 and creates nothing.
    broken = tmp_path / "broken.toml"
    broken.write_text("[[host]]\nname = 'x'\n")
    for argv in (
        ["testnet", "init", "--hosts", str(broken), "--dir", str(tmp_path / "a")],
        ["testnet", "init", "--hosts", str(tmp_path / "none.toml"), "--dir", str(tmp_path / "a")],
        ["testnet", "init", "--hosts", str(hosts_file), "--nodes", "4", "--dir", str(tmp_path / "a")],
        ["testnet", "init", "--hosts", str(hosts_file), "--transport", "tcp", "--dir", str(tmp_path / "a")],
    ):  # fmt: skip
        assert main(argv) == 2, argv
        assert not (tmp_path / "a").exists()
