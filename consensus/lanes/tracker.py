"""Decode tracker: every node's deterministic view of lane payloads over the finalized chain.

Fed finalized blocks in height order (with the id of each block's parent), it

1. redeems every ticket of every lane block (the validator already checked that the
   ticket's slot is the block's height, so inclusion == redemption in the addressed slot);
2. counts each bundle towards its payload, per payload in **pivot order** (below). A
   bundle is *not* counted when its sender cannot pay (`insufficient_balance`, with a
   ledger), when its payload was already decided (`late`), when the same bundle was
   counted before, in an earlier block or earlier in this one from another lane
   (`duplicates`: a sender may give one bundle index to several lanes; the first copy in
   pivot order counts, the others are redeemed and paid for, nothing more), or when the
   tracker is full and the sender is its heaviest occupant (`dropped`, below);
3. after the block's entries, for each payload that gained bundles in this block and has
   at least κ: decode from all its counted bundles and check the result against the
   commitment (`encoding.decode_payloads`, one batched call per block):
   - decoded  → executed in this block, **before the block's plain transactions**, in
     execution-key order (below);
   - commitment_mismatch → rejected (final);
   - undecodable (RaptorQ rank deficiency, probability ~1e-6 at κ with h = 2) → stays
     pending and is retried when more bundles finalize;
4. expires payloads that made no progress for `pending_ttl_slots`, or whose commitment's
   `expiry_slot` has passed.

**Keys nobody can grind.** Both orders hash the id of the block's *parent* (the block
certified by its QC), which does not exist yet when a sender fixes its commitment or a
lane seals its lane block for that height (docs/lanes.md, "Ordering guarantee"):
- pivot order of a payload's bundles in one block: SHA-256(parent ‖ cid ‖ bundle ‖ lane),
  across blocks by height. A payload's pivotal bundles are its first κ counted ones
  (PIVOT-K, docs/mechanism.md §7, Variant R with the parent id as public randomness),
  so no lane index is favoured;
- execution order of the payloads decoded in one block: SHA-256(parent ‖ cid).

**Nothing executes twice.** A decided id is remembered until its commitment's
`expiry_slot`; after that no ticket of it can be valid (`check_entry_static`), so memory
is bounded by `LaneParams.max_lifetime_slots` worth of decisions and a re-sent commitment
is `late` (before expiry) or refused by every lane and validator (after).

**Spam pays for what it occupies.** With a `Ledger`, a payload's first counted bundle
escrows the bounty B, burned if the payload never executes; every counted bundle costs
its ticket fee. The pending table is bounded (`max_pending_payloads`); when it is full a
new payload takes the place of the least recently progressing payload of the sender that
holds the most entries, unless its own sender is (or ties) the heaviest, in which case
the new payload is dropped. A junk sender can therefore only ever crowd out itself.

**Certified lanes** (`on_finalized_lanes`, docs/lanes.md "Tip cuts"): a finalized cut
hands over lane blocks of several slots. They are redeemed and counted in the order
(slot, pivot key) per payload, so pivotal bundles are still the first κ in slot order; a
lane block cut more than W = `max_cut_lag_slots` heights after its slot is void (its
tickets are not redeemed), and decided ids are remembered W heights past their expiry:
nothing executes twice with bounded memory, however late a cut finalizes a lane block.

The outcome depends only on the sequence of finalized blocks, so every node fed the
same chain reports the same executions, rejections, ledger and `execution_order_hash`.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from consensus.lanes.encoding import DecodeItem, DecodeResult, decode_payloads, layout_of
from consensus.lanes.ledger import FundsView, Ledger
from consensus.lanes.params import LaneParams, PayloadLayout
from consensus.lanes.proposer import entry_key
from consensus.lanes.wire import BlockPayload, LaneEntry, PayloadCommitment, decode_block_payload
from consensus.messages import BlockBody, BlockHeader

PayloadStatus = Literal["executed", "rejected", "expired"]
IgnoredReason = Literal["insufficient_balance", "fee_too_low", "tracker_full"]
_STATUS_TAG = {"executed": b"p", "rejected": b"r", "expired": b"x"}
_HASH_SEED = hashlib.sha256(b"sedna/execution-order/1").digest()
_PIVOT_DOMAIN = b"sedna/pivot-order/1\x00"
_EXECUTION_DOMAIN = b"sedna/execution-key/1\x00"


def pivot_key(parent_id: bytes, cid: bytes, bundle_index: int, lane: int) -> bytes:
    """Rank of a finalized bundle among its payload's bundles of the same block."""
    return hashlib.sha256(
        _PIVOT_DOMAIN + parent_id + cid + bundle_index.to_bytes(4, "big") + lane.to_bytes(4, "big")
    ).digest()


