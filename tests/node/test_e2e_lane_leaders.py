"""The lanes' adversarial leaders on real node processes (issue 10, adversaries 2 and 3).

Per lane mode (certified, the node's default, and carried), two fresh 4-node tcp testnets
with the lanes' ledger on run the same load for the same time: an honest Sedna sender and
plain transactions to every node. In one of them node 3 is a censoring leader
(`[test] byzantine = "drop_lane_blocks"`: certified, its cuts keep every other lane at the
parent's tips; carried, its proposals leave out every other lane's lane blocks). Checked:
- adversary 3: the chain keeps finalizing at the honest network's rate (blocks/s within
  20 %; votes paced at 60 ms so the rate is the protocol's, not the machine's), every
  honest payload still decodes on every node in one order, and the censor's omissions are
  counted (and no honest leader's);
- adversary 2 (the decode-height leader front-runs): in every finalized block that holds
  both decoded payloads and plain transactions, the payloads take positions 0..k-1
  (ahead of the block's transactions) in the order SHA-256(parent id || payload id),
  checked from the nodes' RPC (`/executions`, `/blocks`).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from benchmarks.node_attacks import node_json, run_phase, settle
from consensus.lanes.tracker import execution_key
from node.rpc import HttpClient, encode_binary_txs
from node.tools.sedna_client import SednaClient, SednaPolicy
from node.tools.testnet import Testnet, generate_network, load_senders

pytestmark = pytest.mark.e2e

PHASE_S = 6.0
HONEST_PPS = 10.0
TX_PER_S = 40.0
CENSOR = 3


async def _plain_txs(net: Testnet, duration_s: float, tag: bytes) -> int:
    """Plain transactions to every node at TX_PER_S for duration_s; how many were sent."""
    clients = [HttpClient(m.rpc_host, m.rpc_port, 2.0) for m in net.members]
    started, sent = time.monotonic(), 0
    try:
        while (elapsed := time.monotonic() - started) < duration_s:
            while sent < elapsed * TX_PER_S:  # bound: the rate owed so far
                tx = tag + b"-%d-" % sent + os.urandom(16)
                client = clients[sent % len(clients)]
                await client.request(
                    "POST", "/tx", encode_binary_txs([tx]), "application/octet-stream"
                )
                sent += 1
            await asyncio.sleep(0.02)
    finally:
        for client in clients:
            await client.close()
    return sent


async def _events_and_blocks(net: Testnet, index: int) -> tuple[list[dict], dict[int, dict]]:
    """Node `index`'s decided payloads and finalized blocks up to its tracker height."""
    height = (await node_json(net, index, "/lanes"))["tracker_height"]
    events: list[dict] = []
    first = 1
    while first <= height:  # bounded: each page advances `next`
        page = await node_json(net, index, f"/executions?from={first}&to={height}")
        events += page["events"]
        first = page["next"]
    blocks: dict[int, dict] = {}
    first = 1
    while first <= height:  # bounded: 100 blocks per page
        page = await node_json(net, index, f"/blocks?from={first}&to={min(first + 99, height)}")
        blocks.update((b["height"], b) for b in page["blocks"])
        first += 100
    return events, blocks


def _check_payloads_run_first(events: list[dict], blocks: dict[int, dict]) -> int:
    """Adversary 2 on one node: executed payloads lead their block, in the keyed order.
    Returns how many blocks held both payloads and plain transactions."""
    by_height: dict[int, list[dict]] = {}
    for e in events:
        if e["status"] == "executed":
            by_height.setdefault(e["height"], []).append(e)
    mixed = 0
    for height, group in by_height.items():
        assert [e["position"] for e in group] == list(range(len(group))), (height, group)
        parent = bytes.fromhex(blocks[height - 1]["block_id"]) if height > 1 else None
        if parent is not None:
            keyed = sorted(group, key=lambda e: execution_key(parent, bytes.fromhex(e["id"])))
            assert [e["id"] for e in group] == [e["id"] for e in keyed], height
        mixed += blocks[height]["n_tx"] > 0
    return mixed


async def _one_network(root: Path, mode: str, censor: bool) -> dict[str, Any]:
    generate_network(
        root, 4, consensus={"delta_ms": 50.0, "vote_pace_ms": 60.0}, dissemination=mode,
        ledger={"sender_balance": 10**12, "fee": 1, "bounty": 5, "senders": 1},
        node_test={CENSOR: {"byzantine": "drop_lane_blocks"}} if censor else None,
    )  # fmt: skip
    (key,) = load_senders(root)
    net = Testnet(root)
    net.start_all()
    try:
        assert await net.wait_ready(30.0), "network did not get ready"
        targets = [(m.index, m.rpc_host, m.rpc_port) for m in net.members]
        honest = SednaClient(targets, key=key, policy=SednaPolicy(extra_bundles=1))
        try:
            phase, txs = await asyncio.gather(
                run_phase(net, honest, PHASE_S, HONEST_PPS),
                _plain_txs(net, PHASE_S, b"censor" if censor else b"honest"),
            )
            await settle(honest, 40)
            assert honest.stats.decided["decoded"] == len(phase["submitted"]), honest.stats
        finally:
            await honest.close()
        stats = [(await node_json(net, i, "/stats"))["lanes"] for i in range(4)]
        per_node = [await _events_and_blocks(net, i) for i in range(4)]
    finally:
        net.stop_all()
    submitted = {cid.hex() for cid in phase["submitted"]}
    for events, _ in per_node:  # every honest payload decoded on every node, once
        executed = [e["id"] for e in events if e["status"] == "executed"]
        assert len(executed) == len(set(executed)) and submitted <= set(executed)
    common = min(max(blocks) for _, blocks in per_node)
    orders = {
        tuple(e["id"] for e in events if e["height"] <= common) for events, _ in per_node
    }  # one execution order on every node
    assert len(orders) == 1
    mixed = [_check_payloads_run_first(events, blocks) for events, blocks in per_node]
    if mode == "certified":
        omitted = [s["availability"]["tips_omitted"] for s in stats]
    else:
        omitted = [s["lane_blocks"]["omitted"] for s in stats]
    return {
        "blocks_per_s": phase["blocks_per_s"],
        "mixed_blocks": min(mixed),
        "omitted": omitted,
        "txs": txs,
    }


@pytest.mark.parametrize("mode", ["certified", "carried"])
def test_a_censoring_leader_keeps_the_honest_rate_and_payloads_run_before_txs(
    mode: str, tmp_path: Path
) -> None:
    honest = asyncio.run(_one_network(tmp_path / "honest", mode, censor=False))
    censored = asyncio.run(_one_network(tmp_path / "censored", mode, censor=True))
    print(mode, {"honest": honest, "censored": censored})
    assert censored["blocks_per_s"] >= 0.8 * honest["blocks_per_s"], (honest, censored)
    # the omission happened, and only the censor omitted anything
    assert censored["omitted"][CENSOR] > 0, censored
    if mode == "certified":  # only a censor keeps a lane below its PoA'd tip
        assert sum(censored["omitted"]) == censored["omitted"][CENSOR], censored
        assert honest["omitted"] == [0, 0, 0, 0], honest
    # non-vacuity for adversary 2: payloads decoded in blocks that also held plain txs
    assert honest["mixed_blocks"] > 0 and censored["mixed_blocks"] > 0, (honest, censored)
