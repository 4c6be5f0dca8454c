"""The sender: encode once, address fresh bundles to lanes every slot until decoded, ratchet.

Addressing policies (sedna.md §4.1), each over the lanes not excluded for this payload:
- "all":   every lane, one bundle each per slot (m = N − |excluded|);
- "fresh": m lanes drawn afresh every slot;
- "fixed": the same m lanes every slot (a per-payload order; an excluded lane is
           replaced by the next lane in that order).
Draws are deterministic: lanes are ordered by SHA-256(seed ‖ commitment id ‖ slot ‖ lane)
(without the slot for "fixed"), so a run is reproducible from its seed.

Every slot the sender addresses fresh bundles (never re-sending a bundle index) while
the payload is not decided, its commitment has not expired (`lifetime_slots` after its
first slot) and the committed stream (cap bundles) is not exhausted.

Ratchets (`SenderConfig.ratchet_policy`, sedna.md §2.9):
- "exclude" (`ratchet=True`): after slot t is finalized, every lane holding an
  unredeemed ticket of slot t is excluded for the rest of this payload; lanes are still
  chosen by the addressing policy. If every lane is excluded, the exclusions are reset
  (so a sender whose lanes all failed once keeps sending).
- "keep_redeemed" (the ratchet the mechanism model analyses, docs/lanes.md): the sender
  addresses m distinct lanes per slot. It starts with m lanes drawn uniformly without
  replacement and keeps addressing the same lanes slot after slot. It learns whether a
  ticket of slot s was redeemed at the start of slot s + d (`feedback_slots` = d >= 1;
  d = 1 is instant feedback). A lane with an unredeemed ticket is excluded for the rest
  of the payload and its position is refilled in that slot by uniform draws, one after
  another: from the never-addressed lanes; if none is left, from the non-excluded lanes
  not addressed in that slot; if none is left either, the exclusions are reset and the
  draw is from the lanes not addressed in that slot (so the sender always addresses m
  lanes). An offline honest lane is excluded on a miss the same way. The rule is stated
  once in docs/lanes.md ("The keep_redeemed rule"); the mechanism model implements the
  same rule (mechanism/lanechain.py), checked by tests/lanes/test_ratchet_rule.py.
  (The addressing policy must not be "all"; "fresh" and "fixed" are the same under
  this ratchet.)
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from consensus.crypto import KeyPair, SignatureScheme
from consensus.lanes.encoding import EncodedPayload, encode_payload
from consensus.lanes.params import DEFAULT_MAX_LIFETIME_SLOTS, LaneParams
from consensus.lanes.tickets import MAX_TICKETS_PER_BATCH, make_ticket, sign_tickets
from consensus.lanes.tracker import BlockOutcome, Redemption
from consensus.lanes.wire import Bundle, LaneEntry, Ticket


class AddressPolicy(StrEnum):
    ALL = "all"
    FRESH = "fresh"
    FIXED = "fixed"


class RatchetPolicy(StrEnum):
    NONE = "none"
    EXCLUDE = "exclude"
    KEEP_REDEEMED = "keep_redeemed"


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
    ratchet_policy: RatchetPolicy | None = None  # None: "exclude" if ratchet else "none"
    feedback_slots: int = 1  # keep_redeemed: slot s's outcome is used from slot s + d
    lifetime_slots: int = DEFAULT_MAX_LIFETIME_SLOTS  # commitment expiry = first slot + this

    def __post_init__(self) -> None:
        if self.lanes < 1 or not 1 <= self.bundles_per_slot <= self.lanes:
            raise ValueError("need lanes >= 1 and 1 <= bundles_per_slot <= lanes")
        if not 1 <= self.ticket_batch <= MAX_TICKETS_PER_BATCH:
            raise ValueError(f"ticket_batch must be in 1..{MAX_TICKETS_PER_BATCH}")
        AddressPolicy(self.policy)  # raises ValueError for an unknown policy
        if self.ratchet_policy is not None:
            RatchetPolicy(self.ratchet_policy)
            if self.ratchet and self.ratchet_policy == RatchetPolicy.NONE:
                raise ValueError("ratchet=True contradicts ratchet_policy='none'")
        if self.feedback_slots < 1:
            raise ValueError("feedback_slots must be >= 1")
        if self.lifetime_slots < 1:
            raise ValueError("lifetime_slots must be >= 1")
        if self.effective_ratchet == RatchetPolicy.KEEP_REDEEMED and (
            self.policy == AddressPolicy.ALL
        ):
            raise ValueError("keep_redeemed addresses m lanes; policy 'all' addresses all")

    @property
    def effective_ratchet(self) -> RatchetPolicy:
        if self.ratchet_policy is not None:
            return RatchetPolicy(self.ratchet_policy)
        return RatchetPolicy.EXCLUDE if self.ratchet else RatchetPolicy.NONE


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
    # keep_redeemed: the m lanes addressed every slot, every lane ever addressed, and
    # outcomes (slot -> [(lane, redeemed)]) not yet used
    kept: list[int] = field(default_factory=list)
    ever_addressed: set[int] = field(default_factory=set)
    feedback: dict[int, list[tuple[int, bool]]] = field(default_factory=dict)
    exclusion_resets: int = 0

    @property
    def expiry_slot(self) -> int:
        return self.encoded.commitment.expiry_slot


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
        lifetime = min(self.config.lifetime_slots, self.params.max_lifetime_slots)
        encoded = encode_payload(
            self.params, payload, aont_key, self.key.public, expiry_slot=first_slot + lifetime
        )
        if encoded.commitment_id in self.payloads:
            raise ValueError("payload already submitted with this key")
        self.payloads[encoded.commitment_id] = OutgoingPayload(encoded, first_slot)
        return encoded.commitment_id

    def _order(self, cid: bytes, slot: int | None, lanes: Iterable[int] | None = None) -> list[int]:
        """`lanes` (default: all) in a uniformly random order drawn from the seed."""
        salt = self.config.seed + cid + (b"" if slot is None else slot.to_bytes(8, "big"))
        return sorted(
            range(self.config.lanes) if lanes is None else lanes,
            key=lambda lane: hashlib.sha256(salt + lane.to_bytes(4, "big")).digest(),
        )

    def lanes_for(self, cid: bytes, slot: int) -> list[int]:
        """The lanes this payload addresses in `slot` under the policy and exclusions.
        (keep_redeemed: the kept lanes, after using the feedback due by `slot`.)"""
        outgoing = self.payloads[cid]
        if self.config.effective_ratchet == RatchetPolicy.KEEP_REDEEMED:
            return self._keep_redeemed_lanes(cid, outgoing, slot)
        if len(outgoing.excluded) >= self.config.lanes:
            # rule: every lane failed this payload once: start over rather than stall
            outgoing.excluded.clear()
            outgoing.exclusion_resets += 1
        policy = self.config.policy
        if policy == AddressPolicy.ALL:
            return [lane for lane in range(self.config.lanes) if lane not in outgoing.excluded]
        order = self._order(cid, slot if policy == AddressPolicy.FRESH else None)
        allowed = [lane for lane in order if lane not in outgoing.excluded]
        return sorted(allowed[: self.config.bundles_per_slot])

    def _keep_redeemed_lanes(self, cid: bytes, outgoing: OutgoingPayload, slot: int) -> list[int]:
        """The keep_redeemed ratchet (module docstring): use the outcomes of slots up to
        slot − d, exclude and replace the lanes that missed, return the kept lanes."""
        lanes = range(self.config.lanes)
        if not outgoing.kept:  # first slot: m lanes uniformly without replacement
            outgoing.kept = list(self._order(cid, None)[: self.config.bundles_per_slot])
            outgoing.ever_addressed.update(outgoing.kept)
        due = sorted(s for s in outgoing.feedback if s <= slot - self.config.feedback_slots)
        for past in due:  # rule: slot s's outcome is known from slot s + d on
            for lane, redeemed in outgoing.feedback.pop(past):
                if not redeemed:
                    outgoing.excluded.add(lane)
        kept = [lane for lane in outgoing.kept if lane not in outgoing.excluded]
        while len(kept) < self.config.bundles_per_slot:  # bounded: m positions
            # rule (docs/lanes.md "The keep_redeemed rule"): never-addressed lanes first,
            # then non-excluded lanes not addressed in this slot, else reset the exclusions
            candidates = [x for x in lanes if x not in outgoing.ever_addressed] or [
                x for x in lanes if x not in outgoing.excluded and x not in kept
            ]
            if not candidates:  # every lane not addressed is excluded: exclusions reset
                outgoing.excluded.clear()
                outgoing.exclusion_resets += 1
                candidates = [x for x in lanes if x not in kept]
            choice = self._order(cid, slot, candidates)[0]
            kept.append(choice)
            outgoing.ever_addressed.add(choice)
        outgoing.kept = kept
        return sorted(kept)

    def plan_slot(self, slot: int) -> list[Submission]:
        """Fresh bundles with signed tickets for `slot`, for every undecided payload
        (tickets signed in batches of `ticket_batch`, in plan order)."""
        planned: list[tuple[int, Bundle, Ticket]] = []
        for cid in sorted(self.payloads):
            outgoing = self.payloads[cid]
            if outgoing.decided or slot < outgoing.first_slot or slot in outgoing.addressed:
                continue
            if slot > outgoing.expiry_slot:
                continue  # rule: no ticket after the commitment's expiry
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
        ratchet = self.config.effective_ratchet
        for cid, outgoing in self.payloads.items():
            got = redeemed.get(cid, set())
            for past in sorted(s for s in outgoing.addressed if s <= slot):
                for lane, index in outgoing.addressed.pop(past):
                    hit = past == slot and (lane, index) in got
                    if hit:
                        outgoing.redeemed.add(index)
                    if ratchet == RatchetPolicy.KEEP_REDEEMED:  # used d slots later
                        outgoing.feedback.setdefault(past, []).append((lane, hit))
                    elif not hit and ratchet == RatchetPolicy.EXCLUDE:
                        outgoing.excluded.add(lane)  # rule: an unredeemed ticket excludes
        self.on_decided(decided)

    def on_decided(self, decided: Iterable[bytes]) -> None:
        """These payloads were decided (executed, rejected, expired): stop sending them.
        (Certified lanes learn decisions from finality and redemptions from PoAs, so
        the two arrive separately; docs/lanes.md, "What a slot is".)"""
        for cid in decided:
            if cid in self.payloads:
                self.payloads[cid].decided = True

    def on_outcome(self, outcome: BlockOutcome) -> None:
        """Convenience: feed a decode tracker's outcome for the finalized slot."""
        self.on_slot_finalized(
            outcome.height, outcome.redemptions, [e.commitment_id for e in outcome.payloads]
        )
