"""Aggregate proofs of availability (docs/lanes.md, "Aggregate proofs of availability"):
the BLS scheme and its simulation stand-in refuse the same forgeries, and a PoA is a
signer bitmap plus one 96-byte aggregate.

Every negative case runs against both `BlsScheme` (real BLS12-381, blspy) and
`StandInAggregateScheme` (netsim's `trusted` runs), so the stand-in cannot accept what
the real scheme refuses on any of them."""

from __future__ import annotations

import pytest

from consensus.aggregate import (
    AGGREGATE_PUBLIC_BYTES,
    AGGREGATE_SIGNATURE_BYTES,
    AggregateKeySet,
    BlsScheme,
    StandInAggregateScheme,
    aggregate_scheme_by_name,
)
from consensus.crypto import ED25519, Domain, derive_keys
from consensus.events import Send
from consensus.lanes.availability import LaneMessageReceived
from consensus.lanes.chain import (
    AggregatePoa,
    AvailabilityVote,
    LaneBlockMessage,
    LaneTip,
    LaneTipMessage,
    PoA,
    TipRef,
    vote_signing_bytes,
)
from consensus.lanes.cut import CutValidator, build_cut_payload
from consensus.lanes.local import lane_block_header
from consensus.messages import BlockBody
from consensus.validators import ValidatorSet, encode_bitmap
from tests.lanes.helpers import SMALL
from tests.lanes.lanenet import LaneNet, tips_of
from tests.lanes.test_availability import seal

KEYS = derive_keys(7, "aggregate-poa")
VALIDATORS = ValidatorSet.from_keys([k.public for k in KEYS])  # n = 7, f+1 = 3
REF = TipRef(2, 5, b"d" * 32, 9)
SCHEMES = [BlsScheme, StandInAggregateScheme]


@pytest.fixture(params=SCHEMES, ids=lambda s: s.name)
def scheme(request):
    return request.param("agg-test")


def setup(scheme):
    keys = [scheme.keypair(k.seed) for k in KEYS]
    poa = AggregatePoa(VALIDATORS, AggregateKeySet.from_keypairs(scheme, keys))
    return keys, poa


def votes(poa, keys, signers, ref=REF) -> dict[int, bytes]:
    return {i: poa.sign_vote(keys[i], i, ref).signature for i in signers}


# ----------------------------------------------------------------------------- the scheme


def test_sizes_and_domain_separation(scheme) -> None:
    key = scheme.keypair(KEYS[0].seed)
    assert len(key.public) == AGGREGATE_PUBLIC_BYTES
    signature = scheme.sign(key, Domain.AVAILABILITY_VOTE, b"m")
    assert len(signature) == AGGREGATE_SIGNATURE_BYTES
    assert scheme.verify(key.public, Domain.AVAILABILITY_VOTE, b"m", signature)
    assert not scheme.verify(key.public, Domain.AVAILABILITY_VOTE, b"m2", signature)
    assert not scheme.verify(key.public, Domain.VOTE, b"m", signature)  # another kind
    other_chain = scheme.for_chain("another-chain")
    assert not other_chain.verify(key.public, Domain.AVAILABILITY_VOTE, b"m", signature)
    other = scheme.keypair(KEYS[1].seed)
    assert not scheme.verify(other.public, Domain.AVAILABILITY_VOTE, b"m", signature)
    assert scheme.keypair(KEYS[0].seed) == key  # deterministic from the Ed25519 seed
    assert aggregate_scheme_by_name(scheme.name, "agg-test").chain_id == "agg-test"


def test_a_valid_poa_is_one_96_byte_aggregate_and_verifies(scheme) -> None:
    keys, poa = setup(scheme)
    proof = poa.build(votes(poa, keys, [0, 3, 6]))
    assert len(proof.signatures) == 1 and len(proof.signatures[0]) == AGGREGATE_SIGNATURE_BYTES
    assert proof.signers == encode_bitmap([0, 3, 6], 7)
    assert poa.verify(REF, proof) is None
    # every signer, in any order of aggregation, gives the same PoA
    assert poa.build(dict(reversed(votes(poa, keys, [0, 3, 6]).items()))) == proof


