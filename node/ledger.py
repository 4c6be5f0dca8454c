"""The block ledger room: durable blocks, the safety state and the finalized chain.

It runs the storage side of the core's commands (`PersistSafety`, `PersistBlock`, the
storage half of `CommitBlocks` and `MarkVoted`, `RevertVoted`) and keeps what the node
knows about blocks that are not final yet: each pending block's parent, height and tx ids
(`BlockMeta`), so the tx pool can leave out the txs of a proposal's uncommitted ancestors.

Rule TX-ONCE (a tx is finalized at most once). The ledger keeps a durable index of every
finalized tx id (`finalized_txs`, written with the finalized rows), and `ChainValidator`
refuses a block that repeats a tx: twice in its own payload, in one of its uncommitted
ancestors, or in the finalized chain. The check is complete when the block's ancestors are
known; for a block whose ancestors are still missing it covers what is known, and the core
validates such a block again once its chain is held, before it votes for it or anything
above it (B-APP-CHAIN, docs/protocol.md).

Bounds: at most MAX_BLOCK_META pending blocks are described (the lowest are dropped past
that; TX-ONCE then covers the described part of a longer unfinalized chain).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from consensus import codec
from consensus.events import CommitBlocks, MarkVoted, PersistBlock, PersistSafety, RevertVoted
from consensus.messages import (
    GENESIS_BLOCK_ID,
    BlockBody,
    BlockHeader,
    BlockSyncRequest,
    BlockSyncResponse,
    ChainSyncRequest,
    ChainSyncResponse,
    Message,
    NoEndorsementMessage,
    ProposalMessage,
    RoundRecoveryMessage,
    SyncedBlock,
    TimeoutMessage,
    Tip,
    VoteMessage,
)
from consensus.safety import SafetyState
from node.logs import WarningLimiter, log
from node.mempool import PayloadError, decode_plain_payload, tx_id
from node.metrics import NodeMetrics
from node.storage import FinalizedRow, Storage, short_id

MAX_BLOCK_META = 4_096
TPS_WINDOW_S = 10.0
SYNC_LAG_BLOCKS = 8  # "syncing" once the highest known block is this far above the head
INDEX_BACKFILL_BLOCKS = 1_000  # stored blocks read per step when indexing an old database
MAX_SYNC_RESPONSE_BYTES = 8 * 1024 * 1024
SYNC_BLOCK_OVERHEAD_BYTES = 1024  # a synced block's tip and framing, on top of its payload
REJECTION_LOG_INTERVAL_S = 60.0  # at most one block_rejected line per (author, reason)


TxRefusal = Literal["tx_repeated_in_block", "tx_in_pending_ancestor", "tx_already_finalized"]


class PayloadRules(Protocol):
    def validate(self, header: BlockHeader, body: BlockBody) -> bool: ...


@dataclass(slots=True)
class BlockMeta:
    parent_id: bytes
    seq_num: int
    txids: tuple[bytes, ...]


class Ledger:
    """One node's durable chain and what it knows about the pending blocks above it."""

    def __init__(
        self,
        storage: Storage,
        metrics: NodeMetrics,
        logger: logging.Logger,
        *,
        max_block_txs: int,
        max_tx_bytes: int,
        persisted_safety: SafetyState | None = None,
    ):
        self.storage = storage
        self.metrics = metrics
        self.log = logger
        self.persisted_safety = persisted_safety or SafetyState()
        self._max_block_txs = max_block_txs
        self._max_tx_bytes = max_tx_bytes
        self.finalized_height, self.finalized_id = storage.finalized_head()
        # the highest block this node holds (verified, finalized or not): the sync target
        self.highest_block_height = max(self.finalized_height, storage.max_block_seq())
        self._block_meta: dict[bytes, BlockMeta] = {}
        self._voted_ns: dict[bytes, int] = {}
        self._commit_times: deque[tuple[float, int]] = deque(maxlen=4096)
        self._commit_blocks: deque[tuple[float, int]] = deque(maxlen=4096)
        self._catching_up_since: float | None = None

    # ------------------------------------------------------------------ commands

    def persist_safety(self, command: PersistSafety) -> None:
        self.storage.save_safety(command.state)
        self.persisted_safety = command.state
        self.metrics.safety_writes.inc()

    def check_covered(self, message: Message, index: int) -> None:
        """Paired with the core's persist-before-send: this node's own vote, timeout, NE,
        recovery request or proposal about to leave is covered by the safety state already
        on disk (so a restarted node can never contradict it). Raises AssertionError."""
        if getattr(message, "author", None) != index:
            return
        state = self.persisted_safety
        if isinstance(message, VoteMessage):
            round, persisted = message.vote.round, state.highest_vote
        elif isinstance(message, TimeoutMessage):
            round, persisted = message.info.round, state.highest_vote
        elif isinstance(message, ProposalMessage):
            round, persisted = message.round, state.highest_propose
        elif isinstance(message, NoEndorsementMessage):
            round, persisted = message.no_endorsement.round, state.highest_no_endorse_round
        elif isinstance(message, RoundRecoveryMessage):
            round, persisted = message.round, state.highest_recovery_request
        else:
            return
        if round > persisted:
            raise AssertionError(
                f"{type(message).__name__} for round {round} leaves before a safety state "
                f"covering it is on disk (persisted: {persisted})"
            )

    def persist_block(self, command: PersistBlock) -> None:
        self.persist_blocks((command,))

    def persist_blocks(self, commands: Sequence[PersistBlock]) -> None:
        """A run of consecutive `PersistBlock`s, in one transaction (a sync batch stores
        up to 256 blocks at once)."""
        self.storage.put_blocks([(c.block_id, c.tip, c.body) for c in commands])
        for command in commands:
            header = command.tip.header
            if command.block_id not in self._block_meta:
                self.remember(command.block_id, header.parent_id, header.seq_num, command.body)
            if header.seq_num > self.highest_block_height:
                self.highest_block_height = header.seq_num
        self._note_sync_progress()

    def commit(self, command: CommitBlocks, now_ns: int) -> list[bytes]:
        """Append the blocks to the finalized chain; returns the tx ids they carry."""
        rows: list[FinalizedRow] = []
        all_txids: list[bytes] = []
        tx_heights: list[tuple[bytes, int]] = []
        expected = self.finalized_height + 1
        for committed in command.blocks:
            # Paired with the core's commit rule: finalized heights are consecutive.
            if committed.header.seq_num != expected:
                raise AssertionError(
                    f"committed height {committed.header.seq_num}, expected {expected}"
                )
            expected += 1
            meta = self._block_meta.get(committed.block_id)
            txids = meta.txids if meta is not None else self.block_txids(committed.body)
            header = committed.header
            rows.append(
                FinalizedRow(
                    height=header.seq_num,
                    block_id=committed.block_id,
                    block_round=header.block_round,
                    timestamp_ns=header.timestamp_ns,
                    committed_ns=now_ns,
                    voted_ns=self._voted_ns.get(committed.block_id),
                    n_tx=len(txids),
                    txids=b"".join(short_id(t) for t in txids),
                )
            )
            all_txids.extend(txids)
            tx_heights.extend((txid, header.seq_num) for txid in txids)
        repeated = self.storage.commit_blocks(rows, tx_heights)
        if repeated:  # TX-ONCE broken by a quorum: nothing to undo, but say so
            self.metrics.txs_finalized_twice.inc(repeated)
            log(self.log, "tx_finalized_twice", logging.ERROR, txs=repeated, height=expected - 1)
        if rows:
            last = rows[-1]
            self.finalized_height, self.finalized_id = last.height, last.block_id
        self.metrics.height.set(self.finalized_height)
        self._note_sync_progress()
        self.metrics.committed_blocks.inc(len(rows))
        self.metrics.committed_txs.inc(len(all_txids))
        self._commit_times.append((time.monotonic(), len(all_txids)))
        self._commit_blocks.append((time.monotonic(), len(rows)))
        self._prune_block_meta()
        return all_txids

    def mark_voted(self, command: MarkVoted, now_ns: int) -> tuple[bytes, ...]:
        """Record the block's local "Voted" time; returns its tx ids (empty if unknown)."""
        self._voted_ns.setdefault(command.block_id, now_ns)
        meta = self._block_meta.get(command.block_id)
        return () if meta is None else meta.txids

    def revert(self, command: RevertVoted) -> None:
        self.metrics.reverts.inc()
        self._voted_ns.pop(command.block_id, None)
        log(
            self.log,
            "voted_reverted",
            logging.WARNING,
            block_id=command.block_id,
            seq_num=command.seq_num,
        )

    # ------------------------------------------------------------------ reads

    def block_txids(self, body: BlockBody) -> tuple[bytes, ...]:
        try:
            # the lane blocks are the lane rules' business: skipped here, not decoded
            txs = decode_plain_payload(
                body.payload, self._max_block_txs, self._max_tx_bytes, lanes_checked=True
            )
        except PayloadError:
            return ()
        return tuple(tx_id(tx) for tx in txs)

    def block_seq(self, block_id: bytes) -> int | None:
        """Height of a pending block this node stored (None if it does not know it)."""
        meta = self._block_meta.get(block_id)
        return None if meta is None else meta.seq_num

    def pending_ancestor_txids(self, parent_id: bytes) -> tuple[set[bytes], bool]:
        """Tx ids inside the not-yet-finalized ancestors of a new block on `parent_id`, and
        whether that chain is known down to the finalized head (False: a gap, e.g. while
        catching up, so txs below the gap are unknown)."""
        txids: set[bytes] = set()
        block_id = parent_id
        for _ in range(MAX_BLOCK_META + 1):  # bound: the chain above the finalized head
            if block_id == self.finalized_id:
                return txids, True
            meta = self._block_meta.get(block_id)
            if meta is None or meta.seq_num <= self.finalized_height:
                return txids, False
            txids.update(meta.txids)
            block_id = meta.parent_id
        return txids, False

    def answer_sync(self, request: Message) -> Message:
        """The answer to a peer's sync request (`node/sync_server.py` calls this)."""
        if isinstance(request, BlockSyncRequest):
            return self.sync_response(request)
        if isinstance(request, ChainSyncRequest):
            return self.chain_response(request)
        raise TypeError(f"not a sync request: {type(request).__name__}")

    def chain_response(self, request: ChainSyncRequest) -> ChainSyncResponse:
        """Answer chain sync from the database: up to `count` finalized blocks directly
        above `after_block_id`, oldest first, cut at MAX_SYNC_RESPONSE_BYTES (at least one
        block); empty when `after_block_id` is not on this node's finalized chain."""
        height = self.storage.finalized_height_of(request.after_block_id)
        blocks: list[SyncedBlock] = []
        if height is not None:
            size_bytes = 0
            for tip, body in self.storage.finalized_blocks(height + 1, request.count):
                size_bytes += len(body.payload) + SYNC_BLOCK_OVERHEAD_BYTES
                if blocks and size_bytes > MAX_SYNC_RESPONSE_BYTES:
                    break
                blocks.append(SyncedBlock(tip=tip, body=body))
        return ChainSyncResponse(after_block_id=request.after_block_id, blocks=tuple(blocks))

    def sync_response(self, request: BlockSyncRequest) -> BlockSyncResponse:
        """Answer block sync from the database: up to `count` blocks, newest first.

        The database holds every block that entered the tree, finalized or not, so a node
        that fell far behind can fetch finalized history the core has already pruned. The
        response is cut at MAX_SYNC_RESPONSE_BYTES (at least one block) so that it always
        fits a frame; the requester asks again from where the response ended.
        """
        blocks: list[SyncedBlock] = []
        size_bytes = 0
        block_id = request.block_id
        for _ in range(request.count):
            if block_id == GENESIS_BLOCK_ID:
                break
            stored = self.storage.get_block(block_id)
            if stored is None:
                break
            tip, body = stored
            size_bytes += len(body.payload) + SYNC_BLOCK_OVERHEAD_BYTES
            if blocks and size_bytes > MAX_SYNC_RESPONSE_BYTES:
                break
            blocks.append(SyncedBlock(tip=tip, body=body))
            block_id = tip.header.parent_id
        return BlockSyncResponse(block_id=request.block_id, blocks=tuple(blocks))

    def finalized_tx_height(self, txid: bytes) -> int | None:
        return self.storage.finalized_tx_height(txid)

    # ------------------------------------------------------------------ TX-ONCE

    def remember(self, block_id: bytes, parent_id: bytes, seq_num: int, body: BlockBody) -> None:
        """Describe a block that may enter the tree (its tx ids, for TX-ONCE and payloads)."""
        self.remember_txids(block_id, parent_id, seq_num, self.block_txids(body))

    def remember_txids(
        self, block_id: bytes, parent_id: bytes, seq_num: int, txids: tuple[bytes, ...]
    ) -> None:
        if seq_num <= self.finalized_height or block_id in self._block_meta:
            return
        if len(self._block_meta) >= MAX_BLOCK_META:
            self._prune_block_meta(force=True)
        self._block_meta[block_id] = BlockMeta(parent_id, seq_num, txids)

    def remember_recovered(self, blocks: list[tuple[Tip, BlockBody]]) -> None:
        """The pending blocks a restarted core was rebuilt from (no PersistBlock for them)."""
        for tip, body in blocks:
            header = tip.header
            self.remember(codec.block_id(header), header.parent_id, header.seq_num, body)

    def tx_refusal(self, header: BlockHeader, body: BlockBody) -> TxRefusal | None:
        """TX-ONCE: why this block may not extend the chain (None: it may)."""
        if header.seq_num <= self.finalized_height:
            return None  # history (a sync response reaches below the head): never added
        txids = self.block_txids(body)
        if txids:
            unique = set(txids)
            if len(unique) != len(txids):
                return "tx_repeated_in_block"
            ancestors, _ = self.pending_ancestor_txids(header.parent_id)
            if not unique.isdisjoint(ancestors):
                return "tx_in_pending_ancestor"
            if self.storage.finalized_among(list(unique)):
                return "tx_already_finalized"
        self.remember_txids(codec.block_id(header), header.parent_id, header.seq_num, txids)
        return None

    def index_backlog(self) -> int:
        """Index the txs of finalized heights above `tx_index_height` (a database written
        before the index existed); returns how many heights were indexed."""
        start = self.storage.tx_index_height()
        height = start
        while height < self.finalized_height:
            blocks = self.storage.finalized_blocks(height + 1, INDEX_BACKFILL_BLOCKS)
            if not blocks:  # pragma: no cover - the finalized table has every height
                break
            entries = [
                (txid, tip.header.seq_num)
                for tip, body in blocks
                for txid in self.block_txids(body)
            ]
            height = blocks[-1][0].header.seq_num
            self.storage.index_finalized_txs(entries, height)
        return height - start

    def _note_sync_progress(self) -> None:
        """The sync gauge, and one log line when catching up starts and when it ends."""
        behind = self.behind_blocks
        self.metrics.sync_behind.set(behind)
        if self._catching_up_since is None and behind > SYNC_LAG_BLOCKS:
            self._catching_up_since = time.monotonic()
            log(
                self.log,
                "catching_up",
                finalized_height=self.finalized_height,
                target_height=self.highest_block_height,
            )
        elif self._catching_up_since is not None and behind <= SYNC_LAG_BLOCKS:
            log(
                self.log,
                "caught_up",
                finalized_height=self.finalized_height,
                seconds=round(time.monotonic() - self._catching_up_since, 3),
            )
            self._catching_up_since = None

    @property
    def behind_blocks(self) -> int:
        """How far the finalized head is below the highest block this node holds."""
        return max(0, self.highest_block_height - self.finalized_height)

    @property
    def syncing(self) -> bool:
        return self.behind_blocks > SYNC_LAG_BLOCKS

    def blocks_per_s(self) -> float:
        """Finalized blocks per second over the last TPS_WINDOW_S."""
        now = time.monotonic()
        window = [(t, n) for t, n in self._commit_blocks if now - t <= TPS_WINDOW_S]
        if len(window) < 2:
            return 0.0
        span = max(1e-3, window[-1][0] - window[0][0])
        return sum(n for _, n in window[1:]) / span

    def tps(self, since_s: float) -> float:
        """Finalized txs per second over the last TPS_WINDOW_S (or since `since_s`)."""
        now = time.monotonic()
        window = [(t, n) for t, n in self._commit_times if now - t <= TPS_WINDOW_S]
        if not window:
            return 0.0
        span = max(1.0, min(TPS_WINDOW_S, now - since_s))
        return sum(n for _, n in window) / span

    # ------------------------------------------------------------------ bounds

    def _prune_block_meta(self, force: bool = False) -> None:
        stale = [b for b, m in self._block_meta.items() if m.seq_num <= self.finalized_height]
        for block_id in stale:
            del self._block_meta[block_id]
            self._voted_ns.pop(block_id, None)
        if force and len(self._block_meta) >= MAX_BLOCK_META:
            # Bound: drop the lowest blocks when an unfinalized tree grows past the cap.
            for block_id in sorted(self._block_meta, key=lambda b: self._block_meta[b].seq_num)[
                : MAX_BLOCK_META // 4
            ]:
                del self._block_meta[block_id]
                self._voted_ns.pop(block_id, None)


