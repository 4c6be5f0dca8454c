"""Blocks that arrive before their parent: the block rules are re-checked before any vote.

A proposal whose parent is missing enters the tree without the T-SEQ/T-TIME checks (its
parent's height and time are unknown). Once block sync delivers the parent, the vote
waiting for it must re-run those checks along the whole chain (T-CHAIN), and a sync
response must satisfy them on every child-parent link it carries.
"""

from __future__ import annotations

from consensus import codec
from consensus.events import PersistBlock
from consensus.messages import (
    BlockHeader,
    BlockSyncRequest,
    BlockSyncResponse,
    ProposalMessage,
    QuorumCertificate,
    SyncedBlock,
    Tip,
    VoteMessage,
)
from tests.consensus.support import (
    QC1,
    SCHEDULE,
    SIGNERS,
    TIP1,
    block_id,
    body,
    is_dropped,
    make_core,
    proposal,
    qc_on,
    receive,
    sent,
    snapshot,
    traces,
)


def signed_tip(
    block_round: int, qc: QuorumCertificate, seq_num: int, timestamp_ns: int, payload: bytes
) -> Tip:
    header = BlockHeader(
        block_round=block_round,
        epoch=1,
        qc=qc,
        author=SCHEDULE.leader(block_round),
        seq_num=seq_num,
        timestamp_ns=timestamp_ns,
        body_id=codec.body_id(body(payload)),
    )
    return SIGNERS[header.author].tip(header)


def sync_b1_after(core, child: ProposalMessage):
    """Deliver `child` (whose parent B1 is missing), then the solicited sync answer for B1."""
    out = receive(core, child.author, child)
    requests = sent(out, BlockSyncRequest)
    assert requests and requests[0][1].block_id == block_id(TIP1)  # the gap is being filled
    assert any(isinstance(c, PersistBlock) for c in out)  # the child entered the tree
    response = BlockSyncResponse(
        block_id=block_id(TIP1), blocks=(SyncedBlock(tip=TIP1, body=body(b"b1")),)
    )
    return receive(core, requests[0][0], response)


def test_no_vote_for_a_gap_filled_block_with_a_wrong_height() -> None:
    # The example: a round-2 block with seq_num 7 whose parent B1 has height 1.
    bad = signed_tip(2, QC1, 7, 2, b"b2-high")
    core = make_core(0)
    out = sync_b1_after(core, proposal(2, bad, b"b2-high"))
    assert not sent(out, VoteMessage)
    refused = traces(out, "vote_refused")
    assert refused and "seq_num 7" in refused[0]["reason"]
    assert core.block(block_id(TIP1)) is not None  # B1 itself was fine and is kept


def test_no_vote_for_a_gap_filled_block_older_than_its_parent() -> None:
    # B1 has timestamp 1; the child claims an earlier time.
    early = signed_tip(2, QC1, 2, 0, b"b2-early")
    core = make_core(0)
    out = sync_b1_after(core, proposal(2, early, b"b2-early"))
    assert not sent(out, VoteMessage)
    assert "timestamp" in traces(out, "vote_refused")[0]["reason"]


def test_a_correct_gap_filled_block_is_voted_once_its_parent_arrives() -> None:
    # Control: the same path with a valid child votes (the check is not a blanket refusal).
    good = signed_tip(2, QC1, 2, 2, b"b2-ok")
    core = make_core(0)
    out = sync_b1_after(core, proposal(2, good, b"b2-ok"))
    votes = sent(out, VoteMessage)
    assert votes and votes[0][1].vote.block_id == block_id(good)


def test_a_sync_response_is_checked_on_every_link() -> None:
    # Node 0 learns QC2 on B2 (from B3's proposal) and asks for B2 with its ancestors.
    b2 = signed_tip(2, QC1, 2, 0, b"b2")  # earlier than B1 (timestamp 1): breaks T-TIME
    qc2 = qc_on(b2, 2)
    b3 = signed_tip(3, qc2, 3, 3, b"b3")
    core = make_core(0)
    out = receive(core, 3, proposal(3, b3, b"b3"))
    request = sent(out, BlockSyncRequest)[0]
    assert request[1].block_id == block_id(b2)
    before = snapshot(core)
    response = BlockSyncResponse(
        block_id=block_id(b2),
        blocks=(SyncedBlock(tip=b2, body=body(b"b2")), SyncedBlock(tip=TIP1, body=body(b"b1"))),
    )
    dropped = receive(core, request[0], response)
    assert is_dropped(dropped) and "timestamp" in traces(dropped, "dropped")[0]["reason"]
    assert snapshot(core) == before