def test_forged_aggregate_is_refused(scheme) -> None:
    keys, poa = setup(scheme)
    good = poa.build(votes(poa, keys, [0, 1, 2]))
    forged = bytearray(good.signatures[0])
    forged[-1] ^= 1
    assert poa.verify(REF, PoA(good.signers, (bytes(forged),))) is not None
    assert poa.verify(REF, PoA(good.signers, (bytes(96),))) is not None
    # a single signer's signature passed off as the aggregate of three
    alone = votes(poa, keys, [0])[0]
    assert poa.verify(REF, PoA(good.signers, (alone,))) == "bad aggregate signature"
    # the aggregate of votes for another block
    other = poa.build(votes(poa, keys, [0, 1, 2], TipRef(2, 5, b"e" * 32, 9)))
    assert poa.verify(REF, other) == "bad aggregate signature"


def test_aggregate_over_less_than_f_plus_1_stake_is_refused(scheme) -> None:
    keys, poa = setup(scheme)
    few = poa.build(votes(poa, keys, [0, 1]))  # a valid aggregate of 2 < f+1 = 3
    assert poa.verify(REF, few) == "signers hold less than f+1 stake"
    weighted = ValidatorSet.from_keys([k.public for k in KEYS], [10, 1, 1, 1, 1, 1, 1])
    heavy = AggregatePoa(weighted, poa.keys)
    assert heavy.verify(REF, heavy.build(votes(poa, keys, [0]))) is None  # 10 of 16: f+1
    assert "f+1" in heavy.verify(REF, heavy.build(votes(poa, keys, [1, 2, 3])))


def test_bitmap_naming_a_signer_who_did_not_sign_or_omitting_one_is_refused(scheme) -> None:
    keys, poa = setup(scheme)
    three = poa.build(votes(poa, keys, [0, 1, 2]))
    named = PoA(encode_bitmap([0, 1, 2, 3], 7), three.signatures)  # 3 did not sign
    assert poa.verify(REF, named) == "bad aggregate signature"
    four = poa.build(votes(poa, keys, [0, 1, 2, 3]))
    missing = PoA(encode_bitmap([0, 1, 2], 7), four.signatures)  # 3 signed, not named
    assert poa.verify(REF, missing) == "bad aggregate signature"
    swapped = PoA(encode_bitmap([0, 1, 4], 7), three.signatures)
    assert poa.verify(REF, swapped) == "bad aggregate signature"


def test_duplicate_and_out_of_range_bitmap_bits_are_refused(scheme) -> None:
    keys, poa = setup(scheme)
    sig = votes(poa, keys, [0, 1, 2])
    # one signer's vote aggregated twice cannot stand in for a missing third signer
    doubled = scheme.aggregate([sig[0], sig[0], sig[1]])
    assert poa.verify(REF, PoA(encode_bitmap([0, 1, 2], 7), (doubled,))) is not None
    assert poa.verify(REF, PoA(encode_bitmap([0, 1], 7), (doubled,))) is not None
    good = poa.build(sig)
    assert "bitmap" in poa.verify(REF, PoA(b"\x87", good.signatures))  # bit 7 of 7
    assert "bitmap" in poa.verify(REF, PoA(b"\x07\x00", good.signatures))  # 2 bytes for 7
    assert "bitmap" in poa.verify(REF, PoA(b"", good.signatures))
    # more than one signature in an aggregate PoA (the Ed25519 layout) is refused
    listed = PoA(good.signers, (sig[0], sig[1], sig[2]))
    assert "exactly one" in poa.verify(REF, listed)
    assert "exactly one" in poa.verify(REF, PoA(good.signers, ()))
    assert "exactly one" in poa.verify(REF, PoA(good.signers, (bytes(64),)))


def test_a_poa_for_another_lane_height_digest_or_slot_is_refused(scheme) -> None:
    keys, poa = setup(scheme)
    good = poa.build(votes(poa, keys, [0, 1, 2]))
    for other in (
        TipRef(3, 5, b"d" * 32, 9),
        TipRef(2, 6, b"d" * 32, 9),
        TipRef(2, 5, b"x" * 32, 9),
        TipRef(2, 5, b"d" * 32, 10),
    ):
        assert poa.verify(other, good) == "bad aggregate signature"
    assert poa.verify(TipRef(9, 5, b"d" * 32, 9), good) == "unknown lane"


