"""Adversaries of the lane layer (issue 10), each against the pure code where its rule lives.

Senders: duplicate bundles across lanes, ground commitment ids, junk commitments,
replays of decided payloads. Leaders: placing transactions ahead of a payload they
decoded early. Lanes: a favourable pivot position by lane index.
"""

from __future__ import annotations

import hashlib
import sys

import msgspec
import pytest

from consensus.crypto import TRUSTED, derive_keys
from consensus.lanes.encoding import encode_payload
from consensus.lanes.ledger import Ledger, LedgerParams
from consensus.lanes.local import lane_block_header
from consensus.lanes.payload import LanePayloadValidator, build_block_payload
from consensus.lanes.proposer import LaneProposer, RejectReason, entry_key
from consensus.lanes.tickets import sign_lane_block
from consensus.lanes.tracker import DecodeTracker, execution_key, pivot_key
from consensus.messages import BlockBody, BlockHeader, QuorumCertificate, Vote
from consensus.validators import ValidatorSet
from tests.lanes.helpers import (
    SMALL,
    entry_for,
    forged_payload,
    seeded_bytes,
    sender_key,
    tracker_modes,
)

LANES = 6
KEYS = derive_keys(LANES, "adversary-tests")
VALIDATORS = ValidatorSet.from_keys([k.public for k in KEYS])
VALIDATOR = LanePayloadValidator(VALIDATORS, SMALL, TRUSTED)
SENDER = sender_key("adversary")

tracker_mode = tracker_modes(sys.modules[__name__])


def _encode(name: str, size: int = 300, expiry: int = 4000, sender=SENDER):
    return encode_payload(
        SMALL,
        seeded_bytes(name, size),
        seeded_bytes("k/" + name, 32),
        sender.public,
        expiry_slot=expiry,
    )


def _header(slot: int, body: BlockBody, parent: bytes | None) -> BlockHeader:
    """A header at `slot` whose QC certifies `parent` (None: the genesis QC)."""
    header = lane_block_header(slot, 0, body)
    if parent is None:
        return header
    vote = Vote(block_id=parent, round=slot - 1, epoch=1)
    qc = QuorumCertificate(vote=vote, signers=b"", signatures=())
    return msgspec.structs.replace(header, qc=qc)


def _block(slot: int, entries, transactions=(), parent: bytes | None = None, check=True):
    """A block at `slot` from [(lane, entry)]; validated like every voter would."""
    by_lane: dict[int, dict] = {}
    for lane, entry in entries:
        by_lane.setdefault(lane, {})[entry_key(entry)] = entry
    blocks = [
        sign_lane_block(TRUSTED, KEYS[lane], lane, slot, tuple(es[k] for k in sorted(es)))
        for lane, es in by_lane.items()
    ]
    body = BlockBody(build_block_payload(list(transactions), blocks))
    header = _header(slot, body, parent)
    if check:
        assert VALIDATOR.check(header, body) is None
    return header, body


def _entries(encoded, slot: int, bundle_lanes, sender=SENDER):
    return [
        (lane, entry_for(TRUSTED, sender, encoded, index, lane, slot))
        for index, lane in bundle_lanes
    ]


# --------------------------------------------------------------------------- 1. duplicates


def test_duplicate_bundles_across_lanes_are_valid_counted_once_and_paid_for() -> None:
    encoded = _encode("dup")
    kappa = encoded.layout.kappa
    ledger = Ledger.from_genesis(LedgerParams(fee=1), {SENDER.public: 100})
    tracker = DecodeTracker(SMALL, ledger=ledger)
    # slot 1: bundle 0 on every lane (the attack) and κ−2 other bundles: κ−1 distinct
    dup = _entries(encoded, 1, [(0, lane) for lane in range(LANES)])
    rest = _entries(encoded, 1, [(i, i % LANES) for i in range(1, kappa - 1)])
    outcome = tracker.on_finalized(*_block(1, dup + rest))
    assert outcome.duplicates == LANES - 1 and outcome.payloads == ()
    assert len(outcome.redemptions) == LANES + kappa - 2  # every copy is redeemed ...
    assert outcome.fees_charged == LANES + kappa - 2  # ... and paid for by the sender
    # slot 2: one more distinct bundle decodes it; the pivotal set holds each bundle once
    outcome = tracker.on_finalized(*_block(2, _entries(encoded, 2, [(kappa, 0)])))
    (event,) = outcome.payloads
    assert event.status == "executed" and len({i for _, _, i in event.pivotal}) == kappa


