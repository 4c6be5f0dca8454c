"""The asyncio runtime with the real core, real storage and the real tcp transport, in-process.

Four runtimes share one event loop (each with its own database and sockets): they finalize
blocks, carry submitted txs to finality, count malformed frames, and a stopped node that
restarts from its database catches up through block sync served from storage.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from consensus.codec import decode_message, encode_message
from consensus.messages import GENESIS_QC, AdvanceRoundMessage, BlockSyncRequest
from node.config import load_config, load_key
from node.mempool import tx_id
from node.runtime import NodeRuntime
from node.storage import SHORT_ID_BYTES, Storage, short_id
from node.tools.testnet import generate_network


def _runtimes(root: Path, nodes: int = 4) -> list[NodeRuntime]:
    manifest = generate_network(root, nodes, consensus={"delta_ms": 50.0})
    configs = [load_config(root / m["config"]) for m in manifest["members"]]
    return [NodeRuntime(c, load_key(c)) for c in configs]


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
            assert await _until(lambda: min(n.finalized_height for n in nodes) >= 5, 20)
            # txs submitted to node 1 reach finality everywhere
            txs = [b"tx-%d" % i for i in range(50)]
            result = nodes[1].rpc_submit(txs)
            assert result["accepted"] == 50
            ids = {tx_id(t) for t in txs}
            assert await _until(lambda: len(nodes[1].mempool) == 0, 20)
            assert nodes[1].metrics.finality.count == 50
            status = nodes[1].rpc_status()
            assert status["peers"] == [0, 2, 3] and status["height"] >= 5
            # malformed frames are dropped and counted by reason, never reach the core
            for frame in (b"", b"\x09abc", b"\x01\xc1\xc1", bytes(17 * 1024 * 1024)):
                nodes[0]._on_frame(2, frame)
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
            stopped_at = nodes[3].finalized_height
            assert await _until(
                lambda: min(n.finalized_height for n in nodes[:3]) >= stopped_at + 30, 30
            )
            # The peers' bounded queues may still hold every frame of the gap, which would
            # let node 3 catch up without syncing; a longer outage overflows them. Drop the
            # backlog so that the catch-up below must go through block sync.
            for peer in nodes[:3]:
                peer.transport._queues[3].clear()
            config = nodes[3].config
            nodes[3] = NodeRuntime(config, load_key(config))
            assert nodes[3].recovered and nodes[3].finalized_height == stopped_at
            tasks[3] = asyncio.create_task(nodes[3].run())
            target = max(n.finalized_height for n in nodes[:3])
            assert await _until(lambda: nodes[3].finalized_height >= target, 20)
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


def test_sync_requests_are_served_from_storage_within_the_frame_budget(tmp_path: Path) -> None:
    async def scenario() -> None:
        nodes = _runtimes(tmp_path)
        tasks = [asyncio.create_task(n.run()) for n in nodes]
        try:
            assert await _until(lambda: min(n.finalized_height for n in nodes) >= 12, 20)
        finally:
            for n in nodes:
                n.stop()
            await asyncio.gather(*tasks, return_exceptions=True)
        config = nodes[0].config
        node = NodeRuntime(config, load_key(config))
        head = node.storage.finalized_range(10, 10)[0].block_id
        sent: list[tuple[int, bytes]] = []
        node.transport.send = lambda peer, frame: sent.append((peer, frame))  # type: ignore[method-assign]
        node._on_frame(1, encode_message(BlockSyncRequest(block_id=head, count=64)))
        node._on_frame(2, encode_message(BlockSyncRequest(block_id=bytes(32), count=5)))
        (peer, frame), (peer2, frame2) = sent
        response = decode_message(frame)
        heights = [b.tip.header.seq_num for b in response.blocks]
        assert peer == 1 and heights == list(range(10, 0, -1))  # down to genesis, newest first
        assert peer2 == 2 and decode_message(frame2).blocks == ()  # unknown block: empty
        assert len(node._inbox) == 0  # sync requests never reach the core
        node.storage.close()

    asyncio.run(scenario())


def test_inbox_is_bounded(tmp_path: Path) -> None:
    async def scenario() -> None:
        generate_network(tmp_path, 4)
        config = load_config(tmp_path / "node0" / "config.toml")
        node = NodeRuntime(config, load_key(config), max_inbox_events=3)
        frame = encode_message(AdvanceRoundMessage(certificate=GENESIS_QC))
        for _ in range(5):
            node._on_frame(1, frame)  # not started: nothing drains the inbox
        assert len(node._inbox) == 3
        assert node.metrics.dropped.value(reason="inbox_full") == 2
        node.storage.close()

    asyncio.run(scenario())
