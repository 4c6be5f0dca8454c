"""Local multi-process testnet: generate keys and configs, run node processes, perturb, measure.

Directory layout written by `generate_network(root, ...)`:

    root/network.json            manifest (node count, transport, layout, ports)
    root/node<i>/config.toml     the node's config (paths relative to this file)
    root/node<i>/key.toml        its Ed25519 key (mode 0600)
    root/node<i>/admin.token     its admin RPC bearer token (mode 0600; local layout only)
    root/node<i>/data/           SQLite database
    root/node<i>/node.log        structured JSON log; stdout.log holds anything else
    root/node<i>/pid             pid of the running process (removed when it stops)

Two layouts share all of this code: `local` (every node on 127.0.0.1, ports
`p2p_base + i` and `rpc_base + i`) and `docker` (node i is the host `node<i>`, every node
listens on 0.0.0.0:26656 with its RPC on 0.0.0.0:26657); `compose_document()` describes
the docker-compose file that runs the docker layout from one image.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consensus.crypto import KeyPair, check_chain_id
from node.config import (
    ADMIN_TOKEN_FILE,
    DISSEMINATION_MODES,
    POA_SIGNATURES,
    SINGLE_VALIDATOR_VOTE_PACE_MS,
    ConfigError,
    aggregate_fields,
    load_config,
    render_config,
    render_key_file,
    write_admin_token,
    write_key_file,
)
from node.lane_tracker import LEDGER_CHECKPOINT_HEIGHTS
from node.tools.timeseries import SeriesRecorder
from node.tools.yamltext import render_yaml

MANIFEST = "network.json"
HOSTS_DIR = "hosts"  # multi-host layout: one bundle per host under root/hosts/<name>/
HOSTS_LAYOUT = "hosts"  # the manifest of a whole multi-host network
HOST_LAYOUT = "host"  # the manifest of one host's bundle
LOCAL_P2P_BASE = 26600
LOCAL_RPC_BASE = 26700
DOCKER_P2P_PORT = 26656
DOCKER_RPC_PORT = 26657
DOCKER_ROOT = "/testnet"
DOCKER_IMAGE = "sedna:latest"
MAX_NODES = 64
RECOVERY_LIMIT_S = 20.0
STALL_LIMIT_S = 20.0
SEDNA_WARMUP_S = 2.0
SERIES_INTERVAL_S = 1.0  # --out: one row of the time series per second
DEFAULT_DOWNTIME_S = {"kill": 5.0, "pause": 10.0, "restart": 0.0, "disconnect": 10.0}


class TestnetError(RuntimeError):
    """A testnet operation that cannot proceed; the text says why."""

    __test__ = False  # not a pytest test class


# --------------------------------------------------------------------------- generation


@dataclass(frozen=True)
class NodePlan:
    index: int
    host: str  # how peers reach it
    listen_host: str
    p2p_port: int
    rpc_host: str  # where the RPC listens
    rpc_port: int
    rpc_public_host: str  # how a client on the launcher's machine reaches the RPC
    bundle: str = ""  # multi-host layout: the host (bundle directory) it runs on

    @property
    def rpc_local_host(self) -> str:
        """How a client on the validator's own host reaches the RPC."""
        if self.rpc_host in ("0.0.0.0", "::"):
            return "127.0.0.1" if self.rpc_host == "0.0.0.0" else "::1"
        return self.rpc_host

    @property
    def name(self) -> str:
        return f"node{self.index}"

    @property
    def scrape_host(self) -> str:
        """Where a Prometheus beside the peers reaches the RPC: its listen address, or
        the address peers use when it listens on every interface."""
        return self.host if self.rpc_host in ("0.0.0.0", "::") else self.rpc_host


def _port_free(port: int) -> bool:
    """True if a server can bind `port` now. SO_REUSEADDR as the node's servers set it
    (asyncio and trio listeners do), so a port held only by TIME_WAIT counts as free and
    the search does not climb past ranges earlier runs just closed."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def default_port_base() -> int:
    """Where the free-port search starts: `SEDNA_PORT_BASE` if set, else LOCAL_P2P_BASE.

    Separate bases keep concurrent launches on one machine (parallel CI jobs, several
    checkouts) out of each other's ranges; the search checks freeness either way.
    """
    text = os.environ.get("SEDNA_PORT_BASE", "").strip()
    if not text:
        return LOCAL_P2P_BASE
    if not text.isdigit() or not 1024 <= int(text) <= 60_000:
        raise TestnetError(f"SEDNA_PORT_BASE={text!r} must be a port number in 1024..60000")
    return int(text)


def ephemeral_port_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (Linux default if the
    setting cannot be read)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def find_port_bases(nodes: int, p2p_base: int | None = None) -> tuple[int, int]:
    """Port bases with `nodes` free consecutive ports each (bounded search, 40 tries).

    The search never moves into the kernel's ephemeral range (unless it starts there):
    a port found free there can be taken by any outgoing connection before the node
    binds it, and the node then fails to start with "already in use".
    """
    start = p2p_base if p2p_base is not None else default_port_base()
    ephemeral_low, ephemeral_high = ephemeral_port_range()
    start_ephemeral = ephemeral_low <= start <= ephemeral_high
    for attempt in range(40):
        base = start + attempt * 2 * max(100, nodes)
        rpc = base + max(100, nodes)
        ports = [base + i for i in range(nodes)] + [rpc + i for i in range(nodes)]
        if not start_ephemeral and any(ephemeral_low <= p <= ephemeral_high for p in ports):
            break
        if all(0 < p < 65536 for p in ports) and all(_port_free(p) for p in ports):
            return base, rpc
        if p2p_base is not None:
            raise TestnetError(f"ports {base}..{base + nodes - 1} or {rpc}.. are in use")
    raise TestnetError("no free port range found for the testnet")


def plan_nodes(nodes: int, layout: str, p2p_base: int = 0, rpc_base: int = 0) -> list[NodePlan]:
    if layout == "docker":
        return [
            NodePlan(
                i, f"node{i}", "0.0.0.0", DOCKER_P2P_PORT, "0.0.0.0", DOCKER_RPC_PORT, "127.0.0.1"
            )
            for i in range(nodes)
        ]
    if layout == "local":
        return [
            NodePlan(
                i, "127.0.0.1", "127.0.0.1", p2p_base + i, "127.0.0.1", rpc_base + i, "127.0.0.1"
            )
            for i in range(nodes)
        ]
    raise TestnetError(f"unknown layout {layout!r}; choose 'local' or 'docker'")


def config_document(
    plan: NodePlan,
    plans: Sequence[NodePlan],
    keys: Sequence[KeyPair],
    *,
    transport: str,
    consensus: Mapping[str, Any],
    test: Mapping[str, Any],
    admin_rpc: bool,
    mempool: Mapping[str, Any] | None = None,
    dissemination: str = "certified",
    ledger: Mapping[str, Any] | None = None,
    poa_signatures: str = "bls",
    aggregate: Sequence[Mapping[str, str]] | None = None,
) -> dict[str, Any]:
    """One validator's config. `aggregate`: every validator's `bls_public_key` and
    `bls_pop` (`node.config.aggregate_fields`; computed here when not given)."""
    if aggregate is None:
        scheme = consensus.get("signature_scheme", "ed25519")
        aggregate = [aggregate_fields(k, scheme) for k in keys]
    document: dict[str, Any] = {
        "node": {
            "index": plan.index,
            "data_dir": "data",
            "key_file": "key.toml",
            "log_level": "info",
            "log_file": "node.log",
        },
        "network": {
            "transport": transport,
            "listen_host": plan.listen_host,
            "listen_port": plan.p2p_port,
            "rpc_host": plan.rpc_host,
            "rpc_port": plan.rpc_port,
            "admin_rpc": admin_rpc,
        },
        "consensus": {"protocol": "monadbft", "delta_ms": 100.0, **consensus},
        "mempool": {"max_txs": 200_000, "max_block_txs": 5_000, **(mempool or {})},
        "lanes": {"dissemination": dissemination, "poa_signatures": poa_signatures},
        "validators": [
            {
                "index": p.index,
                "public_key": keys[p.index].public.hex(),
                "stake": 1,
                "host": p.host,
                "port": p.p2p_port,
                **aggregate[p.index],
            }
            for p in plans
        ],
    }
    if ledger is not None:
        document["ledger"] = dict(ledger)
    if test:
        document["test"] = dict(test)
    return document


SENDERS_FILE = "senders.toml"  # the funded sender keys of a network with a [ledger]
DEFAULT_SENDERS = 4


def ledger_section(
    sender_balance: int, fee: int, bounty: int, senders: Sequence[KeyPair]
) -> dict[str, Any]:
    """The `[ledger]` of every config: prices and the genesis allocation."""
    return {
        "sender_balance": sender_balance,
        "fee": fee,
        "bounty": bounty,
        "genesis": [key.public.hex() for key in senders],
    }


def write_senders(path: Path, senders: Sequence[KeyPair]) -> None:
    """The funded senders' keys, readable by their owner only (the load generator's)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        for key in senders:
            handle.write(f"[[senders]]\n{render_key_file(key)}\n")


def load_senders(root: Path) -> list[KeyPair]:
    """The funded sender keys of the network at `root` ([] when it has none)."""
    path = root / SENDERS_FILE
    if not path.exists():
        return []
    data = tomllib.loads(path.read_text())
    return [KeyPair.from_seed(bytes.fromhex(entry["secret_seed"])) for entry in data["senders"]]