def test_which_duplicate_copy_counts_is_the_first_in_pivot_order() -> None:
    encoded = _encode("dup-order")
    cid = encoded.commitment_id
    header, body = _block(1, _entries(encoded, 1, [(0, lane) for lane in range(LANES)]))
    outcome = DecodeTracker(SMALL).on_finalized(header, body)
    assert outcome.duplicates == LANES - 1
    tracker = DecodeTracker(SMALL)
    tracker.on_finalized(header, body)
    first = min(range(LANES), key=lambda lane: pivot_key(header.qc.block_id, cid, 0, lane))
    assert tracker._pending[cid].order == [(1, first, 0)]


# --------------------------------------------------------------------------- 2. front-running


def _hash_chain(seed: bytes, items) -> bytes:
    digest = seed
    for tag, height, ident, content in items:
        digest = hashlib.sha256(
            digest + tag + height.to_bytes(8, "big") + ident + hashlib.sha256(content).digest()
        ).digest()
    return digest


def test_payloads_decodable_in_a_block_execute_before_its_transactions() -> None:
    """The decode-height leader may hold every lane block early and decode first; what it
    then puts in the block's plain transactions runs after the payload."""
    encoded = _encode("victim")
    kappa = encoded.layout.kappa
    front_run = b"leader's transaction placed ahead"
    block = _block(1, _entries(encoded, 1, [(i, i) for i in range(kappa)]), [front_run])
    tracker = DecodeTracker(SMALL)
    outcome = tracker.on_finalized(*block)
    (event,) = outcome.payloads
    assert event.position == 0  # first in the block, ahead of every plain transaction
    seed = hashlib.sha256(b"sedna/execution-order/1").digest()
    expected = _hash_chain(
        seed,
        [
            (b"p", 1, encoded.commitment_id, event.payload),
            (b"t", 1, b"", front_run),
        ],
    )
    assert outcome.execution_order_hash == expected


# --------------------------------------------------------------------------- 7. orders


def test_the_pivot_order_is_keyed_by_the_parent_not_by_lane_index() -> None:
    """With lane-index order, the lowest lanes holding a payload's bundles in the decode
    slot were always pivotal; keyed by the parent id, no lane is favoured."""
    encoded = _encode("pivot", size=700)
    kappa = encoded.layout.kappa
    lane_zero_pivotal = 0
    for n in range(16):
        parent = hashlib.sha256(b"parent %d" % n).digest()
        entries = _entries(encoded, 1, [(i, i % LANES) for i in range(kappa + 3)])
        header, body = _block(1, entries, parent=parent)
        (event,) = DecodeTracker(SMALL).on_finalized(header, body).payloads
        ranked = sorted(
            range(kappa + 3),
            key=lambda i: pivot_key(parent, encoded.commitment_id, i, i % LANES),
        )
        assert [i for _, _, i in event.pivotal] == ranked[:kappa]
        lane_zero_pivotal += any(lane == 0 for _, lane, _ in event.pivotal)
    assert 0 < lane_zero_pivotal < 16  # sometimes pivotal, sometimes not


def test_a_sender_cannot_grind_its_execution_position() -> None:
    """Under commitment-id order a sender grinding AONT keys for a small id ran first in
    every block; keyed by the parent id (unknown when the id is fixed) it does not."""
    senders = [sender_key(f"grind/{i}") for i in range(4)]
    encoded = [_encode(f"g{i}", sender=senders[i]) for i in range(4)]
    smallest = min(e.commitment_id for e in encoded)
    first_is_smallest = 0
    for n in range(16):
        parent = hashlib.sha256(b"parent %d" % n).digest()
        entries = [
            item
            for e, s in zip(encoded, senders, strict=True)
            for item in _entries(e, 1, [(i, i % LANES) for i in range(e.layout.kappa)], sender=s)
        ]
        outcome = DecodeTracker(SMALL).on_finalized(*_block(1, entries, parent=parent))
        order = [event.commitment_id for event in outcome.payloads]
        assert order == sorted(order, key=lambda cid: execution_key(parent, cid))
        first_is_smallest += order[0] == smallest
    assert first_is_smallest < 16


# --------------------------------------------------------------------------- 4. spam


