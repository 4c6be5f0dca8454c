"""The consensus core's stateful rules, driven with crafted, really-signed messages."""

from __future__ import annotations

import msgspec
import pytest

from consensus import codec
from consensus.certificates import build_nec
from consensus.core import CoreConfig, RecoveredState
from consensus.crypto import ED25519, Domain
from consensus.events import (
    CommitBlocks,
    MarkVoted,
    PayloadReady,
    PersistBlock,
    PersistSafety,
    RecordEquivocation,
    RequestPayload,
    RevertVoted,
    SetTimer,
    Start,
    TimerFired,
)
from consensus.messages import (
    GENESIS_QC,
    AdvanceRoundMessage,
    BlockSyncRequest,
    BlockSyncResponse,
    NoEndorsement,
    NoEndorsementMessage,
    ProposalMessage,
    RoundRecoveryMessage,
    SyncedBlock,
    TimeoutMessage,
    Vote,
    VoteMessage,
)
from consensus.safety import SafetyState
from tests.consensus.support import (
    KEYS,
    P1,
    P2,
    P3,
    QC1,
    SIGNERS,
    TIP1,
    TIP2,
    TIP3,
    VALIDATORS,
    block_id,
    body,
    is_dropped,
    make_core,
    make_tip,
    proposal,
    qc_on,
    receive,
    sent,
    snapshot,
    tc_of,
    timeout_msg,
    traces,
)


def votes_in(commands) -> list[tuple[int | None, VoteMessage]]:
    return sent(commands, VoteMessage)


# --------------------------------------------------------------------------- happy path


def test_vote_goes_to_next_and_current_leader_after_persisting() -> None:
    core = make_core(0)
    out = receive(core, 1, P1)
    kinds = [type(c).__name__ for c in out]
    assert kinds.index("PersistBlock") < kinds.index("PersistSafety") < kinds.index("Send")
    destinations = sorted(to for to, _ in votes_in(out))
    assert destinations == [1, 2]  # leader(1) (FR) and leader(2)
    assert core.safety_state.highest_vote == 1
    assert core.safety_state.high_tip == TIP1


@pytest.mark.parametrize("protocol", ["v1", "vanilla"])
def test_v1_and_vanilla_vote_only_to_the_next_leader(protocol: str) -> None:
    out = receive(make_core(0, protocol), 1, P1)
    assert [to for to, _ in votes_in(out)] == [2]


def test_next_proposal_carries_qc_marks_voted_then_commits() -> None:
    core = make_core(0)
    receive(core, 1, P1)
    out = receive(core, 2, P2)  # carries QC1: B1 Voted, round 2
    assert [c.block_id for c in out if isinstance(c, MarkVoted)] == [block_id(TIP1)]
    assert core.current_round == 2 and core.finalized_height == 0
    out = receive(core, 3, P3)  # carries QC2, 2 == 1 + 1: B1 final
    commits = [c for c in out if isinstance(c, CommitBlocks)]
    assert [b.block_id for b in commits[0].blocks] == [block_id(TIP1)]
    assert core.finalized_height == 1 and core.finalized_chain() == [block_id(TIP1)]


def test_leader_forms_qc_from_votes_and_advances_round() -> None:
    core = make_core(2)  # leader of round 2
    receive(core, 1, P1)  # its own vote is pooled
    vote = Vote(block_id=block_id(TIP1), round=1, epoch=1)
    out = receive(core, 0, SIGNERS[0].vote(vote))
    assert core.current_round == 1 and not traces(out, "qc_formed")
    out = receive(core, 3, SIGNERS[3].vote(vote))
    assert traces(out, "qc_formed") and core.current_round == 2
    assert [c for c in out if isinstance(c, RequestPayload)] == [
        RequestPayload(2, 2, block_id(TIP1))
    ]
    # leader(2) is not leader(1): no AdvanceRound from it
    assert not sent(out, AdvanceRoundMessage)
    out = core.handle(PayloadReady(5, 2, b"payload"))
    proposals = sent(out, ProposalMessage)
    assert proposals and proposals[0][1].tip.header.qc.block_id == block_id(TIP1)


