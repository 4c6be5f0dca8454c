"""A purpose-built adversary for S4 (reference §8): equivocation and a speculative revert.

Cast (n = 4, round-robin leaders): Dave N0, Alice N1 (leader of round R = 5, Byzantine),
Bob N2 (leader of R+1, honest, slow), Carol N3 (leader of R+2). Alice runs a real core
(`inner`) that keeps her protocol state; `S4Adversary` rewrites what it sends and forges
what the attack needs, all signed with Alice's own key:

1. Round R: Alice's proposal B5 goes to Carol and Dave; Bob gets B5' (same round, parent
   and height, another body). Her vote for B5 goes to Bob as usual, so Bob, holding the
   votes of Alice, Carol and Dave, forms QC5(B5) alone. Once Carol's and Dave's votes
   for B5 reached her (they reach Bob at the same instant), Alice answers Bob's block-sync
   request for B5 ahead of time, so Bob holds B5, marks it Voted and proposes B6 on QC5.
2. Alice withholds QC5: no AdvanceRound(QC5), nothing of hers that carries a round-R QC,
   and none of her own timeouts of rounds R and R+1.
3. Carol and Dave time out R with Tip(B5) (two tip votes: no QC). From their two
   timeouts and a forged timeout of her own, Alice builds TC(R) whose high extend is
   Tip(B5') (same rank as Tip(B5): a tie only equivocation makes) and broadcasts it as
   AdvanceRound. Round R+1 (Bob, slow) times out the same way: TC(R+1) with Tip(B5').
4. Round R+2: Carol must repropose B5' (if she can fetch it) or gather an NEC and propose
   a fresh block on QC4; Alice's core, which never held B5', signs the NE and votes. Either
   way a block other than B5 takes B5's height; Bob, on the later QC, reverts his Voted
   B5 with the equivocation evidence he holds (B5' from the proposal, B5 from the sync).

Bob's outgoing messages are delayed by `bob_delay_ms` from the moment he enters round R
until `gst_ms` (`SlowSender`). Control runs: `equivocate=False` (Alice honest towards Bob:
TC(R) can only carry Tip(B5), B5 survives) and `delay_bob=False` (Bob's B6 carries QC5
to everyone in time, B5 survives).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from consensus import codec
from consensus.certificates import Signer, build_tc
from consensus.events import (
    Broadcast,
    CommitBlocks,
    MarkVoted,
    MessageReceived,
    RecordEquivocation,
    RevertVoted,
    RoundEntered,
    Send,
)
from consensus.messages import (
    AdvanceRoundMessage,
    BlockBody,
    BlockSyncResponse,
    ProposalMessage,
    QuorumCertificate,
    SyncedBlock,
    TimeoutInfo,
    TimeoutMessage,
    Tip,
    VoteMessage,
)
from consensus.validators import ValidatorSet
from netsim.driver import make_checker, world_with_schedule
from netsim.engine import Observer, Simulator
from netsim.invariants import certificates_in
from netsim.network import Latency, Network, NetworkConfig
from netsim.runner import Progress, make_factory
from netsim.scenario import Scenario

DAVE, ALICE, BOB, CAROL = 0, 1, 2, 3


@dataclass(frozen=True)
class S4Plan:
    protocol: str = "monadbft"
    attack_round: int = 5
    equivocate: bool = True  # control (a): False
    delay_bob: bool = True  # control (b): False
    bob_delay_ms: float = 1500.0
    gst_ms: float = 4000.0  # Bob's delay ends here (sends from then on are on time)
    latency_ms: float = 10.0
    delta_ms: float = 100.0
    until_ms: float = 20_000.0
    until_blocks: int = 10
    seed: int = 1


@dataclass
class S4Adversary:
    """Alice's machine: her real core plus the S4 script (see the module docstring)."""

    inner: Any  # Alice's ConsensusCore
    signer: Signer
    validators: ValidatorSet
    epoch: int
    plan: S4Plan
    b5: tuple[Tip, BlockBody] | None = None
    b5_prime: tuple[Tip, BlockBody] | None = None
    votes_seen: set[int] = field(default_factory=set)
    sync_sent: bool = False
    timeouts: dict[int, dict[int, TimeoutMessage]] = field(default_factory=dict)
    forged_tcs: dict[int, Any] = field(default_factory=dict)
    withheld: int = 0

    @property
    def round(self) -> int:
        return self.plan.attack_round

    def handle(self, event: Any) -> list[Any]:
        extra: list[Any] = []
        if isinstance(event, MessageReceived):
            extra = self._observe(event.sender, event.message)
        out: list[Any] = []
        for command in self.inner.handle(event):
            if isinstance(command, Send | Broadcast):
                out.extend(self._rewrite(command))
            else:
                out.append(command)
        return out + extra

    def __getattr__(self, name: str) -> Any:
        # Read-only views (current_round, high_qc, ...) come from the inner core.
        if name.startswith("_") or name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    # ------------------------------------------------------------------ outgoing

    def _rewrite(self, command: Send | Broadcast) -> list[Any]:
        message = command.message
        if (
            isinstance(message, ProposalMessage)
            and message.round == self.round
            and message.tip.header.block_round == self.round
        ):
            return self._equivocate(message)
        attack_rounds = (self.round, self.round + 1)
        if isinstance(message, TimeoutMessage) and message.info.round in attack_rounds:
            self.withheld += 1  # her own timeouts never leave; forged TCs replace them
            return []
        if any(
            isinstance(c, QuorumCertificate) and c.round == self.round
            for c in certificates_in(message)
        ):
            self.withheld += 1  # withhold QC(R), including AdvanceRound(QC(R))
            return []
        return [command]

    def _equivocate(self, proposal: ProposalMessage) -> list[Any]:
        self.b5 = (proposal.tip, proposal.body)
        to_bob = proposal
        if self.plan.equivocate:
            body = BlockBody(payload=proposal.body.payload + b"/B5-prime")
            header = msgspec.structs.replace(proposal.tip.header, body_id=codec.body_id(body))
            tip = self.signer.tip(header)
            self.b5_prime = (tip, body)
            to_bob = self.signer.proposal(proposal.round, proposal.epoch, tip, body, None)
        return [Send(CAROL, proposal), Send(DAVE, proposal), Send(BOB, to_bob)]

    # ------------------------------------------------------------------ incoming

    def _observe(self, sender: int, message: Any) -> list[Any]:
        if isinstance(message, VoteMessage):
            return self._on_vote(sender, message)
        if isinstance(message, TimeoutMessage):
            return self._on_timeout(sender, message)
        return []

    def _on_vote(self, sender: int, message: VoteMessage) -> list[Any]:
        if self.b5 is None or self.sync_sent or not self.plan.equivocate:
            return []
        b5_id = codec.block_id(self.b5[0].header)
        if message.vote.round != self.round or message.vote.block_id != b5_id:
            return []
        if sender in (CAROL, DAVE):
            self.votes_seen.add(sender)
        if self.votes_seen != {CAROL, DAVE}:
            return []
        # Bob now holds QC(R) on B5 and asked for B5 (his request is slow): answer it.
        self.sync_sent = True
        synced = SyncedBlock(tip=self.b5[0], body=self.b5[1])
        return [Send(BOB, BlockSyncResponse(block_id=b5_id, blocks=(synced,)))]

    def _on_timeout(self, sender: int, message: TimeoutMessage) -> list[Any]:
        round_ = message.info.round
        if round_ not in (self.round, self.round + 1) or sender not in (CAROL, DAVE):
            return []
        if round_ in self.forged_tcs or self.b5 is None:
            return []
        if round_ == self.round + 1 and self.round not in self.forged_tcs:
            return []
        got = self.timeouts.setdefault(round_, {})
        got.setdefault(sender, message)
        if set(got) != {CAROL, DAVE}:
            return []
        extend = (self.b5_prime or self.b5)[0]
        info = TimeoutInfo(
            epoch=self.epoch,
            round=round_,
            high_qc_round=extend.header.qc.round,
            high_tip_round=extend.header.block_round,
        )
        last = None
        if extend.header.qc.round + 1 != round_:
            last = self.forged_tcs.get(round_ - 1)
        own = self.signer.timeout(info, extend, last, tip_vote=False)
        tc = build_tc(self.epoch, round_, [*got.values(), own], self.validators)
        # The tie between Tip(B5) and Tip(B5') is Alice's to break.
        tc = msgspec.structs.replace(tc, high_extend=extend)
        self.forged_tcs[round_] = tc
        return [Broadcast(AdvanceRoundMessage(certificate=tc))]


