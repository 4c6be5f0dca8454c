"""End-to-end catch-up: a node thousands of blocks behind reaches the network, on real
processes over the real transport, while its RPC keeps answering; SIGTERM stops it quickly.

Defect: a node about 2,800 blocks behind stayed at its stored height for minutes at ~95 %
CPU, its RPC did not answer and it took ~70 s to obey SIGTERM (every proposal re-walked
every stored QC to the root, and backward block sync could not bridge a wide gap).

Three validators start on a database holding a real signed chain of CHAIN_BLOCKS blocks
(`benchmarks/catchup_chain.py`, signed with the network's keys); the fourth starts on its
first RESTARTED_AT blocks, or empty.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from benchmarks.catchup_chain import build_chain_database, install_chain
from consensus.crypto import derive_keys
from node.rpc import HttpClient
from node.storage import Storage
from node.tools.testnet import Testnet, generate_network

pytestmark = pytest.mark.e2e

CHAIN_BLOCKS = 6_000
RESTARTED_AT = 1_000  # node 3's own database ends here: 5,000 blocks behind
CATCH_UP_LIMIT_S = 90.0  # generous for a loaded CI machine; ~5 s on a quiet one


def _status(net: Testnet, index: int) -> tuple[dict[str, Any] | None, float]:
    started = time.monotonic()
    status = asyncio.run(net.rpc_json(index, "/status", timeout_s=5.0))
    return status, time.monotonic() - started


def _metric(net: Testnet, index: int, name: str) -> float:
    async def fetch() -> str:
        member = net.members[index]
        client = HttpClient(member.rpc_host, member.rpc_port, 5.0)
        try:
            return (await client.request("GET", "/metrics"))[1].decode()
        finally:
            await client.close()

    for line in asyncio.run(fetch()).splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


def _chain(data_dir: Path) -> list[bytes]:
    storage = Storage(data_dir)
    try:
        ids: list[bytes] = []
        while rows := storage.finalized_range(len(ids) + 1, 10**9):  # pages of 1,000
            ids += [r.block_id for r in rows]
        return ids
    finally:
        storage.close()


def _wait_for_peers(net: Testnet, height: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        statuses = [_status(net, i)[0] for i in range(3)]
        if all(s is not None and s["height"] > height for s in statuses):
            return
        time.sleep(0.2)
    raise AssertionError(f"the peers did not resume above height {height}: {statuses}")


def _follow_catch_up(net: Testnet) -> dict[str, Any]:
    """Poll node 3 until it reaches the network; what it reported on the way."""
    started = time.monotonic()
    mid_sync: list[dict[str, Any]] = []
    worst_latency_s = 0.0
    while time.monotonic() - started < CATCH_UP_LIMIT_S:
        status, latency_s = _status(net, 3)
        if status is not None:
            worst_latency_s = max(worst_latency_s, latency_s)
            if status["syncing"] and status["height"] < CHAIN_BLOCKS - 500:
                mid_sync.append(status)
            network = min(_status(net, i)[0]["height"] for i in range(3))  # type: ignore[index]
            if status["height"] >= network - 2:
                return {
                    "elapsed_s": time.monotonic() - started,
                    "mid_sync": mid_sync,
                    "worst_latency_s": worst_latency_s,
                    "height": status["height"],
                }
        time.sleep(0.05)
    raise AssertionError(f"node 3 did not catch up in {CATCH_UP_LIMIT_S} s")


@pytest.fixture
def behind(tmp_path: Path):
    keys = derive_keys(4, b"e2e-catchup")
    chain_id = generate_network(tmp_path / "net", 4, keys=keys)["chain_id"]
    # signed for the network's own chain id (a fresh one per network)
    build_chain_database(tmp_path / "chain", keys, CHAIN_BLOCKS, chain_id=chain_id)
    build_chain_database(tmp_path / "prefix", keys, RESTARTED_AT, chain_id=chain_id)
    net = Testnet(tmp_path / "net")
    install_chain(tmp_path / "chain", [m.dir / "data" for m in net.members[:3]])
    try:
        yield net, tmp_path / "prefix"
    finally:
        net.stop_all()


def test_a_restarted_node_thousands_of_blocks_behind_catches_up_and_answers_rpc(
    behind,
) -> None:
    """Node 3 restarts from its own database at height RESTARTED_AT, the network being
    CHAIN_BLOCKS - RESTARTED_AT (5,000) blocks further (the issue's SIGKILL-and-restart)."""
    net, prefix = behind
    install_chain(prefix, [net.members[3].dir / "data"])
    for index in range(3):
        net.start(index)
    _wait_for_peers(net, CHAIN_BLOCKS, 60)
    net.start(3)
    result = _follow_catch_up(net)
    # it was far behind, said so while syncing, and its RPC answered all along
    assert result["mid_sync"], "node 3 never reported syncing while behind"
    assert min(s["height"] for s in result["mid_sync"]) < CHAIN_BLOCKS - 1_000
    sample = result["mid_sync"][0]
    assert sample["sync_target_height"] >= CHAIN_BLOCKS - 64
    assert sample["sync_behind_blocks"] == sample["sync_target_height"] - sample["height"]
    assert result["worst_latency_s"] < 2.0
    # everything between its own head and the network came through sync
    assert _metric(net, 3, "sedna_synced_blocks_total") >= CHAIN_BLOCKS - RESTARTED_AT - 64
    assert _metric(net, 3, "sedna_sync_behind_blocks") <= 8
    # and it follows the network from there on, on the same chain
    height = result["height"]
    deadline = time.monotonic() + 30
    while (_status(net, 3)[0] or {"height": 0})["height"] < height + 10:
        assert time.monotonic() < deadline, "node 3 stopped following the network"
        time.sleep(0.2)
    net.stop_all()
    chains = [_chain(member.dir / "data") for member in net.members]
    assert len(chains[3]) >= CHAIN_BLOCKS
    longest = max(chains, key=len)
    assert all(chain == longest[: len(chain)] for chain in chains)


def test_a_node_that_is_catching_up_obeys_sigterm_promptly(behind) -> None:
    """A fresh node (6,000 blocks behind) is stopped in the middle of its catch-up."""
    net, _ = behind
    for index in range(3):
        net.start(index)
    _wait_for_peers(net, CHAIN_BLOCKS, 60)
    net.start(3)
    deadline = time.monotonic() + CATCH_UP_LIMIT_S
    while True:
        status, _ = _status(net, 3)
        if status is not None and status["syncing"] and status["height"] < CHAIN_BLOCKS // 2:
            break
        assert time.monotonic() < deadline, "node 3 was never seen mid-sync"
        time.sleep(0.02)
    process = net.members[3].process
    assert process is not None
    sent_at = time.monotonic()
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=15)
    assert process.returncode == 0
    assert time.monotonic() - sent_at < 5.0