def test_current_leader_broadcasts_advance_round_and_receivers_forward() -> None:
    core = make_core(1)  # leader of round 1
    core.handle(PayloadReady(0, 1, b"b1"))
    vote = Vote(block_id=block_id(core.safety_state.high_tip), round=1, epoch=1)
    receive(core, 0, SIGNERS[0].vote(vote))
    out = receive(core, 3, SIGNERS[3].vote(vote))
    advance = sent(out, AdvanceRoundMessage)
    assert advance and advance[0][0] is None  # broadcast
    qc = advance[0][1].certificate
    receiver = make_core(3)
    block = core.block(qc.block_id)
    assert block is not None
    out = receive(receiver, 1, AdvanceRoundMessage(certificate=qc))
    assert receiver.current_round == 2
    assert [to for to, _ in sent(out, AdvanceRoundMessage)] == [2]  # forwarded to leader(2)
    # v1 leaders do not broadcast AdvanceRound
    v1 = make_core(1, "v1")
    v1.handle(PayloadReady(0, 1, b"b1"))
    v1_vote = Vote(block_id=block_id(v1.safety_state.high_tip), round=1, epoch=1)
    out = receive(v1, 0, SIGNERS[0].vote(v1_vote)) + receive(v1, 3, SIGNERS[3].vote(v1_vote))
    assert not sent(out, AdvanceRoundMessage)


# --------------------------------------------------------------------------- rejections


def test_wrong_leader_proposal_is_dropped_without_change() -> None:
    core = make_core(0)
    before = snapshot(core)
    out = receive(core, 2, proposal(1, TIP1, b"b1", author=2))
    assert is_dropped(out) and snapshot(core) == before
    wrong_author_tip = SIGNERS[3].tip(msgspec.structs.replace(TIP1.header, author=3))
    out = receive(core, 1, proposal(1, wrong_author_tip, b"b1"))
    assert is_dropped(out) and snapshot(core) == before


def test_forged_and_cross_domain_signatures_are_dropped() -> None:
    core = make_core(0)
    before = snapshot(core)
    forged = msgspec.structs.replace(P1, signature=bytes(64))
    assert is_dropped(receive(core, 1, forged))
    # A proposal signed under the vote domain over the right bytes is still rejected.
    payload = codec.proposal_signing_bytes(1, 1, 1, TIP1.header, None)
    cross = msgspec.structs.replace(P1, signature=ED25519.sign(KEYS[1], Domain.VOTE, payload))
    assert is_dropped(receive(core, 1, cross))
    good = timeout_msg(2, 1, GENESIS_QC)
    cross_timeout = msgspec.structs.replace(
        good,
        signature=ED25519.sign(KEYS[2], Domain.VOTE, codec.timeout_signing_bytes(good.info)),
    )
    assert is_dropped(receive(core, 2, cross_timeout))
    assert snapshot(core) == before
    assert not is_dropped(receive(core, 1, P1))  # the genuine one is accepted


def test_stale_and_future_inputs_are_dropped() -> None:
    core = make_core(0)
    receive(core, 1, P1)
    receive(core, 2, P2)
    receive(core, 3, P3)  # now in round 3
    before = snapshot(core)
    stale_vote = SIGNERS[1].vote(Vote(block_id=block_id(TIP1), round=1, epoch=1))
    assert is_dropped(receive(core, 1, stale_vote))
    assert is_dropped(receive(core, 3, timeout_msg(3, 2, QC1)))
    assert is_dropped(receive(core, 1, AdvanceRoundMessage(certificate=QC1)))
    far = SIGNERS[1].vote(Vote(block_id=bytes(32), round=3 + 11, epoch=1))
    assert is_dropped(receive(core, 1, far))  # beyond the 10-round window
    assert is_dropped(core.handle(TimerFired(0, "round", 2)))  # stale timer
    assert is_dropped(core.handle(PayloadReady(0, 3, b"x")))  # nothing requested
    assert snapshot(core) == before
    near = SIGNERS[1].vote(Vote(block_id=bytes(32), round=3 + 10, epoch=1))
    assert not is_dropped(receive(core, 1, near))  # inside the window: pooled


def test_duplicate_votes_and_duplicate_signer() -> None:
    core = make_core(2)
    vote = Vote(block_id=block_id(TIP1), round=1, epoch=1)
    receive(core, 0, SIGNERS[0].vote(vote))
    before = snapshot(core)
    assert is_dropped(receive(core, 0, SIGNERS[0].vote(vote)))  # same vote again
    other = Vote(block_id=bytes(32), round=1, epoch=1)
    assert is_dropped(receive(core, 0, SIGNERS[0].vote(other)))  # second vote, same round
    assert is_dropped(receive(core, 3, SIGNERS[0].vote(vote)))  # relayed by someone else
    assert snapshot(core) == before
    out = receive(core, 3, SIGNERS[3].vote(vote))
    assert not traces(out, "qc_formed")  # two distinct signers are not a quorum
    out = receive(core, 1, SIGNERS[1].vote(vote))
    assert traces(out, "qc_formed")