def generate_network(
    root: Path,
    nodes: int,
    *,
    transport: str = "tcp",
    layout: str = "local",
    p2p_base: int | None = None,
    consensus: Mapping[str, Any] | None = None,
    node_test: Mapping[int, Mapping[str, Any]] | None = None,
    admin_rpc: bool | None = None,
    keys: Sequence[KeyPair] | None = None,
    mempool: Mapping[str, Any] | None = None,
    dissemination: str = "certified",
    chain_id: str | None = None,
    ledger: Mapping[str, int] | None = None,
    poa_signatures: str = "bls",
) -> dict[str, Any]:
    """Write keys, configs and the manifest for a fresh network; returns the manifest.

    `ledger` (`sender_balance`, `fee`, `bounty`, optional `senders`: how many funded
    sender keys, default 4) gives every config the same `[ledger]`; the funded senders'
    keys go to `SENDERS_FILE` at the root.

    The admin RPC (transport isolation, used by `disconnect` perturbations) is on by
    default only in the local layout, whose RPC listens on loopback.
    """
    if admin_rpc is None:
        admin_rpc = layout == "local"
    if not 1 <= nodes <= MAX_NODES:
        raise TestnetError(f"--nodes must be in 1..{MAX_NODES}, got {nodes}")
    if (root / MANIFEST).exists():
        raise TestnetError(f"{root} already holds a network ({MANIFEST}); remove it first")
    if layout == "local":
        p2p, rpc = find_port_bases(nodes, p2p_base)
    else:
        p2p, rpc = DOCKER_P2P_PORT, DOCKER_RPC_PORT
    return write_network(
        root,
        plan_nodes(nodes, layout, p2p, rpc),
        layout=layout,
        transport=transport,
        consensus=consensus,
        node_test=node_test,
        admin_rpc=admin_rpc,
        keys=keys,
        mempool=mempool,
        dissemination=dissemination,
        chain_id=chain_id,
        ledger=ledger,
        poa_signatures=poa_signatures,
    )


def new_chain_id() -> str:
    """A fresh chain id for a new network: nothing signed on another network is valid on
    it, and its nodes refuse peers of any other network (docs/operations.md)."""
    return f"sedna-{os.urandom(6).hex()}"


