"""S4 (reference §8) with the purpose-built adversary: the speculative revert, and its controls.

Cast: Dave N0, Alice N1 (Byzantine, leader of round 5), Bob N2 (leader of 6, slow), Carol
N3 (leader of 7); 10 ms constant latency, Δ = 100 ms, monadbft.
"""

from __future__ import annotations

from functools import cache

import msgspec
import pytest

from consensus import codec
from consensus.certificates import InvalidMessage
from consensus.messages import Tip
from netsim.adversary import ALICE, BOB, CAROL, DAVE, S4Plan, S4Result, run_s4
from netsim.timeline import Timeline

HONEST = (DAVE, BOB, CAROL)


@cache
def attack(equivocate: bool = True, delay_bob: bool = True) -> tuple[S4Result, Timeline]:
    timeline = Timeline()
    result = run_s4(S4Plan(equivocate=equivocate, delay_bob=delay_bob), [timeline])
    return result, timeline


def finalized_at(result: S4Result, node: int, height: int) -> bytes | None:
    return result.log.finalized.get(node, {}).get(height)


def test_bob_alone_marks_b5_voted_then_reverts_it_with_evidence() -> None:
    result, _ = attack()
    b5, height = result.b5_id, result.b5_height
    assert b5 is not None and height is not None and result.b5_prime_id not in (None, b5)
    # Only Bob ever marks B5 Voted (he alone holds QC5), before anyone enters round 7.
    voted_b5 = {
        node: t for node in HONEST for t, block, _s in result.log.voted.get(node, []) if block == b5
    }
    assert set(voted_b5) == {BOB}
    # Bob holds the equivocation evidence (B5' from the proposal, B5 from the sync) ...
    assert (ALICE, 5) in result.log.evidence[BOB]
    # ... and his only revert is of B5, carrying that evidence.
    reverts = result.log.reverted.get(BOB, [])
    assert len(reverts) == 1
    revert_ms, revert = reverts[0]
    assert revert_ms > voted_b5[BOB]
    assert (revert.block_id, revert.seq_num, revert.block_round) == (b5, height, 5)
    evidence = revert.evidence
    assert evidence is not None and evidence.leader == ALICE and evidence.block_round == 5
    ids = {codec.block_id(evidence.first.header), codec.block_id(evidence.second.header)}
    assert ids == {b5, result.b5_prime_id}
    assert not result.log.reverted.get(CAROL) and not result.log.reverted.get(DAVE)


def test_a_block_other_than_b5_takes_its_height_and_every_invariant_holds() -> None:
    result, timeline = attack()
    report, height = result.report, result.b5_height
    assert report["violations"] == [] and report["agreement"]  # P1 and P6 held
    assert report["equivocations"] == [(ALICE, 5)]
    assert report["speculative_reverts"] == 1
    finals = {finalized_at(result, node, height) for node in HONEST}
    assert len(finals) == 1 and result.b5_id not in finals
    # Carol could not fetch B5' (only Alice has it) and went the NEC way: a fresh block of
    # round 7 on QC4 at B5's height, carrying NEC7 and TC6.
    b7 = timeline.fresh_proposal(7, CAROL)
    assert b7 is not None and finals == {b7.block_id}
    assert (b7.seq_num, b7.fresh_certificate, b7.tc_round) == (height, "nec", 6)
    assert report["necs"] == [7] and report["reproposals"] == 0
    assert {5, 6} <= set(report["tc_rounds"])


def test_alice_forges_tcs_whose_tie_is_broken_towards_b5_prime() -> None:
    result, _ = attack()
    adversary = result.adversary
    assert adversary is not None and set(adversary.forged_tcs) == {5, 6}
    verifier = result.world.verifier
    for round_, tc in adversary.forged_tcs.items():
        assert isinstance(tc.high_extend, Tip)
        assert codec.block_id(tc.high_extend.header) == result.b5_prime_id
        verifier.tc(tc)  # valid: Tip(B5') has the rank of Tip(B5), (5, 0, 4)
        assert tc.round == round_
        # Negative space: a high extend of lower rank than the entries is rejected (TC9).
        lower = msgspec.structs.replace(tc, high_extend=tc.high_extend.header.qc)
        with pytest.raises(InvalidMessage):
            verifier.tc(lower)
    # Carol and Dave entered rounds 6 and 7 through those TCs; Bob entered 6 through QC5.
    for node in (CAROL, DAVE):
        assert (6, "tc") in result.log.entered[node] and (7, "tc") in result.log.entered[node]
    assert (6, "qc") in result.log.entered[BOB]
    # Alice withheld QC5 and her own timeouts of rounds 5 and 6.
    assert adversary.withheld >= 2


@pytest.mark.parametrize(
    ("equivocate", "delay_bob"),
    [(False, True), (True, False)],
    ids=["a-alice-honest-to-bob", "b-bob-not-delayed"],
)
def test_control_runs_keep_b5(equivocate: bool, delay_bob: bool) -> None:
    result, _ = attack(equivocate, delay_bob)
    report, height = result.report, result.b5_height
    assert report["violations"] == []
    for node in HONEST:
        assert finalized_at(result, node, height) == result.b5_id
        assert not result.log.reverted.get(node)
    assert report["speculative_reverts"] == 0
    assert any(block == result.b5_id for _t, block, _s in result.log.voted[BOB])
    if not equivocate:
        # (a) TC5 and TC6 can only carry Tip(B5): Carol reproposes it in round 7.
        assert report["equivocations"] == [] and report["reproposals"] == 1
        assert {5, 6} <= set(report["tc_rounds"])
    else:
        # (b) Bob's B6 carries QC5 to everyone in time: no TC at all in the attack rounds.
        assert report["equivocations"] == [(ALICE, 5)]
        assert not {5, 6} & set(report["tc_rounds"])
