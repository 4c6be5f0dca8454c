"""The validator side of a lane: verify submissions, build the lane block, or withhold.

`check_entry_static` and `check_entry_crypto` are the stateless rules shared with the
block validator; `LaneProposer` adds the stateful ones (slot window, duplicates,
capacity). Every rejection is counted by reason in `LaneProposer.rejected`.

Slots are consensus heights. A proposer accepts tickets for its open slot up to
`max_future_slots` ahead; `seal(slot)` builds (once) the signed lane block for `slot`
and closes every slot up to it, so a late ticket is `expired_ticket`. Sealing is
idempotent, because a height can be proposed in several rounds.

Withholding (a Byzantine behaviour, `withhold_bundles`): a proposer built with a
`WithholdPolicy` reports every targeted bundle it admits to the cartel's `CartelBook`
(`consensus.lanes.cartel`: the holdings, shared by all members) and, at seal time,
omits those the cartel's strategy withholds from its lane block and hands them to the
policy's `CartelPool`, shared by all cartel members.

Money (with `funds`, the node's ledger at its finalized height): a ticket below the
chain's fee is `fee_too_low`; a sender whose balance, minus what this lane already
admitted from it for slots not yet finalized, does not cover the ticket's fee (plus the
bounty B if the payload is new) is `insufficient_balance`. This keeps unpaid bundles out
of lane blocks; the tracker's charge at finalization is the rule that counts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from consensus.crypto import KeyPair, SignatureScheme
from consensus.lanes.cartel import CartelBook, CartelStrategy
from consensus.lanes.encoding import (
    DecodeResult,
    bundle_proof_ok,
    bundle_shape_ok,
    decode_payload,
    layout_of,
)
from consensus.lanes.params import LaneParams
from consensus.lanes.tickets import TicketVerifier, sign_lane_block
from consensus.lanes.wire import (
    MAX_TICKET_BATCH_DEPTH,
    Bundle,
    LaneBlock,
    LaneEntry,
    LanePayloadError,
    commitment_id,
    decode_lane_entry,
)

MAX_SEALED_SLOTS = 64  # sealed lane blocks kept for re-proposals of unfinalized heights


class RejectReason(StrEnum):
    MALFORMED = "malformed"  # undecodable bytes or wrong bundle shape
    OVERSIZED = "oversized"  # submission or payload larger than the chain allows
    BAD_COMMITMENT = "bad_commitment"  # layout fields differ from what the params derive
    TICKET_MISMATCH = "ticket_mismatch"  # ticket names another commitment or bundle
    WRONG_LANE = "wrong_lane"  # ticket addressed to another lane
    BAD_EXPIRY = "bad_expiry"  # expiry is not the end of the addressed slot
    WRONG_SLOT = "wrong_slot"  # slot too far ahead, or not the block's slot
    EXPIRED_TICKET = "expired_ticket"  # addressed slot already sealed
    PAYLOAD_EXPIRED = "payload_expired"  # ticket slot after the commitment's expiry_slot
    DUPLICATE_SYMBOL = "duplicate_symbol"  # these symbols were already accepted
    LANE_FULL = "lane_full"  # the slot's lane block is at capacity
    BAD_TICKET_SIGNATURE = "bad_ticket_signature"  # not signed by the committed sender
    BAD_PROOF = "bad_proof"  # symbols not at their committed stream position
    FEE_TOO_LOW = "fee_too_low"  # ticket fee below the chain's fee
    INSUFFICIENT_BALANCE = "insufficient_balance"  # the sender cannot pay for it


def max_entry_bytes(params: LaneParams) -> int:
    """Upper bound on an honest submission's encoding (symbols plus fixed overhead)."""
    batch_path = MAX_TICKET_BATCH_DEPTH * 34  # the ticket's path in its sender's batch
    return params.symbols_per_bundle * (params.symbol_size_bytes + 5) + 2048 + batch_path


