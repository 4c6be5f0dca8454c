"""Always-on protocol checkers (reference §5) and the run's protocol statistics.

`ProtocolChecker` is an engine `Observer`: it sees every command every instance executes
(in particular every message sent) and keeps a global log of signed facts: votes, tips
(signed headers), QCs/TCs/NECs found anywhere inside sent messages, NEs, commits, Voted
marks and reverts. "Honest" means an identity with no Byzantine behaviour (a Twins pair is
Byzantine by construction). Checks:

- P1 agreement: no two honest instances finalize different blocks at one height, and each
  finalized ledger is parent-linked.
- P2 commit monotonicity: an instance finalizes heights 1, 2, 3, ... with no gap, repeat or
  regression (a restart resumes from its disk).
- P3 one QC per round: every valid QC of a round certifies the same block; and, the reason
  it holds, no honest identity signs two different votes (plain or tip vote) in one round.
- P4 vote/NE exclusion: after an honest NE(r) against tip T, its round-r votes are for
  proposals whose TC high tip is T, or a tip vote for a round-r tip.
- P5' no tail-fork (monadbft and v1 only; vanilla is expected to tail-fork and only
  counts them): a fresh block B of an honest leader, of block round b, for which >= f+1
  honest stake signed `Vote(B, b)` (tip votes carried in Timeout(b) included) is never
  replaced at its height (checked whenever an honest node finalizes that height). Votes
  for B's reproposals in later rounds do not count (docs/protocol.md, "Speculative
  finality of reproposals").
- P6' accountable speculative finality (monadbft and v1; vanilla only counts reverts): a
  block with a valid QC whose round equals its block round (a fresh QC) is only reverted
  or replaced at its height when its round's leader equivocated: an honest `RevertVoted`
  of it carries valid equivocation evidence (two distinct headers of that round, both
  signed by its leader) or the log holds such a pair, and no honest node finalizes B' at
  the height of such a Voted block unless the pair exists. A revert of a block Voted only
  through a reproposal's QC (QC round > block round) is not a violation: it is counted in
  `reproposal_reverts` (MonadBFT as implemented by monad-bft allows it, even with all
  nodes honest). Evidence that is present but malformed is always a violation.
- Commit rule (C-TWO-CHAIN): every block an honest node finalizes as the head of a commit
  has a child Y in the log and a valid QC on Y of round Y.qc.round + 1.
- Liveness after the last fault: while honest live stake is a quorum, every honest
  instance that is up at the end finalizes a new block within `liveness_ms` of the last
  fault (inconclusive, not a violation, if the run ends before the faults do, or before
  the bound while an instance has not committed yet).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from consensus import codec
from consensus.byzantine import certificates_in  # noqa: F401  (netsim modules import it here)
from consensus.crypto import Domain, SignatureScheme
from consensus.events import (
    Broadcast,
    CommitBlocks,
    MarkVoted,
    PersistSafety,
    RecordEquivocation,
    RevertVoted,
    RoundEntered,
    Send,
    Trace,
)
from consensus.lanes.chain import LANE_MESSAGE_TYPES
from consensus.messages import (
    NoEndorsementCertificate,
    NoEndorsementMessage,
    NoTipCertificate,
    ProposalMessage,
    QuorumCertificate,
    TimeoutCertificate,
    TimeoutMessage,
    Tip,
    VoteMessage,
)
from consensus.validators import LeaderSchedule, ValidatorSet
from netsim.engine import Observer, Simulator

_LANE_MESSAGES = frozenset(LANE_MESSAGE_TYPES)
# Certificate types `certificates_in` yields; each is scanned once per object (below).
_CERTIFICATE_TYPES = frozenset(
    {QuorumCertificate, TimeoutCertificate, NoEndorsementCertificate, NoTipCertificate, Tip}
)
_LEAF_TYPES = frozenset({bytes, int, str, bool, float, type(None)})  # hold no certificate
MAX_DEPTH = 12  # as `certificates_in`: deeper values are not searched
_KINDS: dict[type, type | None] = {}


def _certificate_kind(vtype: type) -> type | None:
    """The certificate type `vtype` is (or subclasses), else None; memoized per type."""
    try:
        return _KINDS[vtype]
    except KeyError:
        kind = next((c for c in _CERTIFICATE_TYPES if issubclass(vtype, c)), None)
        _KINDS[vtype] = kind
        return kind


MAX_VIOLATIONS = 200
MAX_REJECTION_KINDS = 256
_DIGITS = re.compile(r"\d+")
MAX_CACHED_CERTIFICATES = 50_000


@dataclass
class CheckerContext:
    protocol: str
    validators: ValidatorSet
    schedule: LeaderSchedule
    scheme: SignatureScheme
    byzantine: frozenset[int]  # identities
    verify: Callable[[Any], bool]  # stateless validity of a QC/TC/NEC (Verifier, cached)
    liveness_ms: float
    quiet_after_ms: float = 0.0  # end of the last planned fault (partitions, pauses, ...)


@dataclass
class Stats:
    tcs: set[int] = field(default_factory=set)
    necs: set[int] = field(default_factory=set)  # rounds with an NEC
    reproposals: set[tuple[int, bytes]] = field(default_factory=set)
    timed_out_rounds: set[int] = field(default_factory=set)
    equivocations: set[tuple[int, int]] = field(default_factory=set)
    speculative_reverts: int = 0
    reproposal_reverts: int = 0  # reverts of blocks without a fresh QC (not accountable)
    max_round: int = 0
    qc_rounds: set[int] = field(default_factory=set)
    # honest drops and vote refusals by reason (numbers masked), bounded
    rejected: dict[str, int] = field(default_factory=dict)


class ProtocolChecker(Observer):
    def __init__(self, context: CheckerContext):
        self.ctx = context
        self.violations: list[str] = []
        self.violation_count = 0
        self.stats = Stats()
        n = len(context.validators)
        self._honest_ids = frozenset(range(n)) - context.byzantine
        self._f_plus_one = context.validators.honest_stake
        # global log
        self._qc_by_round: dict[int, bytes] = {}
        self._vote_by_signer: dict[tuple[int, int], bytes] = {}
        # (block id, vote round) -> honest signers (P5' counts only the block's own round)
        self._honest_voters: dict[tuple[bytes, int], set[int]] = {}
        self._honest_voters_any_round: dict[bytes, set[int]] = {}
        self._headers: dict[tuple[int, int], dict[bytes, Tip]] = {}  # (author, round) -> id -> tip
        self._signed_ok: dict[bytes, bool] = {}
        self._fresh_honest: dict[bytes, Tip] = {}  # fresh proposals of honest leaders
        self._fresh_at_height: dict[int, list[bytes]] = {}  # seq_num -> their ids, in order
        self._proposal_tc_tip: dict[tuple[int, bytes], set[bytes | None]] = {}
        self._ne_by_signer: dict[tuple[int, int], bytes] = {}
        self._safety: dict[int, Any] = {}
        self._commits: dict[int, list[tuple[int, bytes]]] = {}
        self._ledger_time: dict[int, int] = {}  # instance -> timestamp of its last commit
        self._finalized: dict[int, bytes] = {}  # height -> block id (first honest commit)
        self._finalized_parent: dict[int, bytes] = {}
        self._voted: dict[int, dict[bytes, int]] = {}  # seq -> block id -> block round
        # instance -> (quiet time then, its first commit after it): the liveness check needs
        # only the first commit after the last fault (bounded state; faults only move later)
        self._commit_after_ms: dict[int, tuple[float, float]] = {}
        self._verified: dict[int, tuple[Any, bool]] = {}
        # id -> (certificate, valid QCs (round, block id) inside it, subtree height)
        self._scanned: dict[int, tuple[Any, tuple[tuple[int, bytes], ...], int]] = {}
        self._instances_of: Simulator | None = None
        self._identity: list[int] = []
        self._honest: list[bool] = []
        self._children: dict[bytes, set[tuple[bytes, int]]] = {}  # parent -> (child, qc round)
        self._qc_rounds_of: dict[bytes, set[int]] = {}  # block id -> rounds of valid QCs on it
        self._commit_heads: list[tuple[int, bytes]] = []  # (instance, highest block committed)
        self.liveness: str = "not-checked"

    # ------------------------------------------------------------------ helpers

    def violation(self, text: str) -> None:
        self.violation_count += 1
        if len(self.violations) < MAX_VIOLATIONS and text not in self.violations:
            self.violations.append(text)

    def _honest_instance(self, sim: Simulator, node: int) -> bool:
        return sim.hosts[node].identity in self._honest_ids

    def _valid(self, certificate: Any) -> bool:
        """Stateless validity, cached by object (the same certificate object travels in many
        messages); the cache is bounded and holds the object so its id stays unique."""
        entry = self._verified.get(id(certificate))
        if entry is not None and entry[0] is certificate:
            return entry[1]
        if len(self._verified) >= MAX_CACHED_CERTIFICATES:
            self._verified.clear()
        valid = self.ctx.verify(certificate)
        self._verified[id(certificate)] = (certificate, valid)
        return valid

    def _leader_signed(self, tip: Tip) -> bool:
        """The tip's header is signed by leader(block_round) (what equivocation proofs need)."""
        header = tip.header
        block_id = codec.block_id(header)
        cached = self._signed_ok.get(block_id + tip.signature)
        if cached is None:
            author = header.author
            cached = (
                self.ctx.validators.contains(author)
                and author == self.ctx.schedule.leader(header.block_round)
                and self.ctx.scheme.verify(
                    self.ctx.validators.public_key(author),
                    Domain.TIP,
                    codec.tip_signing_bytes(header),
                    tip.signature,
                )
            )
            self._signed_ok[block_id + tip.signature] = cached
        return cached

    def _equivocated(self, leader: int, block_round: int) -> bool:
        return len(self._headers.get((leader, block_round), {})) >= 2

    def _fresh_qc(self, block_id: bytes, block_round: int) -> bool:
        """The log holds a valid QC on the block whose round is its block round."""
        return block_round in self._qc_rounds_of.get(block_id, ())

    # ------------------------------------------------------------------ observer hooks

    # The command types the checker reads (the engine shows it no other: Observer).
    command_types = frozenset(
        {
            Send,
            Broadcast,
            PersistSafety,
            CommitBlocks,
            MarkVoted,
            RevertVoted,
            RecordEquivocation,
            RoundEntered,
            Trace,
        }
    )

    def _instances(self, sim: Simulator) -> tuple[list[int], list[bool]]:
        """(identity, honest) of every instance of `sim` (fixed for a run), computed once."""
        if self._instances_of is not sim:
            self._instances_of = sim
            self._identity = [host.identity for host in sim.hosts]
            self._honest = [identity in self._honest_ids for identity in self._identity]
        return self._identity, self._honest

    def on_command(self, sim: Simulator, node: int, command: Any) -> None:
        kind = type(command)
        identities, honest_of = self._instances(sim)
        honest = honest_of[node]
        if kind is Send or kind is Broadcast:
            if type(command.message) in _LANE_MESSAGES:
                return  # certified lane traffic carries no consensus certificate
            self._message(sim, identities[node], honest, command.message)
        elif not honest:
            return
        elif kind is Trace:
            self._trace(command)
        elif kind is MarkVoted:
            marks = self._voted.setdefault(command.seq_num, {})
            marks.setdefault(command.block_id, command.block_round)
        elif kind is PersistSafety:
            self._safety[node] = command.state
        elif kind is CommitBlocks:
            self._commit(sim, node, command)
        elif kind is RoundEntered:
            if command.round > self.stats.max_round:
                self.stats.max_round = command.round
        elif kind is RevertVoted:
            self._revert(node, command)
        elif kind is RecordEquivocation:
            evidence = command.evidence
            for tip in (evidence.first, evidence.second):
                self._note_tip(tip)

    def _trace(self, command: Trace) -> None:
        detail = command.detail
        if command.name in ("dropped", "vote_refused"):
            self._count_rejection(str(detail.get("reason", "")))
        round_ = detail.get("round")
        if not isinstance(round_, int):
            return
        if command.name == "qc_formed" and isinstance(detail.get("block_id"), str):
            self._qc(round_, bytes.fromhex(detail["block_id"]))
        elif command.name == "tc_formed":
            self.stats.tcs.add(round_)
        elif command.name == "nec_formed":
            self.stats.necs.add(round_)

    def _count_rejection(self, reason: str) -> None:
        """An honest node refused an input: count it by reason, numbers masked."""
        key = _DIGITS.sub("N", reason)
        rejected = self.stats.rejected
        if key in rejected or len(rejected) < MAX_REJECTION_KINDS:
            rejected[key] = rejected.get(key, 0) + 1

    def _note_tip(self, tip: Tip) -> None:
        header = tip.header
        slot = (header.author, header.block_round)
        block_id = codec.block_id(header)
        self._children.setdefault(header.qc.block_id, set()).add((block_id, header.qc.round))
        known = self._headers.setdefault(slot, {})
        if block_id in known or not self._leader_signed(tip):
            return
        known[block_id] = tip
        if len(known) >= 2:
            self.stats.equivocations.add(slot)

    def _message(self, sim: Simulator, identity: int, honest: bool, message: Any) -> None:
        self._scan(message, 0, None)
        mtype = type(message)
        if mtype is ProposalMessage:
            self._proposal(identity, honest, message)
        elif not honest:
            return
        elif mtype is VoteMessage:
            self._vote(identity, message.vote.round, message.vote.block_id, tip_vote=False)
        elif mtype is TimeoutMessage:
            self.stats.timed_out_rounds.add(message.info.round)
            if message.tip_vote_signature is not None and isinstance(message.high_extend, Tip):
                block_id = codec.block_id(message.high_extend.header)
                self._vote(
                    identity,
                    message.info.round,
                    block_id,
                    tip_vote=True,
                    tip_round=message.high_extend.block_round,
                )
        elif mtype is NoEndorsementMessage:
            self._no_endorsement(sim, identity, message)

    def _scan(self, value: Any, depth: int, found: list[tuple[int, bytes]] | None) -> int:
        """Note every certificate nested in `value` in `certificates_in`'s order (pre-order,
        fields in declaration order, nothing deeper than MAX_DEPTH) and return the height
        of the searched subtree. A certificate object (frozen: its content never changes)
        is searched once: the scan remembers by identity the valid QCs found inside it and,
        when the same object travels again in another message, replays only those through
        `_qc` (a P3 conflict fires again, as a second walk would). Everything else a walk
        does (tips, TC and NEC rounds) is idempotent. `found` collects the valid QCs for an
        enclosing certificate's entry."""
        if depth > MAX_DEPTH:
            return 1 << 20  # cut off: the enclosing entries are not remembered
        vtype = type(value)
        kind = _certificate_kind(vtype)
        if kind is not None:
            entry = self._scanned.get(id(value))
            if entry is not None and entry[0] is value and depth + entry[2] <= MAX_DEPTH:
                for round_, block_id in entry[1]:
                    self._qc(round_, block_id)
                if found is not None:
                    found.extend(entry[1])
                return entry[2]
            mine: list[tuple[int, bytes]] = []
            self._certificate(kind, value, mine)
            height = self._scan_children(value, depth, mine)
            if depth + height <= MAX_DEPTH:  # complete: remember it
                if len(self._scanned) >= MAX_CACHED_CERTIFICATES:
                    self._scanned.clear()
                self._scanned[id(value)] = (value, tuple(mine), height)
            if found is not None:
                found.extend(mine)
            return height
        return self._scan_children(value, depth, found)

    def _scan_children(self, value: Any, depth: int, found: list[tuple[int, bytes]] | None) -> int:
        if isinstance(value, msgspec.Struct):
            children: Any = [getattr(value, name) for name in value.__struct_fields__]
        elif isinstance(value, tuple):
            children = value
        else:
            return 0
        height = 0
        for child in children:
            if type(child) in _LEAF_TYPES or not isinstance(child, msgspec.Struct | tuple):
                continue
            below = self._scan(child, depth + 1, found) + 1
            if below > height:
                height = below
        return height

    def _certificate(self, kind: type, certificate: Any, found: list[tuple[int, bytes]]) -> None:
        if kind is Tip:
            self._note_tip(certificate)
        elif kind is QuorumCertificate:
            if certificate.round > 0 and self._valid(certificate):
                self._qc(certificate.round, certificate.block_id)
                found.append((certificate.round, certificate.block_id))
        elif kind is TimeoutCertificate:
            if self._valid(certificate):
                self.stats.tcs.add(certificate.round)
        elif kind is NoEndorsementCertificate and self._valid(certificate):
            self.stats.necs.add(certificate.round)

    def _qc(self, round_: int, block_id: bytes) -> None:
        self.stats.qc_rounds.add(round_)
        self._qc_rounds_of.setdefault(block_id, set()).add(round_)
        first = self._qc_by_round.setdefault(round_, block_id)
        if first != block_id:
            # P3: two valid QCs of one round certify different blocks.
            self.violation(
                f"P3 one QC per round: round {round_} has QCs on {first.hex()[:12]} "
                f"and {block_id.hex()[:12]}"
            )

    def _proposal(self, identity: int, honest: bool, message: ProposalMessage) -> None:
        tip = message.tip
        block_id = codec.block_id(tip.header)
        tc = message.last_round_tc
        tc_tip = None
        if tc is not None and isinstance(tc.high_extend, Tip):
            tc_tip = codec.block_id(tc.high_extend.header)
        self._proposal_tc_tip.setdefault((message.round, block_id), set()).add(tc_tip)
        if not honest:
            return
        if tip.block_round < message.round:
            self.stats.reproposals.add((message.round, block_id))
        elif (
            tip.block_round == message.round
            and tip.header.author == identity
            and block_id not in self._fresh_honest
        ):
            self._fresh_honest[block_id] = tip
            self._fresh_at_height.setdefault(tip.header.seq_num, []).append(block_id)

    def _vote(
        self, identity: int, round_: int, block_id: bytes, *, tip_vote: bool, tip_round: int = 0
    ) -> None:
        previous = self._vote_by_signer.setdefault((identity, round_), block_id)
        if previous != block_id:
            # P3 (cause): an honest validator signs at most one vote per round.
            self.violation(
                f"P3 double vote: honest validator {identity} voted {previous.hex()[:12]} and "
                f"{block_id.hex()[:12]} in round {round_}"
            )
        self._honest_voters.setdefault((block_id, round_), set()).add(identity)
        self._honest_voters_any_round.setdefault(block_id, set()).add(identity)
        ne_tip = self._ne_by_signer.get((identity, round_))
        if ne_tip is not None:
            self._check_vote_after_ne(identity, round_, block_id, ne_tip, tip_vote, tip_round)

    def _check_vote_after_ne(
        self,
        identity: int,
        round_: int,
        block_id: bytes,
        ne_tip: bytes,
        tip_vote: bool,
        tip_round: int,
    ) -> None:
        if tip_vote:
            ok = tip_round == round_
        else:
            ok = ne_tip in self._proposal_tc_tip.get((round_, block_id), set())
        if not ok:
            # P4: after NE(r) against T, vote in r only for proposals whose TC high tip is T.
            self.violation(
                f"P4 vote/NE exclusion: validator {identity} sent NE({round_}) against "
                f"{ne_tip.hex()[:12]} and voted {block_id.hex()[:12]} in round {round_}"
            )

    def _no_endorsement(self, sim: Simulator, identity: int, message: NoEndorsementMessage) -> None:
        round_ = message.no_endorsement.round
        tip_id = b""
        for node in sim.instances_of.get(identity, ()):
            state = self._safety.get(node)
            if state is not None and getattr(state, "highest_no_endorse_round", None) == round_:
                tip_id = getattr(state, "highest_no_endorse_tip_id", b"")
        self._ne_by_signer[(identity, round_)] = tip_id
        voted = self._vote_by_signer.get((identity, round_))
        if voted is not None:
            tip_vote = False  # plain votes are recorded with the proposal they answered
            self._check_vote_after_ne(identity, round_, voted, tip_id, tip_vote, 0)

    def _commit(self, sim: Simulator, node: int, command: CommitBlocks) -> None:
        history = self._commits.setdefault(node, [])
        for block in command.blocks:
            height = block.header.seq_num
            last = history[-1][0] if history else 0
            if height != last + 1:
                # P2: finalized heights are contiguous and never regress.
                self.violation(
                    f"P2 commit monotonicity: instance {node} finalized height {height} "
                    f"after height {last}"
                )
            history.append((height, block.block_id))
            parent = block.header.qc.block_id
            linked = len(history) >= 2 and history[-2][0] == height - 1
            if linked and history[-2][1] != parent:
                # P1 corollary: a finalized ledger is parent-linked.
                self.violation(
                    f"P1 chain: instance {node} finalized {block.block_id.hex()[:12]} at "
                    f"height {height} whose parent is not its height-{height - 1} block"
                )
            parent_time = self._ledger_time.get(node)
            if linked and parent_time is not None and block.header.timestamp_ns < parent_time:
                # Ledger validity (T-TIME on the finalized chain): time never runs backwards.
                self.violation(
                    f"ledger time: instance {node} finalized {block.block_id.hex()[:12]} at "
                    f"height {height} with a timestamp earlier than its parent's"
                )
            self._ledger_time[node] = block.header.timestamp_ns
            first = self._finalized.setdefault(height, block.block_id)
            if first != block.block_id:
                # P1: honest nodes never finalize different blocks at one height.
                self.violation(
                    f"P1 agreement: height {height} finalized as {first.hex()[:12]} and as "
                    f"{block.block_id.hex()[:12]} (instance {node})"
                )
            self._check_tail_fork_at(height, block.block_id)
            self._check_voted_kept(height, block.block_id)
        if command.blocks:
            self._commit_heads.append((node, command.blocks[-1].block_id))
        quiet_ms = max(sim.last_fault_ms, self.ctx.quiet_after_ms)
        known = self._commit_after_ms.get(node)
        if sim.now_ms > quiet_ms and (known is None or known[0] < quiet_ms):
            self._commit_after_ms[node] = (quiet_ms, sim.now_ms)

    def _check_commit_rule(self) -> None:
        """C-TWO-CHAIN: a commit of X needs a child Y of X and a QC on Y from round
        Y.qc.round + 1 (checked at the end: the QC may be formed by the committer itself)."""
        for node, head in self._commit_heads:
            justified = any(
                qc_round + 1 in self._qc_rounds_of.get(child, ())
                for child, qc_round in self._children.get(head, ())
            )
            if not justified:
                # C-TWO-CHAIN: commit only with a consecutive-round two-chain.
                self.violation(
                    f"commit rule: instance {node} finalized {head.hex()[:12]} without a "
                    "consecutive-round QC on a child"
                )

    def _check_voted_kept(self, height: int, block_id: bytes) -> None:
        if self.ctx.protocol == "vanilla":
            return
        for voted_id, block_round in self._voted.get(height, {}).items():
            if voted_id == block_id or not self._fresh_qc(voted_id, block_round):
                continue  # a Voted mark resting only on a reproposal's QC is not accountable
            leader = self.ctx.schedule.leader(block_round)
            if not self._equivocated(leader, block_round):
                # P6': a block with a fresh QC is only replaced when its leader equivocated.
                self.violation(
                    f"P6 speculative finality: {voted_id.hex()[:12]} (round {block_round}) "
                    f"was Voted with a fresh QC but {block_id.hex()[:12]} finalized at "
                    f"height {height} without equivocation by leader {leader}"
                )

    def _revert(self, node: int, command: RevertVoted) -> None:
        self.stats.speculative_reverts += 1
        if self.ctx.protocol == "vanilla":
            return  # vanilla HotStuff promises nothing about QC'd-but-uncommitted blocks
        evidence = command.evidence
        leader = self.ctx.schedule.leader(command.block_round)
        ok = (
            evidence is not None
            and evidence.block_round == command.block_round
            and evidence.first.header.block_round == command.block_round
            and evidence.second.header.block_round == command.block_round
            and codec.block_id(evidence.first.header) != codec.block_id(evidence.second.header)
            and self._leader_signed(evidence.first)
            and self._leader_signed(evidence.second)
            and evidence.first.header.author == leader
        )
        if ok:
            return
        if evidence is not None:
            # P6': evidence an honest node attaches to a revert is well-formed.
            self.violation(
                f"P6 malformed equivocation evidence: instance {node} reverted "
                f"{command.block_id.hex()[:12]} of round {command.block_round}"
            )
        elif not self._fresh_qc(command.block_id, command.block_round):
            self.stats.reproposal_reverts += 1  # Voted only through a reproposal's QC
        elif not self._equivocated(leader, command.block_round):
            # P6': a block with a fresh QC is reverted only when leader(r) equivocated.
            self.violation(
                f"P6 revert without equivocation evidence: instance {node} reverted "
                f"{command.block_id.hex()[:12]} of round {command.block_round}, which had a "
                "QC of its own round"
            )

    def _tail_forked(self, block_id: bytes, tip: Tip) -> bool:
        # P5' premise: f+1 honest stake voted B in B's own round (reproposal votes excluded).
        voters = self._honest_voters.get((block_id, tip.block_round), set())
        if self.ctx.validators.stake_of(voters) < self._f_plus_one:
            return False
        header = tip.header
        if self._equivocated(header.author, header.block_round):
            return False
        final = self._finalized.get(header.seq_num)
        return final is not None and final != block_id

    def _check_tail_fork_at(self, height: int, block_id: bytes) -> None:
        if self.ctx.protocol == "vanilla":
            return
        # Only the fresh blocks of this height, in the order they were first proposed
        # (the order of `_fresh_honest`, which this index follows).
        for other_id in self._fresh_at_height.get(height, ()):
            tip = self._fresh_honest[other_id]
            if other_id != block_id and self._tail_forked(other_id, tip):
                # P5': an honest leader's block voted by >= f+1 honest stake in its own
                # round is never replaced.
                self.violation(
                    f"P5 tail fork: block {other_id.hex()[:12]} of honest leader "
                    f"{tip.header.author} (round {tip.block_round}) had f+1 honest votes in "
                    f"its round but {block_id.hex()[:12]} was finalized at height {height}"
                )

    def tail_forks(self) -> list[bytes]:
        return [b for b, tip in self._fresh_honest.items() if self._tail_forked(b, tip)]

    def reproposal_tail_forks(self) -> list[bytes]:
        """Replaced fresh blocks of honest leaders that reach f+1 honest votes only when
        votes on their reproposals count (allowed by P5'; reported, not a violation)."""
        lost = []
        for block_id, tip in self._fresh_honest.items():
            header = tip.header
            final = self._finalized.get(header.seq_num)
            if (
                final is not None
                and final != block_id
                and not self._tail_forked(block_id, tip)
                and not self._equivocated(header.author, header.block_round)
                and self.ctx.validators.stake_of(self._honest_voters_any_round.get(block_id, set()))
                >= self._f_plus_one
            ):
                lost.append(block_id)
        return lost

    def on_finish(self, sim: Simulator) -> None:
        self._check_commit_rule()
        # P5 at the end, for blocks whose height was finalized before they were proposed.
        if self.ctx.protocol != "vanilla":
            for block_id in self.tail_forks():
                tip = self._fresh_honest[block_id]
                self.violation(
                    f"P5 tail fork: block {block_id.hex()[:12]} of honest leader "
                    f"{tip.header.author} (round {tip.block_round}) had f+1 honest votes in "
                    f"its round but is not finalized at height {tip.header.seq_num}"
                )
        self._check_liveness(sim)

    def _check_liveness(self, sim: Simulator) -> None:
        """Every honest instance that is up at the end finalizes a block within
        `liveness_ms` after the last fault; `inconclusive` if the run ended before the
        faults did or before the bound for an instance that has not committed yet."""
        quiet_ms = max(sim.last_fault_ms, self.ctx.quiet_after_ms)
        live = [host.index for host in sim.hosts if host.up and host.identity in self._honest_ids]
        if not self.ctx.validators.has_quorum({sim.hosts[i].identity for i in live}):
            self.liveness = "not-expected"
            return
        if sim.now_ms < quiet_ms:
            self.liveness = "inconclusive"  # the run ended before the faults did
            return
        deadline_ms = quiet_ms + self.ctx.liveness_ms
        late: list[int] = []
        waiting = False
        for node in live:
            first = self._first_commit_after(node, quiet_ms)
            if first is not None and first <= deadline_ms:
                continue
            if first is None and sim.now_ms < deadline_ms:
                waiting = True  # may still commit: the run ended before the bound
            else:
                late.append(node)
        if late:
            self.liveness = "violated"
            self.violation(
                f"liveness: honest instance(s) {late} finalized nothing within "
                f"{self.ctx.liveness_ms:g} ms after the last fault at {quiet_ms:g} ms"
            )
        else:
            self.liveness = "inconclusive" if waiting else "ok"

    def _first_commit_after(self, node: int, quiet_ms: float) -> float | None:
        known = self._commit_after_ms.get(node)
        if known is None or known[0] != quiet_ms:
            return None  # no commit since the last fault
        return known[1]
