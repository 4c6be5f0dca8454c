"""Signing and verifying tickets (sender, Domain.TICKET) and lane blocks (lane, LANE_BLOCK)."""

from __future__ import annotations

from consensus.crypto import Domain, KeyPair, SignatureScheme
from consensus.lanes.wire import (
    LaneBlock,
    LaneEntry,
    SignedTicket,
    Ticket,
    lane_block_signing_bytes,
    ticket_signing_bytes,
)


def make_ticket(commitment_id: bytes, lane: int, slot: int, bundle_index: int, fee: int) -> Ticket:
    """A ticket for `slot` that expires at the end of that slot."""
    return Ticket(
        commitment_id=commitment_id,
        lane=lane,
        slot=slot,
        bundle_index=bundle_index,
        fee=fee,
        expiry_slot=slot,
    )


def sign_ticket(scheme: SignatureScheme, key: KeyPair, ticket: Ticket) -> SignedTicket:
    return SignedTicket(ticket, scheme.sign(key, Domain.TICKET, ticket_signing_bytes(ticket)))


def ticket_signature_ok(scheme: SignatureScheme, sender: bytes, signed: SignedTicket) -> bool:
    return scheme.verify(
        sender, Domain.TICKET, ticket_signing_bytes(signed.ticket), signed.signature
    )


def sign_lane_block(
    scheme: SignatureScheme, key: KeyPair, lane: int, slot: int, entries: tuple[LaneEntry, ...]
) -> LaneBlock:
    signature = scheme.sign(key, Domain.LANE_BLOCK, lane_block_signing_bytes(lane, slot, entries))
    return LaneBlock(lane=lane, slot=slot, entries=entries, signature=signature)


def lane_block_signature_ok(scheme: SignatureScheme, public: bytes, block: LaneBlock) -> bool:
    payload = lane_block_signing_bytes(block.lane, block.slot, block.entries)
    return scheme.verify(public, Domain.LANE_BLOCK, payload, block.signature)
