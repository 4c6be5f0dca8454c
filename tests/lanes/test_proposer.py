"""Lane proposer admission: every rejection reason, counted; sealing; withholding."""

from __future__ import annotations

import pytest

from consensus.crypto import ED25519, TRUSTED, derive_keys
from consensus.lanes.encoding import encode_payload
from consensus.lanes.params import LaneParams
from consensus.lanes.proposer import (
    CartelPool,
    LaneProposer,
    RejectReason,
    WithholdPolicy,
    max_entry_bytes,
)
from consensus.lanes.tickets import lane_block_signature_ok, make_ticket, sign_ticket
from consensus.lanes.wire import LaneEntry, SignedTicket, Ticket, encode_lane_entry
from tests.lanes.helpers import EXPIRY, SMALL, entry_for, forged_payload, seeded_bytes, sender_key

LANE = 3
KEY = sender_key()
LANE_KEY = derive_keys(8, "lanes")[LANE]


def _proposer(scheme=ED25519, **kwargs) -> LaneProposer:
    return LaneProposer(lane=LANE, key=LANE_KEY, scheme=scheme, params=SMALL, **kwargs)


def _encoded(seed: str = "p", size: int = 700):
    return encode_payload(
        SMALL,
        seeded_bytes(seed, size),
        seeded_bytes("k" + seed, 32),
        KEY.public,
        expiry_slot=EXPIRY,
    )


def _replace(struct, **changes):
    fields = {f: getattr(struct, f) for f in struct.__struct_fields__}
    fields.update(changes)
    return struct.__class__(**fields)


def _resign(ticket: Ticket) -> SignedTicket:
    return sign_ticket(ED25519, KEY, ticket)


def test_accepts_a_valid_bundle_and_builds_a_signed_lane_block() -> None:
    proposer = _proposer()
    encoded = _encoded()
    assert proposer.submit(entry_for(ED25519, KEY, encoded, 0, LANE, 1)) is None
    assert (
        proposer.submit_bytes(encode_lane_entry(entry_for(ED25519, KEY, encoded, 1, LANE, 2)))
        is None
    )
    block = proposer.seal(1)
    assert [e.bundle.bundle_index for e in block.entries] == [0]
    assert lane_block_signature_ok(ED25519, LANE_KEY.public, block)
    assert not lane_block_signature_ok(ED25519, derive_keys(1, "other")[0].public, block)
    assert proposer.seal(1) is block  # idempotent: a height may be proposed again
    assert [e.bundle.bundle_index for e in proposer.seal(2).entries] == [1]
    assert proposer.stats.accepted == 2 and not proposer.rejected


def _cases():
    encoded = _encoded()
    good = entry_for(ED25519, KEY, encoded, 2, LANE, 1)
    ticket = good.ticket.ticket
    bundle = good.bundle
    other = _encoded("other")
    forged = forged_payload(SMALL, 700, KEY.public, "junk", None)
    flipped = bytes([bundle.symbols[0][0] ^ 0xFF]) + bundle.symbols[0][1:]
    big = _replace(bundle.commitment, payload_len=SMALL.max_payload_bytes + 1)
    wrong_layout = _replace(bundle.commitment, kappa=bundle.commitment.kappa + 1)
    return {
        RejectReason.OVERSIZED: LaneEntry(_replace(bundle, commitment=big), good.ticket),
        RejectReason.BAD_COMMITMENT: LaneEntry(
            _replace(bundle, commitment=wrong_layout), good.ticket
        ),
        RejectReason.MALFORMED: LaneEntry(
            _replace(bundle, symbols=bundle.symbols[:-1]), good.ticket
        ),
        RejectReason.TICKET_MISMATCH: LaneEntry(
            bundle, _resign(_replace(ticket, commitment_id=other.commitment_id))
        ),
        RejectReason.WRONG_LANE: entry_for(ED25519, KEY, encoded, 2, LANE + 1, 1),
        RejectReason.BAD_EXPIRY: LaneEntry(bundle, _resign(_replace(ticket, expiry_slot=2))),
        RejectReason.EXPIRED_TICKET: entry_for(ED25519, KEY, encoded, 2, LANE, 0),
        RejectReason.WRONG_SLOT: entry_for(ED25519, KEY, encoded, 2, LANE, 1 + 8),
        RejectReason.BAD_TICKET_SIGNATURE: LaneEntry(
            bundle, sign_ticket(ED25519, sender_key("mallory"), ticket)
        ),
        RejectReason.BAD_PROOF: LaneEntry(
            _replace(bundle, symbols=(flipped, *bundle.symbols[1:])), good.ticket
        ),
        # a commitment over junk passes admission (caught at decode): not a rejection
        None: entry_for(ED25519, KEY, forged, 0, LANE, 1),
    }


