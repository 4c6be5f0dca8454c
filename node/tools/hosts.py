"""Multi-host testnets: `sedna testnet init --hosts hosts.toml --dir DIR`.

A hosts file names the machines and how many validators each runs:

    transport = "tcp"        # optional (tcp | libp2p)
    p2p_port = 26656         # optional defaults for every host
    rpc_port = 26657

    [[host]]
    name = "alpha"           # the bundle's directory name (default host<k>)
    address = "10.0.0.1"     # how peers and Prometheus reach this host (IP or DNS name)
    validators = 1           # optional (default 1): ports p2p_port + k and rpc_port + k
    listen_host = "0.0.0.0"  # optional: where the transport listens (default: address)
    rpc_host = "127.0.0.1"   # optional: where the RPC listens (default: listen_host)
    p2p_port = 30000         # optional per-host ports
    rpc_port = 30100

Validators are numbered in file order. `init` writes, through the launcher's own
generator (`node.tools.testnet.write_network`), DIR/network.json and DIR/prometheus.yml
(every validator; no secret) and one bundle per host, DIR/hosts/<name>/, holding that
host's validators' configs and secret keys only, its own network.json (so `sedna testnet
up|status|logs|down --dir <bundle>` run that host's part) and a docker-compose.yml that
runs them from the node image with the host's network.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from consensus.crypto import KeyPair
from node.config import ConfigError
from node.config import _host as check_host
from node.tools.testnet import (
    DOCKER_IMAGE,
    DOCKER_P2P_PORT,
    DOCKER_RPC_PORT,
    HOSTS_LAYOUT,
    MAX_NODES,
    NodePlan,
    TestnetError,
    write_network,
)
from node.tools.yamltext import render_yaml

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_TOP_KEYS = {"transport", "p2p_port", "rpc_port", "host"}
_HOST_KEYS = {"name", "address", "validators", "listen_host", "rpc_host", "p2p_port", "rpc_port"}
HOST_BUNDLE_ROOT = "/testnet"  # where a host's compose file mounts its validators


class HostsFileError(TestnetError):
    """A hosts file that cannot describe a network; the text names the key."""


@dataclass(frozen=True)
class HostSpec:
    name: str
    address: str
    validators: int
    listen_host: str
    rpc_host: str
    p2p_port: int
    rpc_port: int


@dataclass(frozen=True)
class HostsFile:
    hosts: tuple[HostSpec, ...]
    transport: str

    @property
    def validators(self) -> int:
        return sum(h.validators for h in self.hosts)


def _int(table: Mapping[str, Any], key: str, default: int, where: str) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise HostsFileError(f"{where}{key}: expected an integer, got {value!r}")
    return value


def _str(table: Mapping[str, Any], key: str, default: str | None, where: str) -> str:
    value = table.get(key, default)
    if not isinstance(value, str):
        raise HostsFileError(f"{where}{key}: expected a string, got {value!r}")
    return value


def parse_hosts(data: Mapping[str, Any], source: str = "hosts file") -> HostsFile:
    """Validate a parsed hosts file; raises HostsFileError naming the first bad key."""
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise HostsFileError(f"{source}: unknown keys {unknown} (allowed: {sorted(_TOP_KEYS)})")
    transport = _str(data, "transport", "tcp", f"{source}: ")
    if transport not in ("tcp", "libp2p"):
        raise HostsFileError(f"{source}: transport: {transport!r} is not 'tcp' or 'libp2p'")
    default_p2p = _int(data, "p2p_port", DOCKER_P2P_PORT, f"{source}: ")
    default_rpc = _int(data, "rpc_port", DOCKER_RPC_PORT, f"{source}: ")
    tables = data.get("host")
    if not isinstance(tables, list) or not tables:
        raise HostsFileError(f"{source}: no [[host]] entries")
    hosts: list[HostSpec] = []
    for k, table in enumerate(tables):
        where = f"{source}: host[{k}]."
        if not isinstance(table, dict):
            raise HostsFileError(f"{where[:-1]}: expected a table")
        unknown = sorted(set(table) - _HOST_KEYS)
        if unknown:
            raise HostsFileError(f"{where[:-1]}: unknown keys {unknown}")
        if "address" not in table:
            raise HostsFileError(f"{where}address: missing (how peers reach this host)")
        name = _str(table, "name", f"host{k}", where)
        if not _NAME.match(name):
            raise HostsFileError(f"{where}name: {name!r} must be 1..63 of [A-Za-z0-9._-]")
        address = _str(table, "address", None, where)
        listen_host = _str(table, "listen_host", address, where)
        rpc_host = _str(table, "rpc_host", listen_host, where)
        try:
            for key, value in (
                ("address", address),
                ("listen_host", listen_host),
                ("rpc_host", rpc_host),
            ):
                check_host(value, f"{where}{key}")
        except ConfigError as exc:
            raise HostsFileError(str(exc)) from None
        if address in ("0.0.0.0", "::"):
            raise HostsFileError(f"{where}address: peers cannot dial {address}; name the host")
        validators = _int(table, "validators", 1, where)
        if not 1 <= validators <= MAX_NODES:
            raise HostsFileError(f"{where}validators: must be in 1..{MAX_NODES}")
        p2p_port = _int(table, "p2p_port", default_p2p, where)
        rpc_port = _int(table, "rpc_port", default_rpc, where)
        for key, first in (("p2p_port", p2p_port), ("rpc_port", rpc_port)):
            if not first >= 1 or first + validators - 1 > 65535:
                raise HostsFileError(f"{where}{key}: {first}..{first + validators - 1} not ports")
        p2p = set(range(p2p_port, p2p_port + validators))
        rpc = set(range(rpc_port, rpc_port + validators))
        if p2p & rpc:
            raise HostsFileError(
                f"{where}rpc_port: {rpc_port}.. overlaps p2p_port {p2p_port}.. on one host"
            )
        hosts.append(HostSpec(name, address, validators, listen_host, rpc_host, p2p_port, rpc_port))
    names = [h.name for h in hosts]
    if len(set(names)) != len(names):
        raise HostsFileError(f"{source}: host names repeat: {names}")
    # Two entries may share a machine (an address) only on distinct ports.
    taken: dict[tuple[str, int], str] = {}
    for h in hosts:
        for k in range(h.validators):
            for kind, port in (("p2p", h.p2p_port + k), ("rpc", h.rpc_port + k)):
                owner = taken.setdefault((h.address, port), f"{h.name} {kind}")
                if owner != f"{h.name} {kind}":
                    raise HostsFileError(
                        f"{source}: {h.address}:{port} is used twice ({owner}, {h.name} {kind})"
                    )
    total = sum(h.validators for h in hosts)
    if total > MAX_NODES:
        raise HostsFileError(f"{source}: {total} validators, at most {MAX_NODES}")
    return HostsFile(tuple(hosts), transport)


def load_hosts(path: Path) -> HostsFile:
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise HostsFileError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise HostsFileError(f"{path}: not a readable TOML file: {exc}") from None
    return parse_hosts(data, str(path))


def plan_hosts(hosts: HostsFile) -> list[NodePlan]:
    plans: list[NodePlan] = []
    for h in hosts.hosts:
        for k in range(h.validators):
            plan = NodePlan(
                index=len(plans),
                host=h.address,
                listen_host=h.listen_host,
                p2p_port=h.p2p_port + k,
                rpc_host=h.rpc_host,
                rpc_port=h.rpc_port + k,
                rpc_public_host="",
                bundle=h.name,
            )
            # From the machine that ran init (as from Prometheus): where the RPC is scraped.
            plans.append(replace(plan, rpc_public_host=plan.scrape_host))
    return plans


def generate_hosts_network(
    root: Path,
    hosts: HostsFile,
    *,
    consensus: Mapping[str, Any] | None = None,
    keys: Sequence[KeyPair] | None = None,
) -> dict[str, Any]:
    """Write a multi-host network (see the module docstring); returns the manifest."""
    return write_network(
        root,
        plan_hosts(hosts),
        layout=HOSTS_LAYOUT,
        transport=hosts.transport,
        consensus=consensus,
        admin_rpc=False,  # the admin RPC stays off on networks beyond one machine
        keys=keys,
    )


def host_compose_document(members: Sequence[NodePlan]) -> dict[str, Any]:
    """docker-compose.yml of one host's bundle: its validators from the node image, on the
    host's network (they listen on the host's addresses, as the configs say), each
    mounting only its own directory. The image is built or loaded on the host beforehand
    (never pulled: a registry image of that name could be anyone's)."""
    services: dict[str, Any] = {}
    for plan in members:
        directory = f"{HOST_BUNDLE_ROOT}/{plan.name}"
        health_url = f"http://{_url_host(plan.rpc_local_host)}:{plan.rpc_port}/status"
        services[plan.name] = {
            "image": DOCKER_IMAGE,
            "pull_policy": "never",
            "network_mode": "host",
            # The files belong to whoever copied the bundle; run as that user (SEDNA_UID).
            "user": "${SEDNA_UID:-10001}:${SEDNA_GID:-10001}",
            "command": ["node", "run", "--config", f"{directory}/config.toml"],
            "volumes": [f"./{plan.name}:{directory}"],
            "healthcheck": {
                "test": [
                    "CMD",
                    "python",
                    "-c",
                    f"import urllib.request; urllib.request.urlopen({health_url!r}, timeout=2)",
                ],
                "interval": "10s",
                "timeout": "3s",
                "start_period": "30s",
                "retries": 3,
            },
            "stop_signal": "SIGTERM",
            "restart": "unless-stopped",
        }
    return {"services": services}


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def render_host_compose(members: Sequence[NodePlan]) -> str:
    names = ", ".join(p.name for p in members)
    header = (
        "# Generated by `sedna testnet init --hosts`: this host's validators "
        f"({names}).\n"
        "# Run from this directory: SEDNA_UID=$(id -u) SEDNA_GID=$(id -g) docker compose up -d\n"
    )
    return header + render_yaml(host_compose_document(members)) + "\n"