def test_invalid_vote_signature_is_ignored_and_signer_excluded_for_the_round() -> None:
    core = make_core(2)
    vote = Vote(block_id=block_id(TIP1), round=1, epoch=1)
    forged = VoteMessage(vote=vote, author=3, signature=bytes(64))
    receive(core, 0, SIGNERS[0].vote(vote))
    receive(core, 1, SIGNERS[1].vote(vote))
    out = receive(core, 3, forged)  # completes the pool; lazy verification rejects it
    assert not traces(out, "qc_formed") and core.current_round == 1
    assert is_dropped(receive(core, 3, SIGNERS[3].vote(vote)))  # ignored for the round
    cross = VoteMessage(
        vote=vote,
        author=2,
        signature=ED25519.sign(KEYS[2], Domain.TIMEOUT, codec.vote_signing_bytes(vote)),
    )
    out = receive(core, 2, cross)
    assert not traces(out, "qc_formed")


def test_one_proposal_per_round_and_equivocation_evidence() -> None:
    core = make_core(0)
    receive(core, 1, P1)
    before = snapshot(core)
    assert is_dropped(receive(core, 1, P1))  # the same proposal again
    assert snapshot(core) == before
    twin = make_tip(1, GENESIS_QC, 1, b"b1-twin")
    out = receive(core, 1, proposal(1, twin, b"b1-twin"))
    evidence = [c.evidence for c in out if isinstance(c, RecordEquivocation)]
    assert len(evidence) == 1 and evidence[0].leader == 1 and evidence[0].block_round == 1
    assert {evidence[0].first.header, evidence[0].second.header} == {TIP1.header, twin.header}
    assert not votes_in(out) and core.safety_state.highest_vote == 1


def test_proposal_for_a_future_round_is_dropped() -> None:
    core = make_core(0)
    before = snapshot(core)
    # P3 carries QC2: processing it would reach round 3 = P3's round, so it is accepted.
    # A happy-path proposal two rounds ahead of its QC cannot exist (W2), so "future" means
    # a proposal whose certificates do not lead to its round: build one with a TC gap.
    tc2 = tc_of(2, [timeout_msg(a, 2, QC1) for a in (0, 1, 2)])
    tip = make_tip(4, QC1, 2, b"b4")
    out = receive(core, 0, proposal(4, tip, b"b4", tc=tc2))  # TC2 from the wrong round
    assert is_dropped(out) and snapshot(core) == before


def test_block_validator_rejects_block_and_state_is_unchanged() -> None:
    class RejectAll:
        def validate(self, header, body) -> bool:
            return False

    from tests.consensus import support

    core = support.ConsensusCore(
        config=CoreConfig(),
        validators=VALIDATORS,
        schedule=support.SCHEDULE,
        index=0,
        key=KEYS[0],
        scheme=ED25519,
        block_validator=RejectAll(),
    )
    core.handle(Start(0))
    before = snapshot(core)
    out = receive(core, 1, P1)
    assert is_dropped(out) and "block validator" in traces(out, "dropped")[0]["reason"]
    assert snapshot(core) == before


# --------------------------------------------------------------------------- timeouts


def test_voting_after_timing_out_is_refused() -> None:
    core = make_core(0)
    out = core.handle(TimerFired(1000, "round", 1))
    kinds = [type(c).__name__ for c in out]
    assert kinds.index("PersistSafety") < kinds.index("Broadcast")
    assert core.safety_state.highest_vote == 1
    out = receive(core, 1, P1)
    assert not votes_in(out) and traces(out, "vote_refused")
    assert any(isinstance(c, PersistBlock) for c in out)  # the block is still kept


def test_timer_expiry_rebroadcasts_the_same_timeout_and_rearms() -> None:
    core = make_core(0)
    first = core.handle(TimerFired(1000, "round", 1))
    second = core.handle(TimerFired(2000, "round", 1))
    assert sent(first, TimeoutMessage)[0][1] == sent(second, TimeoutMessage)[0][1]
    assert any(isinstance(c, SetTimer) and c.kind == "round" for c in second)
    assert not any(isinstance(c, PersistSafety) for c in second)