def test_votes_for_another_chain_id_are_refused(scheme) -> None:
    keys, poa = setup(scheme)
    foreign_keys = AggregateKeySet.from_keypairs(scheme.for_chain("other-chain"), keys)
    foreign = AggregatePoa(VALIDATORS, foreign_keys)
    foreign_votes = votes(foreign, keys, [0, 1, 2])
    assert foreign.verify(REF, foreign.build(foreign_votes)) is None  # valid there
    assert poa.verify(REF, foreign.build(foreign_votes)) == "bad aggregate signature"
    vote = AvailabilityVote(REF, 0, foreign_votes[0])
    assert foreign.vote_ok(vote) and not poa.vote_ok(vote)


def test_a_vote_signed_by_another_validator_is_refused(scheme) -> None:
    keys, poa = setup(scheme)
    assert poa.vote_ok(poa.sign_vote(keys[1], 1, REF))
    assert not poa.vote_ok(poa.sign_vote(keys[2], 1, REF))  # 2's key, claims to be 1
    assert not poa.vote_ok(poa.sign_vote(keys[1], 9, REF))  # no validator 9
    assert not poa.vote_ok(AvailabilityVote(REF, 1, bytes(64)))  # an Ed25519-sized one


# ----------------------------------------------------------------------------- POP


def test_a_key_set_with_a_bad_proof_of_possession_is_refused(scheme) -> None:
    keys = [scheme.keypair(k.seed) for k in KEYS[:4]]
    proofs = [scheme.prove_possession(k) for k in keys]
    AggregateKeySet(scheme, [k.public for k in keys], proofs)
    swapped = [proofs[1], proofs[0], *proofs[2:]]  # each proof for another key
    with pytest.raises(ValueError, match="validator 0: the proof of possession"):
        AggregateKeySet(scheme, [k.public for k in keys], swapped)
    with pytest.raises(ValueError, match="validator 3"):
        AggregateKeySet(scheme, [k.public for k in keys], [*proofs[:3], bytes(96)])
    with pytest.raises(ValueError, match="duplicate"):
        AggregateKeySet(scheme, [keys[0].public] * 2, proofs[:2])
    with pytest.raises(ValueError, match="48"):
        AggregateKeySet(scheme, [keys[0].public[:32]], proofs[:1])
    other_chain = scheme.for_chain("other-chain")  # a proof binds the key, not the chain
    AggregateKeySet(other_chain, [k.public for k in keys], proofs)


def test_rogue_key_forges_an_aggregate_unless_its_proof_of_possession_is_required() -> None:
    """The attack POP excludes: validator 6 publishes pk_r = g^r − pk_0 − pk_1, so that
    pk_0 + pk_1 + pk_r = g^r and its signature alone verifies as an aggregate "of 0, 1
    and 6". It cannot prove possession of pk_r (it does not know its secret)."""
    from blspy import G1Element, PopSchemeMPL

    scheme = BlsScheme("agg-test")
    keys = [scheme.keypair(k.seed) for k in KEYS]
    rogue_secret = PopSchemeMPL.key_gen(b"r" * 32)
    g0, g1 = (G1Element.from_bytes(keys[i].public) for i in (0, 1))
    rogue_public = bytes(rogue_secret.get_g1() + g0.negate() + g1.negate())
    publics = [k.public for k in keys[:6]] + [rogue_public]
    proofs = [scheme.prove_possession(k) for k in keys[:6]]
    # the attacker's best proof: one made with the secret it has
    rogue_proof = bytes(PopSchemeMPL.pop_prove(rogue_secret))
    with pytest.raises(ValueError, match="validator 6: the proof of possession"):
        AggregateKeySet(scheme, publics, [*proofs, rogue_proof])
    # without the POP rule the forgery would be accepted: build the set unchecked
    unchecked = object.__new__(AggregateKeySet)
    unchecked.scheme, unchecked.publics = scheme, tuple(publics)
    forged_signature = bytes(
        PopSchemeMPL.sign(rogue_secret, scheme._message(Domain.AVAILABILITY_VOTE, _vote(REF)))
    )
    forged = PoA(encode_bitmap([0, 1, 6], 7), (forged_signature,))
    assert AggregatePoa(VALIDATORS, unchecked).verify(REF, forged) is None


