"""The asyncio driver of one validator: feeds the consensus core, runs its commands.

Event sources, all on the event-loop thread:
- `Start` once, after storage, transport and RPC are up;
- `MessageReceived` for every frame the transport hands over (decoded with
  `codec.decode_message`; malformed frames are dropped and counted by reason);
- `TimerFired` from the timer room (`node/timers.py`);
- `PayloadReady` from the tx pool (`node/txpool.py`), answering the core's `RequestPayload`.

Events wait in two bounded queues (`EventQueue`): `internal` (timers, payloads,
self-addressed messages: at most a few per round, never dropped) and `inbox` (network
messages: dropped with reason `inbox_full` when `max_inbox_events` are waiting). The
driver spends at most `BATCH_EVENTS` work units per turn (an event is one unit, a sync
response one more per block it carries) and then yields to the loop, so transport and
RPC I/O interleave with consensus work, also while a node catches up.

Commands of one `handle()` call are executed strictly in order, each by the room that owns
its kind of side effect (`routes`: one entry per command type, checked at construction).
`PersistSafety` writes the safety state with an fsync before the next command runs, so a
vote or timeout never leaves the process before the state that forbids contradicting it is
on disk ("persist before send"). The rooms: `node/router.py` (frames to peers),
`node/timers.py`, `node/ledger.py` (durable blocks and the finalized chain),
`node/txpool.py` (mempool and proposal payloads), `node/lane_tracker.py` (decode
tracking), `node/availability_room.py` (certified lanes: fed persisted blocks, finalized
blocks and availability frames), `node/api_view.py` (what RPC reads); `node/assembly.py`
wires them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, get_args

from consensus.codec import DecodeError, decode_message
from consensus.events import (
    Broadcast,
    CancelTimer,
    Command,
    CommitBlocks,
    Event,
    MarkVoted,
    MessageReceived,
    PersistBlock,
    PersistSafety,
    RecordEquivocation,
    RequestPayload,
    RevertVoted,
    RoundEntered,
    Send,
    SetTimer,
    Start,
    Trace,
    TraceName,
)
from consensus.messages import (
    BlockSyncRequest,
    BlockSyncResponse,
    ChainSyncRequest,
    ChainSyncResponse,
    VoteMessage,
)
from node.api_view import NodeView
from node.availability_room import AvailabilityRoom, is_availability_frame
from node.lane_tracker import LaneTracker
from node.lanes_node import NodeLanes, is_lane_frame
from node.ledger import Ledger
from node.logs import log
from node.metrics import NodeMetrics
from node.router import Router
from node.sync_server import SyncServer
from node.timers import Timers
from node.txforward import is_tx_frame
from node.txpool import TxPool

FATAL_ERROR_EXIT_CODE = 70  # sysexits EX_SOFTWARE: the core or a command executor raised
MAX_INBOX_EVENTS = 20_000
MAX_INTERNAL_EVENTS = 1_000
BATCH_EVENTS = 256


def _normalize_reason(reason: str) -> str:
    """A bounded label from a core drop reason: digits folded, at most 80 characters."""
    return "".join("N" if ch.isdigit() else ch for ch in reason)[:80]


def _event_weight(event: Event) -> int:
    """Work units of one event for the per-turn budget: a sync response costs one unit per
    block it carries, so a turn applies at most ~BATCH_EVENTS blocks before yielding."""
    if isinstance(event, MessageReceived) and isinstance(
        event.message, BlockSyncResponse | ChainSyncResponse
    ):
        return 1 + len(event.message.blocks)
    return 1


class EventQueue:
    """The core's two bounded event queues and the driver's wake-up signal."""

    def __init__(self, metrics: NodeMetrics, logger: logging.Logger, max_inbox_events: int):
        self.metrics = metrics
        self.log = logger
        self.max_inbox_events = max_inbox_events
        self.inbox: deque[Event] = deque()
        self.internal: deque[Event] = deque()
        self.wake = asyncio.Event()

    def push_internal(self, event: Event) -> None:
        # Bound: internal events are a few per round; overflowing them is a driver bug.
        if len(self.internal) >= MAX_INTERNAL_EVENTS:
            self.metrics.dropped.inc(reason="internal_full")
            log(self.log, "internal_queue_full", logging.ERROR, kind=type(event).__name__)
            return
        self.internal.append(event)
        self.wake.set()

    def push_network(self, event: Event) -> None:
        # Bound: at most max_inbox_events network events wait for the core.
        if len(self.inbox) >= self.max_inbox_events:
            self.metrics.dropped.inc(reason="inbox_full")
            return
        self.inbox.append(event)
        self.wake.set()

    def pop(self) -> Event | None:
        """The next event: internal ones first."""
        if self.internal:
            return self.internal.popleft()
        if self.inbox:
            return self.inbox.popleft()
        return None

    def __len__(self) -> int:
        return len(self.internal) + len(self.inbox)


class NodeRuntime:
    """One validator process: the core, its event queues, and the rooms that run commands."""

    def __init__(
        self,
        *,
        config: Any,
        core: Any,
        queue: EventQueue,
        ledger: Ledger,
        txpool: TxPool,
        lanes: NodeLanes,
        lane_tracker: LaneTracker,
        router: Router,
        room: AvailabilityRoom | None = None,
        timers: Timers,
        sync_server: SyncServer,
        transport: Any,
        metrics: NodeMetrics,
        logger: logging.Logger,
        recovered: bool,
    ):
        self.config = config
        self.index: int = config.index
        self.core = core
        self.queue = queue
        self.ledger = ledger
        self.txpool = txpool
        self.lanes = lanes
        self.lane_tracker = lane_tracker
        self.room = room  # certified lanes (node/availability_room.py); None when carried
        self.router = router
        self.timers = timers
        self.sync_server = sync_server
        self.transport = transport
        self.view: NodeView | None = None
        self.rpc: Any = None  # the RPC server, attached with its view (`attach_api`)
        self.metrics = metrics
        self.log = logger
        self.recovered = recovered
        self.current_round = 0
        self.exit_code = 0  # FATAL_ERROR_EXIT_CODE after a fatal error (see `_fail`)
        self._stopping = asyncio.Event()
        self._log_votes = bool(config.test.log_votes)
        self._halted = False
        # TEST ONLY hooks, set by the assembly from node/faults.py
        self.after_persist_safety: Callable[[Sequence[Any]], None] | None = None
        self.after_batch: Callable[[Sequence[Any]], None] | None = None
        self.background: list[Callable[[], Coroutine[Any, Any, None]]] = []
        self._trace_counters: dict[TraceName, Any] = {
            "tc_formed": metrics.tcs,
            "reproposal": metrics.reproposals,
            "nec_formed": metrics.necs,
        }
        self.routes = self._build_routes()
        self.run_routes: dict[type, Callable[[Sequence[Any]], None]] = {
            PersistBlock: self._persist_blocks,
        }
        # Rule: every command type the core can return has exactly one room that runs it.
        if set(self.routes) != set(get_args(Command)):
            missing = set(get_args(Command)) - set(self.routes)
            raise RuntimeError(f"commands without a route: {sorted(t.__name__ for t in missing)}")

    def _build_routes(self) -> dict[type, Callable[[Any], None]]:
        return {
            Send: self.router.send,
            Broadcast: self.router.broadcast,
            SetTimer: self.timers.set,
            CancelTimer: self.timers.cancel,
            PersistSafety: self.ledger.persist_safety,
            PersistBlock: self.ledger.persist_block,
            RequestPayload: self.txpool.request_payload,
            CommitBlocks: self._commit,
            MarkVoted: self._mark_voted,
            RecordEquivocation: self._equivocation,
            RevertVoted: self.ledger.revert,
            RoundEntered: self._round_entered,
            Trace: self._trace,
        }

    def attach_api(self, view: NodeView, rpc: Any) -> None:
        """The RPC server and the view it reads (built after the runtime they read from)."""
        self.view = view
        self.rpc = rpc

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """Start everything, drive the core until `stop()` is called, then shut down."""
        await self.transport.start()
        await self.rpc.start()
        if self.room is not None:  # the lanes' slot clock, then the unfinished finalized cuts
            self.room.start(self.ledger.finalized_height, self.ledger.storage.max_block_seq())
        log(
            self.log,
            "node_started",
            index=self.index,
            transport=self.config.network.transport,
            listen_port=self.config.network.listen_port,
            rpc_port=self.rpc.port,
            recovered=self.recovered,
            finalized_height=self.ledger.finalized_height,
            mempool=len(self.txpool.mempool),
        )
        self.queue.push_internal(Start(now_ns=time.time_ns()))
        tasks = [
            asyncio.create_task(self._drive(), name="drive"),
            asyncio.create_task(self.lane_tracker.run(), name="lanes"),
            asyncio.create_task(self.sync_server.run(), name="sync_server"),
        ]
        tasks += [asyncio.create_task(make(), name="test") for make in self.background]
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
        self.queue.wake.set()
        self.lane_tracker.stop()

    async def _shutdown(self) -> None:
        self.timers.cancel_all()
        await self.rpc.stop()
        await self.transport.stop()
        self.ledger.storage.close()
        log(self.log, "node_stopped", finalized_height=self.ledger.finalized_height)

    # ------------------------------------------------------------------ event intake

    def on_frame(self, peer: int, frame: bytes) -> None:
        """Transport callback: decode, then queue (bounded) for the core."""
        if is_availability_frame(frame):  # certified lanes: the availability layer's traffic
            if self.room is None:
                self.metrics.lane_frames.inc(result="not_certified")
                return
            reason = self.room.on_frame(peer, frame)
            self.metrics.lane_frames.inc(result=reason or "availability")
            return
        if is_lane_frame(frame):  # a relayed lane block: verified here, never reaches the core
            reason = self.lanes.on_lane_frame(peer, frame)
            self.metrics.lane_frames.inc(result=reason or "held")
            return
        if is_tx_frame(frame):  # txs forwarded to a next leader: the mempool's, not the core's
            self.txpool.on_tx_frame(peer, frame)
            return
        try:
            message = decode_message(frame)
        except DecodeError as exc:
            self.metrics.dropped.inc(reason=exc.reason)
            return
        self.metrics.received.inc(peer=peer, type=type(message).__name__)
        if isinstance(message, BlockSyncResponse | ChainSyncResponse):
            self.metrics.synced_blocks.inc(len(message.blocks))
        if self._log_votes and isinstance(message, VoteMessage):
            self.router.log_vote("vote_received", peer, message)
        if isinstance(message, BlockSyncRequest | ChainSyncRequest):  # answered from storage
            self.sync_server.offer(peer, message)  # queued: no database read in this callback
            return
        self.queue.push_network(
            MessageReceived(now_ns=time.time_ns(), sender=peer, message=message)
        )

    async def _drive(self) -> None:
        try:
            await self._drive_loop()
        except Exception as exc:  # a driver bug: as fatal as a core exception
            self._fail("driver", None, exc)

    def halt(self) -> None:
        """TEST ONLY (crash points): handle no further event; I/O goes on until the exit."""
        self._halted = True
        self.queue.wake.set()

    async def _drive_loop(self) -> None:
        queue = self.queue
        while not self._stopping.is_set() and not self._halted:
            if not queue:
                queue.wake.clear()
                await queue.wake.wait()
                continue
            budget = BATCH_EVENTS
            while budget > 0:
                event = queue.pop()
                if event is None or self.exit_code or self._halted:
                    break
                budget -= _event_weight(event)
                self._handle(event)
            self.metrics.event_queue.set(len(queue.inbox))
            await asyncio.sleep(0)

    def _handle(self, event: Event) -> None:
        try:
            commands = self.core.handle(event)
        except Exception as exc:
            self._fail("core", event, exc)
            return
        try:
            self._execute(commands)
        except Exception as exc:
            self._fail("command", event, exc)

    def _fail(self, stage: str, event: Event | None, exc: Exception) -> None:
        """A fatal error: count it, log it once (with its traceback), stop the node.

        After the core raised, its state may be half-changed, and the batch's persists and
        sends were not run; after a command raised, the batch is half-executed. Either way
        nothing more is handled: the node stops and exits with FATAL_ERROR_EXIT_CODE, and
        a restart rebuilds it from what is durable (as after a crash).
        """
        if self.exit_code:
            return
        self.exit_code = FATAL_ERROR_EXIT_CODE
        self.metrics.fatal_errors.inc(stage=stage)
        log(
            self.log,
            "fatal_error",
            logging.CRITICAL,
            stage=stage,
            input=type(event).__name__ if event is not None else None,
            error=f"{type(exc).__name__}: {exc}",
            exit_code=FATAL_ERROR_EXIT_CODE,
            traceback="".join(traceback.format_exception(exc)),
        )
        self.stop()

    def _execute(self, commands: list[Any]) -> None:
        """Run commands strictly in order (persist before send). A run of consecutive
        `PersistBlock`s is stored in one transaction (`run_routes`), still in order."""
        routes = self.routes
        position = 0
        while position < len(commands):
            command = commands[position]
            kind = type(command)
            run_route = self.run_routes.get(kind)
            if run_route is not None:
                end = position + 1
                while end < len(commands) and type(commands[end]) is kind:
                    end += 1
                run_route(commands[position:end])
                position = end
                continue
            if kind is Send or kind is Broadcast:
                self.ledger.check_covered(command.message, self.index)
            routes[kind](command)
            position += 1
            if self.after_persist_safety is not None and kind is PersistSafety:
                self.after_persist_safety(commands[position:])
        if self.after_batch is not None:
            self.after_batch(commands)

    # ------------------------------------------------------------------ commands that span rooms

    def _persist_blocks(self, commands: Sequence[PersistBlock]) -> None:
        self.ledger.persist_blocks(commands)
        if self.room is not None:  # the blocks' cuts, and the lanes' slot clock
            self.room.on_persisted(commands)

    def _commit(self, command: CommitBlocks) -> None:
        now_ns = time.time_ns()
        txids = self.ledger.commit(command, now_ns)
        self.lane_tracker.on_committed(command.blocks)
        self.txpool.on_finalized(txids, now_ns)

    def _mark_voted(self, command: MarkVoted) -> None:
        now_ns = time.time_ns()
        txids = self.ledger.mark_voted(command, now_ns)
        self.txpool.on_voted(txids, now_ns)

    def _equivocation(self, command: RecordEquivocation) -> None:
        self.metrics.equivocations.inc()
        evidence = command.evidence
        log(
            self.log,
            "equivocation",
            logging.WARNING,
            leader=evidence.leader,
            block_round=evidence.block_round,
        )

    def _round_entered(self, command: RoundEntered) -> None:
        self.current_round = command.round
        self.metrics.round.set(command.round)
        self.metrics.rounds_entered.inc(via=command.via)

    def _trace(self, command: Trace) -> None:
        name = command.name
        self.metrics.traces.inc(name=name)
        if name == "dropped":
            reason = str(command.detail.get("reason", "unknown"))
            self.metrics.core_dropped.inc(reason=_normalize_reason(reason))
            return
        counter = self._trace_counters.get(name)
        if counter is not None:
            counter.inc()