def test_timeout_echo_at_f_plus_one_and_tc_at_quorum() -> None:
    core = make_core(0)
    out = receive(core, 1, timeout_msg(1, 1, GENESIS_QC))
    assert not sent(out, TimeoutMessage)  # 1 of 4 stake: below f+1
    out = receive(core, 2, timeout_msg(2, 1, GENESIS_QC))
    assert sent(out, TimeoutMessage) and traces(out, "timeout_echo")  # f+1 = 2: echo
    assert traces(out, "tc_formed") and core.current_round == 2  # own + 2 = quorum
    assert core.high_certificate.round == 1


def test_timeout_carries_high_tip_with_tip_vote_and_then_the_qc() -> None:
    core = make_core(0)
    receive(core, 1, P1)
    out = core.handle(TimerFired(1000, "round", 1))
    timeout = sent(out, TimeoutMessage)[0][1]
    assert timeout.high_extend == TIP1 and timeout.tip_vote_signature is not None
    assert timeout.last_round_certificate is None
    core2 = make_core(0)
    receive(core2, 1, P1)
    receive(core2, 1, AdvanceRoundMessage(certificate=QC1))  # QC1 clears the tip
    assert core2.safety_state.high_tip is None
    timeout = sent(core2.handle(TimerFired(1000, "round", 2)), TimeoutMessage)[0][1]
    assert timeout.high_extend == QC1 and timeout.tip_vote_signature is None


def test_v1_keeps_the_tip_and_vanilla_sends_only_the_qc() -> None:
    v1 = make_core(0, "v1")
    receive(v1, 1, P1)
    receive(v1, 2, P2)  # votes B2 in round 2, QC1 known
    timeout = sent(v1.handle(TimerFired(1000, "round", 2)), TimeoutMessage)[0][1]
    assert timeout.high_extend == TIP2 and timeout.tip_vote_signature is None
    vanilla = make_core(0, "vanilla")
    receive(vanilla, 1, P1)
    timeout = sent(vanilla.handle(TimerFired(1000, "round", 1)), TimeoutMessage)[0][1]
    assert timeout.high_extend == GENESIS_QC


def test_tip_votes_in_timeouts_form_a_backup_qc() -> None:
    core = make_core(2)  # leader of round 2, voted B1 (its vote went nowhere useful)
    receive(core, 1, P1)
    for author in (0, 1):
        out = receive(core, author, timeout_msg(author, 1, TIP1, tip_vote=True))
    # own tip vote is pooled when it times out by echo: 3 tip votes -> QC1 (backup QC)
    assert traces(out, "qc_formed") and core.current_round == 2
    assert core.high_certificate.round == 1 and core.high_qc.block_id == block_id(TIP1)
    assert not traces(out, "tc_formed")
    assert any(isinstance(c, RequestPayload) for c in out)  # fresh block on the backup QC


def test_last_round_tc_for_current_or_future_round() -> None:
    tc1 = tc_of(1, [timeout_msg(a, 1, GENESIS_QC) for a in (1, 2, 3)])
    # A TC for our current round: first time out ourselves (helps others), then enter round 2.
    core = make_core(0)
    out = receive(core, 3, timeout_msg(3, 2, GENESIS_QC, last=tc1))
    own = [m for _, m in sent(out, TimeoutMessage)]
    assert [m.info.round for m in own] == [1] and core.current_round == 2
    assert not sent(out, AdvanceRoundMessage)
    # A TC for a future round: rebroadcast it as AdvanceRound, then jump.
    tc2 = tc_of(2, [timeout_msg(a, 2, GENESIS_QC, last=tc1) for a in (1, 2, 3)])
    core = make_core(0)
    out = receive(core, 3, timeout_msg(3, 3, GENESIS_QC, last=tc2))
    assert core.current_round == 3
    assert [m.certificate for _, m in sent(out, AdvanceRoundMessage)] == [tc2]


# --------------------------------------------------------------------------- commit rule


def test_no_commit_without_consecutive_rounds() -> None:
    core = make_core(3)
    receive(core, 1, P1)
    tc2 = tc_of(2, [timeout_msg(a, 2, QC1) for a in (0, 1, 2)])
    from consensus.certificates import notip_from_tc

    tip3 = make_tip(3, QC1, 2, b"b3", fresh=notip_from_tc(tc2))
    receive(core, 3, proposal(3, tip3, b"b3", tc=tc2))  # B3 on QC1 after TC2
    qc3 = qc_on(tip3, 3)
    out = receive(core, 0, AdvanceRoundMessage(certificate=qc3))
    # QC3 certifies B3 whose QC is QC1: 3 != 1 + 1, so B1 is not committed.
    assert not any(isinstance(c, CommitBlocks) for c in out) and core.finalized_height == 0
    tip4 = make_tip(4, qc3, 3, b"b4")
    qc4 = qc_on(tip4, 4)
    receive(core, 0, proposal(4, tip4, b"b4"))
    out = receive(core, 1, AdvanceRoundMessage(certificate=qc4))
    commits = [c for c in out if isinstance(c, CommitBlocks)]
    assert [b.block_id for b in commits[0].blocks] == [block_id(TIP1), block_id(tip3)]


