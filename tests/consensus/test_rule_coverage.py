"""Rules the mutation matrix found no test for: each test fails when its rule is off.

Each case builds an input that only the named rule refuses (every other rule lets it
through), so switching that rule off (`sedna sim mutants --only NAME`) changes the
outcome.
"""

from __future__ import annotations

import pytest

from consensus import codec
from consensus.certificates import InvalidMessage, notip_from_tc
from consensus.events import PersistBlock
from consensus.messages import (
    GENESIS_QC,
    AdvanceRoundMessage,
    BlockHeader,
    BlockSyncResponse,
    SyncedBlock,
    VoteMessage,
)
from tests.consensus.support import (
    P1,
    P2,
    P3,
    QC1,
    QC3,
    SCHEDULE,
    SIGNERS,
    TIP2,
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


def dropped_for(out, text: str) -> bool:
    return is_dropped(out) and text in traces(out, "dropped")[0]["reason"]


def test_h1_a_proposal_of_a_finalized_round_adds_nothing() -> None:
    core = make_core(0)
    for message in (P1, P2, P3):  # QC2 (in P3) finalizes B1: the finalized round is 1
        receive(core, message.author, message)
    assert core.finalized_height == 1
    before = snapshot(core)
    # A round-1 block of the right leader at a height above the head, on a parent the node
    # no longer tracks: only H1 keeps it out of the tree.
    junk = make_tip(1, GENESIS_QC, 5, b"late")
    out = receive(core, 1, proposal(1, junk, b"late"))
    assert dropped_for(out, "at or below the finalized round") and snapshot(core) == before


def test_h6_no_vote_for_a_proposal_of_a_round_already_left() -> None:
    core = make_core(0)
    receive(core, 2, AdvanceRoundMessage(certificate=QC1))  # round 2, B1 never seen
    assert core.current_round == 2
    out = receive(core, 1, P1)  # the late round-1 proposal: the block is kept, no vote
    assert any(isinstance(c, PersistBlock) for c in out)
    assert not sent(out, VoteMessage) and core.safety_state.highest_vote == 0


def test_sy0_an_unsolicited_sync_response_is_not_used() -> None:
    core = make_core(0)
    receive(core, 1, P1)
    before = snapshot(core)
    response = BlockSyncResponse(
        block_id=block_id(TIP2), blocks=(SyncedBlock(tip=TIP2, body=body(b"b2")),)
    )
    out = receive(core, 2, response)  # a valid chain nobody asked for
    assert dropped_for(out, "unsolicited") and snapshot(core) == before


def test_t_height_a_block_at_the_finalized_height_is_refused() -> None:
    core = make_core(0)
    for message in (P1, P2, P3):
        receive(core, message.author, message)
    before = snapshot(core)
    # Round 4 on a QC of an unknown round-3 block X, claiming height 1 (the head's).
    x = make_tip(3, QC1, 2, b"x")
    on_x = make_tip(4, qc_on(x, 3), 1, b"b4")
    out = receive(core, 0, proposal(4, on_x, b"b4"))
    assert dropped_for(out, "at or below the finalized height") and snapshot(core) == before


def test_t_fork_a_block_on_a_finalized_non_head_block_is_refused() -> None:
    core = make_core(3)
    tip4 = make_tip(4, QC3, 4, b"b4")
    for message in (P1, P2, P3, proposal(4, tip4, b"b4")):  # QC3 finalizes B2
        receive(core, message.author, message)
    assert core.finalized_height == 2
    before = snapshot(core)
    # After a TC4 won by QC1 (timeouts that kept QC1), a fresh round-5 block on QC1
    # claiming height 9: its parent B1 is finalized but is not the head.
    tc4 = tc_of(4, [timeout_msg(a, 4, QC1, last=QC3) for a in (0, 1, 2)])
    fork = make_tip(5, QC1, 9, b"fork", fresh=notip_from_tc(tc4))
    out = receive(core, 1, proposal(5, fork, b"fork", tc=tc4))
    assert dropped_for(out, "finalized block other than the head") and snapshot(core) == before


def test_t2_the_refusal_of_a_block_not_newer_than_its_qc_names_t2() -> None:
    # T2 is implied by T3 (with N1 or TC4): the block is refused either way; T2 names why.
    header = BlockHeader(
        block_round=1,
        epoch=1,
        qc=QC1,
        author=SCHEDULE.leader(1),
        seq_num=2,
        timestamp_ns=1,
        body_id=codec.body_id(body(b"old")),
    )
    stale = SIGNERS[header.author].tip(header)
    with pytest.raises(InvalidMessage, match="block_round must exceed its QC round"):
        make_core(0).verifier.tip(stale)


def test_tm6_a_timeout_with_a_tip_from_a_later_round_is_dropped() -> None:
    core = make_core(0)
    receive(core, 1, P1)
    later_tip = make_tip(3, QC1, 2, b"b3")  # a round-3 tip in a round-2 timeout
    before = snapshot(core)
    out = receive(core, 2, timeout_msg(2, 2, later_tip))
    assert dropped_for(out, "tip from a future round") and snapshot(core) == before


def test_w5_a_proposal_may_not_carry_a_block_of_a_later_round() -> None:
    # N1 leads rounds 1 and 5. TC1..TC4 all keep the genesis QC, so a round-5 block on
    # the genesis QC with NoTip(TC4) is a valid tip; N1 sends it as its round-1
    # (happy-path) proposal. Only W5 refuses it.
    tcs = [tc_of(1, [timeout_msg(a, 1, GENESIS_QC) for a in (0, 2, 3)])]
    for round_ in (2, 3, 4):
        timeouts = [timeout_msg(a, round_, GENESIS_QC, last=tcs[-1]) for a in (0, 2, 3)]
        tcs.append(tc_of(round_, timeouts))
    early = make_tip(5, GENESIS_QC, 1, b"b5", fresh=notip_from_tc(tcs[-1]))
    core = make_core(0)
    core.verifier.tip(early)  # the tip itself is valid
    before = snapshot(core)
    out = receive(core, 1, proposal(1, early, b"b5"))
    assert dropped_for(out, "block round is after the proposal round")
    assert snapshot(core) == before and not sent(out, VoteMessage)
