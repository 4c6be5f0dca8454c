"""The API view room: what the RPC server reads, and the few writes it may make.

`RpcServer` (node/rpc.py) calls the `rpc_*` methods of a `NodeView`; their names and
return shapes are the RPC contract. The view reads the rooms' state and writes only
through `TxPool.submit`, `NodeLanes.submit` and `Router.set_isolated`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from consensus.crypto import DEFAULT_CHAIN_ID
from consensus.lanes.proposer import RejectReason
from node.availability_room import AvailabilityRoom
from node.lane_tracker import LaneTracker
from node.lanes_node import NodeLanes
from node.ledger import Ledger
from node.metrics import NodeMetrics
from node.router import Router
from node.storage import MAX_EVENT_ROWS
from node.txpool import TxPool


class NodeView:
    """The node as the RPC server sees it."""

    def __init__(
        self,
        *,
        index: int,
        transport_name: str,
        validators: int,
        chain_id: str = DEFAULT_CHAIN_ID,
        ledger: Ledger,
        txpool: TxPool,
        lanes: NodeLanes,
        lane_tracker: LaneTracker,
        router: Router,
        metrics: NodeMetrics,
        room: AvailabilityRoom | None = None,
        current_round: Callable[[], int],
        inbox_depth: Callable[[], int],
        recovered: bool,
    ):
        self.index = index
        self.chain_id = chain_id
        self.transport_name = transport_name
        self.validators = validators
        self.ledger = ledger
        self.txpool = txpool
        self.lanes = lanes
        self.lane_tracker = lane_tracker
        self.room = room  # certified lanes
        self.router = router
        self.metrics = metrics
        self._current_round = current_round
        self._inbox_depth = inbox_depth
        self.recovered = recovered
        self.started_s = time.monotonic()

    @property
    def dissemination(self) -> str:
        return "certified" if self.room is not None else "carried"

    def settled_slot(self) -> int:
        """Slots at or below this have had their lane blocks tracked (as far as this node
        can tell): what a sender may read redemptions of. Carried: the tracker height."""
        height = self.lanes.tracker_height
        return height if self.room is None else self.room.settled_slot(height)

    @property
    def _transport(self) -> Any:
        return self.router.transport

    # ------------------------------------------------------------------ writes

    def rpc_submit(self, txs: list[bytes]) -> dict[str, Any]:
        result = self.txpool.submit(txs)
        data: dict[str, Any] = result.as_dict()
        data["txids"] = [t.hex() for t in result.accepted_ids]
        return data

    def rpc_bundles(self, records: list[bytes]) -> dict[str, Any]:
        """Admit bundles (encoded lane entries) to this node's lane."""
        results = self.lanes.submit(records)
        accepted = sum(1 for r in results if r is None)
        rejected: dict[str, int] = {}
        for reason in results:
            if reason is not None:
                rejected[reason] = rejected.get(reason, 0) + 1
        self.metrics.bundles_accepted.inc(accepted)
        return {
            "lane": self.index,
            "accepted": accepted,
            "rejected": rejected,
            "results": results,
            "open_slot": self.lanes.open_slot,
            "finalized_height": self.ledger.finalized_height,
        }

    def rpc_bundle_refused(self, reason: str) -> None:
        """The HTTP layer refused a /bundle request before decoding it (e.g. oversized)."""
        self.lanes.count_rejection(RejectReason(reason))

    def rpc_set_isolated(self, isolated: bool) -> None:
        self.router.set_isolated(isolated)

    # ------------------------------------------------------------------ reads

    def rpc_status(self) -> dict[str, Any]:
        finality_p50 = self.metrics.finality.quantile(0.5)
        mempool = self.txpool.mempool
        return {
            "index": self.index,
            "chain_id": self.chain_id,  # what senders sign their tickets for
            "ledger": self._prices(),  # what a ticket and a payload cost (None: free)
            "transport": self.transport_name,
            "height": self.ledger.finalized_height,
            "finalized_block_id": self.ledger.finalized_id.hex(),
            "round": self._current_round(),
            "peers": sorted(self._transport.connected_peers()),
            "validators": self.validators,
            "mempool_txs": len(mempool),
            "tps": round(self.ledger.tps(self.started_s), 1),
            "finality_p50_ms": None if finality_p50 is None else round(finality_p50, 2),
            "uptime_s": round(time.monotonic() - self.started_s, 3),
            "recovered": self.recovered,
            "isolated": self.router.isolated,
            "pid": os.getpid(),
            "lane_open_slot": self.lanes.open_slot,
            "lane_tracker_height": self.lanes.tracker_height,
            "execution_order_hash": self.lanes.tracker.execution_order_hash.hex(),
            "payloads_decoded": self.lanes.tracker.counts["executed"],
            "lane_error": self.lane_tracker.error,
            "syncing": self.ledger.syncing,
            "sync_target_height": self.ledger.highest_block_height,
            "sync_behind_blocks": self.ledger.behind_blocks,
            "sync_blocks_per_s": round(self.ledger.blocks_per_s(), 1),
        }

    def rpc_blocks(self, first: int, last: int, with_txids: bool) -> list[dict[str, Any]]:
        blocks = []
        for row in self.ledger.storage.finalized_range(first, last):
            entry: dict[str, Any] = {
                "height": row.height,
                "block_id": row.block_id.hex(),
                "round": row.block_round,
                "timestamp_ns": row.timestamp_ns,
                "committed_ns": row.committed_ns,
                "voted_ns": row.voted_ns,
                "n_tx": row.n_tx,
            }
            if with_txids:
                entry["txids"] = row.txids.hex()
            blocks.append(entry)
        return blocks

    def rpc_payload(self, ident: bytes) -> dict[str, Any] | None:
        """A tx id (pending / finalized) or a Sedna payload id (its lane and tracker state)."""
        if ident in self.txpool.mempool:
            return {"kind": "tx", "id": ident.hex(), "state": "pending"}
        height = self.ledger.finalized_tx_height(ident)
        if height is not None:
            return {"kind": "tx", "id": ident.hex(), "state": "finalized", "height": height}
        return self._sedna_payload(ident)

    def _sedna_payload(self, cid: bytes) -> dict[str, Any] | None:
        base: dict[str, Any] = {
            "kind": "sedna",
            "id": cid.hex(),
            "tracker_height": self.lanes.tracker_height,
            "settled_slot": self.settled_slot(),
            "lane_accepted_bundles": self.lanes.accepted_bundles(cid),
        }
        row = self.ledger.storage.lane_event(cid)
        if row is not None:
            state = "decoded" if row.status == "executed" else row.status
            return {
                **base,
                "state": state,
                "height": row.height,
                "position": row.position if row.status == "executed" else None,
                "decided_ns": row.decided_ns,
                "kappa": row.kappa,
                "finalized_bundles": row.finalized_bundles,
                "first_slot": row.first_slot,
                "size_bytes": None if row.data is None else len(row.data),
            }
        status, finalized = self.lanes.payload_status(cid)
        if status == "pending":
            return {
                **base,
                "state": "pending",
                "finalized_bundles": len(finalized),
                "finalized_indices": finalized,
            }
        if base["lane_accepted_bundles"]:
            return {**base, "state": "submitted", "finalized_bundles": 0}
        return None

    def rpc_executions(self, first: int, last: int, with_data: bool) -> dict[str, Any]:
        """Decided payloads of heights first..last (capped), in execution order."""
        last = min(last, self.lanes.tracker_height)
        storage = self.ledger.storage
        rows = storage.lane_events(first, last, with_data=with_data) if first <= last else []
        next_height = last + 1
        if len(rows) >= MAX_EVENT_ROWS:  # truncated: end before the last (partial) height
            cut = rows[-1].height
            if cut > first:
                rows = [r for r in rows if r.height < cut]
            next_height = cut if cut > first else cut + 1
        events = []
        for r in rows:
            event: dict[str, Any] = {
                "id": r.payload_id.hex(),
                "status": r.status,
                "height": r.height,
                "position": r.position,
                "decided_ns": r.decided_ns,
            }
            if with_data and r.data is not None:
                event["data"] = r.data.hex()
            events.append(event)
        return {
            "tracker_height": self.lanes.tracker_height,
            "settled_slot": self.settled_slot(),
            "open_slot": self.lanes.open_slot,
            "next": next_height,
            "events": events,
        }

    def rpc_lanes(self, at_height: int | None) -> dict[str, Any]:
        """Lane and tracker state; with `at_height`, the stored execution-order hash there."""
        tracker = self.lanes.tracker
        data: dict[str, Any] = {
            "lane": self.index,
            "open_slot": self.lanes.open_slot,
            "tracker_height": self.lanes.tracker_height,
            "execution_order_hash": tracker.execution_order_hash.hex(),
            "decided": dict(tracker.counts),
            "tickets_redeemed": tracker.redeemed,
            "bundles_rejected": dict(self.lanes.proposer.rejected),
            "bundles_not_counted": dict(self.lane_tracker.not_counted),
            "held_lane_blocks": {str(k): v for k, v in self.lanes.held_slots().items()},
            "error": self.lane_tracker.error,
            "dissemination": self.dissemination,
            "ledger": self.ledger_state(),
        }
        if self.room is not None:
            data["availability"] = self.room.stats()
        if at_height is not None:
            stored = self.ledger.storage.lane_hash_at(at_height)
            data["at_height"] = at_height
            data["hash_at_height"] = None if stored is None else stored.hex()
            money = self.ledger.storage.ledger_at(at_height)
            data["ledger_at_height"] = (
                None
                if money is None
                else {
                    "ledger_hash": money.ledger_hash.hex(),
                    "fees_charged": money.fees_charged,
                    "bounties_paid": money.bounties_paid,
                    "burned": money.burned,
                }
            )
        return data

    def _prices(self) -> dict[str, int] | None:
        ledger = self.lanes.ledger
        if ledger is None:
            return None
        return {"fee": ledger.params.fee, "bounty": ledger.params.bounty}

    def ledger_state(self) -> dict[str, Any] | None:
        """The lanes' ledger after the tracker height (None without a `[ledger]`)."""
        ledger = self.lanes.ledger
        if ledger is None:
            return None
        totals = ledger.totals
        checkpoint = self.lane_tracker.ledger_checkpoint
        return {
            **(self._prices() or {}),
            "height": self.lanes.tracker_height,
            # the digest of the latest checkpoint (taken every LEDGER_CHECKPOINT_HEIGHTS)
            "ledger_hash": None if checkpoint is None else checkpoint.ledger_hash.hex(),
            "ledger_hash_height": None if checkpoint is None else checkpoint.height,
            "fees_charged": totals.fees_charged,
            "bounties_paid": totals.bounties_paid,
            "burned": totals.burned,
            "escrowed_now": ledger.escrowed_now(),
            "genesis_total": ledger.genesis_total,
            "conserved": ledger.conserved(),
            "lanes_earned": {str(lane): amount for lane, amount in sorted(ledger.lanes.items())},
        }

    def rpc_balance(self, sender: bytes) -> dict[str, Any] | None:
        """A sender's balance in the lanes' ledger after the tracker height (None without
        a `[ledger]`). A key without a genesis allocation holds 0 and can never pay."""
        ledger = self.lanes.ledger
        if ledger is None:
            return None
        return {
            "sender": sender.hex(),
            "balance": ledger.balance(sender),
            "funded": sender in ledger.balances,
            "height": self.lanes.tracker_height,
        }

    def rpc_stats(self) -> dict[str, Any]:
        dropped = {key[0]: value for key, value in self.metrics.dropped.items()}
        core_dropped = {key[0]: value for key, value in self.metrics.core_dropped.items()}
        mempool = self.txpool.mempool
        return {
            "index": self.index,
            "height": self.ledger.finalized_height,
            "round": self._current_round(),
            "finality_ms": self.metrics.finality.to_dict(),
            "speculative_ms": self.metrics.speculative.to_dict(),
            "accepted_tx": mempool.accepted_total,
            "finalized_local_tx": mempool.finalized_local_total,
            "mempool_txs": len(mempool),
            "committed_txs": int(self.metrics.committed_txs.total()),
            "tcs": int(self.metrics.tcs.total()),
            "reproposals": int(self.metrics.reproposals.total()),
            "necs": int(self.metrics.necs.total()),
            "equivocations": int(self.metrics.equivocations.total()),
            "dropped": dropped,
            "core_dropped": core_dropped,
            "transport": self._transport.stats(),
            "lanes": self._lane_stats(),
        }

    def _lane_stats(self) -> dict[str, Any]:
        c = self.lanes.counters
        proposer = self.lanes.proposer.stats
        return {
            "open_slot": self.lanes.open_slot,
            "tracker_height": self.lanes.tracker_height,
            "execution_order_hash": self.lanes.tracker.execution_order_hash.hex(),
            "decided": dict(self.lanes.tracker.counts),
            "tickets_redeemed": self.lanes.tracker.redeemed,
            "bundles_accepted": c.bundles_accepted,
            "bundles_rejected": dict(self.lanes.proposer.rejected),
            # redeemed in finalized lane blocks but not counted towards their payload
            "bundles_not_counted": dict(self.lane_tracker.not_counted),
            "ledger": self.ledger_state(),
            "bundles_included": proposer.included,
            "bundles_dropped_unsealed": proposer.dropped_unsealed,
            "lane_blocks": self._lane_block_counts(),
            "lane_frames_refused": dict(self.lanes.refused),
            "error": self.lane_tracker.error,
            "dissemination": self.dissemination,
            "availability": None if self.room is None else self.room.stats(),
        }

    def _lane_block_counts(self) -> dict[str, int]:
        c = self.lanes.counters
        return {
            "sealed": c.lane_blocks_sealed,
            "relayed": c.lane_blocks_relayed,
            "received": c.lane_blocks_received,
            "proposed": c.lane_blocks_proposed,
            "omitted": c.lane_blocks_omitted,
            "backup_used": c.backup_lane_blocks_used,
        }

    def rpc_metrics(self) -> str:
        transport = self._transport
        stats = transport.stats()
        for peer, counters in stats.get("peers", {}).items():
            self.metrics.peer_bytes_in.set(counters.get("bytes_in", 0), peer=peer)
            self.metrics.peer_bytes_out.set(counters.get("bytes_out", 0), peer=peer)
        for reason, count in stats.get("drops", {}).items():
            if count:
                self.metrics.transport_dropped.set(count, reason=reason)
        for reason, count in stats.get("handshake_failures", {}).items():
            self.metrics.handshake_failures.set(count, reason=reason)
        for reason, count in stats.get("conn_errors", {}).items():
            self.metrics.connection_errors.set(count, reason=reason)
        self.metrics.peers_connected.set(len(transport.connected_peers()))
        self.metrics.mempool_size.set(len(self.txpool.mempool))
        self.metrics.event_queue.set(self._inbox_depth())
        for reason, count in self.lanes.proposer.rejected.items():
            self.metrics.bundles_rejected.set(count, reason=reason)
        for event, count in self._lane_block_counts().items():
            self.metrics.lane_blocks.set(count, event=event)
        self.metrics.lane_open_slot.set(self.lanes.open_slot)
        if self.room is not None:
            for event, count in self.room.event_counts().items():
                self.metrics.availability.set(count, event=event)
        return self.metrics.registry.render()
