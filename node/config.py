"""Node configuration: one TOML file per validator plus one key file, both written by the launcher.

`load_config(path)` reads and validates everything a node needs before it touches the
network or the disk; any problem raises `ConfigError` whose text names the offending key
(`consensus.delta_ms: must be > 0, got -1`). Paths inside the file are relative to the
file's own directory, so a testnet directory can be moved as a whole.

Layout of a config file (all sections required except `[test]`):

    [node]        index, data_dir, key_file, log_level, log_file (optional)
    [network]     transport ("tcp" | "libp2p"), listen_host, listen_port,
                  rpc_host, rpc_port, admin_rpc (bool), admin_token_file (default
                  "admin.token"; read only with admin_rpc: hex, mode 0600)
    [consensus]   protocol, delta_ms, vote_pace_ms, round_timeout_ms (optional),
                  timeout_backoff, max_round_timeout_ms, epoch, schedule, signature_scheme,
                  chain_id (optional, default DEFAULT_CHAIN_ID: every signature of the
                  network names it, and a peer of another chain is refused)
    [mempool]     max_txs, max_tx_bytes, max_block_txs, max_block_bytes,
                  forward_fanout (0..8, default 2; 0 = no tx forwarding)
    [[validators]] index, public_key (hex), stake, host, port, bls_public_key (hex, 48
                  bytes) and bls_pop (hex, 96 bytes: its proof of possession; both
                  required with certified lanes and `poa_signatures = "bls"`)
    [lanes]       dissemination ("certified" | "carried"), poa_signatures ("bls" |
                  "ed25519": a proof of availability is one BLS aggregate or f+1
                  Ed25519 signatures)
    [ledger]      (optional; without it lanes charge nothing) sender_balance (int, the
                  genesis balance of every listed sender), fee (int, least fee per
                  ticket), bounty (int, PIVOT-K bounty B per payload), genesis (list of
                  sender public keys, hex)
    [test]        crash_after_persist_safety (int, 0 = off), log_votes (bool),
                  byzantine (str, "" = honest), byzantine_options (str, see
                  `parse_byzantine_options`), cartel_pool (str "host:port", the side
                  channel of a `withhold_bundles` cartel), core_error_after_events (int,
                  0 = off), crash_after_proposing_txs (int, 0 = off)

A key file is TOML with `public_key` and `secret_seed` (hex), and `bls_public_key` (hex,
optional: the BLS key derived from the seed, `consensus.aggregate.aggregate_seed`). It must
match the public keys of this node's `[[validators]]` entry and be accessible by its owner
only (mode 0600). Every validator's `bls_pop` is verified when the config is loaded: a
validator set with a key whose proof of possession fails is refused (rogue keys).
`check_environment(config)` checks what the file cannot say alone: the data dir is not a
file, and the chosen transport's packages are installed.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from consensus.aggregate import (
    AGGREGATE_PUBLIC_BYTES,
    AGGREGATE_SIGNATURE_BYTES,
    AggregateKeySet,
    aggregate_scheme_for,
)
from consensus.byzantine import BEHAVIOURS as SHARED_BEHAVIOURS
from consensus.byzantine import LANE_BEHAVIOURS
from consensus.crypto import DEFAULT_CHAIN_ID, KeyPair, check_chain_id
from consensus.lanes.cartel import STRATEGIES as CARTEL_STRATEGIES

TRANSPORTS = ("tcp", "libp2p")
PROTOCOLS = ("monadbft", "v1", "vanilla")
SCHEDULES = ("round-robin", "weighted")
SCHEMES = ("ed25519", "trusted")
LOG_LEVELS = ("debug", "info", "warning", "error")
DISSEMINATION_MODES = ("certified", "carried")  # [lanes] dissemination
POA_SIGNATURES = ("bls", "ed25519")  # [lanes] poa_signatures
# Node-only faults, then every behaviour of `consensus.byzantine` (shared with netsim).
NODE_ONLY_BEHAVIOURS = ("double_vote", "malformed", "replay_txs")
BYZANTINE_BEHAVIOURS = ("", *NODE_ONLY_BEHAVIOURS, *SHARED_BEHAVIOURS)
# The options each behaviour takes (`byzantine_options`, "KEY=VALUE:KEY=VALUE").
BYZANTINE_OPTIONS: dict[str, tuple[str, ...]] = {
    "silent": ("targets",),
    "equivocate": ("targets",),
    "withhold_bundles": ("strategy", "m", "theta", "threshold"),
}
# The cartel strategies a `withhold_bundles` node runs (consensus.lanes.cartel, pure).
WITHHOLD_STRATEGIES = CARTEL_STRATEGIES
MAX_VALIDATORS_IN_CONFIG = 1024
SINGLE_VALIDATOR_VOTE_PACE_MS = 20.0  # the launcher's pace for a one-validator network
KEY_FILE_MODE_MASK = 0o077  # key-file permission bits that must be clear (as ssh requires)
ADMIN_TOKEN_FILE = "admin.token"  # default network.admin_token_file, beside the config


class ConfigError(ValueError):
    """A configuration problem; the text starts with the key it is about."""


@dataclass(frozen=True)
class ValidatorEntry:
    index: int
    public_key: bytes
    stake: int
    host: str
    port: int
    bls_public_key: bytes | None = None  # certified lanes' aggregate key (48 bytes)
    bls_pop: bytes | None = None  # its proof of possession (96 bytes)


@dataclass(frozen=True)
class NodeSection:
    index: int
    data_dir: Path
    key_file: Path
    log_level: str = "info"
    log_file: Path | None = None


@dataclass(frozen=True)
class NetworkSection:
    transport: str = "tcp"
    listen_host: str = "127.0.0.1"
    listen_port: int = 26600
    rpc_host: str = "127.0.0.1"
    rpc_port: int = 26700
    admin_rpc: bool = False
    admin_token_file: Path | None = None  # bearer token of /admin/* (needed with admin_rpc)


@dataclass(frozen=True)
class ConsensusSection:
    protocol: str = "monadbft"
    delta_ms: float = 100.0
    vote_pace_ms: float = 0.0
    round_timeout_ms: float | None = None
    timeout_backoff: float = 1.0
    max_round_timeout_ms: float = 30_000.0
    epoch: int = 1
    schedule: str = "round-robin"
    signature_scheme: str = "ed25519"
    chain_id: str = DEFAULT_CHAIN_ID


MAX_FORWARD_FANOUT = 8


@dataclass(frozen=True)
class MempoolSection:
    max_txs: int = 200_000
    max_tx_bytes: int = 64 * 1024
    max_block_txs: int = 5_000
    max_block_bytes: int = 4 * 1024 * 1024
    # Txs accepted over RPC are forwarded to the leaders of the next `forward_fanout`
    # rounds (node/txforward.py); 0 turns forwarding off.
    forward_fanout: int = 2


MAX_GENESIS_SENDERS = 4096


@dataclass(frozen=True)
class LedgerSection:
    """The lanes' ledger (consensus/lanes/ledger.py): every sender in `genesis` starts
    with `sender_balance`; a redeemed ticket pays at least `fee` to its lane; a payload
    escrows `bounty` (B) for its pivotal bundles' lanes. Every node of a chain must use
    the same values (they decide which bundles count)."""

    sender_balance: int = 0
    fee: int = 1
    bounty: int = 0
    genesis: tuple[bytes, ...] = ()

    def allocation(self) -> dict[bytes, int]:
        return dict.fromkeys(self.genesis, self.sender_balance)


@dataclass(frozen=True)
class LanesSection:
    """How lane data reaches consensus (docs/lanes.md): `certified` (lane chains,
    availability certificates and tip cuts; the default) or `carried` (lane blocks carried
    in full inside consensus blocks). Every validator of a network must use the same."""

    dissemination: str = "certified"
    # a proof of availability: one BLS aggregate (O(1) bytes per lane of a cut) or f+1
    # Ed25519 signatures (docs/lanes.md, "Aggregate proofs of availability")
    poa_signatures: str = "bls"

    def aggregate(self) -> bool:
        """Do availability votes and PoAs use the aggregate (BLS) scheme?"""
        return self.dissemination == "certified" and self.poa_signatures == "bls"


@dataclass(frozen=True)
class TestSection:
    """Test-only hooks. Never set them on a real network."""

    crash_after_persist_safety: int = 0  # exit(CRASH_EXIT_CODE) right after the N-th persist
    log_votes: bool = False  # log every vote sent and received (for double-vote checks)
    byzantine: str = ""
    byzantine_options: str = ""  # "KEY=VALUE:KEY=VALUE" (parse_byzantine_options)
    cartel_pool: str = ""  # "host:port" of the cartel's side channel (withhold_bundles)
    core_error_after_events: int = 0  # the core raises on the N-th event (a fatal error)
    crash_after_proposing_txs: int = 0  # exit(CRASH_EXIT_CODE) after the N-th proposal of txs


@dataclass(frozen=True)
class NodeConfig:
    path: Path
    node: NodeSection
    network: NetworkSection
    consensus: ConsensusSection
    mempool: MempoolSection
    validators: tuple[ValidatorEntry, ...]
    test: TestSection = field(default_factory=TestSection)
    lanes: LanesSection = field(default_factory=LanesSection)
    ledger: LedgerSection | None = None  # None: the lanes charge nothing

    @property
    def index(self) -> int:
        return self.node.index

    def peers(self) -> dict[int, ValidatorEntry]:
        """Every validator but this node."""
        return {v.index: v for v in self.validators if v.index != self.node.index}


# --------------------------------------------------------------------------- validation helpers


def _require_table(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    if value is None:
        raise ConfigError(f"[{key}]: missing section")
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: must be a table")
    return value


def _check_unknown(table: Mapping[str, Any], section: str, allowed: set[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{section}.{unknown[0]}: unknown key (allowed: {sorted(allowed)})")


def _get(
    table: Mapping[str, Any],
    section: str,
    key: str,
    kind: type | tuple[type, ...],
    default: Any = ...,
) -> Any:
    if key not in table:
        if default is ...:
            raise ConfigError(f"{section}.{key}: missing")
        return default
    value = table[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # bool is an int subclass in Python; a TOML `true` is never a valid number here.
    if isinstance(value, bool) and bool not in kinds:
        raise ConfigError(f"{section}.{key}: expected {_kind_name(kinds)}, got a boolean")
    if not isinstance(value, kinds):
        raise ConfigError(f"{section}.{key}: expected {_kind_name(kinds)}, got {value!r}")
    if float in kinds and isinstance(value, int):
        value = float(value)
    return value


def _kind_name(kinds: tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "a boolean"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _positive(value: float, name: str, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name}: must be {bound}, got {value}")


def _port(value: int, name: str) -> None:
    if not 1 <= value <= 65535:
        raise ConfigError(f"{name}: port must be in 1..65535, got {value}")


_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")


def _host(value: str, name: str) -> None:
    """An IP address or an RFC 1123 host name (labels of 1..63 letters, digits, inner '-')."""
    if not value or len(value) > 253:
        raise ConfigError(f"{name}: empty or too long host")
    try:
        ipaddress.ip_address(value)
        return
    except ValueError:
        pass
    bad = f"{name}: {value!r} is neither an IP address nor a host name"
    labels = value.removesuffix(".").split(".")
    for label in labels:
        if not 1 <= len(label) <= 63 or not set(label) <= _LABEL_CHARS:
            raise ConfigError(bad)
        if label.startswith("-") or label.endswith("-"):
            raise ConfigError(bad)
    # Rule: all-numeric dotted names are meant as IPv4 addresses, and these are not valid ones.
    if all(label.isdigit() for label in labels):
        raise ConfigError(f"{name}: {value!r} is not a valid IPv4 address")


def _is_wildcard(host: str) -> bool:
    return host in ("0.0.0.0", "::", "")


def _same_bind(host_a: str, host_b: str) -> bool:
    """Could two listeners on these hosts collide on one port?"""
    return host_a == host_b or _is_wildcard(host_a) or _is_wildcard(host_b)


def _choice(value: str, name: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name}: {value!r} is not one of {list(choices)}")


def _hex(value: str, name: str, size: int) -> bytes:
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise ConfigError(f"{name}: not a hex string") from None
    if len(raw) != size:
        raise ConfigError(f"{name}: expected {size} bytes, got {len(raw)}")
    return raw


def _resolve(base: Path, value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else (base / path)


# --------------------------------------------------------------------------- parsing


def parse_config(data: Mapping[str, Any], path: Path) -> NodeConfig:
    """Validate a parsed TOML document. Raises ConfigError naming the first bad key."""
    base = path.parent
    _check_unknown(
        data,
        "config",
        {"node", "network", "consensus", "mempool", "validators", "test", "ledger", "lanes"},
    )

    t = _require_table(data, "node")
    _check_unknown(t, "node", {"index", "data_dir", "key_file", "log_level", "log_file"})
    index = _get(t, "node", "index", int)
    log_file = _get(t, "node", "log_file", str, None)
    node = NodeSection(
        index=index,
        data_dir=_resolve(base, _get(t, "node", "data_dir", str)),
        key_file=_resolve(base, _get(t, "node", "key_file", str)),
        log_level=_get(t, "node", "log_level", str, "info"),
        log_file=_resolve(base, log_file) if log_file else None,
    )
    _choice(node.log_level, "node.log_level", LOG_LEVELS)

    t = _require_table(data, "network")
    _check_unknown(t, "network", {f.name for f in fields(NetworkSection)})
    network = NetworkSection(
        transport=_get(t, "network", "transport", str, "tcp"),
        listen_host=_get(t, "network", "listen_host", str, "127.0.0.1"),
        listen_port=_get(t, "network", "listen_port", int),
        rpc_host=_get(t, "network", "rpc_host", str, "127.0.0.1"),
        rpc_port=_get(t, "network", "rpc_port", int),
        admin_rpc=_get(t, "network", "admin_rpc", bool, False),
        admin_token_file=_resolve(
            base, _get(t, "network", "admin_token_file", str, ADMIN_TOKEN_FILE)
        ),
    )
    _choice(network.transport, "network.transport", TRANSPORTS)
    _host(network.listen_host, "network.listen_host")
    _host(network.rpc_host, "network.rpc_host")
    _port(network.listen_port, "network.listen_port")
    _port(network.rpc_port, "network.rpc_port")
    # Rule: the validator transport and the RPC never share a listening address.
    if network.rpc_port == network.listen_port and _same_bind(
        network.rpc_host, network.listen_host
    ):
        raise ConfigError(
            f"network.rpc_port: {network.rpc_port} is also network.listen_port "
            f"(on {network.rpc_host} and {network.listen_host}); use two ports"
        )

    t = _require_table(data, "consensus")
    _check_unknown(t, "consensus", {f.name for f in fields(ConsensusSection)})
    consensus = ConsensusSection(
        protocol=_get(t, "consensus", "protocol", str, "monadbft"),
        delta_ms=_get(t, "consensus", "delta_ms", (int, float), 100.0),
        vote_pace_ms=_get(t, "consensus", "vote_pace_ms", (int, float), 0.0),
        round_timeout_ms=_get(t, "consensus", "round_timeout_ms", (int, float), None),
        timeout_backoff=_get(t, "consensus", "timeout_backoff", (int, float), 1.0),
        max_round_timeout_ms=_get(t, "consensus", "max_round_timeout_ms", (int, float), 30_000.0),
        epoch=_get(t, "consensus", "epoch", int, 1),
        schedule=_get(t, "consensus", "schedule", str, "round-robin"),
        signature_scheme=_get(t, "consensus", "signature_scheme", str, "ed25519"),
        chain_id=_get(t, "consensus", "chain_id", str, DEFAULT_CHAIN_ID),
    )
    try:
        check_chain_id(consensus.chain_id)
    except ValueError as exc:
        raise ConfigError(f"consensus.chain_id: {exc}") from None
    _choice(consensus.protocol, "consensus.protocol", PROTOCOLS)
    _choice(consensus.schedule, "consensus.schedule", SCHEDULES)
    _choice(consensus.signature_scheme, "consensus.signature_scheme", SCHEMES)
    _positive(consensus.delta_ms, "consensus.delta_ms")
    _positive(consensus.vote_pace_ms, "consensus.vote_pace_ms", allow_zero=True)
    if consensus.round_timeout_ms is not None:
        _positive(consensus.round_timeout_ms, "consensus.round_timeout_ms")
    if consensus.timeout_backoff < 1.0:
        raise ConfigError(
            f"consensus.timeout_backoff: must be >= 1.0, got {consensus.timeout_backoff}"
        )
    _positive(consensus.max_round_timeout_ms, "consensus.max_round_timeout_ms")
    _positive(consensus.epoch, "consensus.epoch")

    t = _require_table(data, "mempool")
    _check_unknown(t, "mempool", {f.name for f in fields(MempoolSection)})
    mempool = MempoolSection(
        max_txs=_get(t, "mempool", "max_txs", int, MempoolSection.max_txs),
        max_tx_bytes=_get(t, "mempool", "max_tx_bytes", int, MempoolSection.max_tx_bytes),
        max_block_txs=_get(t, "mempool", "max_block_txs", int, MempoolSection.max_block_txs),
        max_block_bytes=_get(t, "mempool", "max_block_bytes", int, MempoolSection.max_block_bytes),
        forward_fanout=_get(t, "mempool", "forward_fanout", int, MempoolSection.forward_fanout),
    )
    for f in fields(MempoolSection):
        if f.name != "forward_fanout":
            _positive(getattr(mempool, f.name), f"mempool.{f.name}")
    if not 0 <= mempool.forward_fanout <= MAX_FORWARD_FANOUT:
        raise ConfigError(
            f"mempool.forward_fanout: must be in 0..{MAX_FORWARD_FANOUT}, "
            f"got {mempool.forward_fanout}"
        )
    from consensus.messages import MAX_PAYLOAD_BYTES

    # Rule: a block built from the mempool must fit the wire limit of a block body.
    if mempool.max_block_bytes > MAX_PAYLOAD_BYTES - 64 * 1024:
        raise ConfigError(
            f"mempool.max_block_bytes: must be <= {MAX_PAYLOAD_BYTES - 64 * 1024}, "
            f"got {mempool.max_block_bytes}"
        )
    if mempool.max_tx_bytes > mempool.max_block_bytes:
        raise ConfigError("mempool.max_tx_bytes: larger than mempool.max_block_bytes")

    raw_validators = data.get("validators")
    if raw_validators is None:
        raise ConfigError("[[validators]]: missing")
    if not isinstance(raw_validators, list) or not raw_validators:
        raise ConfigError("validators: must be a non-empty array of tables")
    if len(raw_validators) > MAX_VALIDATORS_IN_CONFIG:
        raise ConfigError(f"validators: at most {MAX_VALIDATORS_IN_CONFIG} entries")
    validators: list[ValidatorEntry] = []
    seen_keys: set[bytes] = set()
    for position, entry in enumerate(raw_validators):
        name = f"validators[{position}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{name}: must be a table")
        _check_unknown(
            entry,
            name,
            {"index", "public_key", "stake", "host", "port", "bls_public_key", "bls_pop"},
        )
        bls_public = _get(entry, name, "bls_public_key", str, None)
        bls_pop = _get(entry, name, "bls_pop", str, None)
        v = ValidatorEntry(
            index=_get(entry, name, "index", int),
            public_key=_hex(_get(entry, name, "public_key", str), f"{name}.public_key", 32),
            stake=_get(entry, name, "stake", int, 1),
            host=_get(entry, name, "host", str),
            port=_get(entry, name, "port", int),
            bls_public_key=_hex(bls_public, f"{name}.bls_public_key", AGGREGATE_PUBLIC_BYTES)
            if bls_public is not None
            else None,
            bls_pop=_hex(bls_pop, f"{name}.bls_pop", AGGREGATE_SIGNATURE_BYTES)
            if bls_pop is not None
            else None,
        )
        # Rule: validators are listed in index order 0..n-1 (the validator set's order).
        if v.index != position:
            raise ConfigError(f"{name}.index: expected {position}, got {v.index}")
        _positive(v.stake, f"{name}.stake")
        _host(v.host, f"{name}.host")
        _port(v.port, f"{name}.port")
        if v.public_key in seen_keys:
            raise ConfigError(f"{name}.public_key: duplicate of an earlier validator")
        seen_keys.add(v.public_key)
        validators.append(v)
    if not 0 <= node.index < len(validators):
        raise ConfigError(
            f"node.index: {node.index} is not a validator index (0..{len(validators) - 1})"
        )
    # Rule: a lone validator is its own quorum; unpaced it would finalize empty blocks as
    # fast as the disk syncs, so its votes must be paced.
    if len(validators) == 1 and consensus.vote_pace_ms <= 0:
        raise ConfigError(
            "consensus.vote_pace_ms: must be > 0 with a single validator "
            f"(e.g. {SINGLE_VALIDATOR_VOTE_PACE_MS:g}), else it finalizes empty blocks "
            "as fast as the disk syncs"
        )

    t = data.get("lanes", {})
    if not isinstance(t, dict):
        raise ConfigError("lanes: must be a table")
    _check_unknown(t, "lanes", {f.name for f in fields(LanesSection)})
    lanes = LanesSection(
        dissemination=_get(t, "lanes", "dissemination", str, "certified"),
        poa_signatures=_get(t, "lanes", "poa_signatures", str, "bls"),
    )
    _choice(lanes.dissemination, "lanes.dissemination", DISSEMINATION_MODES)
    _choice(lanes.poa_signatures, "lanes.poa_signatures", POA_SIGNATURES)
    if lanes.aggregate():
        # rule POP: every aggregate key is present and proven possessed (rogue keys)
        aggregate_key_set(validators, consensus)

    t = data.get("test", {})
    if not isinstance(t, dict):
        raise ConfigError("test: must be a table")
    _check_unknown(t, "test", {f.name for f in fields(TestSection)})
    test = TestSection(
        crash_after_persist_safety=_get(t, "test", "crash_after_persist_safety", int, 0),
        log_votes=_get(t, "test", "log_votes", bool, False),
        byzantine=_get(t, "test", "byzantine", str, ""),
        byzantine_options=_get(t, "test", "byzantine_options", str, ""),
        cartel_pool=_get(t, "test", "cartel_pool", str, ""),
        core_error_after_events=_get(t, "test", "core_error_after_events", int, 0),
        crash_after_proposing_txs=_get(t, "test", "crash_after_proposing_txs", int, 0),
    )
    _positive(test.crash_after_persist_safety, "test.crash_after_persist_safety", allow_zero=True)
    _positive(test.core_error_after_events, "test.core_error_after_events", allow_zero=True)
    _positive(test.crash_after_proposing_txs, "test.crash_after_proposing_txs", allow_zero=True)
    _choice(test.byzantine, "test.byzantine", BYZANTINE_BEHAVIOURS)
    try:
        parse_byzantine_options(test.byzantine, test.byzantine_options, len(validators))
    except ValueError as exc:
        raise ConfigError(f"test.byzantine_options: {exc}") from None
    if test.byzantine == "withhold_bundles":
        try:
            parse_host_port(test.cartel_pool)
        except ValueError as exc:
            raise ConfigError(f"test.cartel_pool: {exc}") from None

    return NodeConfig(
        path=path,
        node=node,
        network=network,
        consensus=consensus,
        mempool=mempool,
        validators=tuple(validators),
        test=test,
        lanes=lanes,
        ledger=_parse_ledger(data.get("ledger")),
    )


def aggregate_key_set(
    validators: Sequence[ValidatorEntry], consensus: ConsensusSection
) -> AggregateKeySet:
    """The validators' BLS keys, each proof of possession verified; else ConfigError."""
    scheme = aggregate_scheme_for(consensus.signature_scheme, consensus.chain_id)
    for v in validators:
        for key in ("bls_public_key", "bls_pop"):
            if getattr(v, key) is None:
                raise ConfigError(
                    f'validators[{v.index}].{key}: missing (lanes.poa_signatures = "bls" '
                    "needs every validator's BLS key and its proof of possession; "
                    "`sedna testnet init` writes them)"
                )
    publics = [v.bls_public_key for v in validators]
    proofs = [v.bls_pop for v in validators]
    for v in validators:
        if not scheme.possession_ok(v.bls_public_key, v.bls_pop):  # type: ignore[arg-type]
            raise ConfigError(
                f"validators[{v.index}].bls_pop: not a valid proof of possession of "
                "bls_public_key (refusing a validator set with a possible rogue key)"
            )
    try:
        return AggregateKeySet(scheme, publics, proofs)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ConfigError(f"validators: {exc}") from None


