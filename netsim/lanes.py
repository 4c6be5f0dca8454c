"""Sedna lanes inside netsim: senders, lane proposers, lane payloads and decode trackers.

Built from a scenario's `[lanes]` table (`netsim.scenario.LanesConfig`) on top of the
pure lane layer (`consensus.lanes`, docs/lanes.md). One `LaneSim` per run:

- **Params.** `params_for_kappa(payload_bytes, kappa)` gives the chain-wide `LaneParams`
  (symbol size T, bundle size s_b); every node uses the same.
- **Validators.** Every validator i is lane i: a `LaneProposer` (per life of the node;
  `withhold_bundles` nodes get a withholding policy sharing one `CartelPool`, whose
  `CartelBook` holds what every member admitted and applies the cartel's strategy,
  `consensus.lanes.cartel`), a
  `LanePayloadValidator` as its core's `block_validator`, and a `DecodeTracker` fed every
  block its `CommitBlocks` command finalizes. A restarted node rebuilds its tracker by
  replaying its simulated disk (finalized ids and persisted bodies); its lane proposer
  starts empty (pending bundles lived in memory).
- **Senders** are workload entities, not validators: all their draws (payload bytes, AONT
  key, lane-draw seed, delivery latency and loss) come from the *workload* stream. One
  `consensus.lanes.Sender` per payload (the ratchet and lane draws are per payload).
  Senders follow the finalized chain: whenever an honest node is the first to finalize
  height F, its tracker outcome is fed to every undecided payload (redemptions, ratchet,
  decided), and heights up to F + `lookahead_slots` are planned. Sending policy:
  `until_decoded` (fresh bundles every slot until decided or the stream cap) or
  `one_shot` (only the payload's first `one_shot_slots` slots, whatever the feedback).
- **Bundles travel privately** sender -> lane as simulated messages (`LaneSubmission`,
  the encoded `LaneEntry` bytes), delivered to the lane's node after a latency drawn
  from the scenario's global latency model and lost with probability `[lanes] loss`.
  Senders are outside the validator network: partitions and link rules do not apply to
  them; a crashed lane loses them, a paused one receives them when it resumes.
- **Two modes** (`[lanes] dissemination`). Certified (the default): every node also runs
  the availability layer (`netsim.certified_lanes`, docs/netsim.md "Certified lanes"):
  lane chains broadcast by their lanes, votes, PoAs, fetches as simulated messages, the
  leader's block carries a cut, the tracker runs the lane blocks a finalized cut
  finalizes, and senders learn redemptions from PoAs. Carried (below): lane blocks ride
  in the leader's block.
- **Carried: lane blocks reach the block in full.** The driver answers a core's
  `RequestPayload(seq_num=h)` itself (the engine's random payload is not used): it
  collects `seal(h)` from every lane the leader can reach at that instant (up, not
  paused, not partitioned from the leader) and proposes
  `build_block_payload([tx], lane_blocks)`, `tx` being `payload_bytes` workload bytes
  (none when 0). The lane -> leader hop takes zero simulated time (deviation: it is not
  a separate message). A lane that sees height h finalized without having sealed it
  seals it then (closing the slot).
- **Invariant.** `ExecutionOrderChecker`: honest nodes that processed height h have the
  same `execution_order_hash` after h (violations are reported as `LANES ...`).
- **Ledger.** Every node's tracker keeps a `Ledger` (genesis: `[ledger] sender_balance`
  for every sender, attackers included), and its lane proposer checks funds at admission.
  Senders pay exactly the `[ledger] fee` per ticket. The report adds `fees_charged` and
  `bounties_paid` (the senders' view of the chain) and `ledger_hash` per node.
- **Attacks** (issue 10). `drop_lane_blocks` leaders propose only their own lane's block
  (omissions counted per leader); `[[sender_attack]]` entities (`netsim.lane_attacks`)
  plan their submissions with the honest senders and learn the same outcomes.
- **Ratchet feedback.** A sender plans slot s when the chain view reaches s −
  `lookahead_slots`, so that is when it knows slot s − lookahead's outcome: the
  `keep_redeemed` ratchet's `feedback_slots` defaults to `lookahead_slots` (and cannot be
  smaller), and the sender uses slot s's outcome exactly from slot s + d on.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter, OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from consensus.aggregate import AggregateKeySet, aggregate_scheme_for
from consensus.crypto import KeyPair, SignatureScheme, derive_keys
from consensus.events import (
    Broadcast,
    CommitBlocks,
    MessageReceived,
    PayloadReady,
    PersistBlock,
    RequestPayload,
    Send,
    Start,
    Trace,
)
from consensus.lanes.availability import (
    AvailabilityLayer,
    CutFinalized,
    HeightReached,
    LaneMessageReceived,
    LanesFinalized,
    RecoveredLanes,
    ServeFromStorage,
    StoreLaneBlock,
)
from consensus.lanes.cartel import CartelStrategy
from consensus.lanes.chain import (
    LANE_MESSAGE_TYPES,
    AggregatePoa,
    ChainBlockChecker,
    Ed25519Poa,
    LaneTip,
    PoaScheme,
)
from consensus.lanes.cut import (
    CutValidator,
    build_cut_payload,
    cut_tips,
    decode_cut_payload,
    finalized_order,
)
from consensus.lanes.encoding import EncodedPayload, encode_payload
from consensus.lanes.ledger import Ledger, LedgerParams
from consensus.lanes.merkle import MerkleTree, bundle_leaf
from consensus.lanes.params import LaneParams, PayloadLayout, layout_for
from consensus.lanes.payload import LanePayloadValidator, build_block_payload
from consensus.lanes.proposer import CartelPool, LaneProposer, WithholdPolicy
from consensus.lanes.sender import (
    AddressPolicy,
    OutgoingPayload,
    RatchetPolicy,
    Sender,
    SenderConfig,
)
from consensus.lanes.tracker import BlockOutcome, DecodeTracker, Redemption
from consensus.lanes.wire import (
    Bundle,
    LaneBlock,
    LaneEntry,
    commitment_id,
    encode,
    encode_lane_entry,
)
from consensus.messages import MAX_PAYLOAD_BYTES
from consensus.validators import ValidatorSet
from netsim.certified_lanes import (
    CertifiedNode,
    DecodeMemo,
    DigestMemo,
    LaneDisk,
    replay_segments,
)
from netsim.engine import Disk, Observer, Simulator
from netsim.lane_attacks import ATTACKS, AttackContext, AttackingSender
from netsim.scenario import LedgerConfig, Scenario

SENDER_KEY_SEED = b"sedna-netsim/senders"
ATTACKER_KEY_SEED = b"sedna-netsim/attackers"
MAX_CHECKED_HEIGHTS = 4096  # heights the execution-order checker remembers
MAX_VIOLATIONS = 200
MAX_CHAINED_PROPOSALS = 64  # RequestPayloads answered within one handled event
MAX_REDEEMED_SLOTS = 1 << 16  # redemptions remembered per payload (bounded by its cap)


class LaneSubmission(msgspec.Struct, frozen=True, tag="lane_submission"):
    """A sender's bundle (an encoded `LaneEntry`) on its private way to lane `lane`."""

    sender: int
    lane: int
    data: bytes


