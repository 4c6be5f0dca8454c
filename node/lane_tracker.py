"""The lane tracker room: finalized blocks, in height order, through the decode tracker.

A background task (like monad-bft's statesync, it runs beside consensus, not inside it)
feeds every finalized block to the lanes' `DecodeTracker` and stores its decisions. It
lags the commit path by at most a few blocks and replays the finalized chain after a
restart: heights at or below the stored lane height are a replay, whose execution-order
hash (and, with a `[ledger]`, the lanes' ledger digest) must equal the stored one (nothing
is stored again). The ledger's balances are therefore as durable as the finalized chain:
a restarted node rebuilds them from the genesis allocation and checks every checkpoint it
had stored. The ledger digest hashes the whole ledger state (~3 µs per pending escrow:
12 ms with a full 4,096-entry tracker), so it is taken at checkpoints, every
LEDGER_CHECKPOINT_HEIGHTS heights, not at every height: a junk sender that fills the
trackers cannot make the digest cost outgrow the block rate. A failure stops the tracker
only (the consensus node keeps running); `/status` shows the error.

Bound: at most MAX_LANE_BACKLOG finalized bodies wait in memory; past that, the tracker
reads them back from storage.

Certified lanes (`[lanes] dissemination = "certified"`): the tracker's input is not the
finalized body but what the availability layer delivers for it (`LanesFinalized`: the
lane blocks its cut finalized, once they are all held, `node/availability_room.py`). The
tracker runs up to the highest delivered height; a delivery that is not in the (bounded)
backlog, and every height of the replay after a restart, is rebuilt from storage
(`AvailabilityRoom.lanes_finalized_at`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from consensus.events import CommittedBlock
from consensus.lanes.availability import LanesFinalized
from consensus.lanes.tracker import BlockOutcome
from consensus.lanes.wire import LanePayloadError
from consensus.messages import BlockBody, BlockHeader
from node.lanes_node import NodeLanes
from node.logs import log
from node.metrics import NodeMetrics
from node.storage import LaneEventRow, LaneHeightRow, LedgerHeightRow, Storage

if TYPE_CHECKING:  # pragma: no cover
    from node.availability_room import AvailabilityRoom

MAX_LANE_BACKLOG = 1024  # finalized bodies kept in memory for the tracker (else read back)
LEDGER_CHECKPOINT_HEIGHTS = 16  # the ledger digest is stored at heights divisible by it
NOT_COUNTED_REASONS = ("duplicate", "late", "tracker_full", "insufficient_balance", "fee_too_low")


class LaneTracker:
    """Decode tracking of finalized blocks and its durable results."""

    def __init__(
        self,
        *,
        lanes: NodeLanes,
        storage: Storage,
        metrics: NodeMetrics,
        logger: logging.Logger,
        finalized_height: int,
        room: AvailabilityRoom | None = None,
    ):
        self.lanes = lanes
        self.room = room  # certified lanes: the availability room delivers the input
        self.storage = storage
        self.metrics = metrics
        self.log = logger
        self.finalized_height = finalized_height
        self.error: str | None = None
        # bundles redeemed in finalized lane blocks but not counted towards their payload,
        # by reason (duplicate, late, tracker_full, insufficient_balance, fee_too_low);
        # counted from this process's start (a replay counts again)
        self.not_counted: dict[str, int] = dict.fromkeys(NOT_COUNTED_REASONS, 0)
        self._stored_height = storage.lane_height()
        self.ledger_checkpoint: LedgerHeightRow | None = None  # the latest one taken
        self._backlog: dict[int, tuple[BlockHeader, BlockBody]] = {}
        self._delivered: dict[int, LanesFinalized] = {}  # certified: by height
        # certified: heights up to here can be tracked (delivered, or stored before a restart)
        self.delivered_height = room.recovered_height if room is not None else 0
        if room is not None:
            room.deliver = self.on_lanes_finalized
        self._wake = asyncio.Event()
        self._stopping = False

    def on_committed(self, blocks: tuple[CommittedBlock, ...]) -> None:
        """The lane half of `CommitBlocks`: close the lane's slots, queue the bodies.

        The lane closes its slots once, at the highest height of the batch (sealing a slot
        closes every slot below it): a node catching up commits a hundred blocks at a time
        and would otherwise sign a lane block nobody will read for each of them.
        """
        if not blocks:
            return
        if self.room is not None:  # certified: the availability room delivers the input
            self.finalized_height = max(self.finalized_height, blocks[-1].header.seq_num)
            self.lanes.on_finalized(self.finalized_height)
            self.room.on_committed(blocks)
            return
        for committed in blocks:
            height = committed.header.seq_num
            # Bound: beyond MAX_LANE_BACKLOG the tracker reads the bodies back from storage.
            if len(self._backlog) < MAX_LANE_BACKLOG and height > self.lanes.tracker_height:
                self._backlog[height] = (committed.header, committed.body)
            self.finalized_height = max(self.finalized_height, height)
        self.lanes.on_finalized(self.finalized_height)
        self._wake.set()

    def on_lanes_finalized(self, command: LanesFinalized) -> None:
        """Certified lanes: the layer delivered finalized height `command.height`."""
        # Bound: beyond MAX_LANE_BACKLOG the tracker rebuilds the input from storage.
        if len(self._delivered) < MAX_LANE_BACKLOG and command.height > self.lanes.tracker_height:
            self._delivered[command.height] = command
        self.delivered_height = max(self.delivered_height, command.height)
        self._wake.set()

    @property
    def trackable_height(self) -> int:
        """The highest height whose tracker input is available."""
        return self.finalized_height if self.room is None else self.delivered_height

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        """Feed finalized blocks to the decode tracker in height order and store results.

        One block per step, yielding in between, so decoding interleaves with consensus.
        """
        while not self._stopping:
            if self.error is not None or self.lanes.tracker_height >= self.trackable_height:
                self._wake.clear()
                await self._wake.wait()
                continue
            first = self.lanes.tracker_height + 1
            if self.room is not None:
                self.track_lanes(first)
                await asyncio.sleep(0)
                continue
            item = self._backlog.pop(first, None)
            blocks = (
                [item]
                if item is not None
                else [(t.header, b) for t, b in self.storage.finalized_blocks(first, 1)]
            )
            if not blocks:  # pragma: no cover - the finalized table has every height
                self.fail(f"finalized block {first} missing from storage")
                continue
            for header, body in blocks:
                self.track_block(header, body)
            await asyncio.sleep(0)

    def track_lanes(self, height: int) -> None:
        """Certified lanes: height `height`'s delivered lane blocks through the tracker."""
        assert self.room is not None
        try:
            command = self._delivered.pop(height, None) or self.room.lanes_finalized_at(height)
            outcome, offset = self.lanes.track_lanes(command)
        except (ValueError, LanePayloadError) as exc:
            self.fail(f"height {height}: {exc}")
            return
        self._record(outcome, offset)

    def track_block(self, header: BlockHeader, body: BlockBody) -> None:
        try:
            outcome, offset = self.lanes.track(header, body)
        except (ValueError, LanePayloadError) as exc:
            self.fail(f"height {header.seq_num}: {exc}")
            return
        self._record(outcome, offset)

    def _record(self, outcome: BlockOutcome, offset: int) -> None:
        now_ns = time.time_ns()
        height = outcome.height
        self.not_counted["duplicate"] += outcome.duplicates
        self.not_counted["late"] += outcome.late
        for item in outcome.ignored:  # tracker_full, insufficient_balance, fee_too_low
            self.not_counted[item.reason] += 1
        counts = {"executed": 0, "rejected": 0, "expired": 0}
        events: list[LaneEventRow] = []
        for event in outcome.payloads:
            counts[event.status] += 1
            self.metrics.payloads_decided.inc(status=event.status)
            events.append(
                LaneEventRow(
                    payload_id=event.commitment_id,
                    status=event.status,
                    height=height,
                    position=event.position + offset if event.status == "executed" else -1,
                    decided_ns=now_ns,
                    kappa=event.kappa,
                    finalized_bundles=event.finalized_bundles,
                    first_slot=event.first_slot,
                    data=event.payload,
                )
            )
        self.metrics.tickets_redeemed.inc(len(outcome.redemptions))
        self.metrics.tracker_height.set(height)
        self.metrics.execution_order.set(height=height, hash=outcome.execution_order_hash.hex())
        ledger = self.lanes.ledger
        ledger_row = None
        if ledger is not None and height % LEDGER_CHECKPOINT_HEIGHTS == 0:
            totals = ledger.totals
            ledger_row = LedgerHeightRow(
                height, ledger.digest(), totals.fees_charged, totals.bounties_paid, totals.burned
            )
            self.ledger_checkpoint = ledger_row
            self.metrics.observe_ledger(
                ledger_row.ledger_hash, totals.fees_charged, totals.bounties_paid, totals.burned
            )
        if height <= self._stored_height:  # replay: must reproduce the stored hashes
            stored = self.storage.lane_hash_at(height)
            if stored is not None and stored != outcome.execution_order_hash:
                self.metrics.replay_mismatch.inc()
                self.fail(f"replayed execution-order hash differs at height {height}")
            if ledger_row is not None:
                stored_ledger = self.storage.ledger_at(height)
                if stored_ledger is not None and stored_ledger != ledger_row:
                    self.metrics.replay_mismatch.inc()
                    self.fail(f"replayed ledger differs at height {height}")
            return
        row = LaneHeightRow(
            height=height,
            exec_hash=outcome.execution_order_hash,
            executed=counts["executed"],
            rejected=counts["rejected"],
            expired=counts["expired"],
            redeemed=len(outcome.redemptions),
        )
        self.storage.lane_record([row], events, [ledger_row] if ledger_row else ())
        self._stored_height = height

    def fail(self, error: str) -> None:
        """Stop tracking (the consensus node keeps running); /status shows the error."""
        self.error = error
        self.metrics.dropped.inc(reason="lane_tracker_error")
        log(self.log, "lane_tracker_error", logging.ERROR, error=error)
