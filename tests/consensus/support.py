"""Builders for core tests: real keys and signatures, a 4-validator round-robin network.

leader(r) = r mod 4. The usual chain is B1 (round 1, leader 1) <- B2 (round 2, leader 2) ...
"""

from __future__ import annotations

from consensus import codec
from consensus.certificates import Signer, build_qc, build_tc
from consensus.core import ConsensusCore, CoreConfig, RecoveredState
from consensus.crypto import ED25519, derive_keys
from consensus.events import Broadcast, Command, MessageReceived, Send, Start, Trace
from consensus.messages import (
    GENESIS_QC,
    BlockBody,
    BlockHeader,
    ProposalMessage,
    QuorumCertificate,
    TimeoutCertificate,
    TimeoutInfo,
    TimeoutMessage,
    Tip,
    Vote,
)
from consensus.validators import RoundRobinSchedule, ValidatorSet

N = 4
KEYS = derive_keys(N, b"core-tests")
VALIDATORS = ValidatorSet.from_keys([k.public for k in KEYS])
SCHEDULE = RoundRobinSchedule(VALIDATORS)
SIGNERS = [Signer(i, KEYS[i], ED25519) for i in range(N)]


def make_core(
    index: int,
    protocol: str = "monadbft",
    *,
    start: bool = True,
    recovered: RecoveredState | None = None,
    **config,
) -> ConsensusCore:
    core = ConsensusCore(
        config=CoreConfig(protocol=protocol, **config),
        validators=VALIDATORS,
        schedule=SCHEDULE,
        index=index,
        key=KEYS[index],
        scheme=ED25519,
        recovered=recovered,
    )
    if start:
        core.handle(Start(0))
    return core


def body(tag: bytes = b"txs") -> BlockBody:
    return BlockBody(payload=tag)


def make_tip(
    block_round: int,
    qc: QuorumCertificate,
    seq_num: int,
    payload: bytes = b"txs",
    fresh=None,
) -> Tip:
    header = BlockHeader(
        block_round=block_round,
        epoch=1,
        qc=qc,
        author=SCHEDULE.leader(block_round),
        seq_num=seq_num,
        timestamp_ns=block_round,
        body_id=codec.body_id(body(payload)),
    )
    return SIGNERS[header.author].tip(header, fresh)


def block_id(tip: Tip) -> bytes:
    return codec.block_id(tip.header)


def qc_on(tip: Tip, round: int, voters=(0, 1, 2)) -> QuorumCertificate:
    vote = Vote(block_id=block_id(tip), round=round, epoch=1)
    return build_qc(vote, {i: SIGNERS[i].vote_signature(vote) for i in voters}, VALIDATORS)


def proposal(
    round: int,
    tip: Tip,
    payload: bytes = b"txs",
    tc: TimeoutCertificate | None = None,
    author: int | None = None,
) -> ProposalMessage:
    author = SCHEDULE.leader(round) if author is None else author
    return SIGNERS[author].proposal(round, 1, tip, body(payload), tc)


def timeout_msg(author: int, round: int, extend, last=None, tip_vote: bool = False):
    base = extend if isinstance(extend, QuorumCertificate) else extend.header.qc
    info = TimeoutInfo(
        epoch=1,
        round=round,
        high_qc_round=base.round,
        high_tip_round=0 if isinstance(extend, QuorumCertificate) else extend.header.block_round,
    )
    return SIGNERS[author].timeout(info, extend, last, tip_vote)


def tc_of(round: int, timeouts: list[TimeoutMessage]) -> TimeoutCertificate:
    return build_tc(1, round, timeouts, VALIDATORS)


def receive(core: ConsensusCore, sender: int, message, now_ns: int = 0) -> list[Command]:
    return core.handle(MessageReceived(now_ns, sender, message))


def sent(commands: list[Command], kind: type | None = None) -> list[tuple[int | None, object]]:
    """(destination or None for broadcast, message) of every send, optionally by type."""
    out = []
    for command in commands:
        if isinstance(command, Send):
            out.append((command.to, command.message))
        elif isinstance(command, Broadcast):
            out.append((None, command.message))
    return [(to, m) for to, m in out if kind is None or isinstance(m, kind)]


def traces(commands: list[Command], name: str) -> list[dict]:
    return [c.detail for c in commands if isinstance(c, Trace) and c.name == name]


def is_dropped(commands: list[Command]) -> bool:
    return len(commands) == 1 and traces(commands, "dropped") != []


def snapshot(core: ConsensusCore) -> tuple:
    """Everything observable that a rejected input must leave unchanged."""
    return (
        core.safety_state,
        core.current_round,
        core.high_qc,
        core.high_certificate,
        core.finalized_height,
        core.finalized_block_id,
        core.pending_blocks,
        core._votes.rounds_held(),
        core._pacemaker.timeouts(),
        dict(core._handled_proposals),
        dict(core._sync_requested),
        len(core._tips_by_round),
    )


# The canonical chain used by many tests.
TIP1 = make_tip(1, GENESIS_QC, 1, b"b1")
QC1 = qc_on(TIP1, 1)
TIP2 = make_tip(2, QC1, 2, b"b2")
QC2 = qc_on(TIP2, 2)
TIP3 = make_tip(3, QC2, 3, b"b3")
QC3 = qc_on(TIP3, 3)
P1 = proposal(1, TIP1, b"b1")
P2 = proposal(2, TIP2, b"b2")
P3 = proposal(3, TIP3, b"b3")