def aggregate_fields(key: KeyPair, signature_scheme: str = "ed25519") -> dict[str, str]:
    """The `bls_public_key` and `bls_pop` of a validator entry, from its Ed25519 key."""
    scheme = aggregate_scheme_for(signature_scheme, DEFAULT_CHAIN_ID)
    pair = scheme.keypair(key.seed)
    return {"bls_public_key": pair.public.hex(), "bls_pop": scheme.prove_possession(pair).hex()}


def is_consensus_byzantine(behaviour: str) -> bool:
    """Does the behaviour touch consensus messages (so it counts against f)?"""
    return behaviour != "" and behaviour not in LANE_BEHAVIOURS


def parse_byzantine_options(behaviour: str, text: str, validators: int) -> dict[str, Any]:
    """`KEY=VALUE:KEY=VALUE` options of a behaviour, checked; raises ValueError.

    - targets=I,J,... (silent, equivocate): the peers the behaviour singles out.
    - strategy=NAME (withhold_bundles): the cartel's strategy, one of
      `consensus.lanes.cartel.STRATEGIES` (default withhold_all); m=M, the senders'
      bundles per slot, which every strategy but withhold_all needs; theta=K (or
      threshold=K), the threshold strategy's θ.
    """
    from consensus.lanes.cartel import CartelStrategyError, parse_strategy

    options: dict[str, Any] = {}
    allowed = BYZANTINE_OPTIONS.get(behaviour, ())
    for part in text.split(":") if text else ():
        key, sep, value = part.partition("=")
        if not sep or not key or not value:
            raise ValueError(f"option {part!r}: expected KEY=VALUE")
        if key not in allowed:
            takes = f"takes {', '.join(allowed)}" if allowed else "takes no options"
            raise ValueError(
                f"option {key!r}: unknown for {behaviour or 'an honest node'} ({takes})"
            )
        if key in options:
            raise ValueError(f"option {key!r}: given twice")
        if key == "targets":
            try:
                targets = tuple(sorted({int(v) for v in value.split(",")}))
            except ValueError:
                raise ValueError(f"targets {value!r}: expected node indexes I,J,...") from None
            bad = [t for t in targets if not 0 <= t < validators]
            if bad:
                raise ValueError(f"targets {value!r}: {bad} not in 0..{validators - 1}")
            options[key] = targets
        elif key == "strategy":
            options[key] = value
        else:  # m, theta, threshold
            try:
                options[key] = int(value)
            except ValueError:
                raise ValueError(f"{key} {value!r}: expected an integer") from None
    if behaviour == "withhold_bundles":
        theta = {k: options[k] for k in ("theta", "threshold") if k in options}
        try:
            options["cartel_strategy"] = parse_strategy(
                options.get("strategy", "withhold_all"), theta, options.get("m")
            )
        except CartelStrategyError as exc:
            raise ValueError(str(exc)) from None
    return options


