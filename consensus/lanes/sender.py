"""The sender: encode once, address fresh bundles to lanes every slot until decoded, ratchet.

Addressing policies (sedna.md §4.1), each over the lanes not excluded for this payload:
- "all":   every lane, one bundle each per slot (m = N − |excluded|);
- "fresh": m lanes drawn afresh every slot;
- "fixed": the same m lanes every slot (a per-payload order; an excluded lane is
           replaced by the next lane in that order).
Draws are deterministic: lanes are ordered by SHA-256(seed ‖ commitment id ‖ slot ‖ lane)
(without the slot for "fixed"), so a run is reproducible from its seed.

Every slot the sender addresses fresh bundles (never re-sending a bundle index) while
the payload is not decided and the committed stream (cap bundles) is not exhausted.

Ratchet (sedna.md §2.9): after slot t is finalized, every lane holding an unredeemed
ticket of slot t is excluded for the rest of this payload.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from consensus.crypto import KeyPair, SignatureScheme
from consensus.lanes.encoding import EncodedPayload, encode_payload
from consensus.lanes.params import LaneParams
from consensus.lanes.tickets import MAX_TICKETS_PER_BATCH, make_ticket, sign_tickets
from consensus.lanes.tracker import BlockOutcome, Redemption
from consensus.lanes.wire import Bundle, LaneEntry, Ticket


class AddressPolicy(StrEnum):
    ALL = "all"
    FRESH = "fresh"
    FIXED = "fixed"


@dataclass(frozen=True, slots=True)
class SenderConfig:
    lanes: int  # N, lanes are 0..N−1
    bundles_per_slot: int  # m (ignored by "all")
    policy: AddressPolicy = AddressPolicy.FRESH
    ratchet: bool = False
    fee: int = 1
    seed: bytes = b"sedna/sender/1"
    max_active_payloads: int = 1024
    ticket_batch: int = 1  # tickets per signature within one slot's plan (1: one each)

    def __post_init__(self) -> None:
        if self.lanes < 1 or not 1 <= self.bundles_per_slot <= self.lanes:
            raise ValueError("need lanes >= 1 and 1 <= bundles_per_slot <= lanes")
        if not 1 <= self.ticket_batch <= MAX_TICKETS_PER_BATCH:
            raise ValueError(f"ticket_batch must be in 1..{MAX_TICKETS_PER_BATCH}")
        AddressPolicy(self.policy)  # raises ValueError for an unknown policy


@dataclass(frozen=True, slots=True)
class Submission:
    """One bundle for one lane: what the driver delivers (privately) to that lane."""

    lane: int
    entry: LaneEntry


@dataclass
class OutgoingPayload:
    encoded: EncodedPayload
    first_slot: int
    next_bundle: int = 0
    excluded: set[int] = field(default_factory=set)
    addressed: dict[int, list[tuple[int, int]]] = field(default_factory=dict)  # slot → (lane, b)
    redeemed: set[int] = field(default_factory=set)
    decided: bool = False
    bundles_sent: int = 0
    bytes_sent: int = 0


class Sender:
    def __init__(
        self, key: KeyPair, scheme: SignatureScheme, params: LaneParams, config: SenderConfig
    ):
        self.key = key
        self.scheme = scheme
        self.params = params
        self.config = config
        self.payloads: dict[bytes, OutgoingPayload] = {}
        self._last_finalized: int | None = None

    def submit(self, payload: bytes, aont_key: bytes, first_slot: int) -> bytes:
        """Encode and commit a payload; bundles go out from `first_slot`. Returns its id."""
        active = sum(1 for p in self.payloads.values() if not p.decided)
        if active >= self.config.max_active_payloads:
            raise OverflowError(f"sender has {active} active payloads (the maximum)")
        encoded = encode_payload(self.params, payload, aont_key, self.key.public)
        if encoded.commitment_id in self.payloads:
            raise ValueError("payload already submitted with this key")
        self.payloads[encoded.commitment_id] = OutgoingPayload(encoded, first_slot)
        return encoded.commitment_id

    def _order(self, cid: bytes, slot: int | None) -> list[int]:
        salt = self.config.seed + cid + (b"" if slot is None else slot.to_bytes(8, "big"))
        return sorted(
            range(self.config.lanes),
            key=lambda lane: hashlib.sha256(salt + lane.to_bytes(4, "big")).digest(),
        )

    def lanes_for(self, cid: bytes, slot: int) -> list[int]:
        """The lanes this payload addresses in `slot` under the policy and exclusions."""
        outgoing = self.payloads[cid]
        policy = self.config.policy
        if policy == AddressPolicy.ALL:
            return [lane for lane in range(self.config.lanes) if lane not in outgoing.excluded]
        order = self._order(cid, slot if policy == AddressPolicy.FRESH else None)
        allowed = [lane for lane in order if lane not in outgoing.excluded]
        return sorted(allowed[: self.config.bundles_per_slot])

    def plan_slot(self, slot: int) -> list[Submission]:
        """Fresh bundles with signed tickets for `slot`, for every undecided payload
        (tickets signed in batches of `ticket_batch`, in plan order)."""
        planned: list[tuple[int, Bundle, Ticket]] = []
        for cid in sorted(self.payloads):
            outgoing = self.payloads[cid]
            if outgoing.decided or slot < outgoing.first_slot or slot in outgoing.addressed:
                continue
            cap = outgoing.encoded.layout.cap_bundles
            lanes = self.lanes_for(cid, slot)[: max(0, cap - outgoing.next_bundle)]
            addressed = outgoing.addressed.setdefault(slot, [])
            for lane in lanes:
                index = outgoing.next_bundle
                outgoing.next_bundle += 1
                ticket = make_ticket(cid, lane, slot, index, self.config.fee)
                planned.append((lane, outgoing.encoded.bundles[index], ticket))
                addressed.append((lane, index))
                outgoing.bundles_sent += 1
                outgoing.bytes_sent += outgoing.encoded.layout.bundle_bytes
        tickets = [ticket for _, _, ticket in planned]
        signed = sign_tickets(self.scheme, self.key, tickets, self.config.ticket_batch)
        return [
            Submission(lane, LaneEntry(bundle, signed_ticket))
            for (lane, bundle, _), signed_ticket in zip(planned, signed, strict=True)
        ]

    def on_slot_finalized(
        self, slot: int, redemptions: Iterable[Redemption], decided: Iterable[bytes] = ()
    ) -> None:
        """Slot `slot` is final: record redemptions, apply the ratchet, stop decided payloads."""
        # rule: slots are reported once each, in increasing order
        if self._last_finalized is not None and slot <= self._last_finalized:
            raise ValueError(f"slot {slot} reported after slot {self._last_finalized}")
        self._last_finalized = slot
        redeemed: dict[bytes, set[tuple[int, int]]] = {}
        for r in redemptions:
            if r.slot == slot:
                redeemed.setdefault(r.commitment_id, set()).add((r.lane, r.bundle_index))
        for cid, outgoing in self.payloads.items():
            got = redeemed.get(cid, set())
            for past in sorted(s for s in outgoing.addressed if s <= slot):
                for lane, index in outgoing.addressed.pop(past):
                    if past == slot and (lane, index) in got:
                        outgoing.redeemed.add(index)
                    elif self.config.ratchet:  # rule: an unredeemed ticket excludes its lane
                        outgoing.excluded.add(lane)
        for cid in decided:
            if cid in self.payloads:
                self.payloads[cid].decided = True

    def on_outcome(self, outcome: BlockOutcome) -> None:
        """Convenience: feed a decode tracker's outcome for the finalized slot."""
        self.on_slot_finalized(
            outcome.height, outcome.redemptions, [e.commitment_id for e in outcome.payloads]
        )