@dataclass
class SenderWithholdPolicy(WithholdPolicy):
    """Withhold bundles of the given senders' payloads only (None: every payload)."""

    senders: frozenset[bytes] | None = None

    def withholds(self, entry: LaneEntry) -> bool:
        return self.senders is None or entry.bundle.commitment.sender in self.senders


def cartel_strategy(scenario: Scenario, m: int) -> CartelStrategy:
    """The cartel's strategy from its `withhold_bundles` tables (one for all, checked by
    the scenario parser); m is the senders' bundles per slot (their public policy)."""
    for spec in scenario.byzantine:
        if spec.behaviour == "withhold_bundles" and spec.strategy is not None:
            return CartelStrategy(spec.strategy, m=m, theta=spec.theta)
    return CartelStrategy("withhold_all", m=m)


@dataclass
class PayloadRecord:
    """One payload of one sender, as the senders and the chain view see it."""

    label: str  # "s{sender}/p{seq}"
    sender: int
    seq: int
    first_slot: int
    corrupt: bool
    cid: bytes = b""
    outgoing: Sender | None = None
    status: str = "scheduled"  # scheduled | pending | executed | rejected | expired
    decided_height: int | None = None
    decode_slot: int | None = None  # the κ-th smallest slot of its counted bundles
    redeemed_slots: list[int] = field(default_factory=list)  # slot of every finalized ticket
    redeemed_bundles: list[tuple[int, int]] = field(default_factory=list)  # (slot, index)
    bundles_sent: int = 0
    bundles_lost: int = 0
    wire_bytes: int = 0  # encoded LaneEntry bytes (symbols, proof, commitment, ticket)
    symbol_bytes: int = 0  # s_b * T per bundle
    started_ms: float | None = None  # simulated time its first slot was planned
    arrival_ms: float | None = None  # payload_rate_per_s: when it arrived (else started_ms)
    decided_ms: float | None = None  # simulated time the senders learned its decision


@dataclass
class LaneNode:
    """One life of one node's lane state."""

    proposer: LaneProposer
    tracker: DecodeTracker
    broken: str | None = None  # the tracker lost the chain (a finalized body not on disk)
    honest_bundles_dropped: int = 0  # honest senders' bundles its tracker had no room for
    certified: CertifiedNode | None = None  # dissemination = "certified"


class ExecutionOrderChecker:
    """Flags honest nodes whose execution-order hash differs after the same height."""

    def __init__(self) -> None:
        self._first: OrderedDict[int, tuple[int, bytes]] = OrderedDict()
        self.violations: list[str] = []
        self.violation_count = 0
        self.compared = 0

    def record(self, node: int, height: int, digest: bytes) -> None:
        first = self._first.get(height)
        if first is None:
            self._first[height] = (node, digest)
            while len(self._first) > MAX_CHECKED_HEIGHTS:
                self._first.popitem(last=False)
            return
        self.compared += 1
        if first[1] != digest:  # rule: the same finalized chain executes identically
            self.violation_count += 1
            text = (
                f"LANES execution order diverged at height {height}: node {node} "
                f"{digest.hex()[:16]} != node {first[0]} {first[1].hex()[:16]}"
            )
            if len(self.violations) < MAX_VIOLATIONS:
                self.violations.append(text)


def forged_encoding(
    params: LaneParams,
    payload: bytes,
    aont_key: bytes,
    sender: bytes,
    junk: bytes,
    expiry_slot: int,
) -> EncodedPayload:
    """A lying sender: the first half of the committed stream is the honest encoding of
    `payload`, the rest are symbols derived from `junk`. Every bundle has a valid Merkle
    proof, so lanes admit it; decoding then fails the commitment check."""
    honest = encode_payload(params, payload, aont_key, sender, expiry_slot=expiry_slot)
    layout = honest.layout
    groups: list[tuple[bytes, ...]] = []
    for b in range(layout.cap_bundles):
        if b < layout.cap_bundles // 2:
            groups.append(tuple(honest.bundles[b].symbols))
        else:
            groups.append(
                tuple(
                    _expand(junk + b.to_bytes(4, "big") + j.to_bytes(2, "big"), layout)
                    for j in range(layout.symbols_per_bundle)
                )
            )
    s_b, k = layout.symbols_per_bundle, layout.source_symbols
    tree = MerkleTree([bundle_leaf(i, g, k + i * s_b) for i, g in enumerate(groups)])
    commitment = msgspec.structs.replace(honest.commitment, merkle_root=tree.root)
    bundles = tuple(Bundle(commitment, i, g, tree.proof(i)) for i, g in enumerate(groups))
    return EncodedPayload(commitment, commitment_id(commitment), layout, bundles)


def _expand(seed: bytes, layout: PayloadLayout) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < layout.symbol_size_bytes:  # bounded: T / 32 iterations
        out += hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    return bytes(out[: layout.symbol_size_bytes])


