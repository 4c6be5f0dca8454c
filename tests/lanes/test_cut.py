"""Tip cuts (docs/lanes.md, "Tip cuts"): the payload, CutValidator's rules and their
negatives, and what finalizing a cut finalizes (`risen`, `walk_down`); the tracker over
finalized lane blocks of several slots (pivot order, W, nothing executes twice)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.crypto import ED25519, TRUSTED, derive_keys
from consensus.lanes.chain import (
    ZERO_DIGEST,
    LaneTip,
    PoA,
    TipRef,
    build_poa,
    chain_block_digest,
    sign_chain_block,
    sign_vote,
)
from consensus.lanes.cut import (
    CUT_PAYLOAD_VERSION,
    EMPTY_CUT,
    CutPayload,
    CutValidator,
    build_cut_payload,
    decode_cut_payload,
    encode_cut_payload,
    risen,
    walk_down,
)
from consensus.lanes.encoding import encode_payload
from consensus.lanes.local import lane_block_header
from consensus.lanes.tracker import DecodeTracker
from consensus.lanes.wire import LanePayloadError, decode_block_transactions, encode
from consensus.messages import BlockBody
from consensus.validators import ValidatorSet
from tests.lanes.helpers import SMALL, entry_for, seeded_bytes, sender_key

KEYS = derive_keys(4, "cut-tests")
VALIDATORS = ValidatorSet.from_keys([k.public for k in KEYS])


def certified(ref: TipRef, signers=(0, 1)) -> LaneTip:
    votes = {i: sign_vote(ED25519, KEYS[i], i, ref).signature for i in signers}
    return LaneTip(ref, build_poa(VALIDATORS, votes))


def ref(lane: int, height: int, slot: int, tag: bytes = b"d") -> TipRef:
    return TipRef(lane, height, tag * 32, slot)


def body(tips, transactions=(b"tx",)) -> BlockBody:
    return BlockBody(build_cut_payload(transactions, tips))


def check(tips, height: int = 10) -> str | None:
    validator = CutValidator(VALIDATORS, ED25519)
    block = body(tips)
    header = lane_block_header(height, 0, block)
    result = validator.check(header, block)
    assert validator.validate(header, block) == (result is None)
    return result


def extension(parent_tips, tips) -> str | None:
    validator = CutValidator(VALIDATORS, ED25519)
    parent, child = body(parent_tips), body(tips)
    header = lane_block_header(10, 0, child)
    result = validator.check_link(parent, header, child)
    assert validator.validate_link(parent, header, child) == (result is None)
    return result


# ----------------------------------------------------------------------------- payload


def test_payload_round_trip_canonical_and_empty() -> None:
    tips = [certified(ref(2, 1, 3)), certified(ref(0, 4, 5))]
    data = build_cut_payload([b"a", b"b"], tips)
    assert data[0] == CUT_PAYLOAD_VERSION
    payload = decode_cut_payload(data)
    assert [t.tip.lane for t in payload.tips] == [0, 2] and payload.transactions == (b"a", b"b")
    assert encode_cut_payload(payload) == data
    assert decode_block_transactions(data) == (b"a", b"b")  # the node's tx view reads both
    assert build_cut_payload([], []) == b"" and decode_cut_payload(b"") == EMPTY_CUT
    with pytest.raises(LanePayloadError, match="two tips for lane 0"):
        build_cut_payload([], [certified(ref(0, 1, 1)), certified(ref(0, 2, 1))])
    with pytest.raises(LanePayloadError, match="non-canonical empty"):
        decode_cut_payload(bytes((CUT_PAYLOAD_VERSION,)) + encode(EMPTY_CUT))
    with pytest.raises(LanePayloadError, match="version 1"):
        decode_cut_payload(b"\x01" + data[1:])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_decoding_untrusted_bytes_raises_only_lane_payload_errors(data: bytes) -> None:
    for candidate in (data, bytes((CUT_PAYLOAD_VERSION,)) + data):
        try:
            payload = decode_cut_payload(candidate)
        except LanePayloadError:
            continue
        assert isinstance(payload, CutPayload)


# ----------------------------------------------------------------------------- CutValidator


def test_a_valid_cut_passes_and_each_stateless_rule_has_a_negative() -> None:
    good = [certified(ref(0, 2, 7)), certified(ref(3, 1, 8))]
    assert check(good) is None
    assert check([LaneTip(ref(1, 5, 3))]) is None  # a re-cited tip needs no PoA here
    # CUT-SLOT: slot <= height − 2
    assert "tip of slot 9 cited at height 10" in check([certified(ref(0, 2, 9))])
    assert check([certified(ref(0, 2, 9))], height=11) is None
    # CUT-POA
    assert "less than f+1" in check([certified(ref(0, 2, 7), signers=(1,))])
    forged = LaneTip(ref(0, 2, 7), certified(ref(0, 2, 6)).poa)  # a PoA for another slot
    assert "bad signature" in check([forged])
    # CUT-FORM
    raw = bytes((CUT_PAYLOAD_VERSION,)) + encode(CutPayload((), (good[1], good[0])))
    header = lane_block_header(10, 0, BlockBody(raw))
    assert "out of order" in CutValidator(VALIDATORS, ED25519).check(header, BlockBody(raw))
    unknown = LaneTip(TipRef(9, 1, b"d" * 32, 1))
    raw = bytes((CUT_PAYLOAD_VERSION,)) + encode(CutPayload((), (unknown,)))
    assert "unknown lane 9" in CutValidator(VALIDATORS, ED25519).check(
        lane_block_header(10, 0, BlockBody(raw)), BlockBody(raw)
    )
    mismatch = body(good)
    wrong_header = lane_block_header(10, 0, body([]))
    assert "body_id" in CutValidator(VALIDATORS, ED25519).check(wrong_header, mismatch)
    assert "malformed" in CutValidator(VALIDATORS, ED25519).check(
        lane_block_header(10, 0, BlockBody(b"\x02\xff")), BlockBody(b"\x02\xff")
    )


def test_cut_monotone_never_goes_back_and_rising_tips_carry_a_poa() -> None:
    parent = [certified(ref(0, 2, 5)), certified(ref(1, 1, 4))]
    same = [LaneTip(ref(0, 2, 5)), LaneTip(ref(1, 1, 4))]
    assert extension(parent, same) is None  # a censoring leader may keep every tip
    assert extension(parent, [certified(ref(0, 3, 6)), LaneTip(ref(1, 1, 4))]) is None
    assert extension(parent, [*same, certified(ref(2, 1, 6))]) is None  # a new lane
    assert "lane 1 of the parent's cut is missing" in extension(parent, same[:1])
    lower = [LaneTip(ref(0, 1, 5)), same[1]]
    assert "below the parent's" in extension(parent, lower)
    forked = [LaneTip(ref(0, 2, 5, tag=b"e")), same[1]]
    assert "differs from it" in extension(parent, forked)
    assert "unchanged tip carries a PoA" in extension(parent, [certified(ref(0, 2, 5)), same[1]])
    assert "without a PoA" in extension(parent, [LaneTip(ref(0, 3, 6)), same[1]])
    assert "without a PoA" in extension(parent, [*same, LaneTip(ref(2, 1, 6))])


def test_verified_poas_are_cached_and_failures_are_not() -> None:
    validator = CutValidator(VALIDATORS, TRUSTED)
    calls = []
    original = validator.poa.verify

    def counting(tip, poa):
        calls.append(tip)
        return original(tip, poa)

    validator.poa.verify = counting
    tip = LaneTip(
        ref(0, 2, 7),
        build_poa(
            VALIDATORS,
            {i: sign_vote(TRUSTED, KEYS[i], i, ref(0, 2, 7)).signature for i in (0, 1)},
        ),
    )
    block = body([tip])
    header = lane_block_header(10, 0, block)
    assert validator.check(header, block) is None and validator.check(header, block) is None
    assert len(calls) == 1
    forged = LaneTip(tip.tip, PoA(tip.poa.signers, (bytes(64), tip.poa.signatures[1])))
    bad = body([forged])
    bad_header = lane_block_header(10, 0, bad)
    assert validator.check(bad_header, bad) is not None
    assert validator.check(bad_header, bad) is not None
    assert len(calls) == 3  # a failure is verified again every time


# ----------------------------------------------------------------------------- finalizing


def chain(lane: int, slots) -> list:
    blocks, parent = [], ZERO_DIGEST
    sender = sender_key("chain")
    encoded = encode_payload(
        SMALL, seeded_bytes("c", 300), seeded_bytes("ck", 32), sender.public, expiry_slot=4000
    )
    for height, slot in enumerate(slots, start=1):
        entry = entry_for(TRUSTED, sender, encoded, height, lane, slot)
        block = sign_chain_block(
            TRUSTED,
            KEYS[lane],
            lane=lane,
            height=height,
            parent=parent,
            slot=slot,
            entries=(entry,),
        )
        blocks.append(block)
        parent = chain_block_digest(block)
    return blocks


def test_risen_and_walk_down_finalize_each_lane_height_once() -> None:
    blocks = chain(1, [2, 3, 5, 6])
    store = {chain_block_digest(b): b for b in blocks}
    tip = TipRef(1, 4, chain_block_digest(blocks[3]), 6)
    previous = {1: TipRef(1, 1, chain_block_digest(blocks[0]), 2)}
    assert risen(previous, {1: tip}) == [(tip, 2)]
    assert risen({1: tip}, {1: tip}) == []
    segment, missing = walk_down(tip, 2, store.get)
    assert missing is None and segment == blocks[1:]
    del store[chain_block_digest(blocks[2])]
    partial, missing = walk_down(tip, 2, store.get)
    assert missing == chain_block_digest(blocks[2]) and partial == [blocks[3]]
    bad = TipRef(1, 3, chain_block_digest(blocks[3]), 6)  # the digest names height 4
    with pytest.raises(ValueError, match="is not lane 1 height 3"):
        walk_down(bad, 1, {chain_block_digest(b): b for b in blocks}.get)


# ----------------------------------------------------------------------------- tracker


SENDER = sender_key("tracker")


def encoded(seed: str, expiry: int = 4000):
    return encode_payload(
        SMALL,
        seeded_bytes(seed, 500),
        seeded_bytes(seed + "k", 32),
        SENDER.public,
        expiry_slot=expiry,
    )


def lane_block(lane: int, slot: int, items, height: int = 1):
    return sign_chain_block(
        TRUSTED,
        KEYS[lane],
        lane=lane,
        height=height,
        parent=ZERO_DIGEST if height == 1 else b"p" * 32,
        slot=slot,
        entries=tuple(items),
    )


def test_the_tracker_counts_bundles_in_slot_order_and_reports_the_decode_slot() -> None:
    payload = encoded("slot-order")
    kappa = payload.layout.kappa
    tracker = DecodeTracker(SMALL, certified=True)
    # the later slot is finalized first (a censored lane), then the earlier
    late = lane_block(
        1, 7, [entry_for(TRUSTED, SENDER, payload, i, 1, 7) for i in range(kappa - 1)]
    )
    early = lane_block(2, 5, [entry_for(TRUSTED, SENDER, payload, kappa + 3, 2, 5)])
    tracker.on_finalized_lanes(9, [], [late], b"a" * 32)
    outcome = tracker.on_finalized_lanes(10, [], [early], b"b" * 32)
    (event,) = outcome.payloads
    assert event.status == "executed" and event.height == 10
    assert event.decode_slot == 7  # κ counted bundles of slots <= 7
    assert event.first_slot == 7  # its first counted bundle's slot
    assert {r.slot for r in outcome.redemptions} == {5}
    # within one cut: every bundle of slot 5 counts before any of slot 7, whatever the
    # parent (the pivot key alone would put a slot-7 bundle first for most parents)
    other = encoded("one-cut")
    blocks = [
        lane_block(1, 7, [entry_for(TRUSTED, SENDER, other, i, 1, 7) for i in range(kappa)]),
        lane_block(2, 5, [entry_for(TRUSTED, SENDER, other, kappa + 1, 2, 5)]),
    ]
    for parent in range(8):
        tracker2 = DecodeTracker(SMALL, certified=True)
        for height in range(1, 9):
            tracker2.on_finalized_lanes(height, [], [], bytes(32))
        (executed,) = tracker2.on_finalized_lanes(9, [], blocks, bytes([parent]) * 32).payloads
        assert executed.pivotal[0] == (5, 2, kappa + 1) and executed.decode_slot == 7


def test_a_lane_block_cut_more_than_w_after_its_slot_is_void_and_nothing_executes_twice() -> None:
    params = SMALL.__class__(
        **{**{k: getattr(SMALL, k) for k in SMALL.__dataclass_fields__}, "max_cut_lag_slots": 3}
    )
    payload = encode_payload(
        params, seeded_bytes("w", 500), seeded_bytes("wk", 32), SENDER.public, expiry_slot=4
    )
    kappa = payload.layout.kappa
    tracker = DecodeTracker(params, certified=True)
    first = lane_block(0, 2, [entry_for(TRUSTED, SENDER, payload, i, 0, 2) for i in range(kappa)])
    tracker.on_finalized_lanes(1, [], [], bytes(32))
    outcome = tracker.on_finalized_lanes(2, [], [first], bytes(32))
    assert [e.status for e in outcome.payloads] == ["executed"]
    # the same payload's bundles of slot 4 (its expiry) cut at heights 5..7 are late (the
    # id is remembered until expiry + W = 7), at height 8 they are void: never executed again
    replay = [entry_for(TRUSTED, SENDER, payload, kappa + i, 1, 4) for i in range(kappa)]
    for height in range(3, 8):
        outcome = tracker.on_finalized_lanes(height, [], [lane_block(1, 4, replay)], bytes(32))
        assert outcome.late == kappa and outcome.payloads == ()
    assert tracker.status(payload.commitment_id) == "executed"
    outcome = tracker.on_finalized_lanes(8, [], [lane_block(1, 4, replay)], bytes(32))
    assert outcome.redemptions == () and tracker.void_lane_blocks == 1
    assert tracker.status(payload.commitment_id) == "unknown"  # forgotten, and harmless
    assert tracker.counts["executed"] == 1
