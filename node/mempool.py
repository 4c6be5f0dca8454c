"""Bounded, deduplicating mempool of plain transactions and the plain block payload format.

A plain transaction is an opaque byte string of 1..max_tx_bytes bytes; its id is
`sha256(b"sedna/tx/1" || 0x00 || tx)`. Transactions are not signed by their senders (the
load generator's txs are synthetic); a real deployment would check a sender signature at
`submit` (domain `Domain.TRANSACTION`).

Payload format (the `BlockBody.payload` of a block): the lanes' `BlockPayload`
(`consensus.lanes.wire`: a version byte, then plain transactions and lane blocks; the
empty payload is b""). The leader adds lane blocks to the txs `select` returns
(`node/lanes_node.py`); `PlainPayloadValidator` checks the tx limits and, given the lanes'
`LanePayloadValidator`, every lane rule.

Accepted transactions are written to storage before `submit` returns, so a node killed
right after acknowledging a tx proposes it after its restart. A tx leaves the mempool when a
block containing it is finalized (by any leader); txs inside not-yet-finalized blocks are
skipped when building the next payload (the caller passes their ids), so a block that is
dropped by the protocol returns its txs to circulation automatically.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from consensus.lanes.cut import CutValidator
from consensus.lanes.payload import LanePayloadValidator, build_block_payload
from consensus.lanes.wire import (
    LANE_PAYLOAD_VERSION,
    LanePayloadError,
    decode_block_payload,
    decode_block_transactions,
)

if TYPE_CHECKING:  # pragma: no cover
    from consensus.messages import BlockBody, BlockHeader
    from node.storage import Storage

PLAIN_FORMAT = LANE_PAYLOAD_VERSION
TX_DOMAIN = b"sedna/tx/1\x00"


class PayloadError(ValueError):
    """Bytes that are not a valid plain payload."""


def tx_id(tx: bytes) -> bytes:
    return hashlib.sha256(TX_DOMAIN + tx).digest()


def encode_plain_payload(txs: Sequence[bytes]) -> bytes:
    """A block payload with these plain transactions and no lane blocks."""
    return build_block_payload(txs, ())


def decode_plain_payload(
    payload: bytes, max_txs: int, max_tx_bytes: int, lanes_checked: bool = False
) -> list[bytes]:
    """The plain transactions of a block payload. Raises PayloadError for anything invalid.

    `lanes_checked`: the lane blocks are validated elsewhere (or already were), so they
    are skipped here instead of decoded twice.
    """
    try:
        if lanes_checked:
            txs = decode_block_transactions(payload)
        else:
            txs = decode_block_payload(payload).transactions
    except LanePayloadError as exc:
        raise PayloadError(f"malformed payload: {exc}") from None
    # Rule: a block carries at most max_txs txs, each non-empty and within the size limit.
    if len(txs) > max_txs:
        raise PayloadError(f"{len(txs)} txs exceed the block limit of {max_txs}")
    for tx in txs:
        if not 0 < len(tx) <= max_tx_bytes:
            raise PayloadError(f"tx of {len(tx)} bytes outside 1..{max_tx_bytes}")
    return list(txs)


class PlainPayloadValidator:
    """Block validity (pure): the tx limits of this node's mempool config, then, when
    given, the lanes' validator for the lane blocks."""

    def __init__(
        self,
        max_block_txs: int,
        max_tx_bytes: int,
        max_block_bytes: int,
        lanes: LanePayloadValidator | CutValidator | None = None,
    ):
        self.max_block_txs = max_block_txs
        self.max_tx_bytes = max_tx_bytes
        self.max_block_bytes = max_block_bytes
        self.lanes = lanes

    def validate(self, header: BlockHeader, body: BlockBody) -> bool:
        try:  # with a lane validator, it decodes (and checks) the lane blocks itself
            decode_plain_payload(
                body.payload,
                self.max_block_txs,
                self.max_tx_bytes,
                lanes_checked=self.lanes is not None,
            )
        except PayloadError:
            return False
        return self.lanes is None or self.lanes.validate(header, body)


@dataclass
class SubmitResult:
    accepted: int = 0
    duplicate: int = 0
    already_final: int = 0
    too_large: int = 0
    full: int = 0
    accepted_ids: list[bytes] = field(default_factory=list)

    def as_dict(self) -> dict[str, int]:
        return {
            "accepted": self.accepted,
            "duplicate": self.duplicate,
            "already_final": self.already_final,
            "too_large": self.too_large,
            "full": self.full,
        }


@dataclass(slots=True)
class _Entry:
    tx: bytes
    accepted_ns: int
    voted: bool = False
    local: bool = True  # accepted over RPC here (False: forwarded by its origin node)