class LaneMachine:
    """Outermost wrapper of a node's machine: routes submissions, answers RequestPayload."""

    def __init__(self, inner: Any, lanes: LaneSim, index: int):
        self.inner = inner
        self.lanes = lanes
        self.index = index

    def handle(self, event: Any) -> list[Any]:
        if type(event) is MessageReceived:
            kind = type(event.message)
            if kind is LaneSubmission:
                self.lanes.on_submission(self.index, event.message)
                return []  # lane traffic never reaches the consensus core
            if kind in _LANE_MESSAGES:
                return self.lanes.on_lane_message(self.index, event.sender, event.message)
        commands = self._answer_payloads(self.inner.handle(event), event.now_ns)
        if self.lanes.certified:
            commands += self.lanes.after_core(self.index, type(event) is Start, commands)
        return commands

    def _answer_payloads(self, commands: list[Any], now_ns: int) -> list[Any]:
        """Replace each RequestPayload by a lane payload, handed back at the same instant."""
        out: list[Any] = []
        batches = deque([commands])
        answered = 0
        while batches:
            for command in batches.popleft():
                if type(command) is PersistBlock:
                    self.lanes.on_persisted(self.index, command)
                if type(command) is not RequestPayload or answered >= MAX_CHAINED_PROPOSALS:
                    out.append(command)
                    continue
                answered += 1
                payload, detail = self.lanes.build_payload(self.index, command)
                out.append(Trace("lanes_payload", detail))
                batches.append(self.inner.handle(PayloadReady(now_ns, command.round, payload)))
        return out

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.inner, name)


_LANE_MESSAGES = frozenset(LANE_MESSAGE_TYPES)


def lane_poa(
    kind: str, scheme: SignatureScheme, keys: Sequence[KeyPair], validators: ValidatorSet
) -> tuple[PoaScheme, list[Any]]:
    """The PoA scheme of `[lanes] poa_signatures` and each validator's vote-signing key."""
    if kind == "ed25519":
        return Ed25519Poa(validators, scheme), list(keys)
    aggregate = aggregate_scheme_for(scheme.name, scheme.chain_id)
    vote_keys = [aggregate.keypair(key.seed) for key in keys]
    return AggregatePoa(validators, AggregateKeySet.from_keypairs(aggregate, vote_keys)), vote_keys


