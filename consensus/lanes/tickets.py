"""Signing and verifying tickets (sender, Domain.TICKET) and lane blocks (lane, LANE_BLOCK).

Ticket batches: a sender signs the root of a Merkle tree over a batch of tickets once,
and every ticket carries its path to that root (`SignedTicket.batch_path`). A ticket is
valid iff folding its leaf with its path gives a root the committed sender signed. One
Ed25519 signature then covers every ticket of a sender's send step (many payloads,
lanes and slots), so a validator verifies one signature per batch instead of one per
bundle (`TicketVerifier` remembers verified batch signatures). A batch of one ticket has
an empty path and its root is the ticket's leaf.

The tree hashes each pair of children in sorted order (smaller digest first), so a path
needs no left/right bits; leaves and inner nodes use different domains, so no inner node
can pass for a ticket's leaf. An odd node at the end of a level moves up unchanged.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence

from consensus.crypto import Domain, KeyPair, SignatureScheme
from consensus.lanes.wire import (
    MAX_TICKET_BATCH_DEPTH,
    LaneBlock,
    LaneEntry,
    SignedTicket,
    Ticket,
    lane_block_signing_bytes,
    ticket_signing_bytes,
)

MAX_TICKETS_PER_BATCH = 1 << MAX_TICKET_BATCH_DEPTH
_LEAF_DOMAIN = b"sedna/ticket-leaf/1\x00"
_NODE_DOMAIN = b"sedna/ticket-node/1\x00"


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


def ticket_leaf(ticket: Ticket) -> bytes:
    return hashlib.sha256(_LEAF_DOMAIN + ticket_signing_bytes(ticket)).digest()


def _parent(a: bytes, b: bytes) -> bytes:
    return hashlib.sha256(_NODE_DOMAIN + (a + b if a <= b else b + a)).digest()


def batch_root(signed: SignedTicket) -> bytes:
    """The batch root this ticket's path leads to (what the signature must cover)."""
    node = ticket_leaf(signed.ticket)
    for sibling in signed.batch_path:
        node = _parent(node, sibling)
    return node


def sign_ticket_batch(
    scheme: SignatureScheme, key: KeyPair, tickets: Sequence[Ticket]
) -> tuple[SignedTicket, ...]:
    """Sign `tickets` with one signature over their batch root; one SignedTicket each."""
    if not 1 <= len(tickets) <= MAX_TICKETS_PER_BATCH:
        raise ValueError(f"a ticket batch holds 1..{MAX_TICKETS_PER_BATCH} tickets")
    level = [ticket_leaf(ticket) for ticket in tickets]
    paths: list[list[bytes]] = [[] for _ in tickets]
    members: list[list[int]] = [[i] for i in range(len(tickets))]  # tickets under each node
    while len(level) > 1:  # at most MAX_TICKET_BATCH_DEPTH levels
        next_level: list[bytes] = []
        next_members: list[list[int]] = []
        for j in range(0, len(level), 2):
            if j + 1 == len(level):  # the odd node moves up unchanged
                next_level.append(level[j])
                next_members.append(members[j])
                continue
            left, right = level[j], level[j + 1]
            for i in members[j]:
                paths[i].append(right)
            for i in members[j + 1]:
                paths[i].append(left)
            next_level.append(_parent(left, right))
            next_members.append(members[j] + members[j + 1])
        level, members = next_level, next_members
    signature = scheme.sign(key, Domain.TICKET, level[0])
    return tuple(
        SignedTicket(ticket, tuple(path), signature)
        for ticket, path in zip(tickets, paths, strict=True)
    )


def sign_tickets(
    scheme: SignatureScheme, key: KeyPair, tickets: Sequence[Ticket], batch_size: int
) -> list[SignedTicket]:
    """`tickets` signed in consecutive batches of at most `batch_size` (one signature each)."""
    if not 1 <= batch_size <= MAX_TICKETS_PER_BATCH:
        raise ValueError(f"batch_size must be in 1..{MAX_TICKETS_PER_BATCH}")
    signed: list[SignedTicket] = []
    for start in range(0, len(tickets), batch_size):
        signed.extend(sign_ticket_batch(scheme, key, tickets[start : start + batch_size]))
    return signed


def sign_ticket(scheme: SignatureScheme, key: KeyPair, ticket: Ticket) -> SignedTicket:
    """A batch of one ticket."""
    return sign_ticket_batch(scheme, key, (ticket,))[0]


def ticket_signature_ok(scheme: SignatureScheme, sender: bytes, signed: SignedTicket) -> bool:
    """The ticket is in a batch `sender` signed (no cache; see `TicketVerifier`)."""
    return scheme.verify(sender, Domain.TICKET, batch_root(signed), signed.signature)


class TicketVerifier:
    """`ticket_signature_ok` that verifies each (sender, batch root, signature) once.

    Every ticket still has its own path folded to the root; only the signature check of
    an already verified batch root is skipped. Remembers at most `max_cached` verified
    batches (least recently used dropped first). Failures are not remembered.
    """

    def __init__(self, scheme: SignatureScheme, max_cached: int = 65_536):
        if max_cached < 1:
            raise ValueError("max_cached must be >= 1")
        self.scheme = scheme
        self.max_cached = max_cached
        self.signature_checks = 0  # signatures actually verified
        self.cache_hits = 0
        self._verified: OrderedDict[bytes, None] = OrderedDict()

    def ok(self, sender: bytes, signed: SignedTicket) -> bool:
        root = batch_root(signed)
        key = sender + root + signed.signature
        if key in self._verified:
            self._verified.move_to_end(key)
            self.cache_hits += 1
            return True
        self.signature_checks += 1
        if not self.scheme.verify(sender, Domain.TICKET, root, signed.signature):
            return False
        self._verified[key] = None
        while len(self._verified) > self.max_cached:
            self._verified.popitem(last=False)
        return True


def sign_lane_block(
    scheme: SignatureScheme, key: KeyPair, lane: int, slot: int, entries: tuple[LaneEntry, ...]
) -> LaneBlock:
    signature = scheme.sign(key, Domain.LANE_BLOCK, lane_block_signing_bytes(lane, slot, entries))
    return LaneBlock(lane=lane, slot=slot, entries=entries, signature=signature)


def lane_block_signature_ok(scheme: SignatureScheme, public: bytes, block: LaneBlock) -> bool:
    payload = lane_block_signing_bytes(block.lane, block.slot, block.entries)
    return scheme.verify(public, Domain.LANE_BLOCK, payload, block.signature)