class ChainValidator:
    """The core's `BlockValidator`: the payload rules (`payload_rules`: tx limits and the
    lanes' rules), then TX-ONCE against this node's chain. A refusal is counted by reason
    (`sedna_blocks_rejected_total`) and logged."""

    def __init__(self, payload_rules: PayloadRules, ledger: Ledger):
        self.payload_rules = payload_rules
        self.ledger = ledger
        # the core's B-APP-LINK when the payload rules have one (certified lanes' cuts)
        link = getattr(payload_rules, "validate_link", None)
        if link is not None:
            self.validate_link = link
        self._warnings = WarningLimiter(REJECTION_LOG_INTERVAL_S)

    def validate(self, header: BlockHeader, body: BlockBody) -> bool:
        if not self.payload_rules.validate(header, body):
            self.ledger.metrics.blocks_rejected.inc(reason="payload_rules")
            return False
        refusal = self.ledger.tx_refusal(header, body)
        if refusal is not None:
            self.ledger.metrics.blocks_rejected.inc(reason=refusal)
            # a faulty leader can repeat this every round it leads: one line per interval
            self._warnings.warn(
                "block_rejected",
                f"{header.author}:{refusal}",
                reason=refusal,
                author=header.author,
                round=header.block_round,
                height=header.seq_num,
            )
            return False
        return True
