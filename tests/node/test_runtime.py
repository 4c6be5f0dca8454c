"""The asyncio runtime with the real core, real storage and the real tcp transport, in-process.

Four runtimes share one event loop (each with its own database and sockets): they finalize
blocks, carry submitted txs to finality, count malformed frames, and a stopped node that
restarts from its database catches up through block sync served from storage.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import msgspec

from consensus.codec import block_id, decode_message, encode_message
from consensus.events import Start
from consensus.messages import GENESIS_QC, AdvanceRoundMessage, BlockSyncRequest
from node.assembly import build_runtime
from node.config import load_config, load_key
from node.mempool import tx_id
from node.runtime import NodeRuntime
from node.storage import SHORT_ID_BYTES, Storage, short_id
from node.tools.testnet import generate_network


def _runtimes(root: Path, nodes: int = 4) -> list[NodeRuntime]:
    manifest = generate_network(root, nodes, consensus={"delta_ms": 50.0})
    configs = [load_config(root / m["config"]) for m in manifest["members"]]
    return [build_runtime(c, load_key(c)) for c in configs]


async def _until(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return predicate()


def test_four_runtimes_finalize_txs_and_a_restarted_node_catches_up(tmp_path: Path) -> None:
    async def scenario() -> None:
        nodes = _runtimes(tmp_path)
        tasks = [asyncio.create_task(n.run()) for n in nodes]
        try:
            assert await _until(lambda: min(n.ledger.finalized_height for n in nodes) >= 5, 20)
            # txs submitted to node 1 reach finality everywhere
            txs = [b"tx-%d" % i for i in range(50)]
            result = nodes[1].view.rpc_submit(txs)
            assert result["accepted"] == 50
            ids = {tx_id(t) for t in txs}
            assert await _until(lambda: len(nodes[1].txpool.mempool) == 0, 20)
            assert nodes[1].metrics.finality.count == 50
            status = nodes[1].view.rpc_status()
            assert status["peers"] == [0, 2, 3] and status["height"] >= 5
            # malformed frames are dropped and counted by reason, never reach the core
            for frame in (b"", b"\x09abc", b"\x01\xc1\xc1", bytes(17 * 1024 * 1024)):
                nodes[0].on_frame(2, frame)
            dropped = {k[0]: v for k, v in nodes[0].metrics.dropped.items() if v}
            assert dropped == {
                "empty_frame": 1,
                "bad_version": 1,
                "malformed": 1,
                "frame_too_large": 1,
            }
            # stop node 3, let the others move on, restart it from its database
            nodes[3].stop()
            await tasks[3]
            stopped_at = nodes[3].ledger.finalized_height
            assert await _until(
                lambda: min(n.ledger.finalized_height for n in nodes[:3]) >= stopped_at + 30, 30
            )
            # The peers' bounded queues may still hold every frame of the gap, which would
            # let node 3 catch up without syncing; a longer outage overflows them. Drop the
            # backlog so that the catch-up below must go through block sync.
            for peer in nodes[:3]:
                peer.transport._queues[3].clear()
            config = nodes[3].config
            nodes[3] = build_runtime(config, load_key(config))
            assert nodes[3].recovered and nodes[3].ledger.finalized_height == stopped_at
            # its pending blocks (rebuilt from storage, no PersistBlock) are described, so
            # their txs are never proposed again (TX-ONCE)
            recovered = nodes[3].ledger.storage.load_recovered()
            assert recovered is not None
            pending = [
                block_id(tip.header)
                for tip, _ in recovered.blocks
                if tip.header.seq_num > stopped_at
            ]
            assert pending and all(nodes[3].ledger.block_seq(b) is not None for b in pending)
            tasks[3] = asyncio.create_task(nodes[3].run())
            target = max(n.ledger.finalized_height for n in nodes[:3])
            assert await _until(lambda: nodes[3].ledger.finalized_height >= target, 20)
            assert (
                nodes[3].metrics.received.value(peer=0, type="BlockSyncResponse")
                + sum(
                    nodes[3].metrics.received.value(peer=p, type="BlockSyncResponse")
                    for p in (1, 2)
                )
                >= 1
            )
        finally:
            for n in nodes:
                n.stop()
            await asyncio.gather(*tasks, return_exceptions=True)
        # agreement: every finalized chain (read back from disk) is a prefix of the longest
        storages = [Storage(n.config.node.data_dir) for n in nodes]
        chains = [[r.block_id for r in s.finalized_range(1, 10_000)] for s in storages]
        longest = max(chains, key=len)
        assert all(chain == longest[: len(chain)] for chain in chains)
        # every submitted tx is in the finalized chain exactly once
        wanted = {short_id(i) for i in ids}
        seen = [
            row.txids[k : k + SHORT_ID_BYTES]
            for row in storages[0].finalized_range(1, 10_000)
            for k in range(0, len(row.txids), SHORT_ID_BYTES)
        ]
        assert sorted(s for s in seen if s in wanted) == sorted(wanted)
        for storage in storages:
            storage.close()

    asyncio.run(scenario())


def test_sync_requests_are_served_from_storage_off_the_frame_callback(tmp_path: Path) -> None:
    async def scenario() -> None:
        nodes = _runtimes(tmp_path)
        tasks = [asyncio.create_task(n.run()) for n in nodes]
        try:
            assert await _until(lambda: min(n.ledger.finalized_height for n in nodes) >= 12, 20)
        finally:
            for n in nodes:
                n.stop()
            await asyncio.gather(*tasks, return_exceptions=True)
        config = nodes[0].config
        node = build_runtime(config, load_key(config))
        head = node.ledger.storage.finalized_range(10, 10)[0].block_id
        sent: list[tuple[int, bytes]] = []
        node.transport.send = lambda peer, frame: sent.append((peer, frame))  # type: ignore[method-assign]
        node.on_frame(1, encode_message(BlockSyncRequest(block_id=head, count=64)))
        node.on_frame(2, encode_message(BlockSyncRequest(block_id=bytes(32), count=5)))
        # Nothing is read or sent inside the transport callback: the requests wait in turn.
        assert sent == [] and node.sync_server.queued() == 2
        assert len(node.queue.inbox) == 0  # sync requests never reach the core
        assert node.sync_server.serve_one() and node.sync_server.serve_one()
        assert not node.sync_server.serve_one()
        (peer, frame), (peer2, frame2) = sent
        response = decode_message(frame)
        heights = [b.tip.header.seq_num for b in response.blocks]
        assert peer == 1 and heights == list(range(10, 0, -1))  # down to genesis, newest first
        assert peer2 == 2 and decode_message(frame2).blocks == ()  # unknown block: empty
        assert node.metrics.sync_requests.value(result="served") == 2
        node.ledger.storage.close()

    asyncio.run(scenario())


def test_sync_responses_count_their_blocks_in_the_turn_budget(tmp_path: Path) -> None:
    """A node catching up yields to the event loop (RPC, transport) after about
    BATCH_EVENTS blocks, not after BATCH_EVENTS sync responses of 256 blocks each.
    Mutation: weighing a sync response as one event fails this test."""
    from consensus.events import MessageReceived
    from consensus.messages import ChainSyncResponse
    from node.runtime import BATCH_EVENTS

    generate_network(tmp_path, 4)
    config = load_config(tmp_path / "node0" / "config.toml")
    node = build_runtime(config, load_key(config))
    trail: list[int] = []  # blocks handled, and -1 each time another task got the loop
    node._handle = lambda event: trail.append(len(event.message.blocks))  # type: ignore[method-assign]
    blocks = (None,) * 128  # counted, never looked at (the handler is replaced)
    for _ in range(16):
        response = ChainSyncResponse(after_block_id=bytes(32), blocks=blocks)  # type: ignore[arg-type]
        node.queue.push_network(MessageReceived(now_ns=0, sender=1, message=response))

    async def scenario() -> None:
        driver = asyncio.create_task(node._drive_loop())
        while sum(n for n in trail if n > 0) < 16 * 128:
            trail.append(-1)
            await asyncio.sleep(0)
        node.stop()
        node.queue.wake.set()
        await asyncio.wait_for(driver, 5)

    try:
        asyncio.run(scenario())
    finally:
        node.ledger.storage.close()
    turns, current = [], 0
    for n in trail:
        if n < 0:
            turns.append(current)
            current = 0
        else:
            current += n
    turns.append(current)
    assert sum(turns) == 16 * 128
    assert max(turns) <= BATCH_EVENTS + 128, turns  # one response may cross the budget


def test_inbox_is_bounded(tmp_path: Path) -> None:
    async def scenario() -> None:
        generate_network(tmp_path, 4)
        config = load_config(tmp_path / "node0" / "config.toml")
        node = build_runtime(config, load_key(config), max_inbox_events=3)
        frame = encode_message(AdvanceRoundMessage(certificate=GENESIS_QC))
        for _ in range(5):
            node.on_frame(1, frame)  # not started: nothing drains the inbox
        assert len(node.queue.inbox) == 3
        assert node.metrics.dropped.value(reason="inbox_full") == 2
        node.ledger.storage.close()

    asyncio.run(scenario())


def test_every_command_type_has_a_route(tmp_path: Path) -> None:
    """The runtime refuses to be built when a command type the core returns has no room."""
    from typing import get_args

    from consensus.events import Command, Trace

    generate_network(tmp_path, 4)
    config = load_config(tmp_path / "node0" / "config.toml")
    node = build_runtime(config, load_key(config))
    assert set(node.routes) == set(get_args(Command))
    node.ledger.storage.close()

    class Unrouted(NodeRuntime):
        def _build_routes(self):
            routes = super()._build_routes()
            del routes[Trace]
            return routes

    fields = {
        name: getattr(node, name)
        for name in (
            "config",
            "core",
            "queue",
            "ledger",
            "txpool",
            "lanes",
            "lane_tracker",
            "router",
            "timers",
            "sync_server",
            "transport",
            "metrics",
        )
    }
    try:
        Unrouted(**fields, logger=node.log, recovered=False)
    except RuntimeError as exc:
        assert "Trace" in str(exc)
    else:
        raise AssertionError("a command without a route was accepted")


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_core_exception_stops_the_node_with_its_exit_code(tmp_path: Path) -> None:
    """Defect: the runtime logged a core exception and kept driving the half-changed core."""
    from node.faults import FaultyCore
    from node.runtime import FATAL_ERROR_EXIT_CODE

    async def scenario() -> None:
        generate_network(
            tmp_path, 4, consensus={"delta_ms": 20.0}, node_test={0: {"core_error_after_events": 3}}
        )
        config = load_config(tmp_path / "node0" / "config.toml")
        node = build_runtime(config, load_key(config))
        assert isinstance(node.core, FaultyCore)
        handler = _Records()
        node.log.addHandler(handler)
        try:
            # Alone (no peers), the node sees Start and then its round timer: the 3rd event
            # raises. run() must return by itself, without stop() being called.
            await asyncio.wait_for(node.run(), timeout=20)
        finally:
            node.log.removeHandler(handler)
        assert node.exit_code == FATAL_ERROR_EXIT_CODE
        assert node.metrics.fatal_errors.value(stage="core") == 1
        fatal = [r for r in handler.records if getattr(r, "event", "") == "fatal_error"]
        assert len(fatal) == 1 and "InjectedCoreError" in fatal[0].fields["traceback"]
        assert node.core._countdown == 0  # the core was never handed another event

    asyncio.run(scenario())


def test_after_a_core_exception_no_waiting_event_is_handled(tmp_path: Path) -> None:
    """Events already queued in the same turn as the failing one never reach the core.
    Mutation: the driver's turn loop not checking the exit code fails this test."""
    from node.faults import FaultyCore
    from node.runtime import FATAL_ERROR_EXIT_CODE

    async def scenario() -> None:
        generate_network(tmp_path, 4, node_test={0: {"core_error_after_events": 1}})
        config = load_config(tmp_path / "node0" / "config.toml")
        node = build_runtime(config, load_key(config))
        assert isinstance(node.core, FaultyCore)
        for _ in range(5):  # waiting ahead of run()'s own Start: the first one raises
            node.queue.push_internal(Start(now_ns=0))
        await asyncio.wait_for(node.run(), timeout=20)
        assert node.exit_code == FATAL_ERROR_EXIT_CODE
        assert node.core._countdown == 0  # one event handed over: the one that raised

    asyncio.run(scenario())