def check_entry_static(params: LaneParams, entry: LaneEntry, lane: int) -> RejectReason | None:
    """Cheap stateless rules, no hashing of symbols and no signatures."""
    bundle = entry.bundle
    ticket = entry.ticket.ticket
    if bundle.commitment.payload_len > params.max_payload_bytes:
        return RejectReason.OVERSIZED
    layout = layout_of(params, bundle.commitment)
    if layout is None:
        return RejectReason.BAD_COMMITMENT
    if not bundle_shape_ok(layout, bundle):
        return RejectReason.MALFORMED
    if ticket.bundle_index != bundle.bundle_index or ticket.commitment_id != commitment_id(
        bundle.commitment
    ):
        return RejectReason.TICKET_MISMATCH
    if ticket.lane != lane:
        return RejectReason.WRONG_LANE
    if ticket.expiry_slot != ticket.slot:
        return RejectReason.BAD_EXPIRY
    # rule: a payload's tickets name slots up to its expiry, and its expiry lies at most
    # max_lifetime_slots ahead (so a decided id need only be remembered that long)
    if ticket.slot > bundle.commitment.expiry_slot:
        return RejectReason.PAYLOAD_EXPIRED
    if bundle.commitment.expiry_slot > ticket.slot + params.max_lifetime_slots:
        return RejectReason.BAD_COMMITMENT
    return None


def check_entry_crypto(tickets: TicketVerifier, entry: LaneEntry) -> RejectReason | None:
    """The committed sender's ticket (batch) signature, then the Merkle proof of every symbol."""
    if not tickets.ok(entry.bundle.commitment.sender, entry.ticket):
        return RejectReason.BAD_TICKET_SIGNATURE
    if not bundle_proof_ok(entry.bundle):
        return RejectReason.BAD_PROOF
    return None


def entry_key(entry: LaneEntry) -> tuple[bytes, int]:
    """(commitment id, bundle index): the identity of a bundle's symbols."""
    return entry.ticket.ticket.commitment_id, entry.bundle.bundle_index


# --------------------------------------------------------------------------- withholding


class CartelPool:
    """Bundles withheld by cartel lanes, pooled per payload (shared by all members)."""

    def __init__(self, max_entries: int = 1_000_000, strategy: CartelStrategy | None = None):
        self.max_entries = max_entries
        self.book = CartelBook(strategy)  # holdings and the strategy's decisions
        self._bundles: dict[bytes, dict[int, Bundle]] = {}
        self.withheld: list[tuple[int, int, bytes, int]] = []  # (lane, slot, cid, bundle)

    def add(self, lane: int, slot: int, entry: LaneEntry) -> None:
        if len(self.withheld) >= self.max_entries:
            raise OverflowError(f"cartel pool is full ({self.max_entries} entries)")
        cid, index = entry_key(entry)
        self._bundles.setdefault(cid, {})[index] = entry.bundle
        self.withheld.append((lane, slot, cid, index))

    def bundle_count(self, cid: bytes) -> int:
        return len(self._bundles.get(cid, {}))

    def bundles(self, cid: bytes) -> dict[int, Bundle]:
        return dict(self._bundles.get(cid, {}))

    def commitments(self) -> list[bytes]:
        return sorted(self._bundles)

    def private_decode(
        self, params: LaneParams, cid: bytes, public: Mapping[int, Sequence[bytes]]
    ) -> DecodeResult:
        """Can the cartel decode with the public (finalized) bundles plus its own?"""
        pooled = self._bundles.get(cid)
        if not pooled:
            return DecodeResult("undecodable")
        commitment = next(iter(pooled.values())).commitment
        layout = layout_of(params, commitment)
        if layout is None:
            return DecodeResult("undecodable")
        merged: dict[int, Sequence[bytes]] = dict(public)
        merged.update({i: b.symbols for i, b in pooled.items()})
        if len(merged) < layout.kappa:
            return DecodeResult("undecodable")
        return decode_payload(layout, commitment, merged)