def test_junk_commitments_cannot_crowd_out_honest_payloads() -> None:
    """A full tracker makes room by evicting the heaviest sender's stalest payload; that
    sender's own new junk is dropped. Evicted junk forfeits its escrow."""
    junk_key, honest_key = sender_key("junk"), sender_key("honest")
    ledger = Ledger.from_genesis(
        LedgerParams(fee=1, bounty=5), {junk_key.public: 10_000, honest_key.public: 10_000}
    )
    tracker = DecodeTracker(SMALL, max_pending_payloads=4, ledger=ledger)
    junk = [forged_payload(SMALL, 300, junk_key.public, f"junk{i}", None) for i in range(8)]
    # slots 1..4: one junk commitment per slot, one bundle each: the table fills up
    for slot in range(1, 5):
        tracker.on_finalized(*_block(slot, _entries(junk[slot - 1], slot, [(0, 0)], junk_key)))
    assert tracker.pending_count == 4
    # slot 5: more junk (dropped: its sender is the heaviest) and an honest payload's
    # first bundles (counted: the junk sender's stalest commitment makes room)
    honest = _encode("honest", size=700, sender=honest_key)
    kappa = honest.layout.kappa
    entries = _entries(junk[4], 5, [(0, 1)], junk_key) + _entries(
        honest, 5, [(i, 2 + i % 4) for i in range(kappa - 1)], honest_key
    )
    outcome = tracker.on_finalized(*_block(5, entries))
    assert [i.reason for i in outcome.ignored] == ["tracker_full"]
    assert outcome.ignored[0].sender == junk_key.public
    assert outcome.evicted == 1
    (evicted,) = outcome.payloads
    assert (evicted.commitment_id, evicted.reason) == (junk[0].commitment_id, "evicted")
    assert outcome.burned == 5  # the evicted junk's escrow
    outcome = tracker.on_finalized(*_block(6, _entries(honest, 6, [(kappa, 0)], honest_key)))
    assert [e.status for e in outcome.payloads] == ["executed"]
    assert ledger.conserved()


# --------------------------------------------------------------------------- 6. replay


@pytest.mark.carried_only(
    "certified trackers forget W = max_cut_lag_slots later: "
    "tests/lanes/test_cut.py::test_a_lane_block_cut_more_than_w_after_its_slot_is_void_and_nothing_executes_twice"
)
def test_a_decided_payload_never_executes_again_and_is_forgotten_only_after_expiry() -> None:
    encoded = _encode("replayed", expiry=6)
    kappa = encoded.layout.kappa
    cid = encoded.commitment_id
    tracker = DecodeTracker(SMALL)
    outcome = tracker.on_finalized(*_block(1, _entries(encoded, 1, [(i, i) for i in range(kappa)])))
    assert [e.status for e in outcome.payloads] == ["executed"]
    # many other payloads decide in between (an id window would have forgotten it)
    for slot in range(2, 6):
        others = [_encode(f"other{slot}/{n}") for n in range(3)]
        entries = [x for e in others for x in _entries(e, slot, [(i, i) for i in range(kappa)])]
        replay = _entries(encoded, slot, [(i + kappa * slot, i) for i in range(kappa)])
        outcome = tracker.on_finalized(*_block(slot, entries + replay))
        assert outcome.late == kappa  # the replayed bundles are ignored ...
        assert cid not in [e.commitment_id for e in outcome.payloads]  # ... never executed
    assert tracker.status(cid) == "executed"
    tracker.on_finalized(*_block(6, _entries(encoded, 6, [(12, 0)])))
    tracker.on_finalized(*_block(7, []))
    assert tracker.status(cid) == "unknown"  # forgotten: no ticket of it can be valid now
    late_entry = _entries(encoded, 7, [(13, 1)])
    late_block = _block(7, late_entry, check=False)
    assert VALIDATOR.check(*late_block) == f"lane 1: {RejectReason.PAYLOAD_EXPIRED.value}"
    lane = LaneProposer(lane=1, key=KEYS[1], scheme=TRUSTED, params=SMALL, first_open_slot=7)
    assert lane.submit(late_entry[0][1]) == RejectReason.PAYLOAD_EXPIRED


def test_a_commitment_cannot_outlive_the_chains_lifetime_bound() -> None:
    encoded = _encode("forever", expiry=10 + SMALL.max_lifetime_slots + 1)
    (entry,) = _entries(encoded, 10, [(0, 0)])
    lane = LaneProposer(lane=0, key=KEYS[0], scheme=TRUSTED, params=SMALL, first_open_slot=10)
    assert lane.submit(entry[1]) == RejectReason.BAD_COMMITMENT
    assert VALIDATOR.check(*_block(10, [entry], check=False)) == "lane 0: bad_commitment"
