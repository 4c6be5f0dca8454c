"""Stateless validity rules: HighExtend rank, QC/TC/NEC/NoTip, tips, timeouts, proposals."""

from __future__ import annotations

import msgspec
import pytest

from consensus import codec
from consensus.certificates import (
    InvalidMessage,
    Signer,
    Verifier,
    best_extend,
    build_nec,
    build_qc,
    build_tc,
    extend_rank,
    info_rank,
    notip_from_tc,
)
from consensus.core import CoreConfig
from consensus.crypto import ED25519, Domain, derive_keys
from consensus.messages import (
    GENESIS_QC,
    AdvanceRoundMessage,
    BlockBody,
    BlockHeader,
    NoEndorsement,
    QuorumCertificate,
    TimeoutCertificate,
    TimeoutInfo,
    Tip,
    TipRoundGroup,
    Vote,
)
from consensus.validators import RoundRobinSchedule, ValidatorSet, encode_bitmap

N = 4
KEYS = derive_keys(N, b"certificates-test")
VALIDATORS = ValidatorSet.from_keys([k.public for k in KEYS])
SCHEDULE = RoundRobinSchedule(VALIDATORS)
SIGNERS = [Signer(i, KEYS[i], ED25519) for i in range(N)]
BODY = BlockBody(payload=b"txs")


def verifier(protocol: str = "monadbft") -> Verifier:
    # The verifier a core would build: under the mutation matrix's plugin, a default
    # CoreConfig carries the rule switch being tested (tests/netsim/mutant_plugin.py).
    mutations = CoreConfig().test_mutations
    return Verifier(VALIDATORS, SCHEDULE, ED25519, protocol=protocol, test_mutations=mutations)


def header(
    block_round: int, qc: QuorumCertificate, seq_num: int = 1, body: BlockBody = BODY
) -> BlockHeader:
    return BlockHeader(
        block_round=block_round,
        epoch=1,
        qc=qc,
        author=SCHEDULE.leader(block_round),
        seq_num=seq_num,
        timestamp_ns=block_round,
        body_id=codec.body_id(body),
    )


def tip(block_round: int, qc: QuorumCertificate, fresh=None, body: BlockBody = BODY) -> Tip:
    h = header(block_round, qc, body=body)
    return SIGNERS[h.author].tip(h, fresh)


def qc_for(t: Tip | BlockHeader, round: int, voters=(0, 1, 2)) -> QuorumCertificate:
    h = t.header if isinstance(t, Tip) else t
    vote = Vote(block_id=codec.block_id(h), round=round, epoch=1)
    # Built by hand (not build_qc) so tests can also make sub-quorum certificates.
    return QuorumCertificate(
        vote=vote,
        signers=encode_bitmap(voters, N),
        signatures=tuple(SIGNERS[i].vote_signature(vote) for i in sorted(voters)),
    )


def timeout(author: int, round: int, extend, last=None, tip_vote: bool = False):
    base = extend if isinstance(extend, QuorumCertificate) else extend.header.qc
    info = TimeoutInfo(
        epoch=1,
        round=round,
        high_qc_round=base.round,
        high_tip_round=0 if isinstance(extend, QuorumCertificate) else extend.header.block_round,
    )
    return SIGNERS[author].timeout(info, extend, last, tip_vote)


# A small chain: B1 (round 1) with QC1, B2 (round 2, on QC1) with QC2.
TIP1 = tip(1, GENESIS_QC)
QC1 = qc_for(TIP1, 1)
TIP2 = tip(2, QC1)
QC2 = qc_for(TIP2, 2)


# --------------------------------------------------------------------------- rank


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        # Qc vs Qc: compare QC rounds
        (("qc", 3), ("qc", 2), ">"),
        (("qc", 2), ("qc", 2), "="),
        # Tip vs Tip: tip round first, then QC round
        (("tip", 5, 4), ("tip", 5, 3), ">"),
        (("tip", 5, 3), ("tip", 6, 1), "<"),
        (("tip", 5, 4), ("tip", 5, 4), "="),
        # Qc{q} vs Tip{t}: QC wins on q == t, else compare q with t
        (("qc", 5), ("tip", 5, 4), ">"),
        (("qc", 4), ("tip", 5, 4), "<"),
        (("qc", 6), ("tip", 5, 4), ">"),
    ],
)
def test_high_extend_rank_table(a, b, expected) -> None:
    def rank(spec):
        if spec[0] == "qc":
            return info_rank(
                TimeoutInfo(epoch=1, round=99, high_qc_round=spec[1], high_tip_round=0)
            )
        return info_rank(
            TimeoutInfo(epoch=1, round=99, high_qc_round=spec[2], high_tip_round=spec[1])
        )

    ra, rb = rank(a), rank(b)
    assert {">": ra > rb, "<": ra < rb, "=": ra == rb}[expected]