def parse_host_port(text: str) -> tuple[str, int]:
    """`host:port`; raises ValueError."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{text!r}: expected HOST:PORT")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"{text!r}: port {port_text!r} is not an integer") from None
    if not 0 < port < 65536:
        raise ValueError(f"{text!r}: port {port} not in 1..65535")
    return host, port


def _parse_ledger(t: Any) -> LedgerSection | None:
    from consensus.lanes.ledger import MAX_AMOUNT

    if t is None:
        return None
    if not isinstance(t, dict):
        raise ConfigError("ledger: must be a table")
    _check_unknown(t, "ledger", {f.name for f in fields(LedgerSection)})
    amounts = {
        key: _get(t, "ledger", key, int, getattr(LedgerSection, key))
        for key in ("sender_balance", "fee", "bounty")
    }
    for key, value in amounts.items():
        if not 0 <= value <= MAX_AMOUNT:
            raise ConfigError(f"ledger.{key}: must be in 0..{MAX_AMOUNT}, got {value}")
    raw = t.get("genesis", [])
    if not isinstance(raw, list) or len(raw) > MAX_GENESIS_SENDERS:
        raise ConfigError(
            f"ledger.genesis: must be a list of at most {MAX_GENESIS_SENDERS} public keys (hex)"
        )
    genesis: list[bytes] = []
    for position, value in enumerate(raw):
        name = f"ledger.genesis[{position}]"
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected a hex public key, got {value!r}")
        key = _hex(value, name, 32)
        if key in genesis:
            raise ConfigError(f"{name}: listed twice")
        genesis.append(key)
    # Rule: the ledger's total stays below MAX_AMOUNT (consensus/lanes/ledger.py).
    if amounts["sender_balance"] * len(genesis) > MAX_AMOUNT:
        raise ConfigError(f"ledger.sender_balance: the genesis total exceeds {MAX_AMOUNT}")
    return LedgerSection(genesis=tuple(genesis), **amounts)


def check_environment(config: NodeConfig) -> None:
    """What a valid config still needs from this machine: a usable data dir, the
    transport's packages. Raises ConfigError naming the key."""
    data_dir = config.node.data_dir
    if data_dir.exists() and not data_dir.is_dir():
        raise ConfigError(f"node.data_dir: {data_dir} is a file, not a directory")
    for parent in data_dir.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"node.data_dir: {parent} (a parent) is not a directory")
            break
    log_file = config.node.log_file
    if log_file is not None and log_file.is_dir():
        raise ConfigError(f"node.log_file: {log_file} is a directory")
    if config.network.admin_rpc:
        _check_admin_token(config.network.admin_token_file)
    if config.network.transport == "libp2p":
        import importlib.util

        missing = [m for m in ("libp2p", "trio") if importlib.util.find_spec(m) is None]
        if missing:
            raise ConfigError(
                f"network.transport: 'libp2p' needs the libp2p extra (missing "
                f"{', '.join(missing)}): pip install 'sedna-bft[libp2p]', or use 'tcp'"
            )