def test_a_command_that_fails_stops_the_node_and_sends_nothing_after_it(tmp_path: Path) -> None:
    """Paired assertion: a vote whose round the persisted safety state does not cover is
    never sent; the runtime stops instead (stage "command")."""
    from consensus.events import Send
    from consensus.messages import Vote, VoteMessage
    from node.runtime import FATAL_ERROR_EXIT_CODE

    generate_network(tmp_path, 4)
    config = load_config(tmp_path / "node0" / "config.toml")
    node = build_runtime(config, load_key(config))
    sent: list[int] = []
    node.transport.send = lambda peer, frame: sent.append(peer)  # type: ignore[method-assign]
    vote = VoteMessage(Vote(block_id=bytes(32), round=5, epoch=1), 0, bytes(64))
    node.core = type("Core", (), {"handle": lambda self, event: [Send(1, vote), Send(2, vote)]})()
    node._handle(Start(now_ns=0))
    assert node.exit_code == FATAL_ERROR_EXIT_CODE and sent == []
    assert node.metrics.fatal_errors.value(stage="command") == 1
    node.ledger.storage.close()


def test_internal_events_are_bounded_and_overflow_is_logged(tmp_path: Path) -> None:
    """The overflow log line used to raise (its `event=` field clashed with `log()`'s own)."""
    from node.metrics import NodeMetrics
    from node.runtime import MAX_INTERNAL_EVENTS, EventQueue

    handler = _Records()
    logger = logging.getLogger("test.queue")
    logger.addHandler(handler)
    queue = EventQueue(NodeMetrics(), logger, max_inbox_events=10)
    for _ in range(MAX_INTERNAL_EVENTS + 2):
        queue.push_internal(Start(now_ns=0))
    assert len(queue.internal) == MAX_INTERNAL_EVENTS
    assert queue.metrics.dropped.value(reason="internal_full") == 2
    assert [r.fields["kind"] for r in handler.records] == ["Start", "Start"]
    logger.removeHandler(handler)


