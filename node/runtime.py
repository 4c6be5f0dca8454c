"""The asyncio driver of one validator: feeds the consensus core, executes its commands.

Event sources, all on the event-loop thread:
- `Start` once, after storage, transport and RPC are up;
- `MessageReceived` for every frame the transport hands over (decoded with
  `codec.decode_message`; malformed frames are dropped and counted by reason);
- `TimerFired` from `loop.call_later` timers on the real clock (one pending timer per kind);
- `PayloadReady` from the mempool and the lanes, answering the core's `RequestPayload`.

Sedna lanes (`node/lanes_node.py`): bundles arrive over RPC; a vote for height s is
preceded by this lane's sealed lane block for slot s + 2, sent to that height's predicted
leader; lane frames from peers are verified in the transport callback; the leader adds
the lane blocks it holds to its payload. A separate task feeds finalized blocks, in height
order, to the decode tracker and stores its decisions (`_track_lanes`); it lags the
commit path by at most a few blocks and replays the finalized chain after a restart.

Events wait in two bounded queues: `internal` (timers, payloads, self-addressed messages:
at most a few per round, never dropped) and `inbox` (network messages: dropped with reason
`inbox_full` when `max_inbox_events` are waiting). The driver takes at most
`batch_events` events per turn and then yields to the loop, so transport and RPC I/O
interleave with consensus work.

Commands of one `handle()` call are executed strictly in order. `PersistSafety` writes
the safety state with an fsync before the next command runs, so a vote or timeout never
leaves the process before the state that forbids contradicting it is on disk
("persist before send"). The optional test hook `crash_after_persist_safety = N` exits
the process (code `CRASH_EXIT_CODE`) right after the N-th safety write that protects a
vote, before that vote is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from consensus.codec import DecodeError, decode_message, encode_message
from consensus.crypto import KeyPair, scheme_by_name
from consensus.events import (
    Broadcast,
    CancelTimer,
    CommitBlocks,
    Event,
    MarkVoted,
    MessageReceived,
    PayloadReady,
    PersistBlock,
    PersistSafety,
    RecordEquivocation,
    RequestPayload,
    RevertVoted,
    RoundEntered,
    Send,
    SetTimer,
    Start,
    TimerFired,
    Trace,
)
from consensus.lanes.payload import build_block_payload
from consensus.lanes.wire import LanePayloadError
from consensus.messages import (
    GENESIS_BLOCK_ID,
    MAX_PAYLOAD_BYTES,
    BlockBody,
    BlockHeader,
    BlockSyncRequest,
    BlockSyncResponse,
    Message,
    SyncedBlock,
    Vote,
    VoteMessage,
)
from consensus.validators import ValidatorSet, schedule_by_name
from node.config import NodeConfig
from node.lanes_node import (
    PAYLOAD_BYTES_RESERVE,
    NodeBlockValidator,
    NodeLanes,
    is_lane_frame,
)
from node.logs import get_logger, log
from node.mempool import Mempool, PayloadError, PlainPayloadValidator, decode_plain_payload, tx_id
from node.metrics import NodeMetrics
from node.rpc import RpcServer
from node.storage import (
    MAX_EVENT_ROWS,
    FinalizedRow,
    LaneEventRow,
    LaneHeightRow,
    Storage,
    short_id,
)

CRASH_EXIT_CODE = 75
MAX_INBOX_EVENTS = 20_000
MAX_INTERNAL_EVENTS = 1_000
BATCH_EVENTS = 256
MAX_BLOCK_META = 4_096
MAX_RECENT_FINAL_TXIDS = 400_000
TPS_WINDOW_S = 10.0
MAX_SYNC_RESPONSE_BYTES = 8 * 1024 * 1024
MAX_LANE_BACKLOG = 1024  # finalized bodies kept in memory for the tracker (else read back)
LANE_BATCH_BLOCKS = 64


def _drop_reason(error: DecodeError) -> str:
    """A small, fixed set of labels for undecodable frames."""
    text = str(error)
    if text.startswith("empty frame"):
        return "empty_frame"
    if "exceeds the limit" in text:
        return "frame_too_large"
    if text.startswith("unsupported wire version"):
        return "bad_version"
    return "malformed"


def _normalize_reason(reason: str) -> str:
    """A bounded label from a core drop reason: digits folded, at most 80 characters."""
    return "".join("N" if ch.isdigit() else ch for ch in reason)[:80]


@dataclass(slots=True)
class _BlockMeta:
    parent_id: bytes
    seq_num: int
    txids: tuple[bytes, ...]


class NodeRuntime:
    """One validator process: storage, mempool, core, transport, RPC, metrics."""

    def __init__(
        self,
        config: NodeConfig,
        key: KeyPair,
        *,
        max_inbox_events: int = MAX_INBOX_EVENTS,
        exit_process: Callable[[int], None] = os._exit,
    ):
        from consensus.core import ConsensusCore, CoreConfig

        self.config = config
        self.key = key
        self.index = config.index
        self.log = get_logger()
        self.metrics = NodeMetrics()
        self._exit_process = exit_process
        self.validators = ValidatorSet.from_keys(
            [v.public_key for v in config.validators], [v.stake for v in config.validators]
        )
        self.schedule = schedule_by_name(config.consensus.schedule, self.validators)
        self.scheme = scheme_by_name(config.consensus.signature_scheme)
        m = config.mempool
        self.storage = Storage(config.node.data_dir)
        # A restarted lane never re-seals a slot it may have sealed before: sealing runs
        # at most SEAL_AHEAD_SLOTS past a voted block, and voted blocks are stored first.
        self.lanes = NodeLanes(
            index=self.index,
            key=key,
            scheme=self.scheme,
            validators=self.validators,
            schedule=self.schedule,
            first_open_slot=self.storage.max_block_seq() + 3,
        )
        self.block_validator = NodeBlockValidator(
            PlainPayloadValidator(
                m.max_block_txs, m.max_tx_bytes, m.max_block_bytes, lanes=self.lanes.validator
            ),
            self.lanes,
        )
        self.mempool = Mempool(
            max_txs=m.max_txs,
            max_tx_bytes=m.max_tx_bytes,
            max_block_txs=m.max_block_txs,
            max_block_bytes=m.max_block_bytes,
            storage=self.storage,
        )
        recovered = self.storage.load_recovered()
        c = config.consensus
        mutations: frozenset[str] = frozenset()
        core_config = CoreConfig(
            protocol=c.protocol,  # type: ignore[arg-type]
            delta_ms=c.delta_ms,
            vote_pace_ms=c.vote_pace_ms,
            round_timeout_ms=c.round_timeout_ms,
            timeout_backoff=c.timeout_backoff,
            max_round_timeout_ms=c.max_round_timeout_ms,
            epoch=c.epoch,
            test_mutations=mutations,
        )
        self.core = ConsensusCore(
            config=core_config,
            validators=self.validators,
            schedule=self.schedule,
            index=self.index,
            key=key,
            scheme=self.scheme,
            block_validator=self.block_validator,
            recovered=recovered,
        )
        self.recovered = recovered is not None
        self.finalized_height, self.finalized_id = self.storage.finalized_head()
        self.lanes.finalized_height = self.finalized_height
        self._lane_stored_height = self.storage.lane_height()
        self._lane_backlog: dict[int, tuple[BlockHeader, BlockBody]] = {}
        self._lane_wake = asyncio.Event()
        self.lane_error: str | None = None

        from node.transport import PeerAddress, create_transport

        peers = {
            v.index: PeerAddress(v.index, v.host, v.port, v.public_key) for v in config.validators
        }
        self.transport = create_transport(
            config.network.transport,  # type: ignore[arg-type]
            index=self.index,
            key=key,
            listen_host=config.network.listen_host,
            listen_port=config.network.listen_port,
            peers=peers,
            on_frame=self._on_frame,
        )
        self.rpc = RpcServer(
            self,
            config.network.rpc_host,
            config.network.rpc_port,
            admin_enabled=config.network.admin_rpc,
            admin_token_file=config.network.admin_token_file,
            metrics=self.metrics,
        )

        self._inbox: deque[Event] = deque()
        self._internal: deque[Event] = deque()
        self._max_inbox = max_inbox_events
        self._wake = asyncio.Event()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._stopping = asyncio.Event()
        self._block_meta: dict[bytes, _BlockMeta] = {}
        self._voted_ns: dict[bytes, int] = {}
        self._recent_final: dict[bytes, int] = {}  # txid -> height (bounded, insertion order)
        self._commit_times: deque[tuple[float, int]] = deque(maxlen=4096)
        self._started_s = time.monotonic()
        self.current_round = 0
        self.isolated = False
        self._crash_countdown = config.test.crash_after_persist_safety
        self._byzantine = config.test.byzantine
        self._log_votes = config.test.log_votes
        self._signer: Any = None
        if self._byzantine == "double_vote":
            from consensus.certificates import Signer

            self._signer = Signer(self.index, key, self.scheme)
        self._handlers: dict[type, Callable[[Any], None]] = {
            Send: self._do_send,
            Broadcast: self._do_broadcast,
            SetTimer: self._do_set_timer,
            CancelTimer: self._do_cancel_timer,
            PersistSafety: self._do_persist_safety,
            PersistBlock: self._do_persist_block,
            RequestPayload: self._do_request_payload,
            CommitBlocks: self._do_commit,
            MarkVoted: self._do_mark_voted,
            RecordEquivocation: self._do_equivocation,
            RevertVoted: self._do_revert,
            RoundEntered: self._do_round_entered,
            Trace: self._do_trace,
        }

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """Start everything, drive the core until `stop()` is called, then shut down."""
        await self.transport.start()
        await self.rpc.start()
        log(
            self.log,
            "node_started",
            index=self.index,
            transport=self.config.network.transport,
            listen_port=self.config.network.listen_port,
            rpc_port=self.rpc.port,
            recovered=self.recovered,
            finalized_height=self.finalized_height,
            mempool=len(self.mempool),
        )
        self._internal.append(Start(now_ns=time.time_ns()))
        tasks = [
            asyncio.create_task(self._drive(), name="drive"),
            asyncio.create_task(self._track_lanes(), name="lanes"),
        ]
        if self._byzantine == "malformed":
            tasks.append(asyncio.create_task(self._spray_malformed(), name="malformed"))
        try:
            await self._stopping.wait()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task
            await self._shutdown()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        self._lane_wake.set()

    async def _shutdown(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        await self.rpc.stop()
        await self.transport.stop()
        self.storage.close()
        log(self.log, "node_stopped", finalized_height=self.finalized_height)

    # ------------------------------------------------------------------ event intake

    def _on_frame(self, peer: int, frame: bytes) -> None:
        """Transport callback: decode, then queue (bounded) for the core."""
        if is_lane_frame(frame):  # a relayed lane block: verified here, never reaches the core
            reason = self.lanes.on_lane_frame(peer, frame)
            self.metrics.lane_frames.inc(result=reason or "held")
            return
        try:
            message = decode_message(frame)
        except DecodeError as exc:
            self.metrics.dropped.inc(reason=_drop_reason(exc))
            return
        self.metrics.received.inc(peer=peer, type=type(message).__name__)
        if self._log_votes and isinstance(message, VoteMessage):
            self._log_vote("vote_received", peer, message)
        if isinstance(message, BlockSyncRequest):
            self._serve_sync(peer, message)  # answered from storage, not the core
            return
        # Bound: at most max_inbox network events wait for the core.
        if len(self._inbox) >= self._max_inbox:
            self.metrics.dropped.inc(reason="inbox_full")
            return
        self._inbox.append(MessageReceived(now_ns=time.time_ns(), sender=peer, message=message))
        self._wake.set()

    def _serve_sync(self, peer: int, request: BlockSyncRequest) -> None:
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
            size_bytes += len(body.payload) + 1024
            if blocks and size_bytes > MAX_SYNC_RESPONSE_BYTES:
                break
            blocks.append(SyncedBlock(tip=tip, body=body))
            block_id = tip.header.parent_id
        response = BlockSyncResponse(block_id=request.block_id, blocks=tuple(blocks))
        self.transport.send(peer, self._frame(response))
        self.metrics.sent.inc(peer=peer, type="BlockSyncResponse")

    def _push_internal(self, event: Event) -> None:
        # Bound: internal events are a few per round; overflowing them is a driver bug.
        if len(self._internal) >= MAX_INTERNAL_EVENTS:
            self.metrics.dropped.inc(reason="internal_full")
            log(self.log, "internal_queue_full", logging.ERROR, event=type(event).__name__)
            return
        self._internal.append(event)
        self._wake.set()

    async def _drive(self) -> None:
        while not self._stopping.is_set():
            if not self._internal and not self._inbox:
                self._wake.clear()
                await self._wake.wait()
                continue
            for _ in range(BATCH_EVENTS):
                if self._internal:
                    event = self._internal.popleft()
                elif self._inbox:
                    event = self._inbox.popleft()
                else:
                    break
                self._handle(event)
            self.metrics.event_queue.set(len(self._inbox))
            await asyncio.sleep(0)

    def _handle(self, event: Event) -> None:
        try:
            commands = self.core.handle(event)
        except Exception as exc:  # a core bug must not take the node down silently
            self.metrics.dropped.inc(reason="core_error")
            log(
                self.log,
                "core_error",
                logging.ERROR,
                event=type(event).__name__,
                error=f"{type(exc).__name__}: {exc}",
            )
            return
        self._execute(commands)

    def _execute(self, commands: list[Any]) -> None:
        """Run commands strictly in order (persist before send)."""
        for position, command in enumerate(commands):
            self._handlers[type(command)](command)
            if isinstance(command, PersistSafety) and self._crash_countdown:
                self._maybe_crash(commands[position + 1 :])

    # ------------------------------------------------------------------ commands

    def _frame(self, message: Message) -> bytes:
        return encode_message(message)

    def _do_send(self, command: Send) -> None:
        if self._byzantine == "silent":
            return
        name = type(command.message).__name__
        if isinstance(command.message, VoteMessage):
            self._relay_lane_block(command.message)
        if command.to == self.index:
            self._push_internal(
                MessageReceived(now_ns=time.time_ns(), sender=self.index, message=command.message)
            )
            return
        self.transport.send(command.to, self._frame(command.message))
        self.metrics.sent.inc(peer=command.to, type=name)
        if isinstance(command.message, VoteMessage):
            if self._log_votes:
                self._log_vote("vote_sent", command.to, command.message)
            if self._byzantine == "double_vote":
                self._send_conflicting_vote(command.to, command.message)

    def _relay_lane_block(self, message: VoteMessage) -> None:
        """Before a vote leaves: this lane's block for slot (voted height + 2) to the
        leaders that may propose it (same connection, so it arrives before the vote)."""
        meta = self._block_meta.get(message.vote.block_id)
        if meta is None:
            return
        for peer, frame in self.lanes.on_vote(meta.seq_num, message.vote.round):
            self.transport.send(peer, frame)
            self.metrics.sent.inc(peer=peer, type="LaneBlock")

    def _do_broadcast(self, command: Broadcast) -> None:
        if self._byzantine == "silent":
            return
        self.transport.broadcast(self._frame(command.message))
        self.metrics.sent.inc(peer="all", type=type(command.message).__name__)
        if isinstance(command.message, VoteMessage) and self._log_votes:
            self._log_vote("vote_sent", -1, command.message)

    def _do_set_timer(self, command: SetTimer) -> None:
        old = self._timers.pop(command.kind, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self._timers[command.kind] = loop.call_later(
            max(0.0, command.delay_ms) / 1000.0, self._timer_fired, command.kind, command.round
        )

    def _timer_fired(self, kind: str, round: int) -> None:
        self._timers.pop(kind, None)
        self._push_internal(TimerFired(now_ns=time.time_ns(), kind=kind, round=round))  # type: ignore[arg-type]

    def _do_cancel_timer(self, command: CancelTimer) -> None:
        handle = self._timers.pop(command.kind, None)
        if handle is not None:
            handle.cancel()

    def _do_persist_safety(self, command: PersistSafety) -> None:
        self.storage.save_safety(command.state)
        self.metrics.safety_writes.inc()

    def _maybe_crash(self, rest: list[Any]) -> None:
        """Test hook: die right after a safety write that protects a vote about to be sent."""
        votes = [
            c.message
            for c in rest
            if isinstance(c, Send | Broadcast) and isinstance(c.message, VoteMessage)
        ]
        if not votes:
            return
        self._crash_countdown -= 1
        if self._crash_countdown > 0:
            return
        vote = votes[0].vote
        log(
            self.log,
            "test_crash_after_persist_safety",
            logging.WARNING,
            round=vote.round,
            block_id=vote.block_id.hex(),
        )
        for handler in self.log.handlers:
            handler.flush()
        self._exit_process(CRASH_EXIT_CODE)

    def _block_txids(self, body: BlockBody) -> tuple[bytes, ...]:
        m = self.config.mempool
        try:
            # the lane blocks are the lane rules' business: skipped here, not decoded
            txs = decode_plain_payload(
                body.payload, m.max_block_txs, m.max_tx_bytes, lanes_checked=True
            )
        except PayloadError:
            return ()
        return tuple(tx_id(tx) for tx in txs)

    def _do_persist_block(self, command: PersistBlock) -> None:
        self.storage.put_block(command.block_id, command.tip, command.body)
        if command.block_id not in self._block_meta:
            if len(self._block_meta) >= MAX_BLOCK_META:
                self._prune_block_meta(force=True)
            header = command.tip.header
            self._block_meta[command.block_id] = _BlockMeta(
                header.parent_id, header.seq_num, self._block_txids(command.body)
            )

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

    def _pending_ancestor_txids(self, parent_id: bytes) -> set[bytes]:
        """Tx ids inside the not-yet-finalized ancestors of a new block."""
        exclude: set[bytes] = set()
        block_id = parent_id
        for _ in range(MAX_BLOCK_META):  # bound: the chain above the finalized head
            meta = self._block_meta.get(block_id)
            if meta is None or meta.seq_num <= self.finalized_height:
                break
            exclude.update(meta.txids)
            block_id = meta.parent_id
        return exclude

    def _do_request_payload(self, command: RequestPayload) -> None:
        exclude = self._pending_ancestor_txids(command.parent_id)
        txs, ids = self.mempool.select(exclude)
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

    def _do_commit(self, command: CommitBlocks) -> None:
        now_ns = time.time_ns()
        rows: list[FinalizedRow] = []
        all_txids: list[bytes] = []
        for committed in command.blocks:
            meta = self._block_meta.get(committed.block_id)
            txids = meta.txids if meta is not None else self._block_txids(committed.body)
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
            for txid in txids:
                self._recent_final[txid] = header.seq_num
        self.storage.commit_blocks(rows, all_txids)
        for committed in command.blocks:
            height = committed.header.seq_num
            self.lanes.on_finalized(height)
            # Bound: beyond MAX_LANE_BACKLOG the tracker reads the bodies back from storage.
            if len(self._lane_backlog) < MAX_LANE_BACKLOG and height > self.lanes.tracker_height:
                self._lane_backlog[height] = (committed.header, committed.body)
        self._lane_wake.set()
        accept_times = self.mempool.on_finalized(all_txids)
        self.metrics.observe_finality((now_ns - t) / 1e6 for t in accept_times)
        if rows:
            last = rows[-1]
            self.finalized_height, self.finalized_id = last.height, last.block_id
        self.metrics.height.set(self.finalized_height)
        self.metrics.committed_blocks.inc(len(rows))
        self.metrics.committed_txs.inc(len(all_txids))
        self._commit_times.append((time.monotonic(), len(all_txids)))
        while len(self._recent_final) > MAX_RECENT_FINAL_TXIDS:
            del self._recent_final[next(iter(self._recent_final))]
        self._prune_block_meta()

    # ------------------------------------------------------------------ decode tracker

    async def _track_lanes(self) -> None:
        """Feed finalized blocks to the decode tracker in height order and store results.

        One block per step, yielding in between, so decoding interleaves with consensus.
        Heights at or below the stored lane height are a replay (after a restart): their
        execution-order hash must equal the stored one, and nothing is stored again.
        """
        while not self._stopping.is_set():
            if self.lane_error is not None or self.lanes.tracker_height >= self.finalized_height:
                self._lane_wake.clear()
                await self._lane_wake.wait()
                continue
            first = self.lanes.tracker_height + 1
            item = self._lane_backlog.pop(first, None)
            blocks = (
                [item]
                if item is not None
                else [(t.header, b) for t, b in self.storage.finalized_blocks(first, 1)]
            )
            if not blocks:  # pragma: no cover - the finalized table has every height
                self._fail_lanes(f"finalized block {first} missing from storage")
                continue
            for header, body in blocks:
                self._track_block(header, body)
            await asyncio.sleep(0)

    def _track_block(self, header: BlockHeader, body: BlockBody) -> None:
        try:
            outcome, n_txs = self.lanes.track(header, body)
        except (ValueError, LanePayloadError) as exc:
            self._fail_lanes(f"height {header.seq_num}: {exc}")
            return
        now_ns = time.time_ns()
        height = outcome.height
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
                    position=event.position + n_txs if event.status == "executed" else -1,
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
        if height <= self._lane_stored_height:  # replay: must reproduce the stored hash
            stored = self.storage.lane_hash_at(height)
            if stored is not None and stored != outcome.execution_order_hash:
                self.metrics.replay_mismatch.inc()
                self._fail_lanes(f"replayed execution-order hash differs at height {height}")
            return
        row = LaneHeightRow(
            height=height,
            exec_hash=outcome.execution_order_hash,
            executed=counts["executed"],
            rejected=counts["rejected"],
            expired=counts["expired"],
            redeemed=len(outcome.redemptions),
        )
        self.storage.lane_record([row], events)
        self._lane_stored_height = height

    def _fail_lanes(self, error: str) -> None:
        """Stop tracking (the consensus node keeps running); /status shows the error."""
        self.lane_error = error
        self.metrics.dropped.inc(reason="lane_tracker_error")
        log(self.log, "lane_tracker_error", logging.ERROR, error=error)

    def _do_mark_voted(self, command: MarkVoted) -> None:
        now_ns = time.time_ns()
        self._voted_ns.setdefault(command.block_id, now_ns)
        meta = self._block_meta.get(command.block_id)
        if meta is None:
            return
        for accepted_ns in self.mempool.mark_voted(meta.txids):
            self.metrics.speculative.observe((now_ns - accepted_ns) / 1e6)

    def _do_equivocation(self, command: RecordEquivocation) -> None:
        self.metrics.equivocations.inc()
        evidence = command.evidence
        log(
            self.log,
            "equivocation",
            logging.WARNING,
            leader=evidence.leader,
            block_round=evidence.block_round,
        )

    def _do_revert(self, command: RevertVoted) -> None:
        self.metrics.reverts.inc()
        self._voted_ns.pop(command.block_id, None)
        log(
            self.log,
            "voted_reverted",
            logging.WARNING,
            block_id=command.block_id,
            seq_num=command.seq_num,
        )

    def _do_round_entered(self, command: RoundEntered) -> None:
        self.current_round = command.round
        self.metrics.round.set(command.round)
        self.metrics.rounds_entered.inc(via=command.via)

    def _do_trace(self, command: Trace) -> None:
        name = command.name
        self.metrics.traces.inc(name=name)
        if name == "dropped":
            reason = str(command.detail.get("reason", "unknown"))
            self.metrics.core_dropped.inc(reason=_normalize_reason(reason))
            return
        if name in ("tc_formed", "tc_received", "tc"):
            self.metrics.tcs.inc()
        elif name in ("reproposal", "reproposed"):
            self.metrics.reproposals.inc()
        elif name in ("nec_formed", "nec"):
            self.metrics.necs.inc()

    # ------------------------------------------------------------------ Byzantine test modes

    def _send_conflicting_vote(self, to: int, message: VoteMessage) -> None:
        """TEST ONLY (`byzantine = "double_vote"`): a second, conflicting vote in the round."""
        other = Vote(
            block_id=hashlib.sha256(b"conflict" + message.vote.block_id).digest(),
            round=message.vote.round,
            epoch=message.vote.epoch,
        )
        self.transport.send(to, self._frame(self._signer.vote(other)))

    async def _spray_malformed(self) -> None:
        """TEST ONLY (`byzantine = "malformed"`): authenticated peers send garbage frames."""
        garbage = [b"", b"\x07garbage", b"\x01\xff\xff\xff", os.urandom(512)]
        while True:
            for frame in garbage:
                self.transport.broadcast(frame)
            await asyncio.sleep(0.05)

    def _log_vote(self, event: str, peer: int, message: VoteMessage) -> None:
        log(
            self.log,
            event,
            peer=peer,
            author=message.author,
            round=message.vote.round,
            block_id=message.vote.block_id.hex(),
        )

    # ------------------------------------------------------------------ RPC backend

    def _tps(self) -> float:
        now = time.monotonic()
        window = [(t, n) for t, n in self._commit_times if now - t <= TPS_WINDOW_S]
        if not window:
            return 0.0
        span = max(1.0, min(TPS_WINDOW_S, now - self._started_s))
        return sum(n for _, n in window) / span

    def rpc_submit(self, txs: list[bytes]) -> dict[str, Any]:
        result = self.mempool.submit(txs, time.time_ns())
        self.metrics.txs_accepted.inc(result.accepted)
        for reason in ("duplicate", "already_final", "too_large", "full"):
            count = getattr(result, reason)
            if count:
                self.metrics.txs_rejected.inc(count, reason=reason)
        self.metrics.mempool_size.set(len(self.mempool))
        data: dict[str, Any] = result.as_dict()
        data["txids"] = [t.hex() for t in result.accepted_ids]
        return data

    def rpc_status(self) -> dict[str, Any]:
        finality_p50 = self.metrics.finality.quantile(0.5)
        return {
            "index": self.index,
            "transport": self.config.network.transport,
            "height": self.finalized_height,
            "finalized_block_id": self.finalized_id.hex(),
            "round": self.current_round,
            "peers": sorted(self.transport.connected_peers()),
            "validators": len(self.validators),
            "mempool_txs": len(self.mempool),
            "tps": round(self._tps(), 1),
            "finality_p50_ms": None if finality_p50 is None else round(finality_p50, 2),
            "uptime_s": round(time.monotonic() - self._started_s, 3),
            "recovered": self.recovered,
            "isolated": self.isolated,
            "pid": os.getpid(),
            "lane_open_slot": self.lanes.open_slot,
            "lane_tracker_height": self.lanes.tracker_height,
            "execution_order_hash": self.lanes.tracker.execution_order_hash.hex(),
            "payloads_decoded": self.lanes.tracker.counts["executed"],
            "lane_error": self.lane_error,
        }

    def rpc_blocks(self, first: int, last: int, with_txids: bool) -> list[dict[str, Any]]:
        blocks = []
        for row in self.storage.finalized_range(first, last):
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
        if ident in self.mempool:
            return {"kind": "tx", "id": ident.hex(), "state": "pending"}
        height = self._recent_final.get(ident)
        if height is not None:
            return {"kind": "tx", "id": ident.hex(), "state": "finalized", "height": height}
        return self._sedna_payload(ident)

    def _sedna_payload(self, cid: bytes) -> dict[str, Any] | None:
        base: dict[str, Any] = {
            "kind": "sedna",
            "id": cid.hex(),
            "tracker_height": self.lanes.tracker_height,
            "lane_accepted_bundles": self.lanes.accepted_bundles(cid),
        }
        row = self.storage.lane_event(cid)
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
            "finalized_height": self.finalized_height,
        }

    def rpc_bundle_refused(self, reason: str) -> None:
        """The HTTP layer refused a /bundle request before decoding it (e.g. oversized)."""
        from consensus.lanes.proposer import RejectReason

        self.lanes.count_rejection(RejectReason(reason))

    def rpc_executions(self, first: int, last: int, with_data: bool) -> dict[str, Any]:
        """Decided payloads of heights first..last (capped), in execution order."""
        last = min(last, self.lanes.tracker_height)
        rows = self.storage.lane_events(first, last, with_data=with_data) if first <= last else []
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
            "held_lane_blocks": {str(k): v for k, v in self.lanes.held_slots().items()},
            "error": self.lane_error,
        }
        if at_height is not None:
            stored = self.storage.lane_hash_at(at_height)
            data["at_height"] = at_height
            data["hash_at_height"] = None if stored is None else stored.hex()
        return data

    def rpc_stats(self) -> dict[str, Any]:
        dropped = {key[0]: value for key, value in self.metrics.dropped.items()}
        core_dropped = {key[0]: value for key, value in self.metrics.core_dropped.items()}
        return {
            "index": self.index,
            "height": self.finalized_height,
            "round": self.current_round,
            "finality_ms": self.metrics.finality.to_dict(),
            "speculative_ms": self.metrics.speculative.to_dict(),
            "accepted_tx": self.mempool.accepted_total,
            "finalized_local_tx": self.mempool.finalized_local_total,
            "mempool_txs": len(self.mempool),
            "committed_txs": int(self.metrics.committed_txs.total()),
            "tcs": int(self.metrics.tcs.total()),
            "reproposals": int(self.metrics.reproposals.total()),
            "necs": int(self.metrics.necs.total()),
            "dropped": dropped,
            "core_dropped": core_dropped,
            "transport": self.transport.stats(),
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
            "bundles_included": proposer.included,
            "bundles_dropped_unsealed": proposer.dropped_unsealed,
            "lane_blocks": self._lane_block_counts(),
            "lane_frames_refused": dict(self.lanes.refused),
            "error": self.lane_error,
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
        stats = self.transport.stats()
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
        self.metrics.peers_connected.set(len(self.transport.connected_peers()))
        self.metrics.mempool_size.set(len(self.mempool))
        self.metrics.event_queue.set(len(self._inbox))
        for reason, count in self.lanes.proposer.rejected.items():
            self.metrics.bundles_rejected.set(count, reason=reason)
        for event, count in self._lane_block_counts().items():
            self.metrics.lane_blocks.set(count, event=event)
        self.metrics.lane_open_slot.set(self.lanes.open_slot)
        return self.metrics.registry.render()

    def rpc_set_isolated(self, isolated: bool) -> None:
        self.isolated = isolated
        self.transport.set_isolated(isolated)
        log(self.log, "isolation", isolated=isolated)


# --------------------------------------------------------------------------- process entry


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when it is installed, else the default asyncio loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is an optional dependency
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run_node(config: NodeConfig, key: KeyPair) -> int:
    """Run one validator in this process until SIGTERM/SIGINT. Returns the exit code."""
    import signal
    import sys

    from node.logs import setup_logging
    from node.storage import StorageError

    logger = setup_logging(
        config.node.log_level, node_index=config.index, log_file=config.node.log_file
    )

    async def main() -> int:
        try:
            runtime = NodeRuntime(config, key)
        except StorageError as exc:
            log(logger, "storage_error", logging.ERROR, error=str(exc))
            print(f"sedna node: storage error: {exc}", file=sys.stderr)
            return 1
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, runtime.stop)
        try:
            await runtime.run()
        except OSError as exc:
            log(logger, "startup_failed", logging.ERROR, error=str(exc))
            print(f"sedna node: cannot start: {exc}", file=sys.stderr)
            return 1
        return 0

    profile_dir = os.environ.get("SEDNA_PROFILE_DIR")  # benchmark aid: cProfile this node
    if profile_dir:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
        try:
            with asyncio.Runner(loop_factory=new_event_loop) as runner:
                return runner.run(main())
        finally:
            profiler.disable()
            profiler.dump_stats(os.path.join(profile_dir, f"node{config.index}.prof"))
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main())