def test_extend_rank_agrees_with_info_rank() -> None:
    assert extend_rank(QC2) == info_rank(
        TimeoutInfo(epoch=1, round=3, high_qc_round=2, high_tip_round=0)
    )
    assert extend_rank(TIP2) == info_rank(
        TimeoutInfo(epoch=1, round=3, high_qc_round=1, high_tip_round=2)
    )
    assert extend_rank(QC2) > extend_rank(TIP2)  # QC on round 2 beats the round-2 tip


def test_equal_rank_tie_is_broken_deterministically_by_block_id() -> None:
    other = tip(2, QC1, body=BlockBody(payload=b"other"))
    assert extend_rank(other) == extend_rank(TIP2) and other != TIP2
    winner = best_extend([TIP2, other])
    assert winner == best_extend([other, TIP2])
    assert codec.block_id(winner.header) == min(
        codec.block_id(TIP2.header), codec.block_id(other.header)
    )


# --------------------------------------------------------------------------- QC


def test_valid_qc_and_genesis() -> None:
    verifier().qc(QC1)
    verifier().qc(GENESIS_QC)


def test_qc_negatives() -> None:
    v = verifier()
    with pytest.raises(InvalidMessage, match="below quorum"):
        v.qc(qc_for(TIP1, 1, voters=(0, 1)))
    forged = msgspec.structs.replace(QC1, signatures=(bytes(64), *QC1.signatures[1:]))
    with pytest.raises(InvalidMessage, match="invalid signature"):
        verifier().qc(forged)
    with pytest.raises(InvalidMessage, match="signatures"):
        verifier().qc(msgspec.structs.replace(QC1, signatures=QC1.signatures[:2]))
    with pytest.raises(InvalidMessage, match="beyond"):
        verifier().qc(msgspec.structs.replace(QC1, signers=bytes([0b10111])))
    with pytest.raises(InvalidMessage, match="genesis"):
        verifier().qc(msgspec.structs.replace(GENESIS_QC, signers=b"\x01"))
    # A vote signature for another round does not certify this one.
    moved = msgspec.structs.replace(QC1, vote=Vote(block_id=QC1.block_id, round=3, epoch=1))
    with pytest.raises(InvalidMessage, match="invalid signature"):
        verifier().qc(moved)


def test_cross_domain_signature_is_rejected() -> None:
    # A timeout signature over bytes equal to a vote's encoding must not pass as a vote.
    vote = QC1.vote
    cross = ED25519.sign(KEYS[0], Domain.TIMEOUT, codec.vote_signing_bytes(vote))
    assert not ED25519.verify(KEYS[0].public, Domain.VOTE, codec.vote_signing_bytes(vote), cross)
    forged = msgspec.structs.replace(QC1, signatures=(cross, *QC1.signatures[1:]))
    with pytest.raises(InvalidMessage, match="invalid signature"):
        verifier().qc(forged)


def test_stake_weighted_quorum() -> None:
    weighted = ValidatorSet.from_keys([k.public for k in KEYS], stakes=[10, 1, 1, 1])
    assert weighted.quorum_stake == 9 and weighted.honest_stake == 5
    v = Verifier(weighted, RoundRobinSchedule(weighted), ED25519)
    vote = QC1.vote
    heavy = build_qc(vote, {0: SIGNERS[0].vote_signature(vote)}, weighted)
    v.qc(heavy)  # one validator with 10 of 13 stake is a quorum
    light = QuorumCertificate(
        vote=vote,
        signers=encode_bitmap([1, 2, 3], N),
        signatures=tuple(SIGNERS[i].vote_signature(vote) for i in (1, 2, 3)),
    )
    with pytest.raises(InvalidMessage, match="below quorum"):
        v.qc(light)