def test_commit_retried_when_a_missing_block_arrives_by_sync() -> None:
    core = make_core(0)
    receive(core, 1, P1)
    out = receive(core, 3, P3)  # B2 never seen; P3 carries QC2 on B2
    requests = sent(out, BlockSyncRequest)
    assert requests and requests[0][1].block_id == block_id(TIP2)
    assert core.finalized_height == 0
    response = BlockSyncResponse(
        block_id=block_id(TIP2), blocks=(SyncedBlock(tip=TIP2, body=body(b"b2")),)
    )
    out = receive(core, requests[0][0], response)
    commits = [c for c in out if isinstance(c, CommitBlocks)]
    assert commits and [b.block_id for b in commits[0].blocks] == [block_id(TIP1)]
    assert any(isinstance(c, MarkVoted) and c.block_id == block_id(TIP2) for c in out)


def test_sync_responses_are_validated_before_use() -> None:
    core = make_core(0)
    receive(core, 1, P1)
    receive(core, 3, P3)
    before = snapshot(core)
    good = SyncedBlock(tip=TIP2, body=body(b"b2"))
    cases = {
        "unsolicited": BlockSyncResponse(block_id=block_id(TIP3), blocks=(good,)),
        "empty": BlockSyncResponse(block_id=block_id(TIP2), blocks=()),
        "wrong block": BlockSyncResponse(
            block_id=block_id(TIP2), blocks=(SyncedBlock(tip=TIP1, body=body(b"b1")),)
        ),
        "body mismatch": BlockSyncResponse(
            block_id=block_id(TIP2), blocks=(SyncedBlock(tip=TIP2, body=body(b"evil")),)
        ),
        "forged tip": BlockSyncResponse(
            block_id=block_id(TIP2),
            blocks=(
                SyncedBlock(
                    tip=msgspec.structs.replace(TIP2, signature=bytes(64)), body=body(b"b2")
                ),
            ),
        ),
        "broken chain": BlockSyncResponse(
            block_id=block_id(TIP2), blocks=(good, SyncedBlock(tip=TIP3, body=body(b"b3")))
        ),
    }
    for name, response in cases.items():
        assert is_dropped(receive(core, 2, response)), name
        assert snapshot(core) == before, name


def test_sync_requests_are_served_newest_first() -> None:
    core = make_core(0)
    receive(core, 1, P1)
    receive(core, 2, P2)
    out = receive(core, 3, BlockSyncRequest(block_id=block_id(TIP2), count=5))
    response = sent(out, BlockSyncResponse)[0][1]
    assert [block_id(b.tip) for b in response.blocks] == [block_id(TIP2), block_id(TIP1)]
    out = receive(core, 3, BlockSyncRequest(block_id=bytes(32), count=5))
    assert sent(out, BlockSyncResponse)[0][1].blocks == ()


# --------------------------------------------------------------------------- crash and restart


def test_crash_after_persist_before_send_never_votes_twice_in_that_round() -> None:
    core = make_core(0)
    out = receive(core, 1, P1)
    persisted = [c.state for c in out if isinstance(c, PersistSafety)]
    blocks = [(c.tip, c.body) for c in out if isinstance(c, PersistBlock)]
    assert persisted and votes_in(out)
    # Crash right after PersistSafety: the vote never left. Restart from disk.
    state = msgspec.msgpack.decode(codec.encode(persisted[-1]), type=SafetyState)
    recovered = RecoveredState(
        safety=state, blocks=blocks, finalized_block_id=bytes(32), finalized_height=0
    )
    restarted = make_core(0, recovered=recovered)
    assert restarted.current_round == 1
    assert not votes_in(receive(restarted, 1, P1))  # same proposal: no vote
    twin = make_tip(1, GENESIS_QC, 1, b"other")
    assert not votes_in(receive(restarted, 1, proposal(1, twin, b"other")))
    # Its timeout for round 1 repeats the vote it cast (same tip), never another one.
    timeout = sent(restarted.handle(TimerFired(1, "round", 1)), TimeoutMessage)[0][1]
    assert timeout.high_extend == TIP1