def test_a_held_tip_that_does_not_fit_its_parent_is_neither_reproposed_nor_defended() -> None:
    from consensus.messages import AdvanceRoundMessage, NoEndorsementMessage, RoundRecoveryMessage
    from tests.consensus.support import tc_of, timeout_msg

    bad = signed_tip(2, QC1, 7, 2, b"b2-high")
    tc2 = tc_of(2, [timeout_msg(a, 2, bad) for a in (0, 1, 2)])
    assert tc2.high_extend == bad
    # Leader of round 3 holds the bad B2 (gap-filled, then B1 synced): it does not repropose
    # it but asks who lacks a usable block (RoundRecovery) and NEs it itself.
    leader = make_core(3)
    sync_b1_after(leader, proposal(2, bad, b"b2-high"))
    out = receive(leader, 0, AdvanceRoundMessage(certificate=tc2))
    assert leader.current_round == 3
    assert not sent(out, ProposalMessage) and sent(out, RoundRecoveryMessage)
    assert traces(out, "no_endorsement")
    # Another holder of the bad block does not stay silent either.
    holder = make_core(0)
    sync_b1_after(holder, proposal(2, bad, b"b2-high"))
    recovery = sent(out, RoundRecoveryMessage)[0][1]
    assert sent(receive(holder, 3, recovery), NoEndorsementMessage)


class NoRepeatAlongTheChain:
    """A block validator that, like the node's TX-ONCE rule, needs a block's ancestors: it
    refuses a block whose payload one of its known ancestors already carries (it learns
    each block it accepts, so ancestors it has not seen are invisible to it)."""

    def __init__(self) -> None:
        self.known: dict[bytes, tuple[bytes, bytes]] = {}  # block id -> (parent id, payload)
        self.calls = 0

    def validate(self, header: BlockHeader, body) -> bool:
        self.calls += 1
        parent = header.parent_id
        while parent in self.known:
            parent, payload = self.known[parent][0], self.known[parent][1]
            if payload == body.payload:
                return False
        self.known[codec.block_id(header)] = (header.parent_id, body.payload)
        return True


def _core_with(validator) -> object:
    from consensus.core import ConsensusCore, CoreConfig
    from consensus.crypto import ED25519
    from consensus.events import Start
    from tests.consensus.support import KEYS, VALIDATORS

    core = ConsensusCore(
        config=CoreConfig(),
        validators=VALIDATORS,
        schedule=SCHEDULE,
        index=0,
        key=KEYS[0],
        scheme=ED25519,
        block_validator=validator,
    )
    core.handle(Start(0))
    return core


def test_a_block_validated_above_a_gap_is_validated_again_before_the_vote() -> None:
    # B2 repeats B1's payload ("b1"), but arrives first: the validator cannot see B1 and
    # accepts it. Once sync delivers B1, the vote waiting for B2 must re-run the validator
    # along the now complete chain (B-APP-CHAIN) and refuse it.
    validator = NoRepeatAlongTheChain()
    core = _core_with(validator)
    repeat = signed_tip(2, QC1, 2, 2, b"b1")
    out = sync_b1_after(core, proposal(2, repeat, b"b1"))
    assert core.block(block_id(TIP1)) is not None and core.block(block_id(repeat)) is not None
    assert validator.calls >= 3  # B2 on arrival, B1 from sync, B2 again before the vote
    assert not sent(out, VoteMessage)
    refused = traces(out, "vote_refused")
    assert refused and "block validator once its ancestors were known" in refused[0]["reason"]


def test_a_block_validated_above_a_gap_is_voted_when_it_passes_again() -> None:
    # Control: the same path with a payload of its own votes, and the validator ran again.
    validator = NoRepeatAlongTheChain()
    core = _core_with(validator)
    fresh = signed_tip(2, QC1, 2, 2, b"b2-own")
    out = sync_b1_after(core, proposal(2, fresh, b"b2-own"))
    assert validator.calls == 3
    votes = sent(out, VoteMessage)
    assert votes and votes[0][1].vote.block_id == block_id(fresh)


def test_blocks_of_a_sync_response_are_validated_again_oldest_first() -> None:
    # Node 0 learns QC2 on B2 (from B3's proposal) and asks for B2 with its ancestors; the
    # response (newest first) holds B2 and B1 with the same payload: validated newest
    # first, B2 passed because B1 was unknown. B3, which extends B2, is never voted.
    same1 = signed_tip(1, TIP1.header.qc, 1, 1, b"same")
    qc1 = qc_on(same1, 1)
    same2 = signed_tip(2, qc1, 2, 2, b"same")
    qc2 = qc_on(same2, 2)
    b3 = signed_tip(3, qc2, 3, 3, b"b3")
    validator = NoRepeatAlongTheChain()
    core = _core_with(validator)
    out = receive(core, 3, proposal(3, b3, b"b3"))
    request = sent(out, BlockSyncRequest)[0]
    assert request[1].block_id == block_id(same2)
    response = BlockSyncResponse(
        block_id=block_id(same2),
        blocks=(
            SyncedBlock(tip=same2, body=body(b"same")),
            SyncedBlock(tip=same1, body=body(b"same")),
        ),
    )
    out = receive(core, request[0], response)
    assert core.block(block_id(same1)) is not None and core.block(block_id(same2)) is not None
    assert not sent(out, VoteMessage)
    refused = traces(out, "vote_refused")
    assert refused and "block validator once its ancestors were known" in refused[0]["reason"]