@dataclass
class WithholdPolicy:
    """Target bundles (all, or only those of `targets`); the pool's strategy decides
    which targeted bundles are withheld (and pooled)."""

    pool: CartelPool
    targets: frozenset[bytes] | None = None

    def withholds(self, entry: LaneEntry) -> bool:
        """Is this bundle targeted (held in the cartel's book, withheld if the strategy
        says so)?"""
        return self.targets is None or entry.ticket.ticket.commitment_id in self.targets

    def observe(self, slot: int, entry: LaneEntry) -> None:
        """A member admitted `entry` for `slot`: the cartel now holds it."""
        if self.withholds(entry):
            cid, index = entry_key(entry)
            self.pool.book.hold(cid, entry.bundle.commitment.kappa, slot, index)

    def chosen(self, slot: int, entries: Iterable[LaneEntry]) -> set[tuple[bytes, int]]:
        """The keys of `entries` (one member's, for `slot`) the strategy withholds."""
        keys = [
            (entry_key(e)[0], e.bundle.commitment.kappa, e.bundle.bundle_index)
            for e in entries
            if self.withholds(e)
        ]
        return self.pool.book.withhold(slot, keys)


# --------------------------------------------------------------------------- lane proposer


class Funds(Protocol):
    """A ledger view for admission (`consensus.lanes.ledger.FundsView`)."""

    @property
    def min_fee(self) -> int: ...

    def spendable(self, sender: bytes) -> int: ...

    def opening_cost(self, cid: bytes) -> int: ...


@dataclass
class LaneStats:
    accepted: int = 0
    included: int = 0
    withheld: int = 0
    dropped_unsealed: int = 0
    rejected: Counter[str] = field(default_factory=Counter)


