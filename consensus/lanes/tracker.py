"""Decode tracker: every node's deterministic view of lane payloads over the finalized chain.

Fed finalized blocks in height order, it

1. redeems every ticket of every lane block (the validator already checked that the
   ticket's slot is the block's height, so inclusion == redemption in the addressed slot);
2. adds each bundle to its payload; a bundle already finalized earlier, or of a payload
   already decided, is ignored (counted) — cross-block duplicates are harmless;
3. after the block's entries, for each payload that gained bundles in this block and has
   at least κ, in commitment-id order: decode from all its finalized bundles and check
   the result against the commitment (`encoding.decode_payloads`, one batched call per
   block with the same result as `decode_payload` for each):
   - decoded  → executed in this block, after the block's plain transactions, ordered
     by commitment id: a position fixed before anyone could see the contents;
   - commitment_mismatch → rejected (final);
   - undecodable (RaptorQ rank deficiency, probability ~1e-6 at κ with h = 2) → stays
     pending and is retried when more bundles finalize;
4. expires payloads that made no progress for `pending_ttl_slots`.

The outcome depends only on the sequence of finalized blocks, so every node fed the
same chain reports the same executions, rejections and `execution_order_hash`.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal

from consensus.lanes.encoding import decode_payloads, layout_of
from consensus.lanes.params import LaneParams, PayloadLayout
from consensus.lanes.proposer import entry_key
from consensus.lanes.wire import BlockPayload, PayloadCommitment, decode_block_payload
from consensus.messages import BlockBody, BlockHeader

PayloadStatus = Literal["executed", "rejected", "expired"]
_STATUS_TAG = {"executed": b"p", "rejected": b"r", "expired": b"x"}
_HASH_SEED = hashlib.sha256(b"sedna/execution-order/1").digest()


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
class PayloadEvent:
    """A payload decided at `height`. `position` is its execution index in the block."""

    commitment_id: bytes
    sender: bytes
    status: PayloadStatus
    height: int
    position: int  # -1 unless executed
    payload: bytes | None
    kappa: int
    first_slot: int  # slot of its first finalized bundle
    finalized_bundles: int
    pivotal: tuple[tuple[int, int, int], ...]  # first κ finalized (slot, lane, bundle_index)


@dataclass(frozen=True, slots=True)
class BlockOutcome:
    height: int
    transactions: tuple[bytes, ...]
    redemptions: tuple[Redemption, ...]
    payloads: tuple[PayloadEvent, ...]  # executed in execution order, then the others by id
    duplicates: int  # bundles finalized again, ignored
    late: int  # bundles of already decided payloads, ignored
    dropped: int  # bundles of new payloads refused because the tracker was full
    execution_order_hash: bytes


@dataclass
class _Pending:
    commitment: PayloadCommitment
    layout: PayloadLayout
    first_slot: int
    last_progress: int
    bundles: dict[int, tuple[bytes, ...]] = field(default_factory=dict)
    order: list[tuple[int, int, int]] = field(default_factory=list)


class DecodeTracker:
    def __init__(
        self,
        params: LaneParams,
        *,
        max_pending_payloads: int = 4096,
        pending_ttl_slots: int = 256,
        max_decided_remembered: int = 65_536,
    ):
        self.params = params
        self.max_pending = max_pending_payloads
        self.pending_ttl_slots = pending_ttl_slots
        self.max_decided = max_decided_remembered
        self.height: int | None = None
        self.execution_order_hash = _HASH_SEED
        self.counts: dict[str, int] = {"executed": 0, "rejected": 0, "expired": 0}
        self.redeemed = 0
        self._pending: dict[bytes, _Pending] = {}
        self._decided: OrderedDict[bytes, PayloadStatus] = OrderedDict()

    def status(self, cid: bytes) -> PayloadStatus | Literal["pending", "unknown"]:
        if cid in self._decided:
            return self._decided[cid]
        return "pending" if cid in self._pending else "unknown"

    def finalized_bundles(self, cid: bytes) -> dict[int, tuple[bytes, ...]]:
        """Public bundles of a pending payload (e.g. for a cartel's private decode)."""
        pending = self._pending.get(cid)
        return dict(pending.bundles) if pending else {}

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
        return self.on_finalized_payload(header.seq_num, payload)

    def on_finalized_payload(self, height: int, payload: BlockPayload) -> BlockOutcome:
        """`on_finalized` of the block at `height` whose body decodes to `payload`, for a
        caller that has decoded it already (the node): the same outcome, one decode less."""
        self._check_next(height)
        self.height = height
        redemptions: list[Redemption] = []
        touched: set[bytes] = set()
        duplicates = late = dropped = 0
        decided = self._decided
        pending_by_id = self._pending
        for block in payload.lane_blocks:
            lane, slot = block.lane, block.slot
            for entry in block.entries:
                cid, index = entry_key(entry)
                bundle = entry.bundle
                commitment = bundle.commitment
                redemptions.append(
                    Redemption(cid, commitment.sender, lane, slot, index, entry.ticket.ticket.fee)
                )
                if cid in decided:
                    late += 1
                    continue
                pending = pending_by_id.get(cid)
                if pending is None:
                    layout = layout_of(self.params, commitment)
                    if len(pending_by_id) >= self.max_pending or layout is None:
                        dropped += 1
                        continue
                    pending = _Pending(commitment, layout, first_slot=height, last_progress=height)
                    pending_by_id[cid] = pending
                if index in pending.bundles:
                    duplicates += 1
                    continue
                pending.bundles[index] = bundle.symbols
                pending.order.append((slot, lane, index))
                pending.last_progress = height
                touched.add(cid)
        base = len(payload.transactions)
        executed: list[PayloadEvent] = []
        others: list[PayloadEvent] = []
        ready: list[tuple[bytes, _Pending]] = []
        for cid in sorted(touched):
            pending = pending_by_id[cid]
            if len(pending.bundles) >= pending.layout.kappa:
                ready.append((cid, pending))
        # one batched decode for the block; each result depends on its own payload only
        results = decode_payloads([(p.layout, p.commitment, p.bundles) for _, p in ready])
        for (cid, _), result in zip(ready, results, strict=True):
            if result.status == "undecodable":
                continue
            if result.status == "decoded":
                position = base + len(executed)  # after the block's transactions, by id
                executed.append(self._decide(cid, "executed", height, position, result.payload))
            else:
                others.append(self._decide(cid, "rejected", height, -1, None))
        ttl = self.pending_ttl_slots
        stale = [cid for cid, p in pending_by_id.items() if height - p.last_progress >= ttl]
        for cid in sorted(stale):
            others.append(self._decide(cid, "expired", height, -1, None))
        for tx in payload.transactions:
            self._chain(b"t", height, b"", tx)
        events = executed + others
        for event in events:
            self._chain(
                _STATUS_TAG[event.status], height, event.commitment_id, event.payload or b""
            )
        self.redeemed += len(redemptions)
        return BlockOutcome(
            height=height,
            transactions=payload.transactions,
            redemptions=tuple(redemptions),
            payloads=tuple(events),
            duplicates=duplicates,
            late=late,
            dropped=dropped,
            execution_order_hash=self.execution_order_hash,
        )

    def _decide(
        self, cid: bytes, status: PayloadStatus, height: int, position: int, payload: bytes | None
    ) -> PayloadEvent:
        pending = self._pending.pop(cid)
        self._decided[cid] = status
        while len(self._decided) > self.max_decided:
            self._decided.popitem(last=False)
        self.counts[status] += 1
        return PayloadEvent(
            commitment_id=cid,
            sender=pending.commitment.sender,
            status=status,
            height=height,
            position=position,
            payload=payload,
            kappa=pending.layout.kappa,
            first_slot=pending.first_slot,
            finalized_bundles=len(pending.bundles),
            pivotal=tuple(pending.order[: pending.layout.kappa]),
        )