def test_a_vote_leaves_only_after_its_safety_state_is_synced_to_disk(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """Persist before send, at the disk: when the vote reaches the transport, the safety
    file was `fdatasync`ed after the write that covers the vote, and a fresh read of the
    file holds that state. Mutations: dropping the fdatasync, or running the Send before
    the PersistSafety, fails this test."""
    import os

    import node.safety_file as safety_file
    from consensus.events import PersistSafety, Send
    from consensus.messages import Vote, VoteMessage
    from consensus.safety import SafetyState

    generate_network(tmp_path, 4)
    config = load_config(tmp_path / "node0" / "config.toml")
    node = build_runtime(config, load_key(config))
    safety_path = node.ledger.storage.safety_path
    order: list[str] = []
    real_pwrite, real_sync = os.pwrite, os.fdatasync
    monkeypatch.setattr(
        safety_file.os, "pwrite", lambda fd, d, o: order.append("pwrite") or real_pwrite(fd, d, o)
    )
    monkeypatch.setattr(
        safety_file.os, "fdatasync", lambda fd: order.append("fdatasync") or real_sync(fd)
    )
    on_disk: list[int] = []

    def send(peer: int, frame: bytes) -> None:
        order.append("send")
        data = safety_file.read_latest(safety_path)[1]
        on_disk.append(msgspec.msgpack.decode(data, type=SafetyState).highest_vote)

    node.transport.send = send  # type: ignore[method-assign]
    vote = VoteMessage(Vote(block_id=bytes(32), round=5, epoch=1), 0, bytes(64))
    commands = [PersistSafety(SafetyState(highest_vote=5)), Send(1, vote), Send(2, vote)]
    node.core = type("Core", (), {"handle": lambda self, event: commands})()
    node._handle(Start(now_ns=0))
    assert node.exit_code == 0
    assert order == ["pwrite", "fdatasync", "send", "send"]
    assert on_disk == [5, 5]
    node.ledger.storage.close()