def test_bls_refuses_the_identity_and_malformed_keys() -> None:
    scheme = BlsScheme("agg-test")
    identity = bytes.fromhex("c0" + "00" * 47)
    assert not scheme.possession_ok(identity, bytes.fromhex("c0" + "00" * 95))
    assert not scheme.verify(identity, Domain.AVAILABILITY_VOTE, b"m", bytes(96))
    assert not scheme.possession_ok(b"\x01" * 48, bytes(96))
    with pytest.raises(ValueError, match="malformed"):
        scheme.aggregate([b"\x01" * 96])
    with pytest.raises(ValueError):
        scheme.aggregate([])


def _vote(tip: TipRef) -> bytes:
    return vote_signing_bytes(tip)


# ----------------------------------------------------------------------------- in the layer


@pytest.mark.parametrize("make", SCHEMES, ids=lambda s: s.name)
def test_layers_certify_with_aggregate_poas_and_refuse_forged_votes_and_tips(make) -> None:
    net = LaneNet(4, SMALL, ED25519, aggregate=make("sedna-local"))
    net.height(1)
    block = seal(net, 0, [0, 1, 2], 2)
    (_, _, _broadcast) = net.queue[0]
    net.queue.clear()
    voter = net.feed(1, LaneMessageReceived(0, LaneBlockMessage(block)))
    (vote,) = [c.message for c in voter if type(c) is Send]
    assert len(vote.signature) == AGGREGATE_SIGNATURE_BYTES
    # a vote for 1 signed with 2's key: dropped, no PoA
    forged_vote = net.poa.sign_vote(net.aggregate_keys[2], 1, vote.tip)
    assert tips_of(net.feed(0, LaneMessageReceived(1, forged_vote))) == []
    assert net.nodes[0].layer.stats.dropped["bad vote signature"] == 1
    (tip,) = tips_of(net.feed(0, LaneMessageReceived(1, vote)))
    assert len(tip.poa.signatures) == 1 and net.poa.verify(tip.tip, tip.poa) is None
    # a tip whose aggregate is forged is not certified by the others
    forged_tip = LaneTip(tip.tip, PoA(tip.poa.signers, (bytes(96),)))
    net.feed(2, LaneMessageReceived(0, LaneTipMessage(forged_tip)))
    assert net.nodes[2].layer.certified_tip(0) is None
    assert net.nodes[2].layer.stats.dropped["invalid PoA: bad aggregate signature"] == 1
    net.feed(2, LaneMessageReceived(0, LaneTipMessage(tip)))
    assert net.nodes[2].layer.certified_tip(0) == tip


@pytest.mark.parametrize("make", SCHEMES, ids=lambda s: s.name)
def test_cut_validator_checks_aggregate_poas(make) -> None:
    keys, poa = setup(make("agg-test"))
    validator = CutValidator(VALIDATORS, ED25519, poa=poa)
    ref = TipRef(0, 1, b"d" * 32, 2)
    good = LaneTip(ref, poa.build(votes(poa, keys, [0, 1, 2], ref)))
    body = BlockBody(build_cut_payload([], [good]))
    assert validator.check(lane_block_header(10, 0, body), body) is None
    few = LaneTip(ref, poa.build(votes(poa, keys, [0, 1], ref)))
    body = BlockBody(build_cut_payload([], [few]))
    assert "f+1" in validator.check(lane_block_header(10, 0, body), body)


def test_a_cut_with_aggregate_poas_is_linear_in_n() -> None:
    """The point of aggregation: one lane's PoA is bitmap + 96 bytes at any n, where an
    Ed25519 PoA grows by 64 bytes per signer."""
    scheme = StandInAggregateScheme("agg-test")
    sizes = {}
    for n in (16, 100):
        keys = derive_keys(n, "size")
        validators = ValidatorSet.from_keys([k.public for k in keys])
        aggregate_keys = [scheme.keypair(k.seed) for k in keys]
        poa = AggregatePoa(validators, AggregateKeySet.from_keypairs(scheme, aggregate_keys))
        signers = range(validators.honest_stake)
        tips = [
            LaneTip(
                TipRef(lane, 1, bytes(32), 1),
                poa.build(votes(poa, aggregate_keys, signers, TipRef(lane, 1, bytes(32), 1))),
            )
            for lane in range(n)
        ]
        sizes[n] = len(build_cut_payload([], tips)) / n
    assert sizes[100] < sizes[16] + 16  # per lane: 96 + bitmap (n/8) + tip
    assert sizes[100] < 220