class SlowSender(Network):
    """The network, plus `extra_ms` on every message `node` sends from `armed_at_ms`
    (set when it enters the attack round) until `until_ms`."""

    def __init__(self, config: NetworkConfig, node: int, extra_ms: float, until_ms: float):
        super().__init__(config)
        self.node = node
        self.extra_ms = extra_ms
        self.until_ms = until_ms
        self.armed_at_ms: float | None = None

    def route(self, src: int, dst: int, tag: str, now_ms: float, rng: random.Random) -> list[float]:
        delays = super().route(src, dst, tag, now_ms, rng)
        armed = self.armed_at_ms
        if src == self.node and armed is not None and armed <= now_ms < self.until_ms:
            return [d + self.extra_ms for d in delays]
        return delays


@dataclass
class NodeLog(Observer):
    """Per-instance record of the facts S4 is judged on."""

    arm: tuple[SlowSender, int, int] | None = None  # (network, node, round)
    voted: dict[int, list[tuple[float, bytes, int]]] = field(default_factory=dict)
    reverted: dict[int, list[tuple[float, RevertVoted]]] = field(default_factory=dict)
    evidence: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    finalized: dict[int, dict[int, bytes]] = field(default_factory=dict)
    entered: dict[int, list[tuple[int, str]]] = field(default_factory=dict)

    def on_command(self, sim: Simulator, node: int, command: Any) -> None:
        kind = type(command)
        if kind is RoundEntered:
            self.entered.setdefault(node, []).append((command.round, command.via))
            if self.arm is not None:
                network, slow, round_ = self.arm
                if node == slow and command.round >= round_ and network.armed_at_ms is None:
                    network.armed_at_ms = sim.now_ms
        elif kind is MarkVoted:
            self.voted.setdefault(node, []).append((sim.now_ms, command.block_id, command.seq_num))
        elif kind is RevertVoted:
            self.reverted.setdefault(node, []).append((sim.now_ms, command))
        elif kind is RecordEquivocation:
            evidence = command.evidence
            self.evidence.setdefault(node, []).append((evidence.leader, evidence.block_round))
        elif kind is CommitBlocks:
            heights = self.finalized.setdefault(node, {})
            for block in command.blocks:
                heights[block.header.seq_num] = block.block_id