def write_network(
    root: Path,
    plans: Sequence[NodePlan],
    *,
    layout: str,
    transport: str = "tcp",
    consensus: Mapping[str, Any] | None = None,
    node_test: Mapping[int, Mapping[str, Any]] | None = None,
    admin_rpc: bool = False,
    keys: Sequence[KeyPair] | None = None,
    mempool: Mapping[str, Any] | None = None,
    dissemination: str = "certified",
    chain_id: str | None = None,
    ledger: Mapping[str, int] | None = None,
    poa_signatures: str = "bls",
) -> dict[str, Any]:
    """Keys, configs, manifests and the Prometheus config of planned validators: what every
    layout shares. Every config names the network's chain id: `chain_id`, else the
    consensus mapping's, else a fresh one (`new_chain_id`). A plan with a `bundle` goes to `root/hosts/<bundle>/`, a host's bundle:
    its validators' directories (configs and *their* keys only) and a manifest of them, so
    `sedna testnet up|status|down --dir <bundle>` runs that host's part of the network.
    The manifest at `root` lists every validator (no secret is in it)."""
    nodes = len(plans)
    consensus = dict(consensus or {})
    chain_id = chain_id or consensus.get("chain_id") or new_chain_id()
    try:
        consensus["chain_id"] = check_chain_id(chain_id)
    except ValueError as exc:
        raise TestnetError(f"--chain-id: {exc}") from None
    if nodes == 1:  # a lone validator is its own quorum: pace it (config rule)
        consensus.setdefault("vote_pace_ms", SINGLE_VALIDATOR_VOTE_PACE_MS)
    if transport not in ("tcp", "libp2p"):
        raise TestnetError(f"unknown transport {transport!r}; choose 'tcp' or 'libp2p'")
    if dissemination not in DISSEMINATION_MODES:
        raise TestnetError(
            f"unknown dissemination {dissemination!r}; choose one of {list(DISSEMINATION_MODES)}"
        )
    if (root / MANIFEST).exists():
        raise TestnetError(f"{root} already holds a network ({MANIFEST}); remove it first")
    if [p.index for p in plans] != list(range(nodes)):
        raise TestnetError("validator plans must be indexed 0..n-1 in order")
    if keys is None:
        keys = [KeyPair.from_seed(os.urandom(32)) for _ in range(nodes)]
    if len(keys) != nodes:
        raise TestnetError(f"{len(keys)} keys for {nodes} nodes")
    if poa_signatures not in POA_SIGNATURES:
        raise TestnetError(
            f"unknown poa_signatures {poa_signatures!r}; choose one of {list(POA_SIGNATURES)}"
        )
    signature_scheme = consensus.get("signature_scheme", "ed25519")
    # every validator's BLS key and proof of possession (public: in every config)
    aggregate = [aggregate_fields(k, signature_scheme) for k in keys]
    node_test = node_test or {}
    root.mkdir(parents=True, exist_ok=True)
    ledger_doc: dict[str, Any] | None = None
    if ledger is not None:
        unknown = sorted(set(ledger) - {"sender_balance", "fee", "bounty", "senders"})
        if unknown:
            raise TestnetError(f"ledger: unknown key {unknown[0]!r}")
        count = int(ledger.get("senders", DEFAULT_SENDERS))
        if not 1 <= count <= 64:
            raise TestnetError(f"ledger: senders must be in 1..64, got {count}")
        senders = [KeyPair.from_seed(os.urandom(32)) for _ in range(count)]
        ledger_doc = ledger_section(
            int(ledger.get("sender_balance", 0)),
            int(ledger.get("fee", 1)),
            int(ledger.get("bounty", 0)),
            senders,
        )
        write_senders(root / SENDERS_FILE, senders)
    created_s = round(time.time(), 3)
    bundles: dict[str, list[NodePlan]] = {}
    for plan in plans:
        bundles.setdefault(plan.bundle, []).append(plan)
    entries = []
    for bundle, members in bundles.items():
        bundle_dir = root / HOSTS_DIR / bundle if bundle else root
        bundle_entries = []
        for plan in members:
            node_dir = bundle_dir / plan.name
            (node_dir / "data").mkdir(parents=True, exist_ok=True)
            # Rule: a node directory holds its own secret key and no other.
            write_key_file(node_dir / "key.toml", keys[plan.index], signature_scheme)
            if admin_rpc:
                write_admin_token(node_dir / ADMIN_TOKEN_FILE)
            document = config_document(
                plan,
                plans,
                keys,
                transport=transport,
                consensus=consensus,
                test=node_test.get(plan.index, {}),
                admin_rpc=admin_rpc,
                mempool=mempool,
                dissemination=dissemination,
                ledger=ledger_doc,
                poa_signatures=poa_signatures,
                aggregate=aggregate,
            )
            (node_dir / "config.toml").write_text(render_config(document))
            entry = {
                "index": plan.index,
                "name": plan.name,
                "config": f"{plan.name}/config.toml",
                "host": plan.host,
                "p2p_port": plan.p2p_port,
                "rpc_host": plan.rpc_public_host,
                "rpc_port": plan.rpc_port,
            }
            if bundle:
                entry["bundle"] = bundle
                # On its own host a client reaches the RPC on the address it listens on.
                bundle_entries.append({**entry, "rpc_host": plan.rpc_local_host})
                entry = {**entry, "config": f"{HOSTS_DIR}/{bundle}/{entry['config']}"}
            entries.append(entry)
        if bundle:
            host_manifest = {
                "version": 1,
                "nodes": nodes,
                "chain_id": chain_id,
                "transport": transport,
                "layout": HOST_LAYOUT,
                "host": bundle,
                "created_s": created_s,
                "members": bundle_entries,
            }
            (bundle_dir / MANIFEST).write_text(json.dumps(host_manifest, indent=2) + "\n")
            if layout == HOSTS_LAYOUT:
                from node.tools.hosts import render_host_compose

                (bundle_dir / "docker-compose.yml").write_text(render_host_compose(members))
    manifest = {
        "version": 1,
        "nodes": nodes,
        "chain_id": chain_id,
        "ledger": ledger_doc,
        "transport": transport,
        "layout": layout,
        "created_s": created_s,
        "members": entries,
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    write_prometheus_config(root, plans)
    for entry in entries:  # every generated config must load: same validation as the node
        try:
            load_config(root / entry["config"])
        except ConfigError as exc:
            raise TestnetError(f"generated config of {entry['name']} is invalid: {exc}") from None
    return manifest


def write_prometheus_config(root: Path, plans: Sequence[NodePlan]) -> Path:
    """`prometheus.yml` beside the manifest: scrapes every node's RPC `/metrics`
    (`prometheus --config.file ROOT/prometheus.yml`)."""
    from node.tools.observability import PROMETHEUS_CONFIG, ScrapeTarget, render_prometheus_config

    path = root / PROMETHEUS_CONFIG
    targets = [ScrapeTarget(p.name, p.scrape_host, p.rpc_port) for p in plans]
    path.write_text(render_prometheus_config(targets))
    return path


# --------------------------------------------------------------------------- docker compose


def compose_document(nodes: int = 4, transport: str = "tcp") -> dict[str, Any]:
    """The docker-compose file for the docker layout (validated against generated configs).

    Each validator mounts only its own volume (`node<i>` at /testnet/node<i>: its config,
    key and database), so no container sees another's secret key; only `init` mounts them
    all, to write them. The image is built from this directory, never pulled (a registry
    image of the same name could be anyone's). RPC ports are published on 127.0.0.1 only.
    """
    plans = plan_nodes(nodes, "docker")
    node_volumes = [f"{plan.name}:{DOCKER_ROOT}/{plan.name}" for plan in plans]
    services: dict[str, Any] = {
        "init": {
            "build": ".",
            "image": DOCKER_IMAGE,
            "pull_policy": "build",
            "command": [
                "testnet",
                "init",
                "--nodes",
                str(nodes),
                "--layout",
                "docker",
                "--transport",
                transport,
                "--dir",
                DOCKER_ROOT,
                "--if-missing",
            ],
            "volumes": [f"testnet:{DOCKER_ROOT}", *node_volumes],
        }
    }
    for plan, volume in zip(plans, node_volumes, strict=True):
        services[plan.name] = {
            "image": DOCKER_IMAGE,
            "pull_policy": "never",  # the image `init` built
            "hostname": plan.name,
            "command": ["node", "run", "--config", f"{DOCKER_ROOT}/{plan.name}/config.toml"],
            "volumes": [volume],
            "ports": [f"127.0.0.1:{LOCAL_RPC_BASE + plan.index}:{plan.rpc_port}"],
            "depends_on": {"init": {"condition": "service_completed_successfully"}},
            "stop_signal": "SIGTERM",
            "restart": "unless-stopped",
        }
    from node.tools.observability import compose_services

    services.update(compose_services())
    volumes: dict[str, Any] = {"testnet": {}}
    volumes.update({plan.name: {} for plan in plans})
    volumes.update({"prometheus": {}, "grafana": {}})
    return {"services": services, "volumes": volumes}


COMPOSE_HEADER = (
    "# Generated by node.tools.testnet.compose_document(); a test checks it against the launcher.\n"
    "# Run: docker compose up --build   (4 validators, RPC on 127.0.0.1:26700..26703,\n"
    "#      Prometheus on 127.0.0.1:9090, Grafana on 127.0.0.1:3000)\n"
)


def render_compose(nodes: int = 4, transport: str = "tcp") -> str:
    return COMPOSE_HEADER + render_yaml(compose_document(nodes, transport)) + "\n"


# --------------------------------------------------------------------------- processes


@dataclass
class Member:
    index: int
    name: str
    config: Path
    rpc_host: str
    rpc_port: int
    process: subprocess.Popen[bytes] | None = None  # owned: stopped with the launcher
    launched: subprocess.Popen[bytes] | None = None  # started by this launcher (detached too)

    @property
    def dir(self) -> Path:
        return self.config.parent

    @property
    def pid_file(self) -> Path:
        return self.dir / "pid"


class Testnet:
    """Start, stop and signal the node processes of a generated network directory."""

    __test__ = False

    def __init__(self, root: Path):
        # One spelling per directory: pid files and process command lines are compared
        # by resolved path, so `up --dir /abs` and `down --dir rel` mean the same network.
        root = Path(root).resolve()
        self.root = root
        try:
            self.manifest = json.loads((root / MANIFEST).read_text())
        except FileNotFoundError:
            raise TestnetError(f"{root} holds no network (no {MANIFEST}); run `up` first") from None
        except (OSError, ValueError) as exc:
            raise TestnetError(f"{root / MANIFEST} is unreadable: {exc}") from None
        self.members = [
            Member(
                index=m["index"],
                name=m["name"],
                config=root / m["config"],
                rpc_host=m["rpc_host"],
                rpc_port=m["rpc_port"],
            )
            for m in self.manifest["members"]
        ]

    def __len__(self) -> int:
        return len(self.members)

    def member(self, index: int) -> Member:
        """The member running validator `index` (KeyError if this directory has none)."""
        for member in self.members:
            if member.index == index:
                return member
        raise KeyError(f"validator {index} is not in {self.root}")

    @property
    def validators(self) -> int:
        """Validators in the whole network (a host's bundle runs only some of them)."""
        return int(self.manifest.get("nodes", len(self.members)))

    # ---------------------------------------------------------------- pid bookkeeping

    def pid(self, index: int) -> int | None:
        member = self.member(index)
        if member.process is not None:
            return member.process.pid if member.process.poll() is None else None
        try:
            pid = int(member.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _is_node_process(pid, member.config) else None

    def is_running(self, index: int) -> bool:
        return self.pid(index) is not None

    def running(self) -> list[int]:
        return [m.index for m in self.members if self.is_running(m.index)]

    def start(self, index: int, *, detach: bool = False) -> int:
        member = self.member(index)
        # Rule: the whole-network directory of a multi-host network starts nothing here;
        # each host runs its own bundle.
        if self.manifest.get("layout") == HOSTS_LAYOUT:
            raise TestnetError(
                f"{self.root} is a multi-host network: copy {HOSTS_DIR}/<host>/ to each host "
                "and run `sedna testnet up --dir <that directory>` there"
            )
        # Rule: a live node's pid file is never overwritten (it is how `down` finds it).
        live = self.pid(index)
        if live is not None:
            raise TestnetError(f"{member.name} is already running (pid {live})")
        stdout = open(member.dir / "stdout.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "node.cli", "node", "run", "--config", str(member.config)],
                stdout=stdout,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        finally:
            stdout.close()
        member.process = None if detach else process
        member.launched = process
        member.pid_file.write_text(f"{process.pid}\n")
        return process.pid

    def failed_starts(self) -> list[str]:
        """Nodes this launcher started that have exited, each with its code and last line."""
        failed = []
        for member in self.members:
            launched = member.launched
            if launched is None or launched.poll() is None:
                continue
            lines = _tail_lines(member.dir / "stdout.log", 1)
            last = lines[-1] if lines else "no output"
            failed.append(f"{member.name} exited with code {launched.returncode}: {last}")
            member.launched = None
            self._forget(member.index)
        return failed

    def start_all(self, *, detach: bool = False) -> None:
        for member in self.members:
            if not self.is_running(member.index):
                self.start(member.index, detach=detach)

    def send_signal(self, index: int, signum: int) -> bool:
        pid = self.pid(index)
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
            return True
        return False

    def wait_exit(self, index: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.is_running(index):
                return True
            time.sleep(0.02)
        return not self.is_running(index)

    def kill(self, index: int) -> None:
        self.send_signal(index, signal.SIGKILL)
        self.wait_exit(index, 5.0)
        self._forget(index)

    def stop(self, index: int, timeout_s: float = 10.0) -> None:
        """Graceful stop (SIGCONT first in case it is paused, then SIGTERM, then SIGKILL)."""
        self.send_signal(index, signal.SIGCONT)
        if self.send_signal(index, signal.SIGTERM) and not self.wait_exit(index, timeout_s):
            self.send_signal(index, signal.SIGKILL)
            self.wait_exit(index, 5.0)
        self._forget(index)

    def stop_all(self, timeout_s: float = 10.0) -> list[int]:
        stopped = self.running()
        for index in stopped:
            self.send_signal(index, signal.SIGCONT)
            self.send_signal(index, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for index in stopped:
            if not self.wait_exit(index, max(0.1, deadline - time.monotonic())):
                self.send_signal(index, signal.SIGKILL)
                self.wait_exit(index, 5.0)
            self._forget(index)
        return stopped

    def _forget(self, index: int) -> None:
        member = self.member(index)
        if member.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                member.process.wait(timeout=1.0)
            member.process = None
        with contextlib.suppress(FileNotFoundError):
            member.pid_file.unlink()

    # ---------------------------------------------------------------- RPC

    async def rpc_json(self, index: int, path: str, timeout_s: float = 2.0) -> Any | None:
        """GET a JSON endpoint of node `index`; None when it does not answer in time."""
        from node.rpc import HttpClient, HttpError

        member = self.member(index)
        client = HttpClient(member.rpc_host, member.rpc_port, timeout_s)
        try:
            return await client.get_json(path)
        except (OSError, TimeoutError, HttpError, ValueError, asyncio.IncompleteReadError):
            return None
        finally:
            await client.close()

    async def statuses(self, timeout_s: float = 1.0) -> list[dict[str, Any] | None]:
        return list(
            await asyncio.gather(
                *(self.rpc_json(m.index, "/status", timeout_s) for m in self.members)
            )
        )

    def admin_token(self, index: int) -> str | None:
        """The node's admin RPC token (written beside its config), or None."""
        from node.rpc import load_admin_token

        try:
            return load_admin_token(self.member(index).dir / ADMIN_TOKEN_FILE)
        except (OSError, ValueError):
            return None

    async def set_isolated(self, index: int, isolated: bool) -> bool:
        from node.rpc import HttpClient

        member = self.member(index)
        client = HttpClient(member.rpc_host, member.rpc_port, 2.0, token=self.admin_token(index))
        try:
            status, _ = await client.post_json("/admin/isolate", {"isolated": isolated})
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError):
            return False
        finally:
            await client.close()
        return status == 200

    async def wait_ready(
        self,
        timeout_s: float,
        indices: Sequence[int] | None = None,
        want_peers: int | None = None,
    ) -> bool:
        """True once every node answers /status and is connected to `want_peers` peers
        (default: every other validator of the network, wherever it runs).

        Raises TestnetError as soon as a node this launcher started has exited (a failed
        start: bad config, refused storage, port in use), naming it and its last line.
        """
        positions = {m.index: k for k, m in enumerate(self.members)}
        wanted = list(indices) if indices is not None else list(positions)
        indices = [positions[i] for i in wanted]
        if want_peers is None:
            want_peers = self.validators - 1
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            failed = self.failed_starts()
            if failed:
                raise TestnetError("; ".join(failed))
            statuses = await self.statuses(timeout_s=1.0)
            if all(
                statuses[i] is not None and len(statuses[i]["peers"]) >= want_peers  # type: ignore[index]
                for i in indices
            ):
                return True
            await asyncio.sleep(0.1)
        return False

    def log_paths(self, index: int) -> list[Path]:
        member = self.member(index)
        return [member.dir / "node.log", member.dir / "stdout.log"]


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a running process (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        return round(ticks / os.sysconf("SC_CLK_TCK"), 2)
    except (OSError, ValueError, IndexError):
        return None


def _is_node_process(pid: int, config: Path) -> bool:
    """True when `pid` is alive and is a node started with `config` (guards pid reuse).

    The process's `--config` argument is resolved against its own working directory, so
    a node started with any spelling of the path is recognized.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\x00")
        stat = Path(f"/proc/{pid}/stat").read_text()
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return True  # no procfs: trust the pid file
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        return False  # a zombie has exited
    if b"--config" not in cmdline or cmdline.index(b"--config") + 1 >= len(cmdline):
        return False
    argument = Path(os.fsdecode(cmdline[cmdline.index(b"--config") + 1]))
    try:
        return (cwd / argument).resolve() == config.resolve()
    except OSError:
        return False


def _tail_lines(path: Path, count: int) -> list[str]:
    """Last `count` non-empty lines of a file (reads at most its final 64 KiB)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - 65536))
            data = handle.read()
    except OSError:
        return []
    return [line for line in data.decode(errors="replace").splitlines() if line.strip()][-count:]


# --------------------------------------------------------------------------- perturbations


@dataclass(frozen=True)
class Perturbation:
    spec: str
    action: str
    node: int
    seconds: float
    at_s: float


def parse_perturbation(spec: str, nodes: int) -> Perturbation:
    """Parse `ACTION:NODE[:SECONDS]@AT`; raises ValueError with a one-line reason."""
    text = spec.strip()
    head, sep, at_text = text.partition("@")
    if not sep:
        raise ValueError(f"perturbation {spec!r}: missing '@AT' (e.g. kill:1@5)")
    parts = head.split(":")
    if len(parts) not in (2, 3):
        raise ValueError(f"perturbation {spec!r}: expected ACTION:NODE[:SECONDS]@AT")
    action = parts[0]
    if action not in DEFAULT_DOWNTIME_S:
        raise ValueError(
            f"perturbation {spec!r}: unknown action {action!r} "
            f"(choose {', '.join(DEFAULT_DOWNTIME_S)})"
        )
    try:
        node = int(parts[1])
    except ValueError:
        raise ValueError(f"perturbation {spec!r}: node {parts[1]!r} is not an integer") from None
    if not 0 <= node < nodes:
        raise ValueError(f"perturbation {spec!r}: node {node} not in 0..{nodes - 1}")
    try:
        seconds = float(parts[2]) if len(parts) == 3 else DEFAULT_DOWNTIME_S[action]
        at_s = float(at_text)
    except ValueError:
        raise ValueError(f"perturbation {spec!r}: SECONDS and AT must be numbers") from None
    if not (math.isfinite(seconds) and math.isfinite(at_s)) or seconds < 0 or at_s < 0:
        raise ValueError(f"perturbation {spec!r}: SECONDS and AT must be finite and >= 0")
    return Perturbation(spec=text, action=action, node=node, seconds=seconds, at_s=at_s)


@dataclass(frozen=True)
class ByzantineSpec:
    """One `--byzantine BEHAVIOUR:NODES[:OPTIONS]`: a behaviour on some nodes."""

    spec: str
    behaviour: str
    nodes: tuple[int, ...]
    options: str = ""  # "KEY=VALUE:KEY=VALUE", checked by node.config.parse_byzantine_options


def byzantine_kinds() -> tuple[str, ...]:
    from node.config import BYZANTINE_BEHAVIOURS

    return tuple(b for b in BYZANTINE_BEHAVIOURS if b)


def parse_byzantine(spec: str, nodes: int) -> ByzantineSpec:
    """Parse `BEHAVIOUR:NODES[:OPTIONS]` (NODES = I or I,J,...; OPTIONS = KEY=VALUE:...)."""
    from node.config import parse_byzantine_options

    text = spec.strip()
    parts = text.split(":")
    if len(parts) < 2 or not parts[1]:
        raise ValueError(
            f"byzantine {spec!r}: expected BEHAVIOUR:NODES[:KEY=VALUE...] (e.g. equivocate:3)"
        )
    kind, node_text, options = parts[0], parts[1], ":".join(parts[2:])
    kinds = byzantine_kinds()
    if kind not in kinds:
        raise ValueError(f"byzantine {spec!r}: unknown behaviour (choose {', '.join(kinds)})")
    try:
        indexes = [int(n) for n in node_text.split(",")]
    except ValueError:
        raise ValueError(f"byzantine {spec!r}: nodes {node_text!r} are not integers") from None
    for node in indexes:
        if not 0 <= node < nodes:
            raise ValueError(f"byzantine {spec!r}: node {node} not in 0..{nodes - 1}")
    if len(set(indexes)) != len(indexes):
        raise ValueError(f"byzantine {spec!r}: a node is named twice")
    try:
        parse_byzantine_options(kind, options, nodes)
    except ValueError as exc:
        raise ValueError(f"byzantine {spec!r}: {exc}") from None
    return ByzantineSpec(text, kind, tuple(indexes), options)


def byzantine_nodes(specs: Sequence[ByzantineSpec], nodes: int) -> dict[int, ByzantineSpec]:
    """Node -> its behaviour. Raises ValueError when a node has two behaviours, or when
    more nodes than f = (n - 1) // 3 run a behaviour that touches consensus messages
    (lane behaviours, `withhold_bundles` and `drop_lane_blocks`, do not count)."""
    from node.config import is_consensus_byzantine

    assigned: dict[int, ByzantineSpec] = {}
    for spec in specs:
        for node in spec.nodes:
            if node in assigned:
                raise ValueError(
                    f"byzantine {spec.spec!r}: node {node} already runs "
                    f"{assigned[node].behaviour!r} (one behaviour per node)"
                )
            assigned[node] = spec
    faulty = (nodes - 1) // 3
    consensus = sorted(n for n, s in assigned.items() if is_consensus_byzantine(s.behaviour))
    if len(consensus) > faulty:
        raise ValueError(
            f"byzantine: {len(consensus)} nodes {consensus} run consensus behaviours, "
            f"more than f = {faulty} of {nodes} validators (safety is not promised beyond f)"
        )
    return assigned


# --------------------------------------------------------------------------- bounded run

# The keys of each record of a run summary's `sedna_payloads` (see
# `TestnetRun._payload_records`); `sedna mech experiment` reads them.
MAX_RECORDED_MISSES = 8  # lane block misses listed per payload record (all are counted)

SEDNA_PAYLOAD_RECORD_KEYS = (
    "id",
    "status",
    "kappa",
    "first_slot",
    "decode_slot",
    "cartel_slot",
    "lead",
    "clean",
    "not_clean",
    "lane_block_misses",
    "withheld",
    "withheld_by",
    "pool_slot",
    "slot_leaders",
)

# Why a payload is not `clean` (its record's `not_clean`, empty when it is):
NOT_CLEAN_REASONS = (
    "never_sent",  # no ticket slot: nothing to compare
    "refused",  # a lane refused a bundle of it: q < 1 for it
    "late_lane_block",  # an honest lane block holding a bundle of it (in the counted slots)
    # was finalized at a later height than its slot
    "lost_lane_block",  # ... or was not finalized at all (it missed its height)
)


def senders_bundles_per_slot(options: Any) -> int:
    """The Sedna client's m: `sedna_bundles_per_slot`, or, when that is 0 (every lane in
    one slot), the m a withholding cartel was given (`withhold_bundles:...:m=M`), so that
    the senders follow the policy the cartel's strategy assumes (`sedna testnet run
    --byzantine withhold_bundles:4,5,6:strategy=threshold:m=3`)."""
    if options.sedna_bundles_per_slot:
        return int(options.sedna_bundles_per_slot)
    for node, behaviour in sorted(options.byzantine.items()):
        if behaviour != "withhold_bundles":
            continue
        for part in options.byzantine_options.get(node, "").split(":"):
            key, _, value = part.partition("=")
            if key == "m" and value.isdigit():
                return int(value)
    return 0


def first_attempt_slots(kappa: int, extra_bundles: int, bundles_per_slot: int) -> int:
    """How many slots a payload's first attempt spans (the slots the model counts):
    κ + extra bundles, m a slot (every lane in one slot when m is 0)."""
    if bundles_per_slot <= 0:
        return 1
    return -(-(kappa + extra_bundles) // bundles_per_slot)


def lane_block_misses(
    accepted: Sequence[tuple[int, int, int]],
    first_slot: int,
    slots: int,
    honest_lanes: set[int] | frozenset[int],
    finalized_at: Mapping[tuple[int, int, int], int],
    adversary_heights: set[int] | frozenset[int] = frozenset(),
) -> list[dict[str, Any]]:
    """The admitted bundles of one payload whose lane block the model assumes finalized
    at its slot and the chain did not: for each (slot, lane, bundle index) the client saw
    admitted (`accepted`) by an honest lane in the first `slots` slots from `first_slot`,
    the height the nodes finalized it at (`finalized_at`: (lane, slot, index) of this
    payload -> height, read from an honest node's finalized blocks) must be its slot.
    Cartel lanes are not checked: a withheld bundle is in no lane block by the cartel's
    choice, which the model counts. Nor are slots whose finalized block an adversary
    proposed (`adversary_heights`: a censoring leader drops honest lane blocks, which is
    what a censorship point measures). Each miss: slot, lane, bundle, the height it was
    finalized at (None: never) and its reason (`late_lane_block` / `lost_lane_block`)."""
    misses = []
    last = first_slot + slots - 1
    for slot, lane, index in sorted(set(accepted)):
        if not first_slot <= slot <= last or lane not in honest_lanes:
            continue
        if slot in adversary_heights:
            continue
        height = finalized_at.get((lane, slot, index))
        if height == slot:
            continue
        misses.append(
            {
                "slot": slot,
                "lane": lane,
                "bundle": index,
                "finalized_height": height,
                "reason": "lost_lane_block" if height is None else "late_lane_block",
            }
        )
    return misses


# certified lanes: the availability counters the run summary reports per node
AVAILABILITY_SUMMARY_KEYS = (
    "lane_height",
    "poa_formed",
    "poas_received",
    "fetched_blocks",
    "equivocations",
    "tips_omitted",
)


@dataclass
class RunOptions:
    nodes: int = 4
    duration_s: float = 20.0
    rate_tps: float = 1000.0
    transport: str = "tcp"
    dir: Path | None = None
    perturbations: list[Perturbation] = field(default_factory=list)
    byzantine: dict[int, str] = field(default_factory=dict)
    byzantine_options: dict[int, str] = field(default_factory=dict)  # node -> KEY=VALUE:...
    no_restart: bool = False
    tx_bytes: int = 512
    drain_s: float = 10.0
    ready_timeout_s: float = 30.0
    consensus: dict[str, Any] = field(default_factory=dict)
    mempool: dict[str, Any] = field(default_factory=dict)  # [mempool] keys over the defaults
    node_test: dict[int, dict[str, Any]] = field(default_factory=dict)
    keep: bool = False
    sedna_rate_pps: float = 20.0  # Sedna payloads/s offered alongside the plain txs (0: none)
    sedna_bytes: int = 512
    sedna_policy: str = "fresh"
    sedna_bundles_per_slot: int = 0  # the client's m (0: every lane), `sedna mech experiment`
    sedna_extra_bundles: int = 0  # bundles beyond κ in a payload's first attempt
    dissemination: str = "certified"  # [lanes] dissemination of every node
    poa_signatures: str = "bls"  # [lanes] poa_signatures of every node
    sedna_preencode: bool = False  # encode the run's payloads before the load starts
    # the lanes' ledger: sender_balance, fee, bounty (None: the lanes charge nothing)
    ledger: dict[str, int] | None = None
    out: Path | None = None  # write per-second series (CSV, PNG) and the summary here


@dataclass
class Progress:
    elapsed_s: float
    duration_s: float
    phase: str
    max_height: int
    tps: float
    offered: int
    accepted: int
    down: list[int]
    sedna_offered: int = 0
    sedna_decoded: int = 0


@dataclass
class _PerturbationRecord:
    perturbation: Perturbation
    started_s: float | None = None
    ended_s: float | None = None
    target_height: int | None = None
    recovery_s: float | None = None
    error: str | None = None
    done: bool = False

    def as_dict(self) -> dict[str, Any]:
        p = self.perturbation
        return {
            "spec": p.spec,
            "action": p.action,
            "node": p.node,
            "seconds": p.seconds,
            "at_s": p.at_s,
            "applied_s": None if self.started_s is None else round(self.started_s, 3),
            "ended_s": None if self.ended_s is None else round(self.ended_s, 3),
            "target_height": self.target_height,
            "recovered": self.recovery_s is not None,
            "recovery_s": None if self.recovery_s is None else round(self.recovery_s, 3),
            "error": self.error,
        }


class TestnetRun:
    """One bounded `testnet run`: start, load, perturb, drain, collect, stop."""

    __test__ = False

    def __init__(self, options: RunOptions, progress: Callable[[Progress], None] | None = None):
        self.options = options
        self.progress = progress or (lambda p: None)
        self.net: Testnet | None = None
        self.heights: dict[int, int] = {}
        self.last_status: dict[int, dict[str, Any]] = {}
        self.unavailable: set[int] = set()  # killed, stopped, paused or isolated right now
        self.dead: set[int] = set()  # killed and never restarted
        self.load_started_s = 0.0
        self.max_height_series: list[tuple[float, int]] = []
        self.records: list[_PerturbationRecord] = []
        self.warnings: list[str] = []
        self.failures: list[str] = []
        self.phase = "starting"
        self.preencode_s: float | None = None
        self.series = SeriesRecorder()
        self.hub: Any = None  # the cartel's PoolHub (withhold_bundles)
        self.sedna_state: dict[bytes, Any] = {}  # Sedna payload id -> the client's record

    def _now(self) -> float:
        return time.monotonic() - self.load_started_s

    async def execute(self) -> dict[str, Any]:
        o = self.options
        temp = o.dir is None
        root = Path(o.dir) if o.dir is not None else Path(_mkdtemp())
        node_test = {i: dict(t) for i, t in o.node_test.items()}
        for index, kind in o.byzantine.items():
            node_test.setdefault(index, {})["byzantine"] = kind
            if o.byzantine_options.get(index):
                node_test[index]["byzantine_options"] = o.byzantine_options[index]
        cartel = sorted(i for i, kind in o.byzantine.items() if kind == "withhold_bundles")
        if cartel:  # the cartel's side channel (node/cartel_pool.py), up before its members
            from node.cartel_pool import PoolHub

            self.hub = PoolHub()
            await self.hub.start()
            for index in cartel:
                node_test[index]["cartel_pool"] = self.hub.address
        generate_network(
            root,
            o.nodes,
            transport=o.transport,
            consensus=o.consensus,
            node_test=node_test,
            mempool=o.mempool,
            dissemination=o.dissemination,
            ledger=o.ledger,
            poa_signatures=o.poa_signatures,
        )
        self.net = net = Testnet(root)
        summary: dict[str, Any] = {}
        try:
            net.start_all()
            self.phase = "waiting for peers"
            try:
                ready = await net.wait_ready(o.ready_timeout_s)
            except TestnetError as exc:
                self.failures.append(str(exc))  # keeps the directory for its logs
                raise TestnetError(f"{exc}; logs in {root}") from None
            if not ready:
                statuses = await net.statuses()
                missing = [i for i, s in enumerate(statuses) if s is None]
                self.failures.append(f"not ready (no RPC from nodes {missing})")
                raise TestnetError(
                    f"network not ready after {o.ready_timeout_s:.0f} s "
                    f"(no RPC from nodes {missing}); logs in {root}"
                )
            summary = await self._measure()
            summary["node_cpu_s"] = {  # each node's CPU seconds over its life, at the end
                str(i): process_cpu_s(pid)
                for i in range(len(net))
                if (pid := net.pid(i)) is not None
            }
        finally:
            net.stop_all()
            if self.hub is not None:
                await self.hub.close()
            if summary and self.sedna_state:
                records = self._payload_records()
                summary["sedna_payloads"] = records
                if self.hub is not None:
                    summary["cartel"] = self._cartel_summary(cartel, records)
            summary["dir"] = str(root) if (o.keep or not temp or self.failures) else None
            if temp and not o.keep and not self.failures:
                shutil.rmtree(root, ignore_errors=True)
        return summary

    async def _measure(self) -> dict[str, Any]:
        from node.tools.loadgen import LoadGenerator, LoadStats, SednaLoadGenerator
        from node.tools.sedna_client import SednaPolicy

        o = self.options
        net = self.net
        assert net is not None
        targets = [(m.index, m.rpc_host, m.rpc_port) for m in net.members]

        from node.config import is_consensus_byzantine

        def is_up(index: int) -> bool:
            # Load goes to every node but those attacking consensus: a lane attacker
            # (a withholding cartel member, a censoring leader) is a lane like any other
            # to the senders, who cannot tell it apart.
            return index not in self.unavailable and not is_consensus_byzantine(
                o.byzantine.get(index, "")
            )

        loadgen: Any = (
            LoadGenerator(targets, o.rate_tps, tx_bytes=o.tx_bytes, is_up=is_up)
            if o.rate_tps > 0
            else _NoLoad(LoadStats())
        )
        sedna = (
            SednaLoadGenerator(
                targets,
                o.sedna_rate_pps,
                payload_bytes=o.sedna_bytes,
                policy=SednaPolicy(
                    lanes=o.sedna_policy,
                    bundles_per_slot=senders_bundles_per_slot(o),
                    extra_bundles=o.sedna_extra_bundles,
                ),
                is_up=is_up,
                key=next(iter(load_senders(net.root)), None),  # funded, with a [ledger]
            )
            if o.sedna_rate_pps > 0
            else None
        )
        if sedna is not None and o.sedna_preencode:
            self.phase = "encoding"
            self.preencode_s = sedna.prepare(math.ceil(o.sedna_rate_pps * o.duration_s) + 10)
        self.load_started_s = time.monotonic()
        load_start_ns = time.time_ns()
        start_heights = await self._sample()
        stop_sampling = asyncio.Event()
        sampler = asyncio.create_task(self._sampler(stop_sampling, loadgen, sedna))
        series = (
            asyncio.create_task(self._series_sampler(stop_sampling)) if o.out is not None else None
        )
        perturbers = [asyncio.create_task(self._perturb(p)) for p in o.perturbations]
        self.phase = "load"
        try:
            await asyncio.gather(
                loadgen.run(o.duration_s), sedna.run(o.duration_s) if sedna else _nothing()
            )
            load_end_ns = time.time_ns()
            end_max_height = max(self.heights.values(), default=0)
            self.phase = "drain"
            await asyncio.gather(
                self._drain(loadgen, perturbers, end_max_height),
                sedna.settle(max(o.drain_s, 1.0)) if sedna else _nothing(),
            )
            stop_sampling.set()
            await sampler
            if series is not None:
                await series
            for task in perturbers:
                task.cancel()
            self.phase = "collect"
            summary = await self._summarize(loadgen, start_heights, load_start_ns, load_end_ns)
            summary.update(await self._sedna_summary(sedna, load_start_ns, load_end_ns))
        finally:
            if sedna is not None:
                await sedna.close()
        summary["ok"] = not self.failures
        if o.out is not None:
            summary["series"] = self._write_series(o.out, summary)
        return summary

    async def _series_sampler(self, stop: asyncio.Event) -> None:
        """Every node's /stats once a second until `stop` (rows of `self.series`)."""
        assert self.net is not None
        net = self.net
        while True:
            started = time.monotonic()
            stats = await asyncio.gather(
                *(net.rpc_json(i, "/stats", timeout_s=0.8) for i in range(len(net)))
            )
            self.series.add(self._now(), stats)
            if stop.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    stop.wait(), timeout=max(0.0, SERIES_INTERVAL_S - (time.monotonic() - started))
                )

    def _write_series(self, out: Path, summary: dict[str, Any]) -> dict[str, str]:
        """series.csv, series.png and summary.json in `out` (created if needed)."""
        from node.tools.timeseries import write_csv, write_png

        out.mkdir(parents=True, exist_ok=True)
        csv_path, png_path = out / "series.csv", out / "series.png"
        write_csv(csv_path, self.series.rows)
        o = self.options
        write_png(
            png_path,
            self.series.rows,
            f"sedna testnet: {o.nodes} validators ({o.transport}), {o.rate_tps:g} tx/s, "
            f"{o.sedna_rate_pps:g} Sedna payloads/s",
        )
        files = {"csv": str(csv_path), "png": str(png_path), "summary": str(out / "summary.json")}
        (out / "summary.json").write_text(json.dumps({**summary, "series": files}, indent=2))
        return files

    async def _sedna_summary(
        self, sedna: Any, load_start_ns: int, load_end_ns: int
    ) -> dict[str, Any]:
        """Sedna keys: offered, decoded per node, decode latency, execution-order agreement."""
        from node.metrics import LatencyHistogram

        assert self.net is not None
        nodes = range(len(self.net))
        lanes = await asyncio.gather(*(self.net.rpc_json(i, "/lanes", 5.0) for i in nodes))
        tracker: dict[int, int] = {}
        for index, info in enumerate(lanes):
            if info is not None:
                tracker[index] = int(info["tracker_height"])
                if info.get("error"):
                    self.failures.append(
                        f"LANES: node {index} decode tracker failed: {info['error']}"
                    )
            else:
                tracker[index] = self._disk(index, lambda s: s.lane_height())
        common = min(tracker.values(), default=0)
        hashes: dict[int, str | None] = {}
        for index in nodes:
            info = await self.net.rpc_json(index, f"/lanes?at={common}", 5.0) if common else None
            if info is not None:
                hashes[index] = info.get("hash_at_height")
            elif common:
                raw = self._disk(index, lambda s, h=common: s.lane_hash_at(h))
                hashes[index] = None if raw is None else raw.hex()
        agreement = len({h for h in hashes.values()}) <= 1 and all(
            h is not None for h in hashes.values()
        )
        if not agreement:
            self.failures.append(
                f"DIVERGENCE: execution-order hashes differ at height {common}: {hashes}"
            )
        rejected: dict[str, int] = {"insufficient_balance": 0}  # contract key, even at 0
        not_counted: dict[str, int] = {}
        stats = await asyncio.gather(*(self.net.rpc_json(i, "/stats", 5.0) for i in nodes))
        availability: dict[str, dict[str, int]] = {}  # certified lanes, per node
        for index, node_stats in zip(nodes, stats, strict=True):
            if node_stats is not None and node_stats["lanes"].get("availability"):
                counters = node_stats["lanes"]["availability"]
                availability[str(index)] = {
                    key: int(counters.get(key, 0)) for key in AVAILABILITY_SUMMARY_KEYS
                }
        for node_stats in stats:
            if node_stats is not None:
                for reason, count in node_stats["lanes"]["bundles_rejected"].items():
                    rejected[reason] = rejected.get(reason, 0) + int(count)
                for reason, count in node_stats["lanes"].get("bundles_not_counted", {}).items():
                    not_counted[reason] = not_counted.get(reason, 0) + int(count)
        money = await self._ledger_summary(common)
        result: dict[str, Any] = {
            "sedna_rate_pps": self.options.sedna_rate_pps,
            "sedna_bytes": self.options.sedna_bytes,
            "execution_order_agreement": agreement,
            "execution_order_height": common,
            "execution_order_hash": hashes.get(0) if hashes else None,
            "lane_tracker_heights": {str(i): tracker[i] for i in sorted(tracker)},
            "bundles_rejected": dict(sorted(rejected.items())),
            "bundles_not_counted": dict(sorted(not_counted.items())),
            "availability": availability,
            **money,
        }
        if sedna is None:
            result.update(
                sedna_offered=0, sedna_decoded={}, sedna_decode_ms={"p50": None, "p99": None}
            )
            return result
        client = sedna.client
        sent = {cid: p.first_send_ns for cid, p in client.payloads.items() if p.first_send_ns}
        self.sedna_state = dict(client.payloads)
        decoded: dict[str, int] = {}
        in_window: dict[str, int] = {}
        latency = LatencyHistogram()
        # Throughput is measured in steady state: the first quarter of the load (at most
        # SEDNA_WARMUP_S) is left out, while the first payloads are still on their way.
        warmup_ns = int(min(SEDNA_WARMUP_S, self.options.duration_s / 4) * 1e9)
        window_start_ns = load_start_ns + warmup_ns
        for index in nodes:
            events = await self._executions(index, tracker[index])
            ours = [e for e in events if e[0] in sent and e[1] == "executed"]
            decoded[str(index)] = len(ours)
            in_window[str(index)] = sum(1 for e in ours if window_start_ns <= e[2] <= load_end_ns)
            latency.observe_many((e[2] - sent[e[0]]) / 1e6 for e in ours)
        elapsed_s = max(1e-9, (load_end_ns - load_start_ns) / 1e9)
        window_s = max(1e-9, (load_end_ns - window_start_ns) / 1e9)
        c = client.stats
        offered = c.offered
        everywhere = min(decoded.values(), default=0)
        if offered and everywhere == 0:
            self.failures.append("NOTHING MEASURED: no Sedna payload was decoded on every node")
        elif offered and everywhere < offered:
            self.warnings.append(
                f"{offered - everywhere} of {offered} Sedna payloads not decoded on every node"
            )
        if c.refused_full:
            self.warnings.append(
                f"{c.refused_full} Sedna payloads not offered: {client.max_active} were "
                "already in flight (the network is slower than the offered rate)"
            )
        if sedna.offered < 0.9 * self.options.sedna_rate_pps * self.options.duration_s:
            self.warnings.append(
                f"Sedna load missed its target: offered {sedna.offered / elapsed_s:.0f} "
                f"payloads/s of {self.options.sedna_rate_pps:g}"
            )

        def pct(q: float) -> float | None:
            value = latency.quantile(q)
            return None if value is None else round(value, 2)

        result.update(
            sedna_offered=offered,
            sedna_decoded=decoded,
            sedna_pps={n: round(v / window_s, 1) for n, v in in_window.items()},
            sedna_decode_ms={"p50": pct(0.5), "p99": pct(0.99)},
            sedna_preencode_s=None if self.preencode_s is None else round(self.preencode_s, 2),
            sedna_client={
                "bundles_sent": c.bundles_sent,
                "bundles_accepted": c.bundles_accepted,
                "bundle_bytes": c.bundles_bytes,
                "resends": c.resends,
                "refused_window_full": c.refused_full,
                "ratchet_exclusions": c.ratchet_exclusions,
                "undeliverable": c.undeliverable,
                "rejected": dict(sorted(c.rejected.items())),
                "decided": dict(sorted(c.decided.items())),
                "undecided": client.undecided(),
            },
        )
        return result

    async def _ledger_summary(self, common: int) -> dict[str, Any]:
        """The lanes' ledger at the highest checkpoint at or below the common tracker
        height: `ledger_hash` per node (honest nodes at one height must agree: else a
        LEDGER DIVERGENCE failure), and the `fees_charged` and `bounties_paid` up to it."""
        assert self.net is not None
        # the ledger digest is stored at checkpoints (node/lane_tracker.py)
        common -= common % LEDGER_CHECKPOINT_HEIGHTS
        result: dict[str, Any] = {
            "ledger_height": common,
            "fees_charged": 0,
            "bounties_paid": 0,
            "ledger_hash": {},
        }
        if self.options.ledger is None or not common:
            return result
        rows: dict[int, Any] = {}
        for index in range(len(self.net)):
            if index in self.options.byzantine:
                continue  # only honest nodes must agree
            info = await self.net.rpc_json(index, f"/lanes?at={common}", 5.0)
            if info is not None:
                rows[index] = info.get("ledger_at_height")
            else:
                row = self._disk(index, lambda s, h=common: s.ledger_at(h))
                rows[index] = (
                    None
                    if row is None
                    else {
                        "ledger_hash": row.ledger_hash.hex(),
                        "fees_charged": row.fees_charged,
                        "bounties_paid": row.bounties_paid,
                    }
                )
        hashes = {str(i): (r or {}).get("ledger_hash") for i, r in sorted(rows.items())}
        result["ledger_hash"] = hashes
        if len(set(hashes.values())) > 1 or None in hashes.values():
            self.failures.append(
                f"LEDGER DIVERGENCE: ledger hashes differ at height {common}: {hashes}"
            )
        first = next((r for r in rows.values() if r), None)
        if first is not None:
            result["fees_charged"] = int(first["fees_charged"])
            result["bounties_paid"] = int(first["bounties_paid"])
        return result

    def _payload_records(self) -> list[dict[str, Any]]:
        """One record per Sedna payload of the run (`SEDNA_PAYLOAD_RECORD_KEYS`): its
        first ticket slot (the sender's), the slot the chain decided it (read from an
        honest node's database), the first slot a cartel member decoded it privately
        (reported over the side channel, `node/cartel_pool.py`; None without a cartel or
        when it never did), the lead (their difference, 0 when the cartel was not
        ahead), `clean` (no bundle of it was refused: q = 1 for it, and no honest lane
        block of its counted slots missed its height) and `slot_leaders` (the author of
        the finalized block of each counted slot: a censoring leader's slots are what the
        leader-cartel model needs). Read after the nodes stopped."""
        o = self.options
        hub = self.hub
        honest = min((i for i in range(o.nodes) if i not in o.byzantine), default=0)
        height = self._disk(honest, lambda s: s.lane_height())
        rows = self._disk(honest, lambda s: s.lane_events(1, height)) if height else []
        events = {row.payload_id: row for row in rows}
        withheld: dict[bytes, int] = {}
        lanes: dict[bytes, set[int]] = {}
        slots: dict[bytes, list[int]] = {}
        for lane, slot, cid, _index in hub.withheld if hub is not None else ():
            withheld[cid] = withheld.get(cid, 0) + 1
            lanes.setdefault(cid, set()).add(lane)
            slots.setdefault(cid, []).append(slot)
        finalized_at, authors = self._finalized_bundles(honest, height)
        honest_lanes = frozenset(i for i in range(o.nodes) if i not in o.byzantine)
        adversary_heights = frozenset(h for h, a in authors.items() if a in o.byzantine)
        records: list[dict[str, Any]] = []
        for cid, state in self.sedna_state.items():
            if state.first_send_ns is None:
                continue  # never sent
            not_clean: list[str] = []
            misses: list[dict[str, Any]] = []
            leaders: list[int | None] = []
            if state.first_slot is None:
                not_clean.append("never_sent")
            else:
                counted = first_attempt_slots(
                    state.kappa, o.sedna_extra_bundles, senders_bundles_per_slot(o)
                )
                # who proposed the finalized block of each counted slot (None: none)
                leaders = [authors.get(state.first_slot + j) for j in range(counted)]
                misses = lane_block_misses(
                    state.first_accepted,
                    state.first_slot,
                    counted,
                    honest_lanes,
                    finalized_at.get(cid, {}),
                    adversary_heights,
                )
            if state.refusals:
                not_clean.append("refused")
            not_clean += sorted({m["reason"] for m in misses})
            row = events.get(cid)
            kappa = state.kappa
            decode = row.height if row is not None and row.status == "executed" else None
            private = hub.private_slot.get(cid) if hub is not None else None
            lead = None
            if decode is not None:
                lead = decode - min(decode, private) if private is not None else 0
            held = sorted(slots.get(cid, ()))
            records.append(
                {
                    "id": cid.hex(),
                    "status": row.status if row is not None else "undecided",
                    "kappa": kappa,
                    "first_slot": state.first_slot,
                    "decode_slot": decode,
                    "cartel_slot": private,
                    "lead": lead,
                    "clean": not not_clean,
                    "not_clean": not_clean,
                    "lane_block_misses": misses[:MAX_RECORDED_MISSES],
                    "withheld": withheld.get(cid, 0),
                    "withheld_by": sorted(lanes.get(cid, ())),
                    # the slot by which the pool alone held κ bundles (None: never)
                    "pool_slot": held[kappa - 1] if len(held) >= kappa else None,
                    "slot_leaders": leaders,
                }
            )
        return records

    def _finalized_bundles(
        self, index: int, height: int
    ) -> tuple[dict[bytes, dict[tuple[int, int, int], int]], dict[int, int]]:
        """What node `index` finalized up to `height` (read from its stopped database):
        per payload, (lane, ticket slot, bundle index) -> the height whose block carried
        it (the lowest, if a copy came again), and each height's block author."""
        from consensus.lanes.wire import LanePayloadError, decode_block_payload

        finalized: dict[bytes, dict[tuple[int, int, int], int]] = {}
        authors: dict[int, int] = {}
        first = 1
        while first <= height:
            blocks = self._disk(index, lambda s, f=first: s.finalized_blocks(f, 64)) or []
            if not blocks:
                break
            for tip, body in blocks:
                h = tip.header.seq_num
                if h > height:
                    break
                authors[h] = tip.header.author
                try:
                    payload = decode_block_payload(body.payload)
                except LanePayloadError:
                    continue  # a block without lane payload (none is finalized otherwise)
                for lane_block in payload.lane_blocks:
                    for entry in lane_block.entries:
                        t = entry.ticket.ticket
                        key = (lane_block.lane, t.slot, t.bundle_index)
                        finalized.setdefault(t.commitment_id, {}).setdefault(key, h)
            first = blocks[-1][0].header.seq_num + 1
        return finalized, authors

    def _cartel_summary(self, cartel: list[int], records: list[dict[str, Any]]) -> dict[str, Any]:
        """The cartel's side of the run: what crossed its side channel and its lead."""
        hub = self.hub
        leads = [r["lead"] for r in records if r["lead"] is not None]
        return {
            "members": cartel,
            "options": self.options.byzantine_options.get(cartel[0], "") if cartel else "",
            "withheld_bundles": len(hub.withheld),
            "holdings_reported": hub.holds,
            "channel_refused": hub.refused,
            "payloads_withheld": sum(1 for r in records if r["withheld"]),
            "lead_slots": {
                "payloads": len(leads),
                "ahead": sum(1 for v in leads if v > 0),
                "mean": round(sum(leads) / len(leads), 3) if leads else None,
                "max": max(leads, default=None),
            },
        }

    def _disk(self, index: int, read: Callable[[Any], Any]) -> Any:
        """Read a stopped node's database."""
        from node.storage import Storage

        assert self.net is not None
        storage = Storage(self.net.members[index].dir / "data", read_only=True)
        try:
            return read(storage)
        finally:
            storage.close()

    async def _executions(self, index: int, height: int) -> list[tuple[bytes, str, int]]:
        """(payload id, status, decided_ns) of every payload node `index` decided."""
        assert self.net is not None
        events: list[tuple[bytes, str, int]] = []
        first = 1
        for _ in range(100_000):  # bound: each page advances `first`
            if first > height:
                break
            data = await self.net.rpc_json(index, f"/executions?from={first}&to={height}", 10.0)
            if data is None:
                rows = self._disk(index, lambda s, f=first: s.lane_events(f, height))
                return events + [(r.payload_id, r.status, r.decided_ns) for r in rows]
            events.extend(
                (bytes.fromhex(e["id"]), e["status"], int(e["decided_ns"])) for e in data["events"]
            )
            if int(data["next"]) <= first:
                break
            first = int(data["next"])
        return events

    async def _sample(self) -> dict[int, int]:
        assert self.net is not None
        statuses = await self.net.statuses(timeout_s=0.8)
        for index, status in enumerate(statuses):
            if status is not None:
                self.heights[index] = int(status["height"])
                self.last_status[index] = status
        if self.heights:
            self.max_height_series.append((self._now(), max(self.heights.values())))
        return dict(self.heights)

    async def _sampler(self, stop: asyncio.Event, loadgen: Any, sedna: Any = None) -> None:
        while not stop.is_set():
            await self._sample()
            tps = sum(
                float(s.get("tps", 0.0))
                for i, s in self.last_status.items()
                if i == _max_key(self.heights)
            )
            self.progress(
                Progress(
                    elapsed_s=self._now(),
                    duration_s=self.options.duration_s,
                    phase=self.phase,
                    max_height=max(self.heights.values(), default=0),
                    tps=tps,
                    offered=loadgen.stats.offered,
                    accepted=loadgen.stats.accepted,
                    down=sorted(self.unavailable),
                    sedna_offered=0 if sedna is None else sedna.offered,
                    sedna_decoded=0 if sedna is None else sedna.client.stats.decided["decoded"],
                )
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.25)

    async def _perturb(self, p: Perturbation) -> None:
        record = _PerturbationRecord(p)
        self.records.append(record)
        net = self.net
        assert net is not None
        await asyncio.sleep(max(0.0, p.at_s - self._now()))
        record.started_s = self._now()
        loop = asyncio.get_running_loop()
        self.unavailable.add(p.node)
        try:
            if p.action == "kill":
                await loop.run_in_executor(None, net.kill, p.node)
                if self.options.no_restart:
                    self.dead.add(p.node)
                    record.done = True
                    record.error = "not restarted (--no-restart)"
                    return
                await asyncio.sleep(p.seconds)
                net.start(p.node)
            elif p.action == "restart":
                await loop.run_in_executor(None, net.stop, p.node)
                await asyncio.sleep(p.seconds)
                net.start(p.node)
            elif p.action == "pause":
                net.send_signal(p.node, signal.SIGSTOP)
                await asyncio.sleep(p.seconds)
                net.send_signal(p.node, signal.SIGCONT)
            elif p.action == "disconnect":
                if not await net.set_isolated(p.node, True):
                    record.error = "admin RPC did not isolate the node"
                await asyncio.sleep(p.seconds)
                if not await net.set_isolated(p.node, False):
                    record.error = "admin RPC did not reconnect the node"
            record.ended_s = self._now()
            others = [h for i, h in self.heights.items() if i != p.node and i not in self.dead]
            record.target_height = max(others, default=0)
            deadline = time.monotonic() + RECOVERY_LIMIT_S
            while time.monotonic() < deadline:
                failed = net.failed_starts()
                if failed:  # a restart that exited: say why instead of waiting it out
                    record.error = "; ".join(failed)
                    break
                status = await net.rpc_json(p.node, "/status", timeout_s=0.5)
                if status is not None and int(status["height"]) >= record.target_height:
                    record.recovery_s = self._now() - record.ended_s
                    break
                await asyncio.sleep(0.1)
            self.unavailable.discard(p.node)
        finally:
            record.done = True

    async def _drain(self, loadgen: Any, perturbers: list[asyncio.Task[None]], target: int) -> None:
        """Wait (bounded) for perturbations to finish, mempools to empty, laggards (finalized
        height and decode tracker) to catch up."""
        deadline = time.monotonic() + self.options.drain_s
        pending = [t for t in perturbers if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=max(RECOVERY_LIMIT_S + 30.0, self.options.drain_s))
            deadline = max(deadline, time.monotonic() + 2.0)
        assert self.net is not None
        while time.monotonic() < deadline:
            stats = await asyncio.gather(
                *(self.net.rpc_json(i, "/stats", 1.0) for i in range(len(self.net)))
            )
            live = [s for i, s in enumerate(stats) if i not in self.dead]
            if all(s is not None for s in live):
                pending_txs = sum(int(s["mempool_txs"]) for s in live)  # type: ignore[index]
                # A restarted node replays its decode tracker from height 1: wait for it
                # too, so every node's decoded payloads are counted over the same heights.
                caught_up = all(
                    int(s["height"]) >= target and int(s["lanes"]["tracker_height"]) >= target  # type: ignore[index]
                    for s in live
                )
                if pending_txs == 0 and caught_up:
                    return
            await asyncio.sleep(0.25)

    async def _chain(self, index: int, height: int, with_txids: bool) -> list[dict[str, Any]]:
        assert self.net is not None
        blocks: list[dict[str, Any]] = []
        first = 1
        while first <= height:
            last = min(height, first + 999)
            query = f"/blocks?from={first}&to={last}" + ("&txids=1" if with_txids else "")
            data = await self.net.rpc_json(index, query, timeout_s=10.0)
            if data is None:
                return self._chain_from_disk(index, height, with_txids)
            page = data["blocks"]
            if not page:
                break
            blocks.extend(page)
            first = page[-1]["height"] + 1
        return blocks

    def _chain_from_disk(self, index: int, height: int, with_txids: bool) -> list[dict[str, Any]]:
        """Read a stopped node's finalized chain straight from its database."""
        from node.storage import Storage

        assert self.net is not None
        storage = Storage(self.net.members[index].dir / "data", read_only=True)
        try:
            blocks = []
            first = 1
            while first <= height:
                rows = storage.finalized_range(first, height)
                if not rows:
                    break
                blocks.extend(
                    {
                        "height": r.height,
                        "block_id": r.block_id.hex(),
                        "timestamp_ns": r.timestamp_ns,
                        "committed_ns": r.committed_ns,
                        "n_tx": r.n_tx,
                        "txids": r.txids.hex(),
                    }
                    for r in rows
                )
                first = rows[-1].height + 1
            return blocks
        finally:
            storage.close()

    async def _summarize(
        self, loadgen: Any, start_heights: dict[int, int], load_start_ns: int, load_end_ns: int
    ) -> dict[str, Any]:
        from node.metrics import LatencyHistogram
        from node.storage import SHORT_ID_BYTES, Storage

        o = self.options
        net = self.net
        assert net is not None
        stats = await asyncio.gather(*(net.rpc_json(i, "/stats", 5.0) for i in range(len(net))))
        heights: dict[int, int] = {}
        finality = LatencyHistogram()
        speculative = LatencyHistogram()
        for index, node_stats in enumerate(stats):
            if node_stats is None:
                storage = Storage(net.members[index].dir / "data", read_only=True)
                heights[index] = storage.finalized_head()[0]
                storage.close()
                continue
            heights[index] = int(node_stats["height"])
            finality.merge(LatencyHistogram.from_dict(node_stats["finality_ms"]))
            speculative.merge(LatencyHistogram.from_dict(node_stats["speculative_ms"]))
        reference = max(heights, key=lambda i: (heights[i], -i))
        chains = {i: await self._chain(i, heights[i], with_txids=True) for i in heights}
        ref_chain = chains[reference]
        ref_ids = [b["block_id"] for b in ref_chain]
        agreement = all(
            [b["block_id"] for b in chain] == ref_ids[: len(chain)] for chain in chains.values()
        )
        # Transactions: accepted by the generator and found in the finalized chain.
        accepted_ids: set[bytes] = loadgen.stats.accepted_ids
        committed_ids: set[bytes] = set()
        in_window = 0
        for block in ref_chain:
            raw = bytes.fromhex(block.get("txids", ""))
            ids = {raw[k : k + SHORT_ID_BYTES] for k in range(0, len(raw), SHORT_ID_BYTES)}
            ours = ids & accepted_ids
            fresh = ours - committed_ids
            committed_ids |= ours
            if load_start_ns <= block["committed_ns"] <= load_end_ns:
                in_window += len(fresh)
        committed = len(committed_ids)
        lost = len(accepted_ids - committed_ids)
        # TX-ONCE, checked from every node's chain: ids finalized more than once anywhere.
        duplicates = set().union(*(duplicate_txids(chain) for chain in chains.values()))
        elapsed_s = max(1e-9, (load_end_ns - load_start_ns) / 1e9)
        # Block intervals: header timestamps of consecutive finalized blocks in the window.
        stamps = [
            b["timestamp_ns"]
            for b in ref_chain
            if load_start_ns <= b["timestamp_ns"] <= load_end_ns
        ]
        intervals = [(b - a) / 1e6 for a, b in itertools.pairwise(stamps)]
        interval_stats = _describe(intervals)
        progress = max(heights.values()) > max(start_heights.values(), default=0)
        stall = _longest_stall(self.max_height_series)

        load = loadgen.stats
        offered_rate = load.offered / elapsed_s
        if load.offered < 0.9 * o.rate_tps * o.duration_s:
            self.warnings.append(
                f"load generator missed its target: offered {offered_rate:.0f} tx/s "
                f"of {o.rate_tps:.0f} tx/s"
            )
        if load.accepted < load.offered:
            self.warnings.append(
                f"{load.offered - load.accepted} of {load.offered} offered txs were not accepted "
                f"(rejected {load.rejected}, unsent {load.unsent})"
            )
        if not agreement:
            self.failures.append("DIVERGENCE: finalized chains are not prefixes of one another")
        if duplicates:
            self.failures.append(
                f"DUPLICATE: {len(duplicates)} tx ids were finalized more than once"
            )
        if not progress:
            self.failures.append("NO PROGRESS: the finalized height did not advance")
        elif stall > STALL_LIMIT_S:
            self.failures.append(f"STALL: no new finalized block for {stall:.1f} s")
        if committed == 0 and o.rate_tps > 0:
            self.failures.append("NOTHING MEASURED: no accepted tx was finalized")
        for record in self.records:
            if record.recovery_s is None and record.perturbation.node not in self.dead:
                self.failures.append(
                    f"perturbation {record.perturbation.spec}: node {record.perturbation.node} "
                    + (
                        record.error
                        if record.error
                        else f"did not reach height {record.target_height} "
                        f"within {RECOVERY_LIMIT_S:.0f} s"
                    )
                )
        if lost and not self.dead:
            self.warnings.append(f"{lost} accepted txs were never finalized")
        live = [i for i in heights if i not in self.dead]
        laggards = [i for i in live if heights[i] < heights[reference] - 10]
        if laggards:
            self.warnings.append(f"nodes {laggards} lag the network height at the end")

        def pct(h: LatencyHistogram, q: float) -> float | None:
            value = h.quantile(q)
            return None if value is None else round(value, 2)

        return {
            "nodes": o.nodes,
            "transport": o.transport,
            "dissemination": o.dissemination,
            "poa_signatures": o.poa_signatures,
            "duration_s": o.duration_s,
            "rate_tps": o.rate_tps,
            "tx_bytes": o.tx_bytes,
            "offered_tx": load.offered,
            "accepted_tx": load.accepted,
            "committed_tx": committed,
            "lost_tx": lost,
            "duplicate_tx": len(duplicates),
            "tps": round(in_window / elapsed_s, 1),
            "offered_tps": round(offered_rate, 1),
            "finality_ms": {"p50": pct(finality, 0.5), "p99": pct(finality, 0.99)},
            "speculative_ms": {"p50": pct(speculative, 0.5), "p99": pct(speculative, 0.99)},
            "block_interval_ms": interval_stats,
            "blocks_in_window": len(stamps),
            "heights": {str(i): heights[i] for i in sorted(heights)},
            "agreement": agreement,
            "progress": progress,
            "longest_stall_s": round(stall, 3),
            "tcs": sum(int(s["tcs"]) for s in stats if s is not None),
            "dropped": _sum_dicts([s["dropped"] for s in stats if s is not None]),
            "core_dropped": _sum_dicts([s["core_dropped"] for s in stats if s is not None]),
            "equivocations": sum(int(s.get("equivocations", 0)) for s in stats if s is not None),
            "perturbations": [r.as_dict() for r in self.records],
            "byzantine": {
                str(i): ":".join(filter(None, (k, o.byzantine_options.get(i))))
                for i, k in sorted(o.byzantine.items())
            },
            "warnings": self.warnings,
            "failures": self.failures,
            "ok": not self.failures,
        }


def cartel_options(
    *,
    nodes: int,
    cartel: Sequence[int],
    strategy: str = "withhold_all",
    m: int | None = None,
    theta: int | None = None,
    censors: Sequence[int] = (),
    **run: Any,
) -> RunOptions:
    """Run options of a withholding cartel on a testnet (the API `sedna mech experiment`
    calls): lanes `cartel` run `withhold_bundles` with `strategy` (m, the senders' bundles
    per slot, is also the senders' policy when given; theta for `threshold`), `censors`
    run `drop_lane_blocks`. `run` sets any other `RunOptions` field (duration_s,
    sedna_rate_pps, transport, ...). Raises ValueError on a bad choice, like the CLI."""
    specs: list[ByzantineSpec] = []
    if cartel:
        options = [f"strategy={strategy}"]
        options += [f"m={m}"] if m is not None else []
        options += [f"theta={theta}"] if theta is not None else []
        text = f"withhold_bundles:{','.join(map(str, cartel))}:{':'.join(options)}"
        specs.append(parse_byzantine(text, nodes))
    if censors:
        specs.append(parse_byzantine(f"drop_lane_blocks:{','.join(map(str, censors))}", nodes))
    assigned = byzantine_nodes(specs, nodes)
    run.setdefault("rate_tps", 0.0)
    if m is not None:
        run.setdefault("sedna_bundles_per_slot", m)
    return RunOptions(
        nodes=nodes,
        byzantine={n: s.behaviour for n, s in assigned.items()},
        byzantine_options={n: s.options for n, s in assigned.items() if s.options},
        **run,
    )


def run_cartel(**kwargs: Any) -> dict[str, Any]:
    """One bounded testnet run of `cartel_options(**kwargs)`; its summary (with `cartel`:
    per payload the public and cartel decode slots and the lead)."""
    return asyncio.run(TestnetRun(cartel_options(**kwargs)).execute())


@dataclass
class _NoLoad:
    """Stands in for the plain load generator when `rate_tps` is 0."""

    stats: Any

    async def run(self, duration_s: float) -> Any:
        self.stats.started_s = time.monotonic()
        await asyncio.sleep(duration_s)
        self.stats.stopped_s = time.monotonic()
        return self.stats


async def _nothing() -> None:
    return None


def duplicate_txids(chain: Sequence[Mapping[str, Any]]) -> set[bytes]:
    """Tx ids (8-byte prefixes) that one finalized chain (`/blocks?txids=1` entries) holds
    more than once: at two heights, or twice in one block."""
    from node.storage import SHORT_ID_BYTES

    seen: set[bytes] = set()
    repeated: set[bytes] = set()
    for block in chain:
        raw = bytes.fromhex(block.get("txids", ""))
        for k in range(0, len(raw), SHORT_ID_BYTES):
            txid = raw[k : k + SHORT_ID_BYTES]
            if txid in seen:
                repeated.add(txid)
            seen.add(txid)
    return repeated


def _mkdtemp() -> str:
    import tempfile

    return tempfile.mkdtemp(prefix="sedna-testnet-")


def _max_key(values: Mapping[int, int]) -> int | None:
    return max(values, key=lambda i: values[i]) if values else None


def _describe(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, "std": None, "min": None, "max": None}
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / len(values)
    return {
        "mean": round(mean, 2),
        "std": round(math.sqrt(var), 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
    }


def _longest_stall(series: Sequence[tuple[float, int]]) -> float:
    """Longest time the network's max finalized height stayed the same."""
    longest = 0.0
    since_t, since_h = series[0] if series else (0.0, 0)
    for t, h in series:
        if h > since_h:
            since_t, since_h = t, h
        longest = max(longest, t - since_t)
    return longest


def _sum_dicts(dicts: Sequence[Mapping[str, float]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            total[k] = total.get(k, 0) + int(v)
    return total