class LaneSim(Observer):
    """All lane state of one run; an engine observer for `CommitBlocks` (carried mode)."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        keys: list[KeyPair],
        validators: ValidatorSet,
        scheme: SignatureScheme,
    ):
        config = scenario.lanes
        if config is None:
            raise ValueError("the scenario has no [lanes] table")
        self.config = config
        self.scenario = scenario
        self.params = config.lane_params()
        self.layout = layout_for(self.params, config.payload_bytes)
        self.kappa = self.layout.kappa
        self.n = scenario.validators
        self.m = self.n if config.policy == "all" else config.bundles_per_slot
        self.t_star = -(-self.kappa // self.m)
        self.slack = self.t_star * self.m - self.kappa
        self.keys = keys
        self.validators = validators
        self.scheme = scheme
        self.honest = frozenset(range(self.n)) - scenario.byzantine_nodes
        self.sender_keys = derive_keys(config.senders, SENDER_KEY_SEED)
        self.honest_senders = frozenset(k.public for k in self.sender_keys)
        attacker_keys = derive_keys(len(scenario.sender_attacks), ATTACKER_KEY_SEED)
        self.ledger_config = scenario.ledger or LedgerConfig()
        self.ledger_params = LedgerParams(
            fee=self.ledger_config.fee, bounty=self.ledger_config.bounty
        )
        self.genesis = {
            key.public: self.ledger_config.sender_balance
            for key in (*self.sender_keys, *attacker_keys)
        }
        self.censors = frozenset(
            spec.node for spec in scenario.byzantine if spec.behaviour == "drop_lane_blocks"
        )
        self.lane_blocks_omitted: Counter[int] = Counter()  # leader -> lane blocks left out
        self.lane_blocks_over_budget = 0  # carried: lane blocks that did not fit a body
        self.fees_charged = 0
        self.bounties_paid = 0
        self.duplicate_bundles = 0  # chain view: bundles counted before, ignored
        self.late_bundles = 0  # chain view: bundles of decided payloads, ignored
        self.attack_specs = list(zip(scenario.sender_attacks, attacker_keys, strict=True))
        self.attackers: list[AttackingSender] = []
        self.pool = CartelPool(strategy=cartel_strategy(scenario, self.m))
        self.withhold: dict[int, WithholdPolicy] = {}
        for spec in scenario.byzantine:
            if spec.behaviour == "withhold_bundles":
                targets = None
                if spec.target_senders is not None:
                    targets = frozenset(self.sender_keys[i].public for i in spec.target_senders)
                self.withhold[spec.node] = SenderWithholdPolicy(self.pool, None, targets)
        self.nodes: dict[int, LaneNode] = {}
        self.retired_rejections: Counter[str] = Counter()
        self.retired_included = 0
        self.checker = ExecutionOrderChecker()
        self.records: list[PayloadRecord] = []
        self._starting: dict[int, list[PayloadRecord]] = {}
        self._arrivals: deque[PayloadRecord] = deque()  # payload_rate_per_s, in order
        corrupt = set(config.corrupt_senders)
        if config.payload_rate_per_s is not None:
            period_ms = 1000.0 / config.payload_rate_per_s
            for k in range(config.payloads):
                sender, seq = k % config.senders, k // config.senders
                record = PayloadRecord(
                    f"s{sender}/p{seq}", sender, seq, config.first_slot, sender in corrupt
                )
                record.arrival_ms = k * period_ms
                self.records.append(record)
                self._arrivals.append(record)
        else:
            for seq in range(config.payloads):
                for sender in range(config.senders):
                    first = config.first_slot + seq * config.interval_slots
                    record = PayloadRecord(
                        f"s{sender}/p{seq}", sender, seq, first, sender in corrupt
                    )
                    self.records.append(record)
                    self._starting.setdefault(first, []).append(record)
        self._executed_on: dict[bytes, set[int]] = {}  # honest nodes that executed it
        self._executed_last_ms: dict[bytes, float] = {}
        self.certified = config.dissemination == "certified"
        # pure-function caches shared by the simulated nodes (docs/netsim.md)
        self.digests = DigestMemo()
        self.decodes = DecodeMemo()
        self.chain_checker = ChainBlockChecker(
            validators, self.params, scheme, min_fee=self.ledger_params.fee
        )
        # the PoA format (docs/lanes.md "Aggregate proofs of availability"): real BLS with
        # real Ed25519, the stand-in of the same sizes with the `trusted` scheme
        self.poa, self.vote_keys = lane_poa(config.poa_signatures, scheme, keys, validators)
        self.cut_validator = CutValidator(validators, scheme, poa=self.poa)
        self.lane_disks: dict[int, LaneDisk] = {}  # survive crashes, like the engine's Disk
        self.certified_slots: dict[int, list[Redemption]] = {}  # slot -> redeemed (PoA)
        self.poa_formed = 0
        self.lane_block_cut_delay: Counter[int] = Counter()  # chain view: height − slot
        self.retired_availability: Counter[str] = Counter()
        self.by_cid: dict[bytes, PayloadRecord] = {}
        self.active: list[PayloadRecord] = []
        self.head = 0  # the senders' view: highest height some honest node finalized
        self.planned = 0  # highest slot the senders have planned
        self.tickets_redeemed = 0
        self.sim: Simulator | None = None

    # ------------------------------------------------------------------ wiring

    def attach(self, sim: Simulator) -> None:
        """Bind the simulator, build the attacking senders, plan the first slots (time 0)."""
        self.sim = sim
        config = self.config
        context = AttackContext(
            params=self.params,
            layout=self.layout,
            lanes=self.n,
            scheme=self.scheme,
            fee=self.ledger_params.fee,
            rng=sim.rng("workload"),
            bundles_per_slot=self.m,
            policy=config.policy,
            lookahead_slots=config.lookahead_slots,
            t_star=self.t_star,
        )
        for i, (spec, key) in enumerate(self.attack_specs):
            self.attackers.append(
                ATTACKS[spec.kind](f"a{i}", spec.kind, spec.from_slot, spec.count, key, context)
            )
        self._plan()

    def validator(self) -> LanePayloadValidator | CutValidator:
        """The core's block validator: cuts (shared: pure and cached) or carried lanes."""
        if self.certified:
            return self.cut_validator
        return LanePayloadValidator(self.validators, self.params, self.scheme)

    def wrap(self, index: int, machine: Any, disk: Disk | None) -> LaneMachine:
        """A new life of node `index`: fresh lane proposer, tracker rebuilt from `disk`."""
        old = self.nodes.get(index)
        if old is not None:
            self.retired_rejections.update(old.proposer.rejected)
            self.retired_included += old.proposer.stats.included
            if old.certified is not None:
                self.retired_availability.update(_availability_counts(old.certified.layer))
        first_open = disk.finalized_height + 1 if disk is not None else 1
        tracker = DecodeTracker(
            self.params,
            max_pending_payloads=self.config.tracker_capacity,
            ledger=Ledger.from_genesis(self.ledger_params, self.genesis),
            certified=self.certified,
            decoder=self.decodes,
        )
        proposer = LaneProposer(
            lane=index,
            key=self.keys[index],
            scheme=self.scheme,
            params=self.params,
            first_open_slot=first_open,
            withhold=self.withhold.get(index),
            funds=tracker.funds(),
        )
        node = LaneNode(proposer, tracker)
        self.nodes[index] = node
        if self.certified:
            node.certified = self._certified_life(index, node, disk)
        elif disk is not None:
            for height, block_id in disk.finalized:
                stored = disk.blocks.get(block_id)
                if stored is None:
                    node.broken = f"finalized block at height {height} is not on disk"
                    break
                self._finalize(index, node, stored[0].header, stored[1])
        return LaneMachine(machine, self, index)

    def _certified_life(self, index: int, node: LaneNode, disk: Disk | None) -> CertifiedNode:
        """The availability layer of a new life: rebuilt from the lane disk, the tracker
        replayed over the finalized chain as far as that disk holds the lane blocks; the
        remaining finalized heights go to the layer (which fetches) when the node starts."""
        lane_disk = self.lane_disks.setdefault(index, LaneDisk())
        previous: dict[int, Any] = {}
        replayed = 0
        pending: list[CutFinalized] = []
        bodies: list[tuple[bytes, Any]] = []
        for height, block_id in disk.finalized if disk is not None else ():
            stored = disk.blocks.get(block_id) if disk is not None else None
            if stored is None:
                node.broken = f"finalized block at height {height} is not on disk"
                break
            header, body = stored[0].header, stored[1]
            bodies.append((block_id, body))
            payload = decode_cut_payload(body.payload)  # finalized ⇒ validated ⇒ decodes
            tips = cut_tips(payload)
            event = CutFinalized(height, header.qc.block_id, payload.transactions, payload.tips)
            blocks = None if pending else replay_segments(previous, tips, lane_disk)
            if blocks is None:
                pending.append(event)
                continue
            self._finalize_lanes(
                index,
                node,
                LanesFinalized(
                    height, event.parent_id, event.transactions, tuple(finalized_order(blocks))
                ),
            )
            previous, replayed = tips, height
        layer = AvailabilityLayer(
            index=index,
            key=self.keys[index],
            scheme=self.scheme,
            validators=self.validators,
            proposer=node.proposer,
            checker=self.chain_checker,
            recovered=RecoveredLanes(
                blocks=[(b, d, voted) for d, (b, voted) in lane_disk.blocks.items()],
                finalized_cut=previous,
                finalized_height=replayed,
            )
            if disk is not None
            else None,
            digester=self.digests,
            poa_checker=self.cut_validator.check_poa,
            poa=self.poa,
            vote_key=self.vote_keys[index],
        )
        life = CertifiedNode(layer, lane_disk, start_events=pending)
        for block_id, body in bodies[-64:]:
            life.remember(block_id, body)
        if disk is not None:
            for block_id, (_tip, body) in disk.blocks.items():
                life.remember(block_id, body)
        return life

    # ------------------------------------------------------------------ certified lanes

    def on_persisted(self, index: int, command: PersistBlock) -> None:
        node = self.nodes.get(index)
        if node is not None and node.certified is not None:
            node.certified.remember(command.block_id, command.body)

    def on_lane_message(self, index: int, sender: int, message: Any) -> list[Any]:
        node = self.nodes.get(index)
        if node is None or node.certified is None:
            return []  # carried mode: lane chain traffic is not part of the protocol
        commands = node.certified.layer.handle(LaneMessageReceived(sender, message))
        return self._execute(index, node, commands)

    def after_core(self, index: int, started: bool, commands: list[Any]) -> list[Any]:
        """Feed the layer what the core's batch means for lanes: the highest block held
        (the slot clock) and the finalized cuts, in height order."""
        node = self.nodes.get(index)
        if node is None or node.certified is None:
            return []
        life = node.certified
        layer = life.layer
        events: list[Any] = []
        if started and not life.started:
            life.started = True
            sim = self.sim
            held = sim.hosts[index].disk.blocks if sim is not None else {}
            top = max((tip.header.seq_num for tip, _ in held.values()), default=0)
            if top:
                events.append(HeightReached(top))
            events.extend(life.start_events)
            life.start_events = []
        top = 0
        for command in commands:
            if type(command) is PersistBlock:
                top = max(top, command.tip.header.seq_num)
            elif type(command) is CommitBlocks:
                if top > layer.known_height:
                    events.append(HeightReached(top))
                    top = 0
                for block in command.blocks:
                    payload = decode_cut_payload(block.body.payload)
                    events.append(
                        CutFinalized(
                            block.header.seq_num,
                            block.header.qc.block_id,
                            payload.transactions,
                            payload.tips,
                        )
                    )
        if top > layer.known_height:
            events.append(HeightReached(top))
        out: list[Any] = []
        for event in events:
            out.extend(self._execute(index, node, layer.handle(event)))
        return out

    def _execute(self, index: int, node: LaneNode, commands: list[Any]) -> list[Any]:
        """Run the layer's commands; return those the engine executes (messages, traces)."""
        life = node.certified
        assert life is not None
        out: list[Any] = []
        for command in commands:
            kind = type(command)
            if kind is Send or kind is Broadcast:
                out.append(command)
            elif kind is StoreLaneBlock:
                life.disk.store(command.block, command.digest, command.voted)
            elif kind is ServeFromStorage:
                out.append(Send(command.to, life.disk.serve(command.request)))
            elif kind is LanesFinalized:
                self._finalize_lanes(index, node, command)
            elif kind is Trace:
                if command.name == "lane_poa_formed":
                    self._on_poa_formed(life.layer, command.detail)
                out.append(command)
            else:  # pragma: no cover - the layer's command set is closed
                raise TypeError(f"unknown availability command {command!r}")
        return out

    def _on_poa_formed(self, layer: AvailabilityLayer, detail: dict) -> None:
        """A lane's block got its PoA: its tickets are redeemed (the senders' feedback)."""
        self.poa_formed += 1
        block = layer.own_block(detail["height"])
        if block is None or block.slot <= self.planned - self.config.knowledge_lag_slots:
            return  # the senders already used this slot's feedback: too late to count
        redeemed = self.certified_slots.setdefault(block.slot, [])
        for entry in block.entries:
            cid, bundle = entry.ticket.ticket.commitment_id, entry.bundle.bundle_index
            sender, fee = entry.bundle.commitment.sender, entry.ticket.ticket.fee
            redeemed.append(Redemption(cid, sender, block.lane, block.slot, bundle, fee))

    def _finalize_lanes(self, index: int, node: LaneNode, command: LanesFinalized) -> None:
        if node.broken is not None:
            return
        tracker = node.tracker
        expected = (tracker.height or 0) + 1
        if command.height < expected:
            return  # already processed in this life
        if command.height != expected:
            node.broken = f"finalized height {command.height} after {expected - 1}"
            return
        outcome = tracker.on_finalized_lanes(
            command.height, command.transactions, command.blocks, command.parent_id
        )
        if self._record_outcome(index, node, outcome):
            for block in command.blocks:
                self.lane_block_cut_delay[command.height - block.slot] += 1
        self._plan()

    # ------------------------------------------------------------------ lanes

    def on_submission(self, index: int, message: LaneSubmission) -> None:
        node = self.nodes.get(index)
        if node is not None:
            node.proposer.submit_bytes(message.data)  # rejections are counted by reason

    @staticmethod
    def _seal(node: LaneNode, slot: int) -> LaneBlock | None:
        try:
            return node.proposer.seal(slot)
        except ValueError:
            return None  # slot closed without a lane block (a lower height proposed again)

    def build_payload(self, leader: int, request: RequestPayload) -> tuple[bytes, dict]:
        """The leader's block payload for height `request.seq_num`."""
        if self.certified:
            return self._build_cut(leader, request)
        sim = self.sim
        assert sim is not None, "attach() the simulator first"
        slot = request.seq_num
        blocks: list[LaneBlock] = []
        for lane in range(self.n):
            node = self.nodes.get(lane)
            host = sim.hosts[lane]
            if node is None or not host.up or host.machine is None:
                continue
            if lane != leader and (
                host.paused or sim.network.partitioned(leader, lane, sim.now_ms)
            ):
                continue  # the leader cannot reach this lane now
            block = self._seal(node, slot)
            if block is None or not block.entries:
                continue
            if leader in self.censors and lane != leader:
                # drop_lane_blocks: a censoring leader leaves out every other lane's block
                self.lane_blocks_omitted[leader] += 1
                continue
            blocks.append(block)
        size = self.scenario.payload_bytes
        transactions = [sim.rng("workload").randbytes(size)] if size > 0 else []
        # the body is bounded (MAX_PAYLOAD_BYTES): lane blocks beyond it are left out, so
        # their tickets expire (the carried mode's ceiling at high load, counted)
        budget = MAX_PAYLOAD_BYTES - size - 4096
        kept: list[LaneBlock] = []
        for block in blocks:
            cost = len(encode(block)) + 16
            if cost > budget:
                self.lane_blocks_over_budget += 1
                continue
            budget -= cost
            kept.append(block)
        blocks = kept
        payload = build_block_payload(transactions, blocks)
        detail = {
            "seq_num": slot,
            "round": request.round,
            "lane_blocks": len(blocks),
            "entries": sum(len(b.entries) for b in blocks),
            "bytes": len(payload),
        }
        return payload, detail

    def _build_cut(self, leader: int, request: RequestPayload) -> tuple[bytes, dict]:
        """Certified mode: the leader's cut (a censor keeps every other lane's parent tip)."""
        sim = self.sim
        assert sim is not None, "attach() the simulator first"
        node = self.nodes[leader]
        assert node.certified is not None
        life = node.certified
        parent = life.parent_cut(request.parent_id, sim.hosts[leader].disk.blocks)
        if parent is None:
            parent = {}  # not held (cannot happen: the core proposes on held parents)
        tips = list(life.layer.cut_for(request.seq_num, parent))
        if leader in self.censors:
            # drop_lane_blocks: omit or under-cite every other lane's tip (CUT-MONOTONE
            # lets a leader keep its parent's tips, nothing less)
            kept: list[LaneTip] = []
            for tip in tips:
                before = parent.get(tip.tip.lane)
                if tip.tip.lane == leader or tip.poa is None:
                    kept.append(tip)
                    continue
                self.lane_blocks_omitted[leader] += tip.tip.height - (
                    before.height if before is not None else 0
                )
                if before is not None:
                    kept.append(LaneTip(before))
            tips = kept
        size = self.scenario.payload_bytes
        transactions = [sim.rng("workload").randbytes(size)] if size > 0 else []
        payload = build_cut_payload(transactions, tips)
        detail = {
            "seq_num": request.seq_num,
            "round": request.round,
            "tips": len(tips),
            "poas": sum(1 for tip in tips if tip.poa is not None),
            "bytes": len(payload),
        }
        return payload, detail

    # ------------------------------------------------------------------ finality

    def on_command(self, sim: Simulator, node: int, command: Any) -> None:
        if type(command) is not CommitBlocks or self.certified:
            return  # certified lanes finalize through the availability layer
        lane_node = self.nodes.get(node)
        if lane_node is None:
            return
        for block in command.blocks:
            self._finalize(node, lane_node, block.header, block.body)
        self._plan()

    def _finalize(self, index: int, node: LaneNode, header: Any, body: Any) -> None:
        if node.broken is not None:
            return
        tracker = node.tracker
        height = header.seq_num
        expected = (tracker.height or 0) + 1
        if height < expected:
            return  # already processed in this life
        if height != expected:
            node.broken = f"finalized height {height} after {expected - 1}"
            return
        outcome = tracker.on_finalized(header, body)
        proposer = node.proposer
        if height >= proposer.open_slot:
            self._seal(node, height)  # closes the slot nobody asked this lane for
        proposer.on_finalized(height)
        self._record_outcome(index, node, outcome)

    def _record_outcome(self, index: int, node: LaneNode, outcome: BlockOutcome) -> bool:
        """Account one finalized height of one node; True if it advanced the senders'
        view of the chain."""
        node.honest_bundles_dropped += sum(
            1
            for item in outcome.ignored
            if item.reason == "tracker_full" and item.sender in self.honest_senders
        )
        if index not in self.honest:
            return False
        now_ms = self.sim.now_ms if self.sim is not None else 0.0
        for event in outcome.payloads:
            if event.status == "executed" and event.commitment_id in self.by_cid:
                self._executed_on.setdefault(event.commitment_id, set()).add(index)
                self._executed_last_ms[event.commitment_id] = now_ms
        self.checker.record(index, outcome.height, outcome.execution_order_hash)
        return self._advance_chain(outcome)

    def _advance_chain(self, outcome: BlockOutcome) -> bool:
        """The senders learn height `head + 1` from the first honest node finalizing it."""
        if outcome.height != self.head + 1:
            return False
        self.head = outcome.height
        self.tickets_redeemed += len(outcome.redemptions)
        for redemption in outcome.redemptions:
            owner = self.by_cid.get(redemption.commitment_id)
            if owner is not None and len(owner.redeemed_slots) < MAX_REDEEMED_SLOTS:
                owner.redeemed_slots.append(redemption.slot)
                owner.redeemed_bundles.append((redemption.slot, redemption.bundle_index))
        self.fees_charged += outcome.fees_charged
        self.bounties_paid += outcome.bounties_paid
        self.duplicate_bundles += outcome.duplicates
        self.late_bundles += outcome.late
        now_ms = self.sim.now_ms if self.sim is not None else 0.0
        for event in outcome.payloads:
            record = self.by_cid.get(event.commitment_id)
            if record is not None and record.status == "pending":
                record.status = event.status
                record.decided_height = event.height
                record.decode_slot = event.decode_slot
                record.decided_ms = now_ms
        decided = [event.commitment_id for event in outcome.payloads]
        for record in self.active:
            assert record.outgoing is not None
            if self.certified:  # redemptions come from PoAs (`_feedback`), decisions here
                record.outgoing.on_decided(decided)
            else:
                record.outgoing.on_outcome(outcome)
        for attacker in self.attackers:
            attacker.on_outcome(outcome)
        self.active = [r for r in self.active if r.status == "pending"]
        return True

    # ------------------------------------------------------------------ senders

    def _plan(self) -> None:
        """Plan every slot up to head + lookahead (each slot once, in order)."""
        limit = self.head + self.config.lookahead_slots
        while self.planned < limit:  # bounded: the head moved by finitely many heights
            slot = self.planned + 1
            if self.certified:
                self._feedback(slot - self.config.knowledge_lag_slots)
            for record in self._starting.pop(slot, ()):
                self._start(record, slot)
            now_ms = self.sim.now_ms if self.sim is not None else 0.0
            while (
                self._arrivals
                and self._arrivals[0].arrival_ms <= now_ms  # type: ignore[operator]
                and slot >= self.config.first_slot
            ):  # bounded by the number of payloads
                record = self._arrivals.popleft()
                record.first_slot = slot
                self._start(record, slot)
            for record in self.active:
                if self.config.sending == "one_shot" and not (
                    record.first_slot <= slot < record.first_slot + self.config.one_shot_slots
                ):
                    continue  # one-shot: no sending after its budget of slots
                assert record.outgoing is not None
                for submission in record.outgoing.plan_slot(slot):
                    self._deliver(record, submission.lane, submission.entry)
            for attacker in self.attackers:
                for lane, entry in attacker.plan(slot):
                    self._deliver_attack(lane, entry)
            self.planned = slot

    def _feedback(self, slot: int) -> None:
        """Certified mode: slot `slot`'s outcome as certified so far (docs/lanes.md, "What
        a slot is"), given to every sender when it plans slot + knowledge_lag_slots."""
        redeemed = self.certified_slots.pop(slot, [])
        for stale in [s for s in self.certified_slots if s < slot]:
            del self.certified_slots[stale]  # bounded: nothing older is ever used
        if slot < 1:
            return
        for record in self.active:
            assert record.outgoing is not None
            record.outgoing.on_slot_finalized(slot, redeemed)

    def _start(self, record: PayloadRecord, slot: int) -> None:
        assert self.sim is not None
        rng = self.sim.rng("workload")
        payload = rng.randbytes(self.config.payload_bytes)
        aont_key = rng.randbytes(32)
        ratchet = self.config.effective_ratchet
        config = SenderConfig(
            lanes=self.n,
            bundles_per_slot=self.m,
            policy=AddressPolicy(self.config.policy),
            ratchet_policy=RatchetPolicy(ratchet),
            feedback_slots=self.config.effective_feedback_slots,
            fee=self.ledger_params.fee,
            seed=rng.randbytes(16),
        )
        key = self.sender_keys[record.sender]
        sender = Sender(key, self.scheme, self.params, config)
        if record.corrupt:
            expiry = slot + self.params.max_lifetime_slots
            encoded = forged_encoding(
                self.params, payload, aont_key, key.public, rng.randbytes(16), expiry
            )
            sender.payloads[encoded.commitment_id] = OutgoingPayload(encoded, slot)
            cid = encoded.commitment_id
        else:
            cid = sender.submit(payload, aont_key, slot)
        record.cid, record.outgoing, record.status = cid, sender, "pending"
        record.started_ms = self.sim.now_ms
        self.by_cid[cid] = record
        self.active.append(record)

    def _deliver(self, record: PayloadRecord, lane: int, entry: LaneEntry) -> None:
        assert self.sim is not None
        data = encode_lane_entry(entry)
        record.bundles_sent += 1
        record.wire_bytes += len(data)
        record.symbol_bytes += self.layout.bundle_bytes
        rng = self.sim.rng("workload")
        if self.config.loss > 0 and rng.random() < self.config.loss:
            record.bundles_lost += 1
            return
        delay_ms = self.scenario.network.latency.sample_ms(rng)
        self.sim.inject(
            lane, lane, LaneSubmission(record.sender, lane, data), delay_ms, downlink=True
        )

    def _deliver_attack(self, lane: int, entry: LaneEntry) -> None:
        """An attacker's submission: the same private path (latency, loss) as any sender's."""
        assert self.sim is not None
        rng = self.sim.rng("workload")
        if self.config.loss > 0 and rng.random() < self.config.loss:
            return
        delay_ms = self.scenario.network.latency.sample_ms(rng)
        data = encode_lane_entry(entry)
        self.sim.inject(lane, lane, LaneSubmission(-1, lane, data), delay_ms, downlink=True)

    # ------------------------------------------------------------------ report

    def rejections(self) -> Counter[str]:
        total = Counter(self.retired_rejections)
        for node in self.nodes.values():
            total.update(node.proposer.rejected)
        return total

    def decodable_slot(self, record: PayloadRecord) -> int | None:
        """The first slot by which κ of its bundles were in lane blocks the chain
        finalized (whenever a cut finalized them: omission only delays). Carried: the
        decode block's height."""
        if record.status != "executed" or record.decided_height is None:
            return None
        if not self.certified:
            return record.decided_height
        slots = sorted(record.redeemed_slots)
        return slots[self.kappa - 1] if len(slots) >= self.kappa else record.decode_slot

    def decode_slot_delay(self, record: PayloadRecord) -> int | None:
        """Slots past the honest horizon first_slot + t* − 1 until decodable (None: never
        executed): the model's delay, in slots (docs/lanes.md, "What a slot is")."""
        decodable = self.decodable_slot(record)
        if decodable is None:
            return None
        return decodable - (record.first_slot + self.t_star - 1)

    def cut_delay_slots(self, record: PayloadRecord) -> int | None:
        """Heights from the slot it became decodable to the cut that executed it
        (carried: 0)."""
        decodable = self.decodable_slot(record)
        if decodable is None or record.decided_height is None:
            return None
        return record.decided_height - decodable

    def decode_ms(self) -> list[float]:
        """Honest executed payloads: simulated ms from their arrival (rate mode) or first
        planned slot to the senders learning they executed."""
        return [
            r.decided_ms - (r.arrival_ms if r.arrival_ms is not None else r.started_ms)
            for r in self.records
            if r.status == "executed" and r.decided_ms is not None and r.started_ms is not None
        ]

    def decode_all_ms(self) -> list[float]:
        """Per submitted payload: simulated ms from arrival (or first planned slot) until
        every honest node executed it; infinity if some honest node has not."""
        honest = len(self.honest)
        out = []
        for r in self.records:
            if r.status == "scheduled" or r.started_ms is None:
                continue
            start = r.arrival_ms if r.arrival_ms is not None else r.started_ms
            if len(self._executed_on.get(r.cid, ())) < honest:
                out.append(math.inf)
            else:
                out.append(self._executed_last_ms[r.cid] - start)
        return out

    def report(self) -> dict[str, Any]:
        started = [r for r in self.records if r.status != "scheduled"]
        nodes = sorted(self.nodes)
        rejected = self.rejections()
        rejected.setdefault("insufficient_balance", 0)  # contract key, present even at 0
        decode_ms = sorted(self.decode_ms())
        cut_delays = {r.label: self.cut_delay_slots(r) for r in started}
        known_delays = sorted(d for d in cut_delays.values() if d is not None)
        sim = self.sim
        proposals = {
            str(i): sim.sent_bytes_by_tag[i]["proposal"] if sim is not None else 0 for i in nodes
        }
        return {
            "leader_upload_bytes": proposals,
            "poa_formed": self.poa_formed,
            "cut_delay_slots": cut_delays,
            "payloads_submitted": len(started),
            "payloads_decoded": {str(i): self.nodes[i].tracker.counts["executed"] for i in nodes},
            "execution_order_hash": {
                str(i): self.nodes[i].tracker.execution_order_hash.hex() for i in nodes
            },
            "decode_slot_delay": {r.label: self.decode_slot_delay(r) for r in started},
            "tickets_redeemed": self.tickets_redeemed,
            "bundles_rejected": {k: rejected[k] for k in sorted(rejected)},
            "fees_charged": self.fees_charged,
            "bounties_paid": self.bounties_paid,
            "ledger_hash": {str(i): self._ledger(i).digest().hex() for i in nodes},
            "lanes": {
                "kappa": self.kappa,
                "bundles_per_slot": self.m,
                "t_star": self.t_star,
                "slack": self.slack,
                "symbol_size_bytes": self.params.symbol_size_bytes,
                "symbols_per_bundle": self.params.symbols_per_bundle,
                "chain_height": self.head,
                "execution_height": {str(i): self.nodes[i].tracker.height or 0 for i in nodes},
                "payload_status": {r.label: r.status for r in started},
                "bundles_sent": sum(r.bundles_sent for r in started),
                "bundles_lost": sum(r.bundles_lost for r in started),
                "wire_bytes_sent": sum(r.wire_bytes for r in started),
                "symbol_bytes_sent": sum(r.symbol_bytes for r in started),
                "bundles_withheld": len(self.pool.withheld),
                "cartel_strategy": self.pool.book.strategy.describe(),
                "broken_trackers": {
                    str(i): self.nodes[i].broken for i in nodes if self.nodes[i].broken
                },
                "execution_heights_compared": self.checker.compared,
                "ratchet_policy": self.config.effective_ratchet,
                "feedback_slots": (
                    self.config.effective_feedback_slots
                    if self.config.effective_ratchet == "keep_redeemed"
                    else None
                ),
                "lane_blocks_omitted": {
                    str(i): self.lane_blocks_omitted[i] for i in sorted(self.censors)
                },
                "honest_bundles_dropped": {
                    str(i): self.nodes[i].honest_bundles_dropped for i in nodes
                },
                "bundles_ignored": {
                    str(i): dict(sorted(self.nodes[i].tracker.ignored_counts.items()))
                    for i in nodes
                },
                "payloads_evicted": {str(i): self.nodes[i].tracker.evicted for i in nodes},
                "decided_remembered": {
                    str(i): self.nodes[i].tracker.remembered_decided for i in nodes
                },
                "decode_ms_p50": _median(decode_ms),
                "duplicate_bundles": self.duplicate_bundles,
                "late_bundles": self.late_bundles,
                "ledger": {
                    "sender_balance": self.ledger_config.sender_balance,
                    "fee": self.ledger_params.fee,
                    "bounty": self.ledger_params.bounty,
                    "burned": {str(i): self._ledger(i).totals.burned for i in nodes},
                    "conserved": all(self._ledger(i).conserved() for i in nodes),
                },
                "sender_attacks": [a.report() | {"label": a.label} for a in self.attackers],
                "dissemination": self.config.dissemination,
                "lane_blocks_over_budget": self.lane_blocks_over_budget,
                "decode_ms_p99": _quantile(decode_ms, 0.99),
                "decode_all_ms_p50": _quantile(sorted(self.decode_all_ms()), 0.5),
                "decode_all_ms_p99": _quantile(sorted(self.decode_all_ms()), 0.99),
                "payloads_unstarted": sum(1 for r in self.records if r.status == "scheduled"),
                "cut_delay": {
                    "p50": _median([float(d) for d in known_delays]),
                    "max": known_delays[-1] if known_delays else None,
                },
                "lane_block_cut_delay": {
                    str(k): self.lane_block_cut_delay[k] for k in sorted(self.lane_block_cut_delay)
                },
                "availability": self.availability_counts(),
            },
        }

    def availability_counts(self) -> dict[str, int]:
        """Availability-layer counters summed over every node and life (certified)."""
        total = Counter(self.retired_availability)
        for node in self.nodes.values():
            if node.certified is not None:
                total.update(_availability_counts(node.certified.layer))
        return {k: total[k] for k in sorted(total) if total[k]}

    def _ledger(self, node: int) -> Ledger:
        ledger = self.nodes[node].tracker.ledger
        assert ledger is not None  # netsim always runs the lanes with a ledger
        return ledger


def _availability_counts(layer: AvailabilityLayer) -> Counter[str]:
    stats = layer.stats
    counts: Counter[str] = Counter(
        {
            "sealed": stats.sealed,
            "votes_sent": stats.votes_sent,
            "poas_received": stats.poas_received,
            "equivocations": stats.equivocations,
            "fetches_sent": stats.fetches_sent,
            "fetched_blocks": stats.fetched_blocks,
            "entries_dropped_full": stats.entries_dropped_full,
        }
    )
    for reason, count in stats.dropped.items():
        counts[f"dropped: {reason}"] += count
    return counts


def _quantile(values: list[float], q: float) -> float | None:
    """The q-quantile of sorted `values` (nearest rank)."""
    if not values:
        return None
    rank = min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))
    return round(values[rank], 3) if math.isfinite(values[rank]) else None


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    mid = len(values) // 2
    value = values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
    return round(value, 3)
