"""Ticket batches: one sender signature over a Merkle tree of tickets, verified once per node."""

from __future__ import annotations

import math

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.crypto import ED25519, TRUSTED, Domain
from consensus.lanes.encoding import encode_payload
from consensus.lanes.proposer import LaneProposer, RejectReason
from consensus.lanes.tickets import (
    MAX_TICKETS_PER_BATCH,
    TicketVerifier,
    batch_root,
    make_ticket,
    sign_ticket,
    sign_ticket_batch,
    sign_tickets,
    ticket_leaf,
    ticket_signature_ok,
)
from consensus.lanes.wire import (
    MAX_TICKET_BATCH_DEPTH,
    LaneEntry,
    SignedTicket,
    decode_lane_entry,
    encode_lane_entry,
)
from tests.lanes.helpers import EXPIRY, SMALL, seeded_bytes, sender_key

KEY = sender_key("batch")
OTHER = sender_key("other")


def _tickets(count: int, slot: int = 5) -> list:
    return [
        make_ticket(seeded_bytes(f"cid{i // 3}", 32), i % 7, slot + i % 2, i % 3, 1 + i % 4)
        for i in range(count)
    ]


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=1, max_value=70))
def test_every_ticket_of_a_batch_verifies_under_one_signature(count: int) -> None:
    tickets = _tickets(count)
    signed = sign_ticket_batch(TRUSTED, KEY, tickets)
    assert [s.ticket for s in signed] == tickets
    assert len({s.signature for s in signed}) == 1
    assert len({batch_root(s) for s in signed}) == 1
    depth = math.ceil(math.log2(count)) if count > 1 else 0
    assert all(len(s.batch_path) <= depth for s in signed)
    assert all(ticket_signature_ok(TRUSTED, KEY.public, s) for s in signed)
    assert not any(ticket_signature_ok(TRUSTED, OTHER.public, s) for s in signed)


def test_a_batch_of_one_signs_the_tickets_leaf() -> None:
    (ticket,) = _tickets(1)
    signed = sign_ticket(ED25519, KEY, ticket)
    assert signed.batch_path == () and batch_root(signed) == ticket_leaf(ticket)
    assert ED25519.verify(KEY.public, Domain.TICKET, ticket_leaf(ticket), signed.signature)
    assert ticket_signature_ok(ED25519, KEY.public, signed)


def test_altered_tickets_and_paths_fail() -> None:
    tickets = _tickets(8)
    signed = sign_ticket_batch(ED25519, KEY, tickets)
    first, second = signed[0], signed[1]
    replace = msgspec.structs.replace
    forgeries = [
        replace(first, ticket=replace(first.ticket, slot=first.ticket.slot + 1)),
        replace(first, ticket=replace(first.ticket, lane=first.ticket.lane + 1)),
        replace(first, ticket=replace(first.ticket, fee=first.ticket.fee + 1)),
        replace(first, batch_path=second.batch_path),  # another ticket's path
        replace(first, batch_path=first.batch_path[:-1]),  # truncated
        replace(first, batch_path=(*first.batch_path, first.batch_path[0])),  # extended
        replace(first, batch_path=tuple(reversed(first.batch_path))),
        replace(first, signature=bytes(64)),
        replace(first, ticket=tickets[2]),  # a batch member with the wrong path
    ]
    for forged in forgeries:
        assert not ticket_signature_ok(ED25519, KEY.public, forged)
    # a ticket outside the batch cannot borrow a member's path and signature
    outsider = make_ticket(bytes(32), 0, 5, 0, 1)
    assert not ticket_signature_ok(ED25519, KEY.public, replace(first, ticket=outsider))


def test_batch_size_bounds() -> None:
    with pytest.raises(ValueError, match="ticket batch"):
        sign_ticket_batch(TRUSTED, KEY, [])
    with pytest.raises(ValueError, match="ticket batch"):
        sign_ticket_batch(TRUSTED, KEY, _tickets(1) * (MAX_TICKETS_PER_BATCH + 1))
    full = sign_ticket_batch(TRUSTED, KEY, _tickets(1) * MAX_TICKETS_PER_BATCH)
    assert max(len(s.batch_path) for s in full) == MAX_TICKET_BATCH_DEPTH