def _check_admin_token(path: Path | None) -> None:
    from node.rpc import load_admin_token

    name = "network.admin_token_file"
    if path is None:  # pragma: no cover - parse_config always sets it
        raise ConfigError(f"{name}: missing (network.admin_rpc = true needs a token)")
    _check_private(path, name)
    try:
        load_admin_token(path)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def _check_private(path: Path, name: str) -> None:
    """The file exists and only its owner can access it (as ssh requires of keys)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(f"{name}: {path} not found") from None
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read {path} ({exc.strerror})") from None
    # Rule: a secret readable by other users is refused (as ssh refuses such keys).
    if mode & KEY_FILE_MODE_MASK:
        raise ConfigError(
            f"{name}: {path} is accessible by others (mode {mode & 0o777:04o}); "
            f"run: chmod 600 {path}"
        )


def load_config(path: str | os.PathLike[str]) -> NodeConfig:
    """Read and validate a config file (the key file is checked by `load_key`)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    return parse_config(data, path.resolve())


def load_key(config: NodeConfig) -> KeyPair:
    """Read this node's key file and check it against its validator entry."""
    path = config.node.key_file
    _check_private(path, "node.key_file")
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"node.key_file: {path} not found") from None
    except OSError as exc:
        raise ConfigError(f"node.key_file: cannot read {path} ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"node.key_file: {path} is not valid TOML ({exc})") from None
    seed = _hex(_get(data, "key_file", "secret_seed", str), "key_file.secret_seed", 32)
    public = _hex(_get(data, "key_file", "public_key", str), "key_file.public_key", 32)
    key = KeyPair.from_seed(seed)
    # Rule: the key file's seed derives its public key, and that key is this validator's.
    if key.public != public:
        raise ConfigError("key_file.public_key: does not match secret_seed")
    entry = config.validators[config.node.index]
    if key.public != entry.public_key:
        raise ConfigError(
            f"key_file.public_key: does not match validators[{config.node.index}].public_key"
        )
    # Rule: the BLS key derived from the seed is the key file's and this validator's.
    if "bls_public_key" in data or config.lanes.aggregate():
        c = config.consensus
        derived = aggregate_scheme_for(c.signature_scheme, c.chain_id).keypair(seed).public
        if "bls_public_key" in data:
            written = _hex(
                _get(data, "key_file", "bls_public_key", str),
                "key_file.bls_public_key",
                AGGREGATE_PUBLIC_BYTES,
            )
            if written != derived:
                raise ConfigError("key_file.bls_public_key: does not match secret_seed")
        if config.lanes.aggregate() and derived != entry.bls_public_key:
            raise ConfigError(
                f"key_file.secret_seed: its BLS key does not match "
                f"validators[{config.node.index}].bls_public_key"
            )
    return key


# --------------------------------------------------------------------------- writing


def _toml_value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        text = str(value)
        escaped = text.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def render_config(document: Mapping[str, Any]) -> str:
    """TOML text of a config document (tables of scalars plus the validators array)."""
    lines: list[str] = []
    for section, table in document.items():
        if isinstance(table, list):
            for entry in table:
                lines.append(f"[[{section}]]")
                lines.extend(f"{k} = {_toml_value(v)}" for k, v in entry.items() if v is not None)
                lines.append("")
            continue
        lines.append(f"[{section}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in table.items() if v is not None)
        lines.append("")
    return "\n".join(lines)


def render_key_file(key: KeyPair) -> str:
    return f'public_key = "{key.public.hex()}"\nsecret_seed = "{key.seed.hex()}"\n'


def write_key_file(path: Path, key: KeyPair, signature_scheme: str = "ed25519") -> None:
    """Write a validator's key file readable by its owner only: its Ed25519 key and the
    public half of the BLS key derived from the same seed."""
    bls = aggregate_scheme_for(signature_scheme, DEFAULT_CHAIN_ID).keypair(key.seed).public
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(render_key_file(key) + f'bls_public_key = "{bls.hex()}"\n')


def write_admin_token(path: Path) -> str:
    """Write a fresh admin token (64 hex characters) readable by its owner only."""
    token = os.urandom(32).hex()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token