def execution_key(parent_id: bytes, cid: bytes) -> bytes:
    """Rank of a payload among the payloads decoded in the same block."""
    return hashlib.sha256(_EXECUTION_DOMAIN + parent_id + cid).digest()


class FinalizedLaneBlock(Protocol):
    """What the tracker reads of a lane block (carried `LaneBlock` or `LaneChainBlock`)."""

    @property
    def lane(self) -> int: ...

    @property
    def slot(self) -> int: ...

    @property
    def entries(self) -> tuple[LaneEntry, ...]: ...


@dataclass(frozen=True, slots=True)
class Redemption:
    """A ticket redeemed: lane `lane` included bundle `bundle_index` in its addressed slot."""

    commitment_id: bytes
    sender: bytes
    lane: int
    slot: int
    bundle_index: int
    fee: int


@dataclass(frozen=True, slots=True)
class IgnoredBundle:
    """A redeemed bundle that was not counted towards its payload, and why."""

    commitment_id: bytes
    sender: bytes
    lane: int
    bundle_index: int
    reason: IgnoredReason


@dataclass(frozen=True, slots=True)
class PayloadEvent:
    """A payload decided at `height`. `position` is its execution index in the block
    (0 = first: decoded payloads run before the block's plain transactions)."""

    commitment_id: bytes
    sender: bytes
    status: PayloadStatus
    height: int
    position: int  # -1 unless executed
    payload: bytes | None
    kappa: int
    first_slot: int  # slot of its first counted bundle
    finalized_bundles: int
    pivotal: tuple[tuple[int, int, int], ...]  # first κ counted (slot, lane, bundle_index)
    bounty_payouts: tuple[tuple[int, int], ...] = ()  # (lane, amount) per pivotal bundle
    reason: str = ""  # expired: "ttl" | "lifetime" | "evicted"
    decode_slot: int = -1  # executed: the κ-th smallest slot of its counted bundles


@dataclass(frozen=True, slots=True)
class BlockOutcome:
    height: int
    transactions: tuple[bytes, ...]
    redemptions: tuple[Redemption, ...]
    payloads: tuple[PayloadEvent, ...]  # executed in execution order, then the others
    duplicates: int  # bundles counted before (earlier block or another lane), ignored
    late: int  # bundles of already decided payloads, ignored
    dropped: int  # bundles of new payloads refused because the tracker was full
    execution_order_hash: bytes
    ignored: tuple[IgnoredBundle, ...] = ()  # not counted: money or capacity
    evicted: int = 0  # pending payloads evicted to make room (decided "expired")
    fees_charged: int = 0
    bounties_paid: int = 0
    burned: int = 0


@dataclass
class _Pending:
    commitment: PayloadCommitment
    layout: PayloadLayout
    first_slot: int
    last_progress: int
    bundles: dict[int, tuple[bytes, ...]] = field(default_factory=dict)
    order: list[tuple[int, int, int]] = field(default_factory=list)


class _Occupancy:
    """Pending payloads per sender, least recently progressing first, and the heaviest
    sender (most entries; ties: the smallest key) in O(senders at the top count)."""

    def __init__(self) -> None:
        self.by_sender: dict[bytes, OrderedDict[bytes, None]] = {}
        self._at_count: dict[int, set[bytes]] = {}
        self._top = 0

    def count(self, sender: bytes) -> int:
        held = self.by_sender.get(sender)
        return len(held) if held else 0

    def _move(self, sender: bytes, before: int, after: int) -> None:
        if before:
            bucket = self._at_count[before]
            bucket.discard(sender)
            if not bucket:
                del self._at_count[before]
        if after:
            self._at_count.setdefault(after, set()).add(sender)
        self._top = max(self._top, after)
        while self._top and self._top not in self._at_count:
            self._top -= 1

    def add(self, sender: bytes, cid: bytes) -> None:
        before = self.count(sender)
        self.by_sender.setdefault(sender, OrderedDict())[cid] = None
        self._move(sender, before, before + 1)

    def progressed(self, sender: bytes, cid: bytes) -> None:
        self.by_sender[sender].move_to_end(cid)

    def remove(self, sender: bytes, cid: bytes) -> None:
        held = self.by_sender[sender]
        before = len(held)
        del held[cid]
        if not held:
            del self.by_sender[sender]
        self._move(sender, before, before - 1)

    def heaviest(self) -> tuple[int, bytes]:
        """(count, sender) of the heaviest sender; (0, b"") when empty."""
        if not self._top:
            return 0, b""
        return self._top, min(self._at_count[self._top])

    def oldest(self, sender: bytes) -> bytes:
        return next(iter(self.by_sender[sender]))


