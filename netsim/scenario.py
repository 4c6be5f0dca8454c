"""Scenario files: the TOML contract of `sedna sim run` (issue 3), parsed strictly.

Contract keys (names fixed; other tools rely on them):

    protocol = "monadbft"          # "monadbft" | "v1" | "vanilla"
    validators = 4                 # equal stake unless `stake = [...]` is given
    stake = [1, 1, 1, 1]           # optional
    seed = 1
    until_ms = 20000               # simulated-time bound
    until_blocks = 50              # optional: stop once every honest live node finalized this many
    [network]
    latency_ms = [1, 20]           # uniform range, or one number (constant)
    loss = 0.0
    delta_ms = 100
    [[partition]]  groups = [[0, 1], [2, 3]], from_ms, to_ms
    [[crash]]      node, at_ms, restart_ms (optional)
    [[byzantine]]  node, behaviour, rounds (optional)

Documented extras (all optional):

    description = "..."            # free text
    scheme = "trusted"             # "trusted" (cheap, default) | "ed25519" (real signatures)
    verification = "shared"        # | "per_node": one verification cache for every node, or
                                   # each node verifies every signature (netsim.verify_cache)
    schedule = "round-robin"       # | "weighted"
    payload_bytes = 16             # block payload size drawn from the workload stream
    tie_break = "fifo"             # | "random": seeded permutation of same-instant events
    liveness_ms = 10000            # bound on time from the last fault to the next finalization
    [core]         vote_pace_ms, round_timeout_ms, timeout_backoff, max_round_timeout_ms
    [network]      latency_model ("constant"|"uniform"|"pareto"|"lognormal"; pareto/lognormal
                   read latency_ms = [scale-or-median, cap]), latency_shape, duplicate,
                   reorder, reorder_ms, bandwidth_mbps (per node, uplink and downlink;
                   omitted: unlimited), max_queue_ms (uplink backlog bound, default 10000)
    [[link]]       src, dst, message (wire tag), from_ms, to_ms, loss, latency_ms, extra_delay_ms
    [[crash]]      at_round (instead of at_ms: dies while entering that round),
                   restart_after_ms (relative restart, the only one allowed with at_round)
    [[pause]]      node, from_ms, to_ms
    [[clock]]      node, offset_ms
    [[byzantine]]  targets = [..] (which peers a behaviour singles out, see netsim.byzantine);
                   several entries for one node stack their behaviours
    [expect]       no_tc_rounds = [..] (rounds in which no valid TC may appear),
                   qc_rounds = [..] (rounds that must get a valid QC): the outcome the
                   scenario is about, checked like an invariant ("expect: ..." violations)

Sedna lanes (issue 4; `netsim.lanes`, docs/netsim.md "Lanes"):

    [lanes]
    payloads = 20                  # payloads each sender submits over the run
    payload_bytes = 2048
    kappa = 8                      # bundles to decode (symbol/bundle sizes: params_for_kappa)
    bundles_per_slot = 4           # m
    policy = "fresh"               # "all" | "fresh" | "fixed"
    ratchet = false
    # documented extras:
    senders = 1                    # sender entities (workload stream)
    interval_slots = 1             # a sender starts a new payload every this many slots
    first_slot = 4                 # slot (height) of each sender's first payload
    lookahead_slots = 4            # senders address heights up to finalized head + this
    sending = "until_decoded"      # | "one_shot": no feedback, only the first one_shot_slots
    one_shot_slots = 1             # slots a one_shot payload addresses (from its first slot)
    loss = 0.0                     # probability a submission is lost on its way to the lane
    codec = "raptorq"              # | "rs"
    cap_factor = 4                 # committed stream = cap_factor * kappa bundles
    decode_margin_symbols = 2      # RaptorQ margin h
    corrupt_senders = []           # senders whose symbols do not match their commitment
    [[byzantine]]  behaviour = "withhold_bundles" (needs [lanes]), target_senders = [..]
                   (withhold only those senders' payloads; default all),
                   strategy = "withhold_all" | "threshold" | "last_slot" | "adaptive"
                   (consensus.lanes.cartel; one strategy for the whole cartel),
                   theta = 2 (threshold only; default Δ + 1). Withholding lanes follow
                   consensus, so they do not count toward the one-third Byzantine bound.

Lanes under attack (issue 10; docs/netsim.md "Lanes under attack"):

    [[byzantine]]  behaviour = "drop_lane_blocks"   # a censoring leader: every block it
                   # proposes carries no lane block but its own lane's (needs [lanes])
    [[sender_attack]]              # one attacking sender entity per table (needs [lanes])
    kind = "duplicate_across_lanes" | "junk_commitments" | "replay_after_decide"
    from_slot = 10                 # first slot it attacks
    count = 2                      # per slot (duplicate_across_lanes: bundles given to two
                                   # lanes each; junk_commitments: new junk commitments),
                                   # or how many times (replay_after_decide: re-sends)
    [lanes]
    ratchet_policy = "keep_redeemed"   # | "exclude" (= ratchet = true)
    feedback_slots = 4             # keep_redeemed: slot s's outcome is used from slot s + d;
                                   # default and minimum: lookahead_slots (what the senders
                                   # really know when they plan a slot; certified lanes:
                                   # lookahead_slots + 2, the PoAs' lag)
    tracker_capacity = 4096        # documented extra: pending payloads per decode tracker

Certified lanes (issue 11; docs/netsim.md "Certified lanes"):

    [lanes]
    dissemination = "certified"    # | "carried": lane blocks inside the leader's block
    poa_signatures = "bls"         # | "ed25519": a PoA is one BLS aggregate (scheme
                                   # "trusted": a stand-in of the same sizes) or f+1
                                   # individual signatures
    payload_rate_per_s = 200       # documented extra: `payloads` in all, arriving at this
                                   # rate in simulated time (round-robin over senders) and
                                   # addressed from the next slot planned after arrival;
                                   # replaces the per-slot schedule (interval_slots)
    [network]
    bandwidth_mbps = 1000          # per-node uplink and downlink (optional)
    [[byzantine]]  behaviour = "drop_lane_blocks"   # certified: the leader omits or
                   # under-cites every other lane's tip (keeps its parent's)
    [ledger]                       # (needs [lanes]; defaults when omitted)
    sender_balance = 1000000000    # genesis balance of every sender (attackers included)
    fee = 1                        # per ticket (the chain's minimum; senders pay exactly it)
    bounty = 0                     # PIVOT-K bounty B escrowed per payload

Unknown keys are errors. Every error names the key and why (`ScenarioError`).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from consensus.lanes.cartel import STRATEGIES as CARTEL_STRATEGIES
from consensus.messages import MAX_VALIDATORS, MESSAGE_TYPES
from netsim.byzantine import BEHAVIOURS
from netsim.faults import ClockOffset, Crash, Fault, Pause
from netsim.network import (
    LATENCY_KINDS,
    Latency,
    LinkRule,
    NetworkConfig,
    Partition,
)
from netsim.verify_cache import VERIFICATION_MODES

PROTOCOLS = ("monadbft", "v1", "vanilla")
SCHEMES = ("trusted", "ed25519")
SCHEDULES = ("round-robin", "weighted")
MESSAGE_TAGS = tuple(t.__struct_config__.tag for t in MESSAGE_TYPES)
MAX_UNTIL_MS = 1e9  # ~11.6 simulated days
LANE_POLICIES = ("all", "fresh", "fixed")
LANE_SENDING = ("until_decoded", "one_shot")
LANE_CODECS = ("raptorq", "rs")
LANE_DISSEMINATION = ("certified", "carried")
LANE_POA_SIGNATURES = ("bls", "ed25519")
LANE_ONLY_BEHAVIOURS = ("withhold_bundles",)  # honest in consensus: outside the 1/3 bound
CERTIFIED_FEEDBACK_EXTRA_SLOTS = 2  # certified senders learn a slot's outcome from PoAs
MAX_LOOKAHEAD_SLOTS = 7  # below the lane proposer's window of 8 future slots
RATCHET_POLICIES = ("exclude", "keep_redeemed")
SENDER_ATTACKS = ("duplicate_across_lanes", "junk_commitments", "replay_after_decide")
MAX_ATTACK_COUNT = 10_000
DEFAULT_SENDER_BALANCE = 1_000_000_000


class ScenarioError(ValueError):
    """A scenario is invalid; the message names the key and why."""


@dataclass(frozen=True, slots=True)
class ByzantineSpec:
    node: int
    behaviour: str
    rounds: frozenset[int] | None = None  # None: every round
    targets: tuple[int, ...] | None = None
    target_senders: tuple[int, ...] | None = None  # withhold_bundles: None = every sender
    strategy: str | None = None  # withhold_bundles: the cartel's strategy (default withhold_all)
    theta: int | None = None  # withhold_bundles, strategy "threshold": θ (default Δ + 1)


@dataclass(frozen=True, slots=True)
class Expectations:
    """The `[expect]` table: outcomes a scenario is about, checked like invariants."""

    no_tc_rounds: tuple[int, ...] = ()
    qc_rounds: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class LanesConfig:
    """The `[lanes]` table: Sedna senders and lanes inside the run (netsim.lanes)."""

    payloads: int = 20
    payload_bytes: int = 2048
    kappa: int = 8
    bundles_per_slot: int = 4
    policy: str = "fresh"
    ratchet: bool = False
    senders: int = 1
    interval_slots: int = 1
    first_slot: int = 4
    lookahead_slots: int = 4
    sending: str = "until_decoded"
    one_shot_slots: int = 1
    loss: float = 0.0
    codec: str = "raptorq"
    cap_factor: int = 4
    decode_margin_symbols: int = 2
    corrupt_senders: tuple[int, ...] = ()
    ratchet_policy: str | None = None  # None: "exclude" if ratchet else no ratchet
    feedback_slots: int | None = None  # keep_redeemed only; None: lookahead_slots
    tracker_capacity: int = 4096
    dissemination: str = "certified"  # "certified" (lane chains, PoAs, tip cuts) | "carried"
    poa_signatures: str = "bls"  # "bls" (one aggregate per PoA) | "ed25519" (f+1 signatures)
    payload_rate_per_s: float | None = None  # None: per slot (interval_slots); else arrivals

    @property
    def effective_ratchet(self) -> str:
        """ "none" | "exclude" | "keep_redeemed"."""
        if self.ratchet_policy is not None:
            return self.ratchet_policy
        return "exclude" if self.ratchet else "none"

    @property
    def knowledge_lag_slots(self) -> int:
        """When netsim senders know slot s's outcome: when they plan slot s + this.
        Carried: at finality (`lookahead_slots`). Certified: from PoAs, which form about
        a latency after the first honest finality of the slot's height, so two slots later
        (measured: every PoA of the shipped ratchet scenario within 5 slots of planning)."""
        extra = CERTIFIED_FEEDBACK_EXTRA_SLOTS if self.dissemination == "certified" else 0
        return self.lookahead_slots + extra

    @property
    def effective_feedback_slots(self) -> int:
        """keep_redeemed's d: the scenario's, or what netsim senders really have."""
        if self.feedback_slots is not None:
            return self.feedback_slots
        return self.knowledge_lag_slots

    def lane_params(self) -> Any:
        """The chain-wide `LaneParams` giving exactly `kappa` bundles for `payload_bytes`."""
        from consensus.lanes.params import params_for_kappa

        return params_for_kappa(
            self.payload_bytes,
            self.kappa,
            codec_id=self.codec,
            decode_margin_symbols=self.decode_margin_symbols,
            cap_factor=self.cap_factor,
        )


@dataclass(frozen=True, slots=True)
class LedgerConfig:
    """The `[ledger]` table: genesis balance per sender, ticket fee, bounty per payload."""

    sender_balance: int = DEFAULT_SENDER_BALANCE
    fee: int = 1
    bounty: int = 0


@dataclass(frozen=True, slots=True)
class SenderAttack:
    """One `[[sender_attack]]` table: an attacking sender entity (netsim.lane_attacks)."""

    kind: str
    from_slot: int
    count: int


@dataclass(frozen=True, slots=True)
class Scenario:
    validators: int
    protocol: str = "monadbft"
    stake: tuple[int, ...] | None = None
    seed: int = 1
    until_ms: float = 20_000.0
    until_blocks: int | None = None
    description: str = ""
    scheme: str = "trusted"
    verification: str = "shared"  # netsim.verify_cache: "shared" | "per_node"
    schedule: str = "round-robin"
    payload_bytes: int = 16
    tie_break: str = "fifo"
    liveness_ms: float | None = None
    delta_ms: float = 100.0
    vote_pace_ms: float = 0.0
    round_timeout_ms: float | None = None
    timeout_backoff: float = 1.0
    max_round_timeout_ms: float = 30_000.0
    network: NetworkConfig = field(default_factory=NetworkConfig)
    faults: tuple[Fault, ...] = ()
    byzantine: tuple[ByzantineSpec, ...] = ()
    lanes: LanesConfig | None = None
    expect: Expectations = field(default_factory=Expectations)
    source: str = "<memory>"
    ledger: LedgerConfig | None = None  # with [lanes]: the [ledger] table or its defaults
    sender_attacks: tuple[SenderAttack, ...] = ()

    @property
    def stakes(self) -> tuple[int, ...]:
        return self.stake if self.stake is not None else (1,) * self.validators

    @property
    def byzantine_nodes(self) -> frozenset[int]:
        return frozenset(spec.node for spec in self.byzantine)

    @property
    def crashed_nodes(self) -> frozenset[int]:
        return frozenset(f.node for f in self.faults if isinstance(f, Crash))

    def with_(self, **changes: Any) -> Scenario:
        return replace(self, **changes)


# ----------------------------------------------------------------------------- reading


class _Table:
    """Typed, strict reader of one TOML table; `done()` rejects keys nobody read."""

    def __init__(self, data: Any, path: str):
        if not isinstance(data, dict):
            raise ScenarioError(f"{path or 'scenario'}: expected a table, got {_kind(data)}")
        self.data = data
        self.path = path
        self.read: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def has(self, name: str) -> bool:
        return name in self.data

    def raw(self, name: str) -> Any:
        self.read.add(name)
        return self.data.get(name)

    def get(
        self,
        name: str,
        convert: Callable[[Any, str], Any],
        default: Any = None,
        required: bool = False,
    ) -> Any:
        self.read.add(name)
        if name not in self.data:
            if required:
                raise ScenarioError(f"{self.key(name)}: required key is missing")
            return default
        return convert(self.data[name], self.key(name))

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.read)
        if unknown:
            raise ScenarioError(f"{self.key(unknown[0])}: unknown key")


def _kind(value: Any) -> str:
    return {dict: "a table", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def _number(low: float = -math.inf, high: float = math.inf, *, low_open: bool = False):
    def convert(value: Any, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ScenarioError(f"{key}: expected a number, got {_kind(value)}")
        value = float(value)
        if not math.isfinite(value):
            raise ScenarioError(f"{key}: must be finite, got {value}")
        if value < low or (low_open and value == low) or value > high:
            bound = f"> {low}" if low_open else f">= {low}"
            raise ScenarioError(f"{key}: must be {bound} and <= {high}, got {value:g}")
        return value

    return convert


def _integer(low: int = -(2**63), high: int = 2**63 - 1):
    def convert(value: Any, key: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ScenarioError(f"{key}: expected an integer, got {_kind(value)}")
        if not low <= value <= high:
            raise ScenarioError(f"{key}: must be in [{low}, {high}], got {value}")
        return value

    return convert


def _choice(options: tuple[str, ...]):
    def convert(value: Any, key: str) -> str:
        if not isinstance(value, str):
            raise ScenarioError(f"{key}: expected a string, got {_kind(value)}")
        if value not in options:
            raise ScenarioError(f"{key}: unknown value {value!r}; choose one of {list(options)}")
        return value

    return convert


def _string(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise ScenarioError(f"{key}: expected a string, got {_kind(value)}")
    return value


def _int_list(low: int, high: int, *, unique: bool = True, max_len: int = MAX_VALIDATORS):
    def convert(value: Any, key: str) -> tuple[int, ...]:
        if not isinstance(value, list):
            raise ScenarioError(f"{key}: expected an array of integers, got {_kind(value)}")
        if len(value) > max_len:
            raise ScenarioError(f"{key}: at most {max_len} entries, got {len(value)}")
        items = tuple(_integer(low, high)(item, f"{key}[{i}]") for i, item in enumerate(value))
        if unique and len(set(items)) != len(items):
            raise ScenarioError(f"{key}: entries must be distinct, got {list(items)}")
        return items

    return convert


def _latency(table: _Table) -> Latency:
    raw = table.raw("latency_ms")
    key = table.key("latency_ms")
    model = table.get("latency_model", _choice(LATENCY_KINDS))
    shape = table.get("latency_shape", _number(0, 100, low_open=True), default=1.5)
    if raw is None:
        low = high = 1.0
    elif isinstance(raw, list):
        if len(raw) != 2:
            raise ScenarioError(f"{key}: expected one number or [lo, hi], got {len(raw)} entries")
        low = _number(0, 1e7)(raw[0], f"{key}[0]")
        high = _number(0, 1e7)(raw[1], f"{key}[1]")
        if high < low:
            raise ScenarioError(f"{key}: needs lo <= hi, got [{low:g}, {high:g}]")
    else:
        low = high = _number(0, 1e7)(raw, key)
    if model is None:
        model = "uniform" if low != high else "constant"
    if model in ("pareto", "lognormal") and not isinstance(raw, list):
        raise ScenarioError(f"{key}: latency_model {model!r} needs [scale, cap]")
    if model in ("pareto",) and low <= 0:
        raise ScenarioError(f"{key}: a pareto scale must be > 0")
    return Latency(model, low, high, shape)


def _network(data: Any) -> tuple[NetworkConfig, float]:
    table = _Table(data if data is not None else {}, "network")
    latency = _latency(table)
    probability = _number(0.0, 1.0)
    config = NetworkConfig(
        latency=latency,
        loss=table.get("loss", probability, default=0.0),
        duplicate=table.get("duplicate", probability, default=0.0),
        reorder=table.get("reorder", probability, default=0.0),
        reorder_ms=table.get("reorder_ms", _number(0, 1e7), default=0.0),
        bandwidth_mbps=table.get("bandwidth_mbps", _number(0, 1e7, low_open=True)),
        max_queue_ms=table.get("max_queue_ms", _number(0, 1e7, low_open=True), default=10_000.0),
    )
    delta_ms = table.get("delta_ms", _number(0, 1e7, low_open=True), default=100.0)
    if config.reorder > 0 and config.reorder_ms == 0:
        raise ScenarioError("network.reorder_ms: must be > 0 when network.reorder > 0")
    table.done()
    return config, delta_ms


def _array_of_tables(data: dict, name: str) -> list[_Table]:
    value = data.get(name, [])
    if not isinstance(value, list):
        raise ScenarioError(f"{name}: expected an array of tables ([[{name}]]), got {_kind(value)}")
    return [_Table(item, f"{name}[{i}]") for i, item in enumerate(value)]


def _time(high: float = MAX_UNTIL_MS):
    return _number(0.0, high)


def parse_scenario(data: dict[str, Any], source: str = "<memory>") -> Scenario:
    """Validate a decoded TOML document into a `Scenario`. Raises `ScenarioError`."""
    top = _Table(data, "")
    n = top.get("validators", _integer(1, MAX_VALIDATORS), required=True)
    node = _integer(0, n - 1)
    protocol = top.get("protocol", _choice(PROTOCOLS), default="monadbft")
    stake = top.get("stake", _int_list(1, 2**40, unique=False))
    if stake is not None and len(stake) != n:
        raise ScenarioError(f"stake: has {len(stake)} entries but validators = {n}")
    seed = top.get("seed", _integer(0, 2**63 - 1), default=1)
    until_ms = top.get("until_ms", _number(0, MAX_UNTIL_MS, low_open=True), default=20_000.0)
    until_blocks = top.get("until_blocks", _integer(1, 10**9))
    description = top.get("description", _string, default="")
    scheme = top.get("scheme", _choice(SCHEMES), default="trusted")
    verification = top.get("verification", _choice(VERIFICATION_MODES), default="shared")
    schedule = top.get("schedule", _choice(SCHEDULES), default="round-robin")
    payload_bytes = top.get("payload_bytes", _integer(0, 1 << 20), default=16)
    tie_break = top.get("tie_break", _choice(("fifo", "random")), default="fifo")
    liveness_ms = top.get("liveness_ms", _number(0, MAX_UNTIL_MS, low_open=True))

    network, delta_ms = _network(top.raw("network"))

    core = _Table(top.raw("core") or {}, "core")
    vote_pace_ms = core.get("vote_pace_ms", _number(0, 1e7), default=0.0)
    round_timeout_ms = core.get("round_timeout_ms", _number(0, 1e7, low_open=True))
    timeout_backoff = core.get("timeout_backoff", _number(1.0, 10.0), default=1.0)
    max_round_timeout_ms = core.get(
        "max_round_timeout_ms", _number(0, 1e8, low_open=True), default=30_000.0
    )
    core.done()

    partitions: list[Partition] = []
    for table in _array_of_tables(data, "partition"):
        top.read.add("partition")
        groups_raw = table.get("groups", _groups_reader(n), required=True)
        from_ms = table.get("from_ms", _time(), default=0.0)
        to_ms = table.get("to_ms", _time(), default=MAX_UNTIL_MS)
        if to_ms <= from_ms:
            raise ScenarioError(f"{table.key('to_ms')}: must be later than from_ms ({from_ms:g})")
        table.done()
        partitions.append(Partition(tuple(frozenset(g) for g in groups_raw), from_ms, to_ms))

    links: list[LinkRule] = []
    for table in _array_of_tables(data, "link"):
        top.read.add("link")
        link_latency = None
        if table.has("latency_ms"):
            sub = _Table({"latency_ms": table.raw("latency_ms")}, table.path)
            link_latency = _latency(sub)
        from_ms = table.get("from_ms", _time(), default=0.0)
        to_ms = table.get("to_ms", _time(), default=math.inf)
        if to_ms <= from_ms:
            raise ScenarioError(f"{table.key('to_ms')}: must be later than from_ms ({from_ms:g})")
        links.append(
            LinkRule(
                src=table.get("src", node),
                dst=table.get("dst", node),
                message=table.get("message", _choice(MESSAGE_TAGS)),
                from_ms=from_ms,
                to_ms=to_ms,
                loss=table.get("loss", _number(0.0, 1.0)),
                latency=link_latency,
                extra_delay_ms=table.get("extra_delay_ms", _number(0, 1e7), default=0.0),
            )
        )
        table.done()
    network = replace(network, partitions=tuple(partitions), links=tuple(links))

    faults: list[Fault] = []
    for table in _array_of_tables(data, "crash"):
        top.read.add("crash")
        crash_node = table.get("node", node, required=True)
        at_ms = table.get("at_ms", _time())
        at_round = table.get("at_round", _integer(1, 2**40))
        restart_ms = table.get("restart_ms", _time())
        restart_after_ms = table.get("restart_after_ms", _number(0, MAX_UNTIL_MS, low_open=True))
        table.done()
        try:
            faults.append(Crash(crash_node, at_ms, at_round, restart_ms, restart_after_ms))
        except ValueError as exc:
            raise ScenarioError(f"{table.path}: {exc}") from None
    for table in _array_of_tables(data, "pause"):
        top.read.add("pause")
        pause_node = table.get("node", node, required=True)
        from_ms = table.get("from_ms", _time(), required=True)
        to_ms = table.get("to_ms", _time(), required=True)
        table.done()
        if to_ms <= from_ms:
            raise ScenarioError(f"{table.key('to_ms')}: must be later than from_ms ({from_ms:g})")
        faults.append(Pause(pause_node, from_ms, to_ms))
    for table in _array_of_tables(data, "clock"):
        top.read.add("clock")
        clock_node = table.get("node", node, required=True)
        offset_ms = table.get("offset_ms", _number(-1e9, 1e9), required=True)
        table.done()
        faults.append(ClockOffset(clock_node, offset_ms))

    lanes = _lanes(top.raw("lanes"), n) if top.has("lanes") else None
    ledger = _ledger(top.raw("ledger")) if lanes is not None else None
    if top.has("ledger") and lanes is None:
        raise ScenarioError("ledger: needs [lanes]")
    sender_attacks = _sender_attacks(data, lanes is not None, n)

    expect_table = _Table(top.raw("expect") or {}, "expect")
    rounds_list = _int_list(1, 2**40, max_len=10_000)
    expect = Expectations(
        no_tc_rounds=expect_table.get("no_tc_rounds", rounds_list, default=()),
        qc_rounds=expect_table.get("qc_rounds", rounds_list, default=()),
    )
    expect_table.done()

    byzantine: list[ByzantineSpec] = []
    for table in _array_of_tables(data, "byzantine"):
        top.read.add("byzantine")
        byz_node = table.get("node", node, required=True)
        behaviour = table.get("behaviour", _choice(tuple(BEHAVIOURS)), required=True)
        rounds = table.get("rounds", _int_list(1, 2**40))
        targets = table.get("targets", _int_list(0, n - 1))
        target_senders = None
        strategy = theta = None
        if behaviour != "withhold_bundles":
            for key in ("strategy", "theta"):
                if table.raw(key) is not None:
                    raise ScenarioError(f"{table.key(key)}: only 'withhold_bundles' takes it")
        if behaviour == "drop_lane_blocks":
            if lanes is None:
                raise ScenarioError(f"{table.key('behaviour')}: 'drop_lane_blocks' needs [lanes]")
            if rounds is not None or targets is not None:
                bad = "rounds" if rounds is not None else "targets"
                raise ScenarioError(f"{table.key(bad)}: not used by 'drop_lane_blocks'")
        if behaviour == "withhold_bundles":
            if lanes is None:
                raise ScenarioError(f"{table.key('behaviour')}: 'withhold_bundles' needs [lanes]")
            if rounds is not None or targets is not None:
                bad = "rounds" if rounds is not None else "targets"
                raise ScenarioError(
                    f"{table.key(bad)}: not used by 'withhold_bundles' (use target_senders)"
                )
            target_senders = table.get("target_senders", _int_list(0, lanes.senders - 1))
            if target_senders is not None and not target_senders:
                raise ScenarioError(
                    f"{table.key('target_senders')}: must not be empty (omit it for all senders)"
                )
            strategy = table.get("strategy", _choice(CARTEL_STRATEGIES))
            theta = table.get("theta", _integer(1, 1 << 20))
            if theta is not None and strategy != "threshold":
                raise ScenarioError(f"{table.key('theta')}: only strategy 'threshold' takes it")
        table.done()
        if rounds is not None and not rounds:
            raise ScenarioError(
                f"{table.key('rounds')}: must not be empty (omit it for all rounds)"
            )
        if targets is not None and byz_node in targets:
            raise ScenarioError(f"{table.key('targets')}: must not contain the node itself")
        byzantine.append(
            ByzantineSpec(
                byz_node,
                behaviour,
                frozenset(rounds) if rounds else None,
                targets,
                target_senders,
                strategy,
                theta,
            )
        )
    pairs = [(spec.node, spec.behaviour) for spec in byzantine]
    if len(set(pairs)) != len(pairs):
        duplicate = next(x for x in pairs if pairs.count(x) > 1)
        raise ScenarioError(
            f"byzantine: node {duplicate[0]} lists behaviour {duplicate[1]!r} twice"
        )
    cartel = {
        (spec.strategy or "withhold_all", spec.theta)
        for spec in byzantine
        if spec.behaviour == "withhold_bundles"
    }
    if len(cartel) > 1:
        raise ScenarioError(
            "byzantine: the withhold_bundles nodes form one cartel and need one strategy "
            f"(and theta), got {sorted(cartel, key=str)}"
        )
    # withholding lanes follow consensus (their votes and blocks are honest): the
    # one-third bound is about the nodes that deviate in consensus
    nodes = [spec.node for spec in byzantine if spec.behaviour not in LANE_ONLY_BEHAVIOURS]
    stakes = stake if stake is not None else (1,) * n
    byz_stake = sum(stakes[i] for i in set(nodes))
    if byz_stake > 0 and 3 * byz_stake >= sum(stakes):
        raise ScenarioError(
            f"byzantine: Byzantine stake {byz_stake} of {sum(stakes)} is not below one third; "
            "the protocol promises nothing then"
        )
    names = (
        "partition",
        "link",
        "crash",
        "pause",
        "clock",
        "byzantine",
        "network",
        "core",
        "lanes",
        "ledger",
        "sender_attack",
        "expect",
    )
    for name in names:
        top.read.add(name)
    top.done()
    return Scenario(
        validators=n,
        protocol=protocol,
        stake=stake,
        seed=seed,
        until_ms=until_ms,
        until_blocks=until_blocks,
        description=description,
        scheme=scheme,
        verification=verification,
        schedule=schedule,
        payload_bytes=payload_bytes,
        tie_break=tie_break,
        liveness_ms=liveness_ms,
        delta_ms=delta_ms,
        vote_pace_ms=vote_pace_ms,
        round_timeout_ms=round_timeout_ms,
        timeout_backoff=timeout_backoff,
        max_round_timeout_ms=max_round_timeout_ms,
        network=network,
        faults=tuple(faults),
        byzantine=tuple(byzantine),
        lanes=lanes,
        expect=expect,
        source=source,
        ledger=ledger,
        sender_attacks=sender_attacks,
    )


def _boolean(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ScenarioError(f"{key}: expected a boolean, got {_kind(value)}")
    return value


def _lanes(data: Any, validators: int) -> LanesConfig:
    """The `[lanes]` table; the (payload_bytes, kappa) pair must have a lane layout."""
    from consensus.lanes.params import LaneParamsError

    table = _Table(data, "lanes")
    senders = table.get("senders", _integer(1, 256), default=1)
    config = LanesConfig(
        payloads=table.get("payloads", _integer(0, 10_000), default=20),
        payload_bytes=table.get("payload_bytes", _integer(0, 1 << 20), default=2048),
        kappa=table.get("kappa", _integer(1, 4096), default=8),
        bundles_per_slot=table.get("bundles_per_slot", _integer(1, validators), default=4),
        policy=table.get("policy", _choice(LANE_POLICIES), default="fresh"),
        ratchet=table.get("ratchet", _boolean, default=False),
        senders=senders,
        interval_slots=table.get("interval_slots", _integer(1, 10_000), default=1),
        first_slot=table.get("first_slot", _integer(1, 10**9), default=4),
        lookahead_slots=table.get("lookahead_slots", _integer(1, MAX_LOOKAHEAD_SLOTS), default=4),
        sending=table.get("sending", _choice(LANE_SENDING), default="until_decoded"),
        one_shot_slots=table.get("one_shot_slots", _integer(1, 1000), default=1),
        loss=table.get("loss", _number(0.0, 1.0), default=0.0),
        codec=table.get("codec", _choice(LANE_CODECS), default="raptorq"),
        cap_factor=table.get("cap_factor", _integer(1, 64), default=4),
        decode_margin_symbols=table.get("decode_margin_symbols", _integer(0, 63), default=2),
        corrupt_senders=table.get("corrupt_senders", _int_list(0, senders - 1), default=()),
        ratchet_policy=table.get("ratchet_policy", _choice(RATCHET_POLICIES)),
        feedback_slots=table.get("feedback_slots", _integer(1, 10_000)),
        tracker_capacity=table.get("tracker_capacity", _integer(1, 1 << 20), default=4096),
        dissemination=table.get("dissemination", _choice(LANE_DISSEMINATION), default="certified"),
        poa_signatures=table.get("poa_signatures", _choice(LANE_POA_SIGNATURES), default="bls"),
        payload_rate_per_s=table.get("payload_rate_per_s", _number(0, 1e6, low_open=True)),
    )
    if table.has("ratchet") and table.has("ratchet_policy") and not config.ratchet:
        raise ScenarioError("lanes.ratchet: false contradicts lanes.ratchet_policy")
    if config.feedback_slots is not None:
        if config.effective_ratchet != "keep_redeemed":
            raise ScenarioError(
                "lanes.feedback_slots: only used by ratchet_policy = 'keep_redeemed'"
            )
        # rule: a sender cannot use an outcome before it learns it
        if config.feedback_slots < config.knowledge_lag_slots:
            extra = (
                " + 2 (certified lanes: from PoAs)" if config.dissemination == "certified" else ""
            )
            raise ScenarioError(
                f"lanes.feedback_slots: {config.feedback_slots} is below lookahead_slots"
                f"{extra} ({config.knowledge_lag_slots}): netsim senders learn slot s's "
                f"outcome only when planning slot s + {config.knowledge_lag_slots}"
            )
    if config.payload_rate_per_s is not None and table.has("interval_slots"):
        raise ScenarioError("lanes.interval_slots: not used with lanes.payload_rate_per_s")
    if config.effective_ratchet == "keep_redeemed" and config.policy == "all":
        raise ScenarioError(
            "lanes.ratchet_policy: 'keep_redeemed' addresses bundles_per_slot lanes; "
            "policy 'all' addresses every lane"
        )
    table.done()
    # rule: one bundle per lane per slot, so m <= N (also when m is the default)
    if config.policy != "all" and config.bundles_per_slot > validators:
        raise ScenarioError(
            f"lanes.bundles_per_slot: {config.bundles_per_slot} is more than the "
            f"{validators} lanes (validators)"
        )
    try:
        config.lane_params()
    except LaneParamsError as exc:
        raise ScenarioError(f"lanes.kappa: {exc}") from None
    return config


def _ledger(data: Any) -> LedgerConfig:
    """The `[ledger]` table (defaults when absent)."""
    table = _Table(data if data is not None else {}, "ledger")
    amount = _integer(0, 2**40)
    config = LedgerConfig(
        sender_balance=table.get("sender_balance", amount, default=DEFAULT_SENDER_BALANCE),
        fee=table.get("fee", _integer(0, 2**30), default=1),
        bounty=table.get("bounty", _integer(0, 2**30), default=0),
    )
    table.done()
    return config


def _sender_attacks(data: dict, has_lanes: bool, validators: int) -> tuple[SenderAttack, ...]:
    attacks = []
    for table in _array_of_tables(data, "sender_attack"):
        if not has_lanes:
            raise ScenarioError(f"{table.path}: needs [lanes]")
        attack = SenderAttack(
            kind=table.get("kind", _choice(SENDER_ATTACKS), required=True),
            from_slot=table.get("from_slot", _integer(1, 10**9), required=True),
            count=table.get("count", _integer(1, MAX_ATTACK_COUNT), required=True),
        )
        table.done()
        if attack.kind == "duplicate_across_lanes" and validators < 2:
            raise ScenarioError(f"{table.key('kind')}: needs at least 2 lanes (validators)")
        attacks.append(attack)
    return tuple(attacks)


def _groups_reader(n: int):
    def convert(value: Any, key: str) -> tuple[tuple[int, ...], ...]:
        if not isinstance(value, list) or not value:
            raise ScenarioError(f"{key}: expected a non-empty array of node arrays")
        groups = tuple(_int_list(0, n - 1)(group, f"{key}[{i}]") for i, group in enumerate(value))
        seen: set[int] = set()
        for group in groups:
            both = seen & set(group)
            if both:
                raise ScenarioError(f"{key}: node {min(both)} is in two groups")
            seen |= set(group)
        return groups

    return convert


def parse_scenario_text(text: str, source: str = "<memory>") -> Scenario:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: not valid TOML: {exc}") from None
    return parse_scenario(data, source)


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ScenarioError(f"{path}: not UTF-8 text") from None
    return parse_scenario_text(text, str(path))