# --------------------------------------------------------------------------- TC


def tc_round3(extend_by_author=None) -> TimeoutCertificate:
    extends = extend_by_author or {0: QC2, 1: QC2, 2: TIP2}
    last = {a: (QC2 if e is TIP2 else None) for a, e in extends.items()}
    timeouts = [timeout(a, 3, e, last[a] if e is TIP2 else None) for a, e in extends.items()]
    return build_tc(1, 3, timeouts, VALIDATORS)


def test_tc_built_from_timeouts_verifies_and_keeps_the_max_extend() -> None:
    tc = tc_round3()
    verifier().tc(tc)
    assert tc.high_extend == QC2
    assert [(g.high_qc_round, g.high_tip_round) for g in tc.tip_rounds] == [(1, 2), (2, 0)]


def _resign_group(tc, index, hq, ht, signers):
    info = TimeoutInfo(epoch=1, round=tc.round, high_qc_round=hq, high_tip_round=ht)
    sigs = tuple(
        SIGNERS[i]._sign(Domain.TIMEOUT, codec.timeout_signing_bytes(info)) for i in signers
    )
    group = TipRoundGroup(
        high_qc_round=hq, high_tip_round=ht, signers=encode_bitmap(signers, N), signatures=sigs
    )
    groups = list(tc.tip_rounds)
    groups[index] = group
    return msgspec.structs.replace(tc, tip_rounds=tuple(groups))


def test_tc_negatives() -> None:
    tc = tc_round3()
    cases = {
        "duplicate tip-round pair": _resign_group(tc, 0, 2, 0, [2]),
        "duplicate signer": _resign_group(tc, 0, 1, 2, [0, 2]),
        "empty tip-round entry": _resign_group(tc, 0, 1, 2, []),
        "high_qc_round 3 >= round": _resign_group(tc, 0, 3, 0, [2]),
        "below quorum": msgspec.structs.replace(tc, tip_rounds=tc.tip_rounds[1:]),
        "no timeout signatures": msgspec.structs.replace(tc, tip_rounds=()),
        "more groups than validators": msgspec.structs.replace(tc, tip_rounds=tc.tip_rounds * 3),
        "not the maximum rank": msgspec.structs.replace(tc, high_extend=TIP2),
        "inconsistent tip round": _resign_group(tc, 0, 2, 2, [2]),
    }
    for reason, bad in cases.items():
        with pytest.raises(InvalidMessage, match=reason):
            verifier().tc(bad)


def test_tc_with_a_forged_group_signature() -> None:
    tc = tc_round3()
    group = tc.tip_rounds[1]
    forged = msgspec.structs.replace(group, signatures=(bytes(64), *group.signatures[1:]))
    with pytest.raises(InvalidMessage, match="invalid signature"):
        verifier().tc(msgspec.structs.replace(tc, tip_rounds=(tc.tip_rounds[0], forged)))


def test_tip_tc_high_extend_and_notip() -> None:
    tc = tc_round3({0: TIP2, 1: TIP2, 2: TIP2})
    verifier().tc(tc)
    assert tc.high_extend == TIP2
    with pytest.raises(ValueError):
        notip_from_tc(tc)
    qc_tc = tc_round3()
    notip = notip_from_tc(qc_tc)
    verifier().notip(notip)
    with pytest.raises(InvalidMessage, match="maximum rank"):
        verifier().notip(msgspec.structs.replace(notip, high_qc=QC1))


def test_build_tc_rejects_too_few_timeouts() -> None:
    with pytest.raises(ValueError, match="quorum"):
        build_tc(1, 3, [timeout(0, 3, QC2), timeout(1, 3, QC2)], VALIDATORS)


# --------------------------------------------------------------------------- tips