def test_sign_tickets_cuts_consecutive_batches_in_order() -> None:
    tickets = _tickets(10)
    signed = sign_tickets(TRUSTED, KEY, tickets, batch_size=4)
    assert [s.ticket for s in signed] == tickets
    groups = [signed[0:4], signed[4:8], signed[8:10]]
    assert [len({s.signature for s in g}) for g in groups] == [1, 1, 1]
    assert len({g[0].signature for g in groups}) == 3
    assert all(ticket_signature_ok(TRUSTED, KEY.public, s) for s in signed)
    assert sign_tickets(TRUSTED, KEY, [], batch_size=4) == []
    for bad in (0, MAX_TICKETS_PER_BATCH + 1):
        with pytest.raises(ValueError, match="batch_size"):
            sign_tickets(TRUSTED, KEY, tickets, batch_size=bad)


def test_wire_rejects_a_path_longer_than_the_maximum_depth() -> None:
    encoded = encode_payload(SMALL, b"x" * 300, bytes(32), KEY.public, expiry_slot=EXPIRY)
    signed = sign_ticket(TRUSTED, KEY, make_ticket(encoded.commitment_id, 0, 1, 0, 1))
    entry = LaneEntry(encoded.bundles[0], signed)
    assert decode_lane_entry(encode_lane_entry(entry), 1 << 16) == entry
    too_deep = msgspec.structs.replace(
        signed, batch_path=(bytes(32),) * (MAX_TICKET_BATCH_DEPTH + 1)
    )
    data = encode_lane_entry(LaneEntry(encoded.bundles[0], too_deep))
    with pytest.raises(ValueError, match="lane entry"):
        decode_lane_entry(data, 1 << 16)


def test_verifier_checks_each_batch_signature_once_and_never_caches_failures() -> None:
    signed = sign_ticket_batch(ED25519, KEY, _tickets(16))
    verifier = TicketVerifier(ED25519)
    assert all(verifier.ok(KEY.public, s) for s in signed)
    assert (verifier.signature_checks, verifier.cache_hits) == (1, 15)
    # the cache is keyed by sender too: another sender's key is checked (and fails)
    assert not verifier.ok(OTHER.public, signed[0])
    forged = msgspec.structs.replace(signed[0], signature=bytes(64))
    assert not verifier.ok(KEY.public, forged) and not verifier.ok(KEY.public, forged)
    assert verifier.signature_checks == 4  # failures are verified again, never cached
    # a cached root still needs a valid path: a tampered ticket is refused
    tampered = msgspec.structs.replace(
        signed[3], ticket=msgspec.structs.replace(signed[3].ticket, slot=99)
    )
    assert not verifier.ok(KEY.public, tampered)


def test_verifier_cache_is_bounded() -> None:
    verifier = TicketVerifier(TRUSTED, max_cached=2)
    batches = [sign_ticket_batch(TRUSTED, KEY, _tickets(2, slot=s)) for s in range(3)]
    for batch in batches:
        assert verifier.ok(KEY.public, batch[0])
    assert verifier.ok(KEY.public, batches[0][1])  # evicted: verified again
    assert verifier.signature_checks == 4
    with pytest.raises(ValueError):
        TicketVerifier(TRUSTED, max_cached=0)


def test_lane_proposer_admits_batch_tickets_and_counts_bad_paths() -> None:
    encoded = encode_payload(SMALL, b"y" * 400, bytes(32), KEY.public, expiry_slot=EXPIRY)
    tickets = [make_ticket(encoded.commitment_id, 0, 1, b, 1) for b in range(4)]
    signed = sign_ticket_batch(ED25519, KEY, tickets)
    verifier = TicketVerifier(ED25519)
    proposer = LaneProposer(
        lane=0, key=sender_key("lane"), scheme=ED25519, params=SMALL, ticket_verifier=verifier
    )
    bad_path = msgspec.structs.replace(signed[1], batch_path=signed[2].batch_path)
    assert proposer.submit(LaneEntry(encoded.bundles[1], bad_path)) == (
        RejectReason.BAD_TICKET_SIGNATURE
    )
    for b in (0, 1, 2, 3):
        assert proposer.submit(LaneEntry(encoded.bundles[b], signed[b])) is None
    assert verifier.signature_checks == 2  # the bad path's root, then the batch once
    assert proposer.rejected == {"bad_ticket_signature": 1}
    assert isinstance(signed[0], SignedTicket)