@dataclass
class _BlockWork:
    """Everything one block's processing accumulates before its outcome is built."""

    touched: set[bytes] = field(default_factory=set)
    ignored: list[IgnoredBundle] = field(default_factory=list)
    others: list[PayloadEvent] = field(default_factory=list)
    duplicates: int = 0
    late: int = 0
    dropped: int = 0
    evicted: int = 0


class DecodeTracker:
    def __init__(
        self,
        params: LaneParams,
        *,
        max_pending_payloads: int = 4096,
        pending_ttl_slots: int = 256,
        ledger: Ledger | None = None,
        certified: bool = False,
        decoder: Callable[[Sequence[DecodeItem]], list[DecodeResult]] = decode_payloads,
    ):
        if max_pending_payloads < 1 or pending_ttl_slots < 1:
            raise ValueError("max_pending_payloads and pending_ttl_slots must be >= 1")
        self.params = params
        # certified lanes: a lane block may be finalized up to W heights after its slot
        self.lag_slots = params.max_cut_lag_slots if certified else 0
        self.decoder = decoder  # a pure function (netsim may share a memoizing one)
        self.void_lane_blocks = 0  # certified: finalized more than W after their slot
        self.max_pending = max_pending_payloads
        self.pending_ttl_slots = pending_ttl_slots
        self.ledger = ledger
        self.height: int | None = None
        self.execution_order_hash = _HASH_SEED
        self.counts: dict[str, int] = {"executed": 0, "rejected": 0, "expired": 0}
        self.redeemed = 0
        self.ignored_counts: dict[str, int] = {}
        self.evicted = 0
        self._pending: dict[bytes, _Pending] = {}
        self._occupancy = _Occupancy()
        self._decided: dict[bytes, PayloadStatus] = {}
        self._forget: list[tuple[int, bytes]] = []  # (expiry_slot, cid) of decided ids

    # ------------------------------------------------------------------ views

    def status(self, cid: bytes) -> PayloadStatus | Literal["pending", "unknown"]:
        if cid in self._decided:
            return self._decided[cid]
        return "pending" if cid in self._pending else "unknown"

    def knows(self, cid: bytes) -> bool:
        """A counted bundle of `cid` exists (pending or decided and not yet forgotten)."""
        return cid in self._pending or cid in self._decided

    def finalized_bundles(self, cid: bytes) -> dict[int, tuple[bytes, ...]]:
        """Public bundles of a pending payload (e.g. for a cartel's private decode)."""
        pending = self._pending.get(cid)
        return dict(pending.bundles) if pending else {}

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    @property
    def remembered_decided(self) -> int:
        return len(self._decided)

    def funds(self) -> FundsView | None:
        """The admission view of this tracker's ledger (None without a ledger)."""
        return FundsView(self.ledger, self.knows) if self.ledger is not None else None

    # ------------------------------------------------------------------ feeding

    def _chain(self, tag: bytes, height: int, ident: bytes, content: bytes) -> None:
        self.execution_order_hash = hashlib.sha256(
            self.execution_order_hash
            + tag
            + height.to_bytes(8, "big")
            + ident
            + hashlib.sha256(content).digest()
        ).digest()

    def _check_next(self, height: int) -> None:
        # rule: finalized blocks arrive in order, each exactly once
        if self.height is not None and height != self.height + 1:
            raise ValueError(f"expected finalized height {self.height + 1}, got {height}")

    def on_finalized(self, header: BlockHeader, body: BlockBody) -> BlockOutcome:
        """Process the next finalized block (heights strictly consecutive)."""
        self._check_next(header.seq_num)
        payload = decode_block_payload(body.payload)  # finalized ⇒ validated ⇒ decodes
        return self.on_finalized_payload(header.seq_num, payload, header.qc.block_id)

    def on_finalized_payload(
        self, height: int, payload: BlockPayload, parent_id: bytes
    ) -> BlockOutcome:
        """`on_finalized` of the block at `height` whose body decodes to `payload` and
        whose QC certifies `parent_id`, for a caller that has decoded it already."""
        return self._process(height, payload.transactions, payload.lane_blocks, parent_id)

    def on_finalized_lanes(
        self,
        height: int,
        transactions: Sequence[bytes],
        lane_blocks: Iterable[FinalizedLaneBlock],
        parent_id: bytes,
    ) -> BlockOutcome:
        """Certified lanes: the block at `height` (its QC certifies `parent_id`) carries
        `transactions` and its cut finalized `lane_blocks` (in `cut.finalized_order`).
        A lane block finalized more than W = `max_cut_lag_slots` heights after its slot
        is void: its tickets are not redeemed and its bundles do not count."""
        live = []
        for block in lane_blocks:
            if block.slot + self.lag_slots < height:  # rule FIN: cut too late, void
                self.void_lane_blocks += 1
            else:
                live.append(block)
        return self._process(height, tuple(transactions), live, parent_id)

    def _process(
        self,
        height: int,
        transactions: tuple[bytes, ...],
        lane_blocks: Iterable[FinalizedLaneBlock],
        parent_id: bytes,
    ) -> BlockOutcome:
        self._check_next(height)
        self.height = height
        money_before = self._money()
        self._forget_expired(height)
        redemptions: list[Redemption] = []
        by_cid: dict[bytes, list[tuple[int, bytes, int, LaneEntry]]] = {}
        for block in lane_blocks:
            lane, slot = block.lane, block.slot
            for entry in block.entries:
                cid, index = entry_key(entry)
                commitment = entry.bundle.commitment
                fee = entry.ticket.ticket.fee
                redemptions.append(Redemption(cid, commitment.sender, lane, slot, index, fee))
                by_cid.setdefault(cid, []).append(
                    (slot, pivot_key(parent_id, cid, index, lane), lane, entry)
                )
        work = _BlockWork()
        for cid in sorted(by_cid):
            # pivot order: by slot (one slot per block in carried mode), then the pivot key
            for slot, _, lane, entry in sorted(by_cid[cid], key=lambda item: item[:2]):
                self._count(cid, lane, slot, entry, height, work)
        executed = self._decode_ready(height, parent_id, work)
        self._expire_stale(height, work)
        for event in executed:  # rule: payloads decodable in a block run before its txs
            self._chain(_STATUS_TAG["executed"], height, event.commitment_id, event.payload or b"")
        for tx in transactions:
            self._chain(b"t", height, b"", tx)
        for event in work.others:
            self._chain(_STATUS_TAG[event.status], height, event.commitment_id, b"")
        self.redeemed += len(redemptions)
        for item in work.ignored:
            self.ignored_counts[item.reason] = self.ignored_counts.get(item.reason, 0) + 1
        fees, bounties, burned = (a - b for a, b in zip(self._money(), money_before, strict=True))
        return BlockOutcome(
            height=height,
            transactions=transactions,
            redemptions=tuple(redemptions),
            payloads=tuple(executed + work.others),
            duplicates=work.duplicates,
            late=work.late,
            dropped=work.dropped,
            execution_order_hash=self.execution_order_hash,
            ignored=tuple(work.ignored),
            evicted=work.evicted,
            fees_charged=fees,
            bounties_paid=bounties,
            burned=burned,
        )

    def _money(self) -> tuple[int, int, int]:
        """(fees charged, bounties paid, burned) so far (zeros without a ledger)."""
        if self.ledger is None:
            return 0, 0, 0
        totals = self.ledger.totals
        return totals.fees_charged, totals.bounties_paid, totals.burned

    def _count(
        self, cid: bytes, lane: int, slot: int, entry: LaneEntry, height: int, work: _BlockWork
    ) -> None:
        """Charge one redeemed bundle and count it towards its payload, if it may be."""
        bundle = entry.bundle
        commitment = bundle.commitment
        sender = commitment.sender
        index = bundle.bundle_index
        pending = self._pending.get(cid)
        decided = cid in self._decided
        opens = pending is None and not decided
        ledger = self.ledger
        if ledger is not None:
            fee = entry.ticket.ticket.fee
            if fee < ledger.params.fee:  # rule: a ticket pays at least the chain's fee
                work.ignored.append(IgnoredBundle(cid, sender, lane, index, "fee_too_low"))
                return
            # rule: a bundle counts only if its sender pays (fee, and B for a new payload)
            if not ledger.can_pay(sender, ledger.cost_of(fee, opens)):
                work.ignored.append(IgnoredBundle(cid, sender, lane, index, "insufficient_balance"))
                return
            ledger.charge_ticket(sender, lane, fee)
        if decided:
            work.late += 1
            return
        if pending is None:
            layout = layout_of(self.params, commitment)
            if layout is None or not self._make_room(sender, height, work):
                work.dropped += 1
                work.ignored.append(IgnoredBundle(cid, sender, lane, index, "tracker_full"))
                return
            pending = _Pending(commitment, layout, first_slot=slot, last_progress=height)
            self._pending[cid] = pending
            self._occupancy.add(sender, cid)
            if ledger is not None:
                ledger.open_escrow(cid, sender)  # affordable: checked with cost_of above
        if index in pending.bundles:  # rule: a bundle counts once (first copy in pivot order)
            work.duplicates += 1
            return
        pending.bundles[index] = bundle.symbols
        pending.order.append((slot, lane, index))
        pending.last_progress = height
        self._occupancy.progressed(sender, cid)
        work.touched.add(cid)

    def _make_room(self, sender: bytes, height: int, work: _BlockWork) -> bool:
        """Room for one more pending payload of `sender`: True if there is some, or after
        evicting the least recently progressing payload of the heaviest other sender."""
        if len(self._pending) < self.max_pending:
            return True
        top, heaviest = self._occupancy.heaviest()
        # rule: when full, the heaviest occupant makes room (ties: the newcomer's sender)
        if self._occupancy.count(sender) + 1 >= top:
            return False
        victim = self._occupancy.oldest(heaviest)
        work.touched.discard(victim)
        work.others.append(self._decide(victim, "expired", height, -1, None, "evicted"))
        work.evicted += 1
        self.evicted += 1
        return True

    def _decode_ready(self, height: int, parent_id: bytes, work: _BlockWork) -> list[PayloadEvent]:
        ready = [
            (cid, self._pending[cid])
            for cid in sorted(work.touched)
            if len(self._pending[cid].bundles) >= self._pending[cid].layout.kappa
        ]
        # one batched decode for the block; each result depends on its own payload only
        results = self.decoder([(p.layout, p.commitment, p.bundles) for _, p in ready])
        decoded: list[tuple[bytes, bytes, bytes]] = []  # (execution key, cid, payload)
        for (cid, _), result in zip(ready, results, strict=True):
            if result.status == "decoded":
                assert result.payload is not None
                decoded.append((execution_key(parent_id, cid), cid, result.payload))
            elif result.status == "commitment_mismatch":
                work.others.append(self._decide(cid, "rejected", height, -1, None))
        decoded.sort()
        return [
            self._decide(cid, "executed", height, position, data)
            for position, (_, cid, data) in enumerate(decoded)
        ]

    def _expire_stale(self, height: int, work: _BlockWork) -> None:
        ttl = self.pending_ttl_slots
        stale: list[tuple[bytes, str]] = []
        for cid, p in self._pending.items():
            # no bundle of it can count any more (certified: its lane blocks can be cut
            # up to W heights after their slot)
            if height > p.commitment.expiry_slot + self.lag_slots:
                stale.append((cid, "lifetime"))
            elif height - p.last_progress >= ttl:
                stale.append((cid, "ttl"))
        for cid, reason in sorted(stale):
            work.others.append(self._decide(cid, "expired", height, -1, None, reason))

    def _forget_expired(self, height: int) -> None:
        """Forget decided ids whose commitment expired: no bundle of them can be valid
        (certified: nor counted, W heights after the expiry)."""
        while self._forget and self._forget[0][0] + self.lag_slots < height:
            _, cid = heapq.heappop(self._forget)
            self._decided.pop(cid, None)

    def _decide(
        self,
        cid: bytes,
        status: PayloadStatus,
        height: int,
        position: int,
        payload: bytes | None,
        reason: str = "",
    ) -> PayloadEvent:
        pending = self._pending.pop(cid)
        sender = pending.commitment.sender
        self._occupancy.remove(sender, cid)
        self._decided[cid] = status
        heapq.heappush(self._forget, (pending.commitment.expiry_slot, cid))
        self.counts[status] += 1
        pivotal = tuple(pending.order[: pending.layout.kappa])
        decode_slot = -1
        if status == "executed":  # slot-time decode: κ counted bundles of slots <= it
            decode_slot = sorted(slot for slot, _, _ in pending.order)[pending.layout.kappa - 1]
        payouts: tuple[tuple[int, int], ...] = ()
        if self.ledger is not None:
            if status == "executed":  # rule: PIVOT-K pays the pivotal bundles' lanes
                payouts = self.ledger.pay_bounty(cid, [lane for _, lane, _ in pivotal])
            else:  # rule: a payload that never executes forfeits its escrow
                self.ledger.burn_escrow(cid)
        return PayloadEvent(
            commitment_id=cid,
            sender=sender,
            status=status,
            height=height,
            position=position,
            payload=payload,
            kappa=pending.layout.kappa,
            first_slot=pending.first_slot,
            finalized_bundles=len(pending.bundles),
            pivotal=pivotal,
            bounty_payouts=payouts,
            reason=reason,
            decode_slot=decode_slot,
        )