def test_tip_negatives() -> None:
    v = verifier()
    v.tip(TIP2)
    wrong_author = msgspec.structs.replace(TIP2.header, author=3)
    with pytest.raises(InvalidMessage, match="not the leader"):
        v.tip(SIGNERS[3].tip(wrong_author))
    with pytest.raises(InvalidMessage, match="invalid signature"):
        v.tip(msgspec.structs.replace(TIP2, signature=SIGNERS[3].tip(TIP2.header).signature))
    # A block on QC1 in round 3 (skipping round 2) needs a fresh certificate.
    with pytest.raises(InvalidMessage, match="fresh certificate"):
        v.tip(tip(3, QC1))
    # And a happy-path block must not carry one.
    notip = notip_from_tc(tc_round3())
    with pytest.raises(InvalidMessage, match="unexpected fresh certificate"):
        v.tip(tip(2, QC1, fresh=notip))


def test_tip_with_notip_and_nec() -> None:
    # TC3 won by QC2 -> fresh block in round 4 on QC2 with NoTip(TC3).
    notip = notip_from_tc(tc_round3())
    verifier().tip(tip(4, QC2, fresh=notip))
    with pytest.raises(InvalidMessage, match="NoTip certificate does not match"):
        verifier().tip(tip(5, QC2, fresh=notip))
    # NEC(round 4, tip_qc_round 1) lets a fresh block on QC1 replace B2's tip.
    ne = NoEndorsement(epoch=1, round=4, tip_qc_round=1)
    nec = build_nec(ne, {i: SIGNERS[i].no_endorsement_signature(ne) for i in (0, 1, 3)}, VALIDATORS)
    verifier().tip(tip(4, QC1, fresh=nec))
    with pytest.raises(InvalidMessage, match="NEC does not match"):
        verifier().tip(tip(4, QC2, fresh=nec))
    weak = build_nec(
        ne, {i: SIGNERS[i].no_endorsement_signature(ne) for i in (0, 1, 3)}, VALIDATORS
    )
    weak = msgspec.structs.replace(
        weak, signers=encode_bitmap([0, 1], N), signatures=weak.signatures[:2]
    )
    with pytest.raises(InvalidMessage, match="below quorum"):
        verifier().tip(tip(4, QC1, fresh=weak))


def test_vanilla_tip_needs_no_fresh_certificate() -> None:
    verifier("vanilla").tip(tip(3, QC1))
    with pytest.raises(InvalidMessage, match="unexpected fresh certificate"):
        verifier("vanilla").tip(tip(4, QC2, fresh=notip_from_tc(tc_round3())))


# --------------------------------------------------------------------------- timeouts


def test_timeout_wellformedness() -> None:
    v = verifier()
    v.timeout_message(timeout(0, 3, QC2))
    v.timeout_message(timeout(0, 3, TIP2, last=QC2, tip_vote=True))
    # TM4: QC from r-1 must not carry a last round certificate.
    with pytest.raises(InvalidMessage, match="unexpected last round certificate"):
        v.timeout_message(timeout(0, 3, QC2, last=QC2))
    # TM5: older QC requires the previous round's certificate.
    with pytest.raises(InvalidMessage, match="missing last round certificate"):
        v.timeout_message(timeout(0, 3, QC1))
    with pytest.raises(InvalidMessage, match="not from the previous round"):
        v.timeout_message(timeout(0, 4, QC1, last=QC2))
    # TM1: the info must state the extend's rank.
    good = timeout(0, 3, QC2)
    lying_info = TimeoutInfo(epoch=1, round=3, high_qc_round=2, high_tip_round=2)
    lying = msgspec.structs.replace(
        good,
        info=lying_info,
        signature=SIGNERS[0]._sign(Domain.TIMEOUT, codec.timeout_signing_bytes(lying_info)),
    )
    with pytest.raises(InvalidMessage, match="rank does not match"):
        v.timeout_message(lying)
    # TM3: a tip vote needs a tip.
    with pytest.raises(InvalidMessage, match="tip vote without a tip"):
        v.timeout_message(msgspec.structs.replace(good, tip_vote_signature=bytes(64)))
    # Forged timeout and tip-vote signatures.
    with pytest.raises(InvalidMessage, match="invalid signature"):
        v.timeout_message(msgspec.structs.replace(good, author=1))
    with_vote = timeout(0, 3, TIP2, last=QC2, tip_vote=True)
    with pytest.raises(InvalidMessage, match="tip vote"):
        v.timeout_message(msgspec.structs.replace(with_vote, tip_vote_signature=bytes(64)))
    # TM2: cannot time out the round of one's own QC.
    with pytest.raises(InvalidMessage, match="not after"):
        v.timeout_message(timeout(0, 2, QC2))