class LaneProposer:
    """One validator's lane: admission, per-slot lane blocks, optional withholding."""

    def __init__(
        self,
        *,
        lane: int,
        key: KeyPair,
        scheme: SignatureScheme,
        params: LaneParams,
        first_open_slot: int = 1,
        max_future_slots: int = 8,
        withhold: WithholdPolicy | None = None,
        max_remembered: int = 65_536,
        ticket_verifier: TicketVerifier | None = None,
        funds: Funds | None = None,
    ):
        self.lane = lane
        self.key = key
        self.scheme = scheme
        # shared with the node's block validator so a batch signature is verified once
        self.tickets = ticket_verifier or TicketVerifier(scheme)
        self.params = params
        self.open_slot = first_open_slot
        self.max_future_slots = max_future_slots
        self.withhold = withhold
        self.max_remembered = max_remembered
        self.stats = LaneStats()
        self.funds = funds
        # money this lane admitted per sender for unfinalized slots, and what it was for
        self._reserved: Counter[bytes] = Counter()
        self._reservations: dict[int, list[tuple[bytes, int, bytes | None]]] = {}
        self._opened: set[bytes] = set()  # payloads whose bounty this lane reserved
        self._pending: dict[int, dict[tuple[bytes, int], LaneEntry]] = {}
        self._sealed: dict[int, LaneBlock] = {}
        self._seen: dict[tuple[bytes, int], int] = {}  # insertion-ordered, bounded

    @property
    def rejected(self) -> Counter[str]:
        return self.stats.rejected

    def _reject(self, reason: RejectReason) -> RejectReason:
        self.stats.rejected[reason.value] += 1
        return reason

    def submit_bytes(self, data: bytes) -> RejectReason | None:
        """Admit a submission received as bytes (a sender's message)."""
        if len(data) > max_entry_bytes(self.params):
            return self._reject(RejectReason.OVERSIZED)
        try:
            entry = decode_lane_entry(data, max_entry_bytes(self.params))
        except LanePayloadError:
            return self._reject(RejectReason.MALFORMED)
        return self.submit(entry)

    def submit(self, entry: LaneEntry) -> RejectReason | None:
        """Verify and queue one bundle for its slot. Returns the rejection reason, if any."""
        reason = check_entry_static(self.params, entry, self.lane)
        if reason is not None:
            return self._reject(reason)
        slot = entry.ticket.ticket.slot
        if slot < self.open_slot:  # rule: a ticket expires at the end of its slot
            return self._reject(RejectReason.EXPIRED_TICKET)
        if slot >= self.open_slot + self.max_future_slots:  # rule: bounded look-ahead
            return self._reject(RejectReason.WRONG_SLOT)
        key = entry_key(entry)
        if key in self._seen:  # rule: each bundle's symbols are included at most once
            return self._reject(RejectReason.DUPLICATE_SYMBOL)
        pending = self._pending.get(slot, {})
        if len(pending) >= self.params.max_entries_per_lane_block:
            return self._reject(RejectReason.LANE_FULL)
        cost, opens = 0, False
        if self.funds is not None:
            fee = entry.ticket.ticket.fee
            if fee < self.funds.min_fee:  # rule: a ticket pays at least the chain's fee
                return self._reject(RejectReason.FEE_TOO_LOW)
            sender = entry.bundle.commitment.sender
            opens = key[0] not in self._opened and self.funds.opening_cost(key[0]) > 0
            cost = fee + (self.funds.opening_cost(key[0]) if opens else 0)
            # rule: admit only what the sender can still pay, counting what is admitted
            if self.funds.spendable(sender) - self._reserved[sender] < cost:
                return self._reject(RejectReason.INSUFFICIENT_BALANCE)
        reason = check_entry_crypto(self.tickets, entry)
        if reason is not None:
            return self._reject(reason)
        if self.funds is not None:
            sender = entry.bundle.commitment.sender
            self._reserved[sender] += cost
            self._reservations.setdefault(slot, []).append(
                (sender, cost, key[0] if opens else None)
            )
            if opens:
                self._opened.add(key[0])
        self._pending.setdefault(slot, {})[key] = entry
        self._seen[key] = slot
        if self.withhold is not None:
            self.withhold.observe(slot, entry)
        while len(self._seen) > self.max_remembered:
            del self._seen[next(iter(self._seen))]
        self.stats.accepted += 1
        return None

    def seal(self, slot: int) -> LaneBlock:
        """The signed lane block for `slot` (built once; closes every slot up to it)."""
        if slot in self._sealed:
            return self._sealed[slot]
        included = self.seal_entries(slot)
        block = sign_lane_block(self.scheme, self.key, self.lane, slot, included)
        self._sealed[slot] = block
        while len(self._sealed) > MAX_SEALED_SLOTS:
            del self._sealed[min(self._sealed)]
        return block

    def seal_entries(self, slot: int) -> tuple[LaneEntry, ...]:
        """Close every slot up to `slot` and return the entries of `slot`, sorted, after
        withholding (unsigned: certified lanes put them in a chain block). Entries of
        earlier slots never sealed are dropped (`stats.dropped_unsealed`)."""
        if slot < self.open_slot:
            raise ValueError(
                f"lane {self.lane}: slot {slot} is closed (open slot {self.open_slot})"
            )
        for stale in [s for s in self._pending if s < slot]:
            self.stats.dropped_unsealed += len(self._pending.pop(stale))
        pending = self._pending.pop(slot, {})
        withheld = set() if self.withhold is None else self.withhold.chosen(slot, pending.values())
        # (the cartel decides once per payload and slot, from what all its members hold)
        included = []
        for key in sorted(pending):
            entry = pending[key]
            if self.withhold is not None and key in withheld:
                self.withhold.pool.add(self.lane, slot, entry)
                self.stats.withheld += 1
            else:
                included.append(entry)
        self.stats.included += len(included)
        self.open_slot = slot + 1
        return tuple(included)

    def slots_with_entries(self, upto: int) -> list[int]:
        """Open slots <= `upto` holding admitted entries, in increasing order."""
        return sorted(s for s in self._pending if s <= upto and s >= self.open_slot)

    def close_through(self, slot: int) -> None:
        """Close every slot up to `slot` (its tickets are now `expired_ticket`); entries
        still pending there are dropped (`stats.dropped_unsealed`)."""
        for stale in [s for s in self._pending if s <= slot]:
            self.stats.dropped_unsealed += len(self._pending.pop(stale))
        self.open_slot = max(self.open_slot, slot + 1)

    def on_finalized(self, slot: int) -> None:
        """Forget sealed lane blocks and release admitted money up to a finalized slot
        (the ledger has charged what was included by then)."""
        for old in [s for s in self._sealed if s <= slot]:
            del self._sealed[old]
        for old in [s for s in self._reservations if s <= slot]:
            for sender, cost, opened in self._reservations.pop(old):
                self._reserved[sender] -= cost
                if self._reserved[sender] <= 0:
                    del self._reserved[sender]
                if opened is not None:
                    self._opened.discard(opened)


def nonempty(blocks: Iterable[LaneBlock]) -> list[LaneBlock]:
    return [block for block in blocks if block.entries]