def test_restart_in_a_later_round_does_not_tip_vote_in_an_earlier_one() -> None:
    state = SafetyState(highest_vote=5, last_vote_round=5, last_vote_block_id=bytes(32))
    recovered = RecoveredState(
        safety=msgspec.structs.replace(state, high_tip=TIP1),
        blocks=[(TIP1, body(b"b1"))],
        finalized_block_id=bytes(32),
        finalized_height=0,
    )
    core = make_core(0, recovered=recovered)
    assert core.current_round == 1
    timeout = sent(core.handle(TimerFired(1, "round", 1)), TimeoutMessage)[0][1]
    assert timeout.tip_vote_signature is None
    assert core.safety_state.highest_vote == 5


def test_recovered_state_rejects_a_missing_finalized_block() -> None:
    with pytest.raises(ValueError, match="finalized block"):
        make_core(
            0,
            recovered=RecoveredState(
                SafetyState(), [], finalized_block_id=b"\x01" * 32, finalized_height=1
            ),
        )


# --------------------------------------------------------------------------- reproposal, NEC


def _tip_tc_round1(holders=(1, 2), others=(0,)):
    """TC1 whose high extend is Tip(B1): holders time out with the tip, others with genesis."""
    timeouts = [timeout_msg(a, 1, TIP1) for a in holders] + [
        timeout_msg(a, 1, GENESIS_QC) for a in others
    ]
    return tc_of(1, timeouts)


def test_leader_reproposes_the_tc_high_tip_it_holds() -> None:
    core = make_core(2)  # leader of round 2
    receive(core, 1, P1)
    tc1 = _tip_tc_round1()
    assert tc1.high_extend == TIP1
    out = receive(core, 0, AdvanceRoundMessage(certificate=tc1))
    proposals = sent(out, ProposalMessage)
    assert proposals and proposals[0][1].tip == TIP1 and proposals[0][1].round == 2
    assert proposals[0][1].last_round_tc == tc1 and traces(out, "reproposal")
    # A voter that timed out in round 1 votes for the reproposal in round 2.
    voter = make_core(3)
    receive(voter, 1, P1)
    voter.handle(TimerFired(1, "round", 1))
    out = receive(voter, 2, proposals[0][1])
    assert [v.vote for _, v in votes_in(out)] == [Vote(block_id=block_id(TIP1), round=2, epoch=1)]
    assert voter.safety_state.high_tip == TIP1  # the original tip


def test_fresh_proposal_after_a_qc_tc_carries_notip() -> None:
    core = make_core(2)
    receive(core, 1, P1)
    tc1 = tc_of(1, [timeout_msg(a, 1, GENESIS_QC) for a in (0, 1, 3)])
    out = receive(core, 0, AdvanceRoundMessage(certificate=tc1))
    request = [c for c in out if isinstance(c, RequestPayload)]
    assert request == [RequestPayload(2, 1, bytes(32))]  # sibling of B1 on genesis
    out = core.handle(PayloadReady(1, 2, b"fresh"))
    message = sent(out, ProposalMessage)[0][1]
    assert type(message.tip.fresh_certificate).__name__ == "NoTipCertificate"


def test_nec_path_round_recovery_no_endorsements_and_fresh_block() -> None:
    leader = make_core(2)  # lacks B1
    tc1 = _tip_tc_round1(holders=(1,), others=(0, 3))
    assert tc1.high_extend == TIP1
    out = receive(leader, 0, AdvanceRoundMessage(certificate=tc1))
    assert next(m for _, m in sent(out, BlockSyncRequest)).block_id == block_id(TIP1)
    recovery = [m for _, m in sent(out, RoundRecoveryMessage)]
    assert len(recovery) == 1 and traces(out, "no_endorsement")  # leader NE'd itself
    assert leader.safety_state.highest_recovery_request == 2
    # Once per round: another trigger does not re-broadcast.
    assert not sent(receive(leader, 3, timeout_msg(3, 1, GENESIS_QC)), RoundRecoveryMessage)
    # A holder stays silent, a node without B1 sends NE to the leader.
    holder = make_core(1)
    receive(holder, 1, P1)
    assert not sent(receive(holder, 2, recovery[0]), NoEndorsementMessage)
    lacking = make_core(3)
    out = receive(lacking, 2, recovery[0])
    ne_sends = sent(out, NoEndorsementMessage)
    assert [to for to, _ in ne_sends] == [2]
    kinds = [type(c).__name__ for c in out]
    assert kinds.index("PersistSafety") < kinds.index("Send")
    assert not sent(receive(lacking, 2, recovery[0]), NoEndorsementMessage)  # once per round
    receive(leader, 3, ne_sends[0][1])
    ne0 = SIGNERS[0].no_endorsement(NoEndorsement(epoch=1, round=2, tip_qc_round=0))
    out = receive(leader, 0, ne0)
    assert traces(out, "nec_formed")
    assert [c for c in out if isinstance(c, RequestPayload)] == [RequestPayload(2, 1, bytes(32))]
    out = leader.handle(PayloadReady(1, 2, b"replacement"))
    message = sent(out, ProposalMessage)[0][1]
    assert type(message.tip.fresh_certificate).__name__ == "NoEndorsementCertificate"
    assert message.tip.header.qc == GENESIS_QC and message.last_round_tc == tc1
    # The NE'd node votes for it: its TC high tip is the tip it NE'd (S-NE-EXCLUSION).
    assert votes_in(receive(lacking, 2, message))