@pytest.mark.parametrize("reason", list(_cases()), ids=lambda r: str(r))
def test_each_rejection_reason_is_detected_and_counted(reason: RejectReason | None) -> None:
    proposer = _proposer()
    entry = _cases()[reason]
    assert proposer.submit(entry) == reason
    if reason is None:
        assert proposer.stats.accepted == 1
    else:
        assert proposer.rejected == {reason.value: 1}
        assert proposer.stats.accepted == 0
        assert proposer.seal(1).entries == ()  # nothing leaked into the lane block


def test_duplicates_capacity_and_bytes() -> None:
    params = LaneParams(symbol_size_bytes=64, symbols_per_bundle=4, max_entries_per_lane_block=2)
    proposer = LaneProposer(lane=LANE, key=LANE_KEY, scheme=TRUSTED, params=params)
    encoded = encode_payload(
        params, b"d" * 500, seeded_bytes("k", 32), KEY.public, expiry_slot=EXPIRY
    )
    first = entry_for(TRUSTED, KEY, encoded, 0, LANE, 1)
    assert proposer.submit(first) is None
    assert proposer.submit(first) == RejectReason.DUPLICATE_SYMBOL
    # same bundle re-ticketed for another slot: still the same symbols
    assert (
        proposer.submit(entry_for(TRUSTED, KEY, encoded, 0, LANE, 2))
        == RejectReason.DUPLICATE_SYMBOL
    )
    assert proposer.submit(entry_for(TRUSTED, KEY, encoded, 1, LANE, 1)) is None
    assert proposer.submit(entry_for(TRUSTED, KEY, encoded, 2, LANE, 1)) == RejectReason.LANE_FULL
    assert (
        proposer.submit(entry_for(TRUSTED, KEY, encoded, 2, LANE, 2)) is None
    )  # next slot has room
    assert proposer.submit_bytes(b"\xc1garbage") == RejectReason.MALFORMED
    assert proposer.submit_bytes(bytes(max_entry_bytes(params) + 1)) == RejectReason.OVERSIZED
    assert proposer.rejected == {
        "duplicate_symbol": 2,
        "lane_full": 1,
        "malformed": 1,
        "oversized": 1,
    }
    proposer.seal(2)  # slot 1 was never sealed: its bundles are dropped, the slot expires
    assert proposer.stats.dropped_unsealed == 2
    assert (
        proposer.submit(entry_for(TRUSTED, KEY, encoded, 5, LANE, 2)) == RejectReason.EXPIRED_TICKET
    )
    with pytest.raises(ValueError):
        proposer.seal(1)


@pytest.mark.parametrize("targeted", [False, True])
def test_withholding_omits_bundles_and_pools_them(targeted: bool) -> None:
    pool = CartelPool()
    victim, bystander = _encoded("victim"), _encoded("bystander")
    targets = frozenset({victim.commitment_id}) if targeted else None
    proposer = _proposer(TRUSTED, withhold=WithholdPolicy(pool, targets))
    for encoded in (victim, bystander):
        for index in (0, 1):
            assert proposer.submit(entry_for(TRUSTED, KEY, encoded, index, LANE, 1)) is None
    block = proposer.seal(1)
    included = {e.ticket.ticket.commitment_id for e in block.entries}
    assert victim.commitment_id not in included
    assert (bystander.commitment_id in included) == targeted
    assert pool.bundle_count(victim.commitment_id) == 2
    assert pool.bundle_count(bystander.commitment_id) == (0 if targeted else 2)
    assert proposer.stats.withheld == len(pool.withheld) == (2 if targeted else 4)
    assert all(lane == LANE and slot == 1 for lane, slot, _, _ in pool.withheld)


def test_cartel_pool_decodes_privately_with_enough_bundles() -> None:
    pool = CartelPool()
    encoded = _encoded("lead", 300)
    kappa = encoded.layout.kappa
    entries = [entry_for(TRUSTED, KEY, encoded, i, LANE, 1) for i in range(kappa)]
    for entry in entries[:-1]:
        pool.add(LANE, 1, entry)
    assert pool.private_decode(SMALL, encoded.commitment_id, {}).status == "undecodable"
    public = {kappa - 1: encoded.bundles[kappa - 1].symbols}
    result = pool.private_decode(SMALL, encoded.commitment_id, public)
    assert (result.status, result.payload) == ("decoded", seeded_bytes("lead", 300))


def test_ticket_fields() -> None:
    ticket = make_ticket(bytes(32), 1, 9, 4, 7)
    assert ticket.expiry_slot == ticket.slot == 9
