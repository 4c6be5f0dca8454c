"""Small behaviours aligned with monad-bft (or deliberately not, see docs/protocol.md)."""

from __future__ import annotations

from consensus.events import MarkVoted, PayloadReady, RequestPayload, SetTimer, TimerFired
from consensus.messages import (
    GENESIS_QC,
    AdvanceRoundMessage,
    BlockSyncRequest,
    BlockSyncResponse,
    NoEndorsement,
    ProposalMessage,
    SyncedBlock,
    VoteMessage,
)
from tests.consensus.support import (
    P1,
    QC1,
    SIGNERS,
    TIP1,
    TIP2,
    block_id,
    body,
    make_core,
    make_tip,
    proposal,
    qc_on,
    receive,
    sent,
    tc_of,
    timeout_msg,
    traces,
)


def test_a_leader_holding_both_the_tip_and_an_nec_uses_the_nec_first() -> None:
    # TC2 is won by Tip(B2) (on QC1). Leader 3 holds neither B2 nor B1: it asks for B2,
    # broadcasts RoundRecovery and collects NEC(3, tip_qc_round=1). The fresh block needs
    # B1 (its parent), so it asks for it; B2 and B1 then arrive in one sync answer.
    tc2 = tc_of(2, [timeout_msg(1, 2, TIP2)] + [timeout_msg(a, 2, QC1) for a in (0, 2)])
    assert tc2.high_extend == TIP2
    leader = make_core(3)
    out = receive(leader, 0, AdvanceRoundMessage(certificate=tc2))
    assert traces(out, "round_recovery") and leader.current_round == 3
    for author in (0, 1):
        ne = SIGNERS[author].no_endorsement(NoEndorsement(epoch=1, round=3, tip_qc_round=1))
        out = receive(leader, author, ne)
    assert traces(out, "nec_formed")
    assert not [c for c in out if isinstance(c, RequestPayload)]  # B1 (the parent) is missing
    request = next(m for _, m in sent(out, BlockSyncRequest) if m.block_id == block_id(TIP1))
    assert request is not None
    response = BlockSyncResponse(
        block_id=block_id(TIP2),
        blocks=(
            SyncedBlock(tip=TIP2, body=body(b"b2")),
            SyncedBlock(tip=TIP1, body=body(b"b1")),
        ),
    )
    out = receive(leader, 1, response)
    # monad-bft's try_propose takes the NEC before the held tip: a fresh block on QC1.
    assert not sent(out, ProposalMessage)
    assert [c for c in out if isinstance(c, RequestPayload)] == [
        RequestPayload(3, 2, block_id(TIP1))
    ]
    out = leader.handle(PayloadReady(5, 3, b"fresh"))
    fresh = sent(out, ProposalMessage)[0][1]
    assert type(fresh.tip.fresh_certificate).__name__ == "NoEndorsementCertificate"


def test_vote_pacing_treats_a_child_of_a_reproposal_as_after_a_failure() -> None:
    # B1 was reproposed in round 2 and certified there (QC2 on B1). B3 on QC2: its QC round
    # is the previous round, but its parent's block round (1) is not, so monad-bft votes at
    # once (pacing applies only when parent block round + 1 == proposal round).
    core = make_core(0, vote_pace_ms=400.0)
    receive(core, 1, P1, now_ns=0)  # votes B1 in round 1: the pacing reference
    qc2_on_b1 = qc_on(TIP1, 2)
    tip3 = make_tip(3, qc2_on_b1, 2, b"b3")
    out = receive(core, 3, proposal(3, tip3, b"b3"), now_ns=100_000_000)
    votes = sent(out, VoteMessage)
    assert votes and votes[0][1].vote.block_id == block_id(tip3)
    assert not [c for c in out if isinstance(c, SetTimer) and c.kind == "vote_pace"]


def test_vote_pacing_still_delays_a_happy_path_child() -> None:
    # Control: B2 on QC1 (parent block round 1, proposal round 2) waits for the pace timer.
    core = make_core(0, vote_pace_ms=400.0)
    receive(core, 1, P1, now_ns=0)
    out = receive(core, 2, proposal(2, TIP2, b"b2"), now_ns=100_000_000)
    assert not sent(out, VoteMessage)
    assert [c for c in out if isinstance(c, SetTimer) and c.kind == "vote_pace"]
    assert sent(core.handle(TimerFired(400_000_000, "vote_pace", 2)), VoteMessage)


def test_a_qc_below_the_current_round_still_marks_voted() -> None:
    # Documented deviation (docs/protocol.md, Deviations 1): monad-bft's process_qc ignores
    # a QC older than the current round; the core keeps its bookkeeping, Voted included.
    core = make_core(0)
    receive(core, 1, P1)
    tc1 = tc_of(1, [timeout_msg(a, 1, GENESIS_QC) for a in (1, 2, 3)])
    receive(core, 3, AdvanceRoundMessage(certificate=tc1))
    tc2 = tc_of(2, [timeout_msg(a, 2, GENESIS_QC, last=tc1) for a in (1, 2, 3)])
    receive(core, 3, AdvanceRoundMessage(certificate=tc2))
    assert core.current_round == 3
    out = receive(core, 1, timeout_msg(1, 3, QC1, last=tc2))  # carries QC1 (round 1 < 3)
    assert [c.block_id for c in out if isinstance(c, MarkVoted)] == [block_id(TIP1)]
    assert core.high_qc == QC1 and core.current_round == 3