class Mempool:
    """Pending txs in arrival order, bounded by count; remembers recently finalized ids."""

    def __init__(
        self,
        *,
        max_txs: int,
        max_tx_bytes: int,
        max_block_txs: int,
        max_block_bytes: int,
        storage: Storage | None = None,
        finalized_memory: int | None = None,
        max_forwarded: int | None = None,
    ):
        if min(max_txs, max_tx_bytes, max_block_txs, max_block_bytes) <= 0:
            raise ValueError("mempool limits must be positive")
        self.max_txs = max_txs
        # FWD-BOUND: forwarded txs (node/txforward.py) hold at most this share of the pool.
        self.max_forwarded = max_forwarded if max_forwarded is not None else max_txs // 2
        self.forwarded_pending = 0
        self.max_tx_bytes = max_tx_bytes
        self.max_block_txs = max_block_txs
        self.max_block_bytes = max_block_bytes
        self._storage = storage
        self._pending: OrderedDict[bytes, _Entry] = OrderedDict()
        self._final_memory = finalized_memory if finalized_memory is not None else 2 * max_txs
        self._final_order: deque[bytes] = deque()
        self._final_set: set[bytes] = set()
        self.accepted_total = 0
        self.finalized_local_total = 0
        self.restored_already_final = 0  # stored txs dropped at start: already finalized
        if storage is not None:
            stored = storage.mempool_load(max_txs)
            # Rule TX-ONCE: a restored tx that is already in the finalized chain (e.g. a
            # node killed between its block's finality and its own commit) is dropped.
            final = storage.finalized_among([txid for txid, _, _ in stored])
            for txid, tx, accepted_ns in stored:
                if txid not in final:
                    self._pending[txid] = _Entry(tx, accepted_ns)
            storage.mempool_remove(sorted(final))
            self.restored_already_final = len(final)

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, txid: bytes) -> bool:
        return txid in self._pending

    def pending_bytes(self) -> int:
        return sum(len(e.tx) for e in self._pending.values())

    def submit(self, txs: Sequence[bytes], now_ns: int, forwarded: bool = False) -> SubmitResult:
        """Admit txs (validate each, then store the accepted batch durably, then index them).

        `forwarded`: txs another node accepted and forwarded (node/txforward.py). They are
        admitted within `max_forwarded`, not stored (their origin holds them durably, FWD-
        ORIGIN) and never reported in this node's finality figures."""
        result = SubmitResult()
        fresh: list[tuple[bytes, bytes, int]] = []
        fresh_ids: set[bytes] = set()
        room = self.max_txs - len(self._pending)
        if forwarded:
            room = min(room, self.max_forwarded - self.forwarded_pending)
        sized = [tx for tx in txs if 0 < len(tx) <= self.max_tx_bytes]
        result.too_large = len(txs) - len(sized)  # Rule: a tx is 1..max_tx_bytes bytes.
        ids = [tx_id(tx) for tx in sized]
        # Rule TX-ONCE: a tx already in the finalized chain is refused (the durable index,
        # so a restart does not forget it; the in-memory set answers recent ones cheaply).
        final = self._final_set.intersection(ids)
        if self._storage is not None:
            final |= self._storage.finalized_among(
                [t for t in ids if t not in final and t not in self._pending]
            )
        for tx, txid in zip(sized, ids, strict=True):
            if txid in self._pending or txid in fresh_ids:
                result.duplicate += 1
                continue
            if txid in final:
                result.already_final += 1
                continue
            # Rule: the mempool never holds more than max_txs txs.
            if len(fresh) >= room:
                result.full += 1
                continue
            fresh.append((txid, bytes(tx), now_ns))
            fresh_ids.add(txid)
        if forwarded:
            self.forwarded_pending += len(fresh)
        else:
            if self._storage is not None:
                self._storage.mempool_add(fresh)
            self.accepted_total += len(fresh)
        local = not forwarded
        for txid, tx, accepted_ns in fresh:
            self._pending[txid] = _Entry(tx, accepted_ns, local=local)
            result.accepted_ids.append(txid)
        result.accepted = len(fresh)
        return result

    def txs_of(self, txids: Iterable[bytes]) -> list[bytes]:
        """The pending txs with these ids, in the given order (unknown ids skipped)."""
        pending = self._pending
        return [pending[t].tx for t in txids if t in pending]

    def select(self, exclude: set[bytes] | frozenset[bytes]) -> tuple[list[bytes], list[bytes]]:
        """(txs, ids): the oldest pending txs not in `exclude`, within the block limits."""
        chosen: list[bytes] = []
        ids: list[bytes] = []
        size = 0
        # Bound: the loop visits at most len(exclude) + max_block_txs + 1 entries.
        for txid, entry in self._pending.items():
            if txid in exclude:
                continue
            if len(chosen) >= self.max_block_txs:
                break
            # msgpack overhead per bin item is at most 5 bytes.
            if size + len(entry.tx) + 5 > self.max_block_bytes:
                break
            chosen.append(entry.tx)
            ids.append(txid)
            size += len(entry.tx) + 5
        return chosen, ids

    def build_payload(self, exclude: set[bytes] | frozenset[bytes]) -> tuple[bytes, list[bytes]]:
        """Payload of `select(exclude)` with no lane blocks."""
        chosen, ids = self.select(exclude)
        return encode_plain_payload(chosen), ids

    def mark_voted(self, txids: Iterable[bytes]) -> list[int]:
        """Accept times of local txs that just became speculatively final (each reported once)."""
        times: list[int] = []
        for txid in txids:
            entry = self._pending.get(txid)
            if entry is not None and not entry.voted:
                entry.voted = True
                if entry.local:
                    times.append(entry.accepted_ns)
        return times

    def on_finalized(self, txids: Iterable[bytes]) -> list[int]:
        """Drop finalized txs; returns the accept times of those that were pending here."""
        times: list[int] = []
        for txid in txids:
            entry = self._pending.pop(txid, None)
            if entry is not None:
                if entry.local:
                    times.append(entry.accepted_ns)
                else:
                    self.forwarded_pending -= 1
            if txid not in self._final_set:
                self._final_set.add(txid)
                self._final_order.append(txid)
        while len(self._final_order) > self._final_memory:
            self._final_set.discard(self._final_order.popleft())
        self.finalized_local_total += len(times)
        return times

    def oldest_pending_ns(self) -> int | None:
        """Accept time of the oldest tx accepted here (forwarded txs are not this node's)."""
        for entry in self._pending.values():
            if entry.local:
                return entry.accepted_ns
        return None