def test_ne_exclusion_refuses_a_proposal_for_another_tip() -> None:
    core = make_core(3)
    tc1 = _tip_tc_round1(holders=(1,), others=(0, 2))
    recovery = SIGNERS[2].round_recovery(2, 1, tc1)
    receive(core, 2, recovery)
    assert core.safety_state.highest_no_endorse_round == 2
    # A fresh NoTip proposal after a different (QC-won) TC1 for round 2 is for another tip.
    tc1q = tc_of(1, [timeout_msg(a, 1, GENESIS_QC) for a in (0, 2, 3)])
    from consensus.certificates import notip_from_tc

    tip = make_tip(2, GENESIS_QC, 1, b"x", fresh=notip_from_tc(tc1q))
    out = receive(core, 2, proposal(2, tip, b"x", tc=tc1q))
    assert not votes_in(out) and traces(out, "vote_refused")


def test_no_endorsements_are_only_collected_by_the_current_leader() -> None:
    core = make_core(0)  # not leader of round 1
    ne = SIGNERS[1].no_endorsement(NoEndorsement(epoch=1, round=1, tip_qc_round=0))
    assert is_dropped(receive(core, 1, ne))
    leader = make_core(1)
    assert is_dropped(receive(leader, 2, ne))  # relayed: not from its author
    future = SIGNERS[2].no_endorsement(NoEndorsement(epoch=1, round=5, tip_qc_round=0))
    assert is_dropped(receive(leader, 2, future))
    forged = msgspec.structs.replace(ne, author=2)
    assert is_dropped(receive(leader, 2, forged))


def test_nec_cannot_form_when_holders_stay_silent() -> None:
    leader = make_core(2)
    receive(leader, 0, AdvanceRoundMessage(certificate=_tip_tc_round1(holders=(1, 3))))
    ne0 = SIGNERS[0].no_endorsement(NoEndorsement(epoch=1, round=2, tip_qc_round=0))
    out = receive(leader, 0, ne0)  # leader + N0 = 2 < 3
    assert not traces(out, "nec_formed")


# --------------------------------------------------------------------------- speculative finality


def test_voted_block_reverted_only_with_equivocation_evidence() -> None:
    core = make_core(0)
    receive(core, 1, P1)
    out = receive(core, 1, AdvanceRoundMessage(certificate=QC1))
    assert any(isinstance(c, MarkVoted) and c.block_id == block_id(TIP1) for c in out)
    # The round-1 leader equivocated: B1' (same round, same parent). Round 2 times out with
    # Tip(B1') winning (equal rank, lower id or first seen), and B1' is reproposed in round 3.
    twin = make_tip(1, GENESIS_QC, 1, b"b1-twin")
    tc2 = tc_of(2, [timeout_msg(a, 2, twin, last=QC1) for a in (1, 2, 3)])
    reproposal = proposal(3, twin, b"b1-twin", tc=tc2)
    receive(core, 3, reproposal)
    qc3 = qc_on(twin, 3, voters=(1, 2, 3))
    out = receive(core, 2, AdvanceRoundMessage(certificate=qc3))
    reverts = [c for c in out if isinstance(c, RevertVoted)]
    assert len(reverts) == 1 and reverts[0].block_id == block_id(TIP1)
    assert reverts[0].evidence is not None and reverts[0].evidence.block_round == 1