@dataclass
class S4Result:
    plan: S4Plan
    report: dict[str, Any]
    world: Any  # netsim.runner.World
    log: NodeLog
    adversary: S4Adversary | None
    b5_id: bytes | None
    b5_prime_id: bytes | None
    b5_height: int | None


def run_s4(plan: S4Plan = S4Plan(), extra_observers: Iterable[Observer] = ()) -> S4Result:
    """Run S4 with the purpose-built adversary as Alice; the checkers are always on."""
    scenario = Scenario(
        validators=4,
        protocol=plan.protocol,
        seed=plan.seed,
        delta_ms=plan.delta_ms,
        until_ms=plan.until_ms,
        until_blocks=plan.until_blocks,
        network=NetworkConfig(latency=Latency("constant", plan.latency_ms, plan.latency_ms)),
        source="<s4-adversary>",
    )
    world = world_with_schedule(scenario)
    byzantine = frozenset({ALICE})
    checker = make_checker(world, byzantine, quiet_after_ms=plan.gst_ms if plan.delay_bob else 0)
    extra_ms = plan.bob_delay_ms if plan.delay_bob else 0.0
    network = SlowSender(scenario.network, BOB, extra_ms, plan.gst_ms)
    log = NodeLog(arm=(network, BOB, plan.attack_round))
    progress = Progress(frozenset({DAVE, BOB, CAROL}), plan.until_blocks)
    base = make_factory(world, plan.seed)
    adversaries: list[S4Adversary] = []

    def factory(index: int, identity: int, disk: Any) -> Any:
        machine = base(index, identity, disk)
        if identity != ALICE:
            return machine
        adversary = S4Adversary(
            inner=machine,
            signer=Signer(ALICE, world.keys[ALICE], world.scheme),
            validators=world.validators,
            epoch=world.config.epoch,
            plan=plan,
        )
        adversaries.append(adversary)
        return adversary

    sim = Simulator(
        factory=factory,
        network=network,
        seed=plan.seed,
        identities=4,
        observers=[checker, log, progress, *extra_observers],
        payload_bytes=scenario.payload_bytes,
    )
    result = sim.run(plan.until_ms, stop=lambda _sim: progress.done)
    stats = checker.stats
    report = {
        "protocol": plan.protocol,
        "agreement": not any(v.startswith("P1") for v in checker.violations),
        "violations": list(checker.violations),
        "finalized": {str(h.index): h.disk.finalized_height for h in sim.hosts},
        "tc_rounds": sorted(stats.tcs),
        "necs": sorted(stats.necs),
        "reproposals": len(stats.reproposals),
        "equivocations": sorted(stats.equivocations),
        "speculative_reverts": stats.speculative_reverts,
        "liveness": checker.liveness,
        "sim_time_ms": result.sim_time_ms,
        "stop_reason": result.stop_reason,
        "trace_hash": result.trace_hash,
    }
    adversary = adversaries[0] if adversaries else None
    b5 = adversary.b5 if adversary is not None else None
    b5p = adversary.b5_prime if adversary is not None else None
    return S4Result(
        plan=plan,
        report=report,
        world=world,
        log=log,
        adversary=adversary,
        b5_id=codec.block_id(b5[0].header) if b5 else None,
        b5_prime_id=codec.block_id(b5p[0].header) if b5p else None,
        b5_height=b5[0].header.seq_num if b5 else None,
    )
