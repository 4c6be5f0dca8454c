"""The tx pool room: the mempool, the lane blocks forwarded to leaders, proposal payloads.

- `request_payload` answers the core's `RequestPayload`: the oldest pending txs that are not
  in the proposal's uncommitted ancestors (asked of the ledger; none at all when the chain
  down to the finalized head has a gap), plus, in carried mode, the lane blocks this node
  holds for that height, within the body budget, or, in certified mode, the cut
  (`AvailabilityRoom.build_cut`); it pushes `PayloadReady`.
- `lane_blocks_before_vote` seals this lane's block for (voted height + 2) and returns the
  frames the router sends just before the vote (`NodeLanes.on_vote`).
- `on_finalized` / `on_voted` are the mempool half of `CommitBlocks` / `MarkVoted` (they
  feed the finality and speculative-finality histograms).
- `submit` admits txs from RPC and forwards the accepted ones to the next leaders
  (`node/txforward.py`); `on_tx_frame` admits the txs other nodes forward here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from consensus.events import Event, PayloadReady, RequestPayload
from consensus.lanes.chain import LaneTip
from consensus.lanes.cut import build_cut_payload
from consensus.lanes.payload import build_block_payload
from consensus.lanes.wire import LanePayloadError
from consensus.messages import MAX_PAYLOAD_BYTES, BlockBody, VoteMessage
from node.lanes_node import PAYLOAD_BYTES_RESERVE, NodeLanes
from node.ledger import Ledger
from node.logs import log
from node.mempool import Mempool, SubmitResult
from node.metrics import NodeMetrics
from node.txforward import TxForwarder, TxFrameError, decode_tx_frame

if TYPE_CHECKING:  # pragma: no cover
    from node.availability_room import AvailabilityRoom

REJECT_REASONS = ("duplicate", "already_final", "too_large", "full")


class TxPool:
    """Builds this node's proposals and tracks its submitted txs to finality."""

    def __init__(
        self,
        *,
        mempool: Mempool,
        lanes: NodeLanes,
        ledger: Ledger,
        metrics: NodeMetrics,
        logger: logging.Logger,
        push_internal: Callable[[Event], None],
        forwarder: TxForwarder | None = None,
    ):
        self.mempool = mempool
        self.forwarder = forwarder
        self.lanes = lanes
        self.ledger = ledger
        self.metrics = metrics
        self.log = logger
        self._push_internal = push_internal
        self.room: AvailabilityRoom | None = None  # certified lanes (set by the assembly)

    # ------------------------------------------------------------------ commands

    def request_payload(self, command: RequestPayload) -> None:
        exclude, complete = self.ledger.pending_ancestor_txids(command.parent_id)
        if complete:
            txs, ids = self.mempool.select(exclude)
        else:
            # TX-ONCE at the proposer: with a gap between the finalized head and the parent
            # (catching up), the txs below the gap are unknown and may include ours: propose
            # no txs rather than a block honest validators would refuse.
            txs, ids = [], []
            self.metrics.proposals_without_txs.inc()
        lane_blocks: list = []
        if self.room is not None:
            # certified lanes: the transactions and the cut (lane tips with their PoAs)
            try:
                payload = self.room.build_cut(command.seq_num, command.parent_id, txs)
            except LanePayloadError as exc:  # over the body limit: keep the parent's cut
                log(self.log, "lane_payload_too_large", logging.WARNING, error=str(exc))
                parent = self.room.parent_cut(command.parent_id) or {}
                payload = build_cut_payload((), (LaneTip(t) for t in parent.values()))
        else:
            tx_bytes = sum(len(tx) + 5 for tx in txs)
            budget = MAX_PAYLOAD_BYTES - tx_bytes - PAYLOAD_BYTES_RESERVE
            lane_blocks = self.lanes.lane_blocks_for(command.seq_num, budget)
            try:
                payload = build_block_payload(txs, lane_blocks)
            except LanePayloadError as exc:  # over the body limit after all: propose txs only
                log(self.log, "lane_payload_too_large", logging.WARNING, error=str(exc))
                lane_blocks = []
                payload = build_block_payload(txs, ())
        self.lanes.note_built(command.seq_num, BlockBody(payload))
        self._push_internal(
            PayloadReady(now_ns=time.time_ns(), round=command.round, payload=payload)
        )
        if self.log.isEnabledFor(logging.DEBUG):
            log(
                self.log,
                "payload_built",
                logging.DEBUG,
                round=command.round,
                txs=len(ids),
                lane_blocks=len(lane_blocks),
            )

    def lane_blocks_before_vote(self, message: VoteMessage) -> list[tuple[int, bytes]]:
        """Before a vote leaves: this lane's block for slot (voted height + 2) to the
        leaders that may propose it (same connection, so it arrives before the vote)."""
        seq_num = self.ledger.block_seq(message.vote.block_id)
        if seq_num is None:
            return []
        return self.lanes.on_vote(seq_num, message.vote.round)

    def on_finalized(self, txids: Iterable[bytes], now_ns: int) -> None:
        accept_times = self.mempool.on_finalized(txids)
        self.metrics.observe_finality((now_ns - t) / 1e6 for t in accept_times)

    def on_voted(self, txids: Iterable[bytes], now_ns: int) -> None:
        for accepted_ns in self.mempool.mark_voted(txids):
            self.metrics.speculative.observe((now_ns - accepted_ns) / 1e6)

    # ------------------------------------------------------------------ RPC writes

    def submit(self, txs: list[bytes]) -> SubmitResult:
        result = self.mempool.submit(txs, time.time_ns())
        self.metrics.txs_accepted.inc(result.accepted)
        for reason in REJECT_REASONS:
            count = getattr(result, reason)
            if count:
                self.metrics.txs_rejected.inc(count, reason=reason)
        self.metrics.mempool_size.set(len(self.mempool))
        if result.accepted and self.forwarder is not None:  # FWD-ONCE: RPC txs only
            txs = self.mempool.txs_of(result.accepted_ids)
            self.forwarder.forward(txs, pending=len(self.mempool) - len(txs))
        return result

    # ------------------------------------------------------------------ forwarded txs

    def on_tx_frame(self, peer: int, frame: bytes) -> SubmitResult | None:
        """Txs forwarded by `peer` (node/txforward.py): admitted as forwarded (not stored,
        not forwarded again, within the forwarded share). None for a malformed frame."""
        received = self.metrics.forwarded_txs_received
        try:
            txs = decode_tx_frame(frame, self.mempool.max_block_txs)
        except TxFrameError:
            received.inc(result="malformed")
            return None
        result = self.mempool.submit(txs, time.time_ns(), forwarded=True)
        if result.accepted:
            received.inc(result.accepted, result="accepted")
        for reason in REJECT_REASONS:
            count = getattr(result, reason)
            if count:
                received.inc(count, result=reason)
        self.metrics.mempool_size.set(len(self.mempool))
        return result