def test_vanilla_revert_without_evidence_is_flagged() -> None:
    core = make_core(0, "vanilla")
    receive(core, 1, P1)
    receive(core, 1, AdvanceRoundMessage(certificate=QC1))  # B1 Voted
    tc2 = tc_of(2, [timeout_msg(a, 2, GENESIS_QC, last=QC1) for a in (1, 2, 3)])
    tail = make_tip(3, GENESIS_QC, 1, b"tail")  # vanilla: a fresh block on an old QC
    receive(core, 3, proposal(3, tail, b"tail", tc=tc2))
    out = receive(core, 2, AdvanceRoundMessage(certificate=qc_on(tail, 3, voters=(1, 2, 3))))
    reverts = [c for c in out if isinstance(c, RevertVoted)]
    assert len(reverts) == 1 and reverts[0].evidence is None
    assert traces(out, "revert_without_evidence")


# --------------------------------------------------------------------------- vote pacing


def test_vote_pacing_delays_happy_path_votes() -> None:
    core = make_core(0, vote_pace_ms=400.0)
    assert votes_in(receive(core, 1, P1, now_ns=0))  # first vote: nothing to pace against
    out = receive(core, 2, P2, now_ns=100_000_000)
    assert not votes_in(out)
    timers = [c for c in out if isinstance(c, SetTimer) and c.kind == "vote_pace"]
    assert timers and timers[0].delay_ms == pytest.approx(300.0)
    out = core.handle(TimerFired(400_000_000, "vote_pace", 2))
    assert [v.vote.round for _, v in votes_in(out)] == [2, 2]


# --------------------------------------------------------------------------- test mutations


@pytest.mark.rule_switch_meta
def test_mutations_are_off_by_default_and_names_are_checked() -> None:
    assert CoreConfig().test_mutations == frozenset()
    with pytest.raises(ValueError, match="unknown test mutations"):
        CoreConfig(test_mutations=frozenset({"nope"}))


def test_mutation_double_vote_votes_twice_in_a_round() -> None:
    twin = proposal(1, make_tip(1, GENESIS_QC, 1, b"twin"), b"twin")
    honest = make_core(0)
    receive(honest, 1, P1)
    assert not votes_in(receive(honest, 1, twin))
    broken = make_core(0, test_mutations=frozenset({"double_vote"}))
    receive(broken, 1, P1)
    assert votes_in(receive(broken, 1, twin))


def test_mutation_commit_non_consecutive_commits_early() -> None:
    def run(mutations):
        core = make_core(3, test_mutations=frozenset(mutations))
        receive(core, 1, P1)
        tc2 = tc_of(2, [timeout_msg(a, 2, QC1) for a in (0, 1, 2)])
        from consensus.certificates import notip_from_tc

        tip3 = make_tip(3, QC1, 2, b"b3", fresh=notip_from_tc(tc2))
        receive(core, 3, proposal(3, tip3, b"b3", tc=tc2))
        receive(core, 0, AdvanceRoundMessage(certificate=qc_on(tip3, 3)))
        return core.finalized_height

    assert run(()) == 0
    assert run({"commit_non_consecutive"}) == 1


def test_mutation_skip_high_tip_check_hides_the_tip() -> None:
    core = make_core(0, test_mutations=frozenset({"skip_high_tip_check"}))
    receive(core, 1, P1)
    timeout = sent(core.handle(TimerFired(1, "round", 1)), TimeoutMessage)[0][1]
    assert timeout.high_extend == GENESIS_QC


def test_mutation_skip_reproposal_rule() -> None:
    leader = make_core(2, test_mutations=frozenset({"skip_reproposal_rule"}))
    receive(leader, 1, P1)  # holds B1, yet does not repropose it
    out = receive(leader, 0, AdvanceRoundMessage(certificate=_tip_tc_round1()))
    assert not sent(out, ProposalMessage) and sent(out, RoundRecoveryMessage)
    holder = make_core(1, test_mutations=frozenset({"skip_reproposal_rule"}))
    receive(holder, 1, P1)
    recovery = sent(out, RoundRecoveryMessage)[0][1]
    assert sent(receive(holder, 2, recovery), NoEndorsementMessage)  # holder NEs anyway


def test_nec_built_by_hand_matches_the_core_rules() -> None:
    # Sanity of the builders used above: an NEC for round 2 on tip_qc_round 0 verifies.
    ne = NoEndorsement(epoch=1, round=2, tip_qc_round=0)
    nec = build_nec(ne, {i: SIGNERS[i].no_endorsement_signature(ne) for i in (0, 1, 3)}, VALIDATORS)
    make_core(0).verifier.nec(nec)