def test_vanilla_timeouts_carry_only_a_qc() -> None:
    verifier("vanilla").timeout_message(timeout(0, 3, QC2))
    with pytest.raises(InvalidMessage, match="only the high QC"):
        verifier("vanilla").timeout_message(timeout(0, 3, TIP2, last=QC2))


# --------------------------------------------------------------------------- proposals


def proposal(round: int, t: Tip, tc=None, body: BlockBody = BODY, author: int | None = None):
    author = SCHEDULE.leader(round) if author is None else author
    return SIGNERS[author].proposal(round, 1, t, body, tc)


def test_happy_path_proposal_and_negatives() -> None:
    v = verifier()
    v.proposal_message(proposal(2, TIP2))
    with pytest.raises(InvalidMessage, match="not the leader"):
        v.proposal_message(proposal(2, TIP2, author=3))
    with pytest.raises(InvalidMessage, match="body does not match"):
        v.proposal_message(proposal(2, TIP2, body=BlockBody(payload=b"swapped")))
    with pytest.raises(InvalidMessage, match="unexpected TC"):
        v.proposal_message(proposal(2, TIP2, tc=tc_round3()))
    forged = msgspec.structs.replace(proposal(2, TIP2), signature=bytes(64))
    with pytest.raises(InvalidMessage, match="invalid signature"):
        v.proposal_message(forged)


def test_proposal_after_qc_tc_must_be_fresh_on_its_high_qc() -> None:
    tc3 = tc_round3()  # won by QC2
    fresh = tip(4, QC2, fresh=notip_from_tc(tc3))
    verifier().proposal_message(proposal(4, fresh, tc=tc3))
    with pytest.raises(InvalidMessage, match="missing TC"):
        verifier().proposal_message(proposal(4, fresh))
    with pytest.raises(InvalidMessage, match="fresh certificate"):
        verifier().proposal_message(proposal(4, tip(4, QC2), tc=tc3))  # fresh tip without NoTip
    old = tip(4, QC1, fresh=build_nec(*_nec_parts(4, 1)))
    with pytest.raises(InvalidMessage, match="fresh block on the TC's high QC"):
        verifier().proposal_message(proposal(4, old, tc=tc3))


def _nec_parts(round: int, tip_qc_round: int):
    ne = NoEndorsement(epoch=1, round=round, tip_qc_round=tip_qc_round)
    return ne, {i: SIGNERS[i].no_endorsement_signature(ne) for i in (0, 1, 3)}, VALIDATORS


def test_proposal_after_tip_tc_reproposes_or_carries_an_nec() -> None:
    tc3 = tc_round3({0: TIP2, 1: TIP2, 3: TIP2})
    verifier().proposal_message(proposal(4, TIP2, tc=tc3))  # exact reproposal
    nec_tip = tip(4, QC1, fresh=build_nec(*_nec_parts(4, 1)))
    verifier().proposal_message(proposal(4, nec_tip, tc=tc3))  # replacement with NEC
    with pytest.raises(InvalidMessage, match="repropose the TC's high tip"):
        verifier().proposal_message(proposal(4, TIP1, tc=tc3))  # another old block
    other_on_qc2 = tip(4, QC2, fresh=notip_from_tc(tc_round3()))
    with pytest.raises(InvalidMessage, match="repropose the TC's high tip"):
        verifier().proposal_message(proposal(4, other_on_qc2, tc=tc3))
    with pytest.raises(InvalidMessage, match="not from the previous round"):
        verifier().proposal_message(proposal(5, TIP2, tc=tc3))


