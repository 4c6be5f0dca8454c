"""Byzantine behaviours: wrappers around an unmodified core that rewrite what it sends.

TEST ONLY, shared by both drivers: netsim (`netsim.runner`) and the node
(`node/faults.py`, when a config's `[test]` section names a behaviour) wrap the core in
the same `ByzantineMachine`, so a behaviour means the same thing in the simulator and
on real processes. Pure like the rest of `consensus/`: no I/O, no clock, and the
randomness `stale_spam` needs comes from the driver (`rng`, any object with
`randrange` and `randbytes`: a seeded `random.Random` in netsim, the node's own).

`ByzantineMachine` runs a real `ConsensusCore` (so the node tracks the protocol and keeps
a plausible state) and transforms its outgoing `Send`/`Broadcast` commands. Crafted
messages are signed with the node's own key through `consensus.certificates.Signer`, so
they are exactly as valid as a real attacker could make them. A behaviour is active in
the rounds listed in the scenario (`rounds`), or in every round when omitted; the round
of an outgoing message is its protocol round (proposal/vote/timeout/NE/recovery round;
an AdvanceRound's certificate round + 1).

Behaviours (`BEHAVIOURS`):
- silent: sends nothing (still receives and keeps state); with `targets`, sends nothing
  to those peers only (an under-disseminating leader).
- equivocate: as leader, sends its proposal to `targets` (default: the lower half of the
  peers) and a second, different block of the same round (other payload) to the others.
- withhold_votes: never sends its votes (plain votes; tip votes are stripped from timeouts).
- withhold_qc: collects votes but never reveals a QC it formed itself: every outgoing
  message that carries a QC this node did not receive from someone else is dropped.
- tail_fork: as leader of round r, drops its honest proposal (and every later message
  naming that block: its vote, timeouts carrying it as tip; and the QC it formed), then proposes a fresh block at the previous block's height on the older
  certificate: at once without a TC (malformed in every mode), and again with TC(r-1) as
  soon as it can build one from the timeouts it receives (valid in `vanilla`).
- invalid_signatures: corrupts the signature of every message it sends.
- stale_spam: also floods old messages (replays of what it received, up to 4 per event)
  and signed votes/timeouts for far-future rounds.
- ne_spam: sends a signed NoEndorsement {round, tip_qc_round = its high QC round} for its
  current and next round to those rounds' leaders on every event it handles (at most 2
  per event), whatever it holds.
- withhold_bundles (needs `[lanes]` in netsim): a lane-layer behaviour, implemented by
  each driver's lane layer (`netsim.lanes`; on a node, `node/faults.py` with the cartel
  pool of `node/cartel_pool.py`) as a `LaneProposer` with a withholding policy: the node
  omits the bundles addressed to its lane (only those of `target_senders`, when given)
  and pools them with the other `withhold_bundles` nodes (one cartel, one `CartelPool`).
  Its consensus messages are untouched: `ByzantineMachine` passes every command through.
- drop_lane_blocks (needs `[lanes]` in netsim): a censoring leader, implemented by each
  driver's lane layer: every block it proposes carries no lane block but its own lane's
  (its own lane follows its lane behaviour). The omitted lane blocks are counted per leader
  (`lanes.lane_blocks_omitted`). Its consensus messages are untouched.

Signed-but-invalid behaviours (`consensus.signed_invalid`): bad_height, bad_timestamp,
bad_reproposal, forged_tc_rank, strip_timeouts send correctly signed messages that break
one validity rule each.

Several behaviours may be stacked on one node (several `[[byzantine]]` entries): each
wraps the previous one, in file order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from consensus import codec
from consensus.certificates import Signer, build_tc
from consensus.events import Broadcast, MessageReceived, Send
from consensus.messages import (
    GENESIS_QC,
    AdvanceRoundMessage,
    BlockBody,
    NoEndorsement,
    NoEndorsementCertificate,
    NoEndorsementMessage,
    NoTipCertificate,
    ProposalMessage,
    QuorumCertificate,
    RoundRecoveryMessage,
    TimeoutCertificate,
    TimeoutInfo,
    TimeoutMessage,
    Tip,
    Vote,
    VoteMessage,
)
from consensus.signed_invalid import SIGNED_INVALID, SignedInvalid
from consensus.validators import LeaderSchedule, ValidatorSet

BEHAVIOURS: dict[str, str] = {
    "silent": "sends nothing",
    "equivocate": "as leader, different blocks of one round to different peers",
    "withhold_votes": "never sends votes (nor tip votes)",
    "withhold_qc": "collects votes, never reveals a QC it formed",
    "tail_fork": "as leader, drops the previous block: fresh block on the older certificate",
    "invalid_signatures": "corrupts every signature it sends",
    "stale_spam": "floods replays of old messages and far-future votes/timeouts",
    "ne_spam": "sends no-endorsements for every round, whatever it holds",
    "withhold_bundles": "as a lane proposer, omits and pools bundles addressed to it ([lanes])",
    "drop_lane_blocks": "as leader, includes no lane block but its own lane's ([lanes])",
    **SIGNED_INVALID,
}
# Behaviours that live in the drivers' lane layers, not in the consensus messages.
LANE_BEHAVIOURS = frozenset({"withhold_bundles", "drop_lane_blocks"})
MAX_REPLAY_BUFFER = 256
MAX_SPAM_PER_EVENT = 4
FUTURE_ROUND_OFFSET = 1000


_CERT_TYPES = (
    QuorumCertificate,
    TimeoutCertificate,
    NoEndorsementCertificate,
    NoTipCertificate,
    Tip,
)


class Rng(Protocol):
    """The randomness a behaviour draws from (`random.Random` fits)."""

    def randrange(self, stop: int) -> int: ...

    def randbytes(self, n: int) -> bytes: ...


def certificates_in(value: Any, depth: int = 0) -> Iterable[Any]:
    """Every QC, TC, NEC, NoTip certificate and Tip nested anywhere inside a message."""
    if depth > 12:  # messages nest at most ~6 deep (proposal > TC > tip > header > QC)
        return
    if isinstance(value, _CERT_TYPES):
        yield value
    if isinstance(value, msgspec.Struct):
        for name in value.__struct_fields__:
            child = getattr(value, name)
            if isinstance(child, msgspec.Struct | tuple):
                yield from certificates_in(child, depth + 1)
    elif isinstance(value, tuple):
        for child in value:
            if isinstance(child, msgspec.Struct | tuple):
                yield from certificates_in(child, depth + 1)


def message_round(message: Any) -> int | None:
    """The protocol round a message belongs to (None for sync traffic)."""
    kind = type(message)
    if kind is ProposalMessage or kind is RoundRecoveryMessage:
        return message.round
    if kind is VoteMessage:
        return message.vote.round
    if kind is TimeoutMessage:
        return message.info.round
    if kind is NoEndorsementMessage:
        return message.no_endorsement.round
    if kind is AdvanceRoundMessage:
        return message.certificate.round + 1
    return None


def qcs_in(value: Any) -> Iterable[QuorumCertificate]:
    """Every QC nested anywhere inside a message."""
    return (c for c in certificates_in(value) if isinstance(c, QuorumCertificate))


def tips_in(value: Any) -> Iterable[Tip]:
    """Every tip nested anywhere inside a message."""
    return (c for c in certificates_in(value) if isinstance(c, Tip))


@dataclass
class ByzantineMachine:
    """A core plus one behaviour. Commands other than sends pass through unchanged."""

    inner: Any  # the node's ConsensusCore
    behaviour: str
    signer: Signer
    validators: ValidatorSet
    schedule: LeaderSchedule
    epoch: int
    rng: Rng
    rounds: frozenset[int] | None = None
    targets: tuple[int, ...] | None = None
    _known_qcs: set[tuple[int, bytes]] = field(default_factory=set)
    _replay: deque[tuple[int, Any]] = field(default_factory=lambda: deque(maxlen=MAX_REPLAY_BUFFER))
    _timeouts: dict[int, dict[int, TimeoutMessage]] = field(default_factory=dict)
    _fork_pending: dict[int, tuple[ProposalMessage, bytes]] = field(default_factory=dict)
    _forked_with_tc: set[int] = field(default_factory=set)
    _suppressed: set[bytes] = field(default_factory=set)
    _invalid: SignedInvalid | None = None

    def __post_init__(self) -> None:
        if self.behaviour not in BEHAVIOURS:
            raise ValueError(f"unknown Byzantine behaviour {self.behaviour!r}")
        if self.behaviour in SIGNED_INVALID:
            self._invalid = SignedInvalid(self)

    # ------------------------------------------------------------------ plumbing

    @property
    def index(self) -> int:
        return self.signer.index

    def active(self, round_: int | None) -> bool:
        return self.rounds is None or (round_ is not None and round_ in self.rounds)

    def _peers(self) -> list[int]:
        return [i for i in range(len(self.validators)) if i != self.index]

    def handle(self, event: Any) -> list[Any]:
        extra: list[Any] = []
        if isinstance(event, MessageReceived):
            extra = self._observe(event)
        commands = self.inner.handle(event)
        out: list[Any] = []
        for command in commands:
            if isinstance(command, Send | Broadcast):
                out.extend(self._rewrite(command))
            else:
                out.append(command)
        out.extend(extra)
        out.extend(self._spam())
        return out

    def _observe(self, event: MessageReceived) -> list[Any]:
        message = event.message
        for qc in qcs_in(message):
            self._known_qcs.add((qc.round, qc.block_id))
        if self.behaviour == "stale_spam":
            self._replay.append((event.sender, message))
        if self._invalid is not None:
            return self._invalid.observe(event.sender, message)
        if self.behaviour == "tail_fork" and isinstance(message, TimeoutMessage):
            round_ = message.info.round
            self._timeouts.setdefault(round_, {}).setdefault(message.author, message)
            return self._try_fork_with_tc(round_ + 1)
        return []

    # ------------------------------------------------------------------ rewriting

    def _rewrite(self, command: Send | Broadcast) -> list[Any]:
        message = command.message
        if self._suppressed and self._mentions_suppressed(message):
            return []  # tail_fork: the dropped honest block never shows up anywhere
        round_ = message_round(message)
        if not self.active(round_):
            return [command]
        behaviour = self.behaviour
        if self._invalid is not None:
            replaced = self._invalid.rewrite(command, message)
            return [command] if replaced is None else replaced
        if behaviour == "silent":
            if self.targets is None:
                return []
            recipients = self._peers() if isinstance(command, Broadcast) else [command.to]
            return [Send(p, message) for p in recipients if p not in self.targets]
        if behaviour == "withhold_votes":
            if isinstance(message, VoteMessage):
                return []
            if isinstance(message, TimeoutMessage) and message.tip_vote_signature is not None:
                return [
                    _with_message(
                        command, msgspec.structs.replace(message, tip_vote_signature=None)
                    )
                ]
            return [command]
        if behaviour == "withhold_qc":
            return [] if self._reveals_own_qc(message) else [command]
        if behaviour == "invalid_signatures":
            return [_with_message(command, _corrupt(message))]
        if behaviour == "equivocate" and self._own_fresh_proposal(message):
            return self._equivocate(command, message)
        if behaviour == "tail_fork":
            if self._own_fresh_proposal(message):
                return self._tail_fork(message)
            if self._reveals_own_qc(message):
                return []
        return [command]

    def _own_fresh_proposal(self, message: Any) -> bool:
        return (
            isinstance(message, ProposalMessage)
            and message.author == self.index
            and message.tip.block_round == message.round
        )

    def _reveals_own_qc(self, message: Any) -> bool:
        return any(
            qc.round > 0 and (qc.round, qc.block_id) not in self._known_qcs
            for qc in qcs_in(message)
        )

    def _mentions_suppressed(self, message: Any) -> bool:
        if isinstance(message, VoteMessage):
            return message.vote.block_id in self._suppressed
        return any(codec.block_id(tip.header) in self._suppressed for tip in tips_in(message))

    def _fork_block(
        self, proposal: ProposalMessage, qc: QuorumCertificate, seq_num: int, salt: bytes
    ):
        """A fresh block for `proposal.round` on `qc` at `seq_num`, signed by this node."""
        body = BlockBody(payload=proposal.body.payload + salt)
        header = msgspec.structs.replace(
            proposal.tip.header, qc=qc, seq_num=seq_num, body_id=codec.body_id(body)
        )
        return self.signer.tip(header), body

    def _equivocate(self, command: Send | Broadcast, proposal: ProposalMessage) -> list[Any]:
        header = proposal.tip.header
        tip_b, body_b = self._fork_block(proposal, header.qc, header.seq_num, b"/equivocation")
        tip_b = self.signer.tip(tip_b.header, proposal.tip.fresh_certificate)
        second = self.signer.proposal(
            proposal.round, proposal.epoch, tip_b, body_b, proposal.last_round_tc
        )
        peers = self._peers()
        group_a = set(self.targets) if self.targets is not None else set(peers[: len(peers) // 2])
        recipients = peers if isinstance(command, Broadcast) else [command.to]
        return [Send(p, proposal if p in group_a else second) for p in recipients]

    def _tail_fork(self, proposal: ProposalMessage) -> list[Any]:
        """Replace an honest proposal for round r by a fresh sibling of the previous block."""
        self._suppressed.add(codec.block_id(proposal.tip.header))
        previous = self.inner.block(proposal.tip.header.qc.block_id)
        if previous is None:
            return []
        previous_tip = previous[0]
        older_qc = previous_tip.header.qc
        tip, body = self._fork_block(proposal, older_qc, previous_tip.header.seq_num, b"/fork")
        self._fork_pending[proposal.round] = (proposal, body.payload)
        forged = self.signer.proposal(proposal.round, proposal.epoch, tip, body, None)
        return [Broadcast(forged), *self._try_fork_with_tc(proposal.round)]

    def _try_fork_with_tc(self, round_: int) -> list[Any]:
        pending = self._fork_pending.get(round_)
        timeouts = self._timeouts.get(round_ - 1, {})
        if pending is None or round_ in self._forked_with_tc:
            return []
        if not self.validators.has_quorum(timeouts):
            return []
        proposal, _payload = pending
        tc: TimeoutCertificate = build_tc(
            self.epoch, round_ - 1, timeouts.values(), self.validators
        )
        extend = tc.high_extend
        qc = extend if isinstance(extend, QuorumCertificate) else extend.header.qc
        if qc.round == 0:
            seq_num = 1  # on the genesis QC
        else:
            parent = self.inner.block(qc.block_id)
            if parent is None:
                return []
            seq_num = parent[0].header.seq_num + 1
        tip, body = self._fork_block(proposal, qc, seq_num, b"/fork-tc")
        self._forked_with_tc.add(round_)
        return [Broadcast(self.signer.proposal(round_, proposal.epoch, tip, body, tc))]

    # ------------------------------------------------------------------ spam

    def _spam(self) -> list[Any]:
        if self.behaviour == "stale_spam":
            return self._stale_spam()
        if self.behaviour == "ne_spam":
            return self._ne_spam()
        return []

    def _current_round(self) -> int:
        return int(getattr(self.inner, "current_round", 1))

    def _stale_spam(self) -> list[Any]:
        out: list[Any] = []
        current = self._current_round()
        if not self.active(current):
            return out
        for _ in range(min(2, len(self._replay))):
            _sender, message = self._replay[self.rng.randrange(len(self._replay))]
            out.append(Broadcast(message))
        future = current + FUTURE_ROUND_OFFSET + self.rng.randrange(1000)
        vote = Vote(block_id=self.rng.randbytes(32), round=future, epoch=self.epoch)
        out.append(Broadcast(self.signer.vote(vote)))
        info = TimeoutInfo(epoch=self.epoch, round=future, high_qc_round=0, high_tip_round=0)
        out.append(Broadcast(self.signer.timeout(info, GENESIS_QC, None, tip_vote=False)))
        return out[:MAX_SPAM_PER_EVENT]

    def _ne_spam(self) -> list[Any]:
        out: list[Any] = []
        current = self._current_round()
        for round_ in (current, current + 1):
            if not self.active(round_):
                continue
            tip_qc_round = int(self.inner.high_qc.round)
            ne = NoEndorsement(epoch=self.epoch, round=round_, tip_qc_round=tip_qc_round)
            leader = self.schedule.leader(round_)
            if leader != self.index:
                out.append(Send(leader, self.signer.no_endorsement(ne)))
        return out[:2]

    # ------------------------------------------------------------------ views used by drivers

    def __getattr__(self, name: str) -> Any:
        # Read-only views (current_round, finalized_height, ...) come from the inner core.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.inner, name)


def _with_message(command: Send | Broadcast, message: Any) -> Send | Broadcast:
    if isinstance(command, Send):
        return Send(command.to, message)
    return Broadcast(message)


def _corrupt(message: Any) -> Any:
    """The same message with its author signature flipped (AdvanceRound: its certificate's)."""
    if hasattr(message, "signature"):
        signature = bytes([message.signature[0] ^ 0xFF]) + message.signature[1:]
        return msgspec.structs.replace(message, signature=signature)
    if isinstance(message, AdvanceRoundMessage):
        certificate = message.certificate
        if isinstance(certificate, QuorumCertificate) and certificate.signatures:
            first = certificate.signatures[0]
            signatures = (bytes([first[0] ^ 0xFF]) + first[1:], *certificate.signatures[1:])
            certificate = msgspec.structs.replace(certificate, signatures=signatures)
            return AdvanceRoundMessage(certificate=certificate)
    return message