def test_proposal_after_tip_tc_may_not_repropose_an_older_sibling_of_the_tip() -> None:
    # T (round 3) and B2 (round 2) both extend QC1: same parent, same parent QC round.
    # TC3 is won by Tip(T); reproposing the older sibling B2 in round 4 passes the
    # "same parent QC round" half of W3n and must be refused by its freshness half.
    tc2 = build_tc(1, 2, [timeout(a, 2, QC1) for a in (0, 1, 3)], VALIDATORS)
    tip3 = tip(3, QC1, fresh=notip_from_tc(tc2))
    tc3 = build_tc(1, 3, [timeout(a, 3, tip3, last=tc2) for a in (0, 1, 3)], VALIDATORS)
    assert tc3.high_extend == tip3 and TIP2.header.qc.round == tip3.header.qc.round
    verifier().proposal_message(proposal(4, tip3, tc=tc3))  # the exact reproposal is fine
    with pytest.raises(InvalidMessage, match="repropose the TC's high tip"):
        verifier().proposal_message(proposal(4, TIP2, tc=tc3))


def test_vanilla_proposal_after_tc_extends_at_least_the_high_qc() -> None:
    tc3 = build_tc(1, 3, [timeout(a, 3, QC1, last=QC2) for a in (0, 1, 2)], VALIDATORS)
    verifier("vanilla").tc(tc3)
    verifier("vanilla").proposal_message(proposal(4, tip(4, QC1), tc=tc3))  # tail fork is legal
    tc3_high = build_tc(1, 3, [timeout(a, 3, QC2) for a in (0, 1, 2)], VALIDATORS)
    with pytest.raises(InvalidMessage, match="extend the TC's high QC"):
        verifier("vanilla").proposal_message(proposal(4, tip(4, QC1), tc=tc3_high))
    # The same tail-fork proposal is invalid in the tail-fork-resistant protocol.
    with pytest.raises(InvalidMessage):
        verifier("monadbft").proposal_message(proposal(4, tip(4, QC1), tc=tc3))


# --------------------------------------------------------------------------- other messages


def test_vote_ne_recovery_and_advance_round() -> None:
    v = verifier()
    vote_message = SIGNERS[1].vote(QC1.vote)
    v.vote_message(vote_message)
    with pytest.raises(InvalidMessage, match="invalid signature"):
        v.vote_message(msgspec.structs.replace(vote_message, author=2))
    with pytest.raises(InvalidMessage, match="not a validator"):
        v.vote_message(msgspec.structs.replace(vote_message, author=9))
    with pytest.raises(InvalidMessage, match="epoch"):
        v.vote_message(SIGNERS[1].vote(Vote(block_id=QC1.block_id, round=1, epoch=2)))
    ne = SIGNERS[2].no_endorsement(NoEndorsement(epoch=1, round=4, tip_qc_round=1))
    v.no_endorsement_message(ne)
    with pytest.raises(InvalidMessage, match="below the round"):
        v.no_endorsement_message(
            SIGNERS[2].no_endorsement(NoEndorsement(epoch=1, round=4, tip_qc_round=4))
        )
    tip_tc = tc_round3({0: TIP2, 1: TIP2, 3: TIP2})
    v.round_recovery_message(SIGNERS[SCHEDULE.leader(4)].round_recovery(4, 1, tip_tc))
    with pytest.raises(InvalidMessage, match="not the leader"):
        v.round_recovery_message(SIGNERS[1].round_recovery(4, 1, tip_tc))
    with pytest.raises(InvalidMessage, match="not a tip"):
        v.round_recovery_message(SIGNERS[SCHEDULE.leader(4)].round_recovery(4, 1, tc_round3()))
    with pytest.raises(InvalidMessage, match="TC round"):
        v.round_recovery_message(SIGNERS[SCHEDULE.leader(5)].round_recovery(5, 1, tip_tc))
    v.advance_round(AdvanceRoundMessage(certificate=QC2))
    with pytest.raises(InvalidMessage):
        v.advance_round(AdvanceRoundMessage(certificate=qc_for(TIP2, 2, voters=(0,))))


def test_verification_cache_does_not_accept_a_different_certificate() -> None:
    v = verifier()
    v.qc(QC1)
    v.qc(QC1)  # cached
    with pytest.raises(InvalidMessage):
        v.qc(msgspec.structs.replace(QC1, signatures=(bytes(64), *QC1.signatures[1:])))


def test_messages_survive_the_wire() -> None:
    tc3 = tc_round3({0: TIP2, 1: TIP2, 3: TIP2})
    message = proposal(4, TIP2, tc=tc3)
    decoded = codec.decode_message(codec.encode_message(message))
    assert decoded == message
    verifier().proposal_message(decoded)
