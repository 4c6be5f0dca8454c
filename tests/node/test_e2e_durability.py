"""End-to-end durability on real processes: a tx is finalized once (TX-ONCE) across crashes,
restarts, client re-submissions and a leader that proposes finalized txs again.

Each test starts its own 4-node network in a temporary directory and stops every process
it started even when it fails.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from node.faults import CRASH_EXIT_CODE
from node.mempool import tx_id
from node.rpc import HttpClient
from node.storage import SHORT_ID_BYTES, Storage, short_id
from node.tools.testnet import Testnet, generate_network

pytestmark = pytest.mark.e2e
NO_FORWARDING = {"forward_fanout": 0}  # node/txforward.py off


@pytest.fixture
def network(tmp_path: Path):
    nets: list[Testnet] = []

    def make(
        node_test: dict[int, dict[str, Any]] | None = None,
        wait: bool = True,
        mempool: dict[str, Any] | None = None,
    ) -> Testnet:
        generate_network(tmp_path / "net", 4, node_test=node_test, mempool=mempool)
        net = Testnet(tmp_path / "net")
        nets.append(net)
        net.start_all()
        if wait:
            assert asyncio.run(net.wait_ready(30.0)), "network did not get ready"
        return net

    yield make
    for net in nets:
        net.stop_all()


def _wait(predicate, timeout_s: float, step_s: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return bool(predicate())


def _post_txs(net: Testnet, index: int, txs: list[bytes]) -> tuple[int, dict[str, Any]]:
    async def post() -> tuple[int, Any]:
        member = net.members[index]
        client = HttpClient(member.rpc_host, member.rpc_port, 5.0)
        try:
            return await client.post_json("/tx", {"txs": [t.hex() for t in txs]})
        finally:
            await client.close()

    return asyncio.run(post())


def _get(net: Testnet, index: int, path: str) -> Any:
    return asyncio.run(net.rpc_json(index, path, timeout_s=5.0))


def _height(net: Testnet, index: int) -> int | None:
    status = _get(net, index, "/status")
    return None if status is None else int(status["height"])


def _finalized_at(net: Testnet, index: int, txid: bytes) -> int | None:
    state = _get(net, index, f"/payload/{txid.hex()}")
    if state is None or state.get("state") != "finalized":
        return None
    return int(state["height"])


def _occurrences(net: Testnet, index: int, wanted: set[bytes]) -> Counter[bytes]:
    """How often each wanted short tx id appears in node `index`'s finalized chain (its
    database, read after the node stopped or through a second connection while it runs)."""
    storage = Storage(net.members[index].dir / "data")
    try:
        counts: Counter[bytes] = Counter()
        first = 1
        while rows := storage.finalized_range(first, 10**9):
            for row in rows:
                for k in range(0, len(row.txids), SHORT_ID_BYTES):
                    sid = row.txids[k : k + SHORT_ID_BYTES]
                    if sid in wanted:
                        counts[sid] += 1
            first = rows[-1].height + 1
        return counts
    finally:
        storage.close()


def _assert_each_finalized_once(net: Testnet, ids: list[bytes]) -> None:
    wanted = {short_id(t) for t in ids}
    for index in range(len(net)):
        counts = _occurrences(net, index, wanted)
        assert counts == Counter({s: 1 for s in wanted}), (index, counts)


def test_a_finalized_tx_resubmitted_to_a_restarted_node_is_refused(network) -> None:
    """Issue (b): a client re-submitting a finalized tx to a restarted node got it finalized
    a second time (the node remembered finalized ids in memory only)."""
    net = network()
    txs = [b"resubmit-%d" % i for i in range(20)]
    ids = [tx_id(t) for t in txs]
    status, body = _post_txs(net, 2, txs)
    assert status == 200 and body["accepted"] == 20
    assert _wait(lambda: all(_finalized_at(net, i, ids[-1]) for i in range(4)), 30)
    heights = {_finalized_at(net, 2, t) for t in ids}
    net.stop(2)
    net.start(2)
    assert asyncio.run(net.wait_ready(30.0))
    # The restarted node answers for txs finalized before its restart, from disk ...
    assert {_finalized_at(net, 2, t) for t in ids} == heights
    # ... and refuses them, one or all, with 409 and the reason.
    status, body = _post_txs(net, 2, txs[:1])
    assert status == 409 and body["already_final"] == 1 and body["accepted"] == 0, body
    status, body = _post_txs(net, 2, txs)
    assert status == 409 and body["already_final"] == 20 and body["accepted"] == 0, body
    # a node that never held them in its mempool refuses them too
    status, body = _post_txs(net, 0, txs[:5])
    assert status == 409 and body["already_final"] == 5, body
    # a mix: the fresh tx is accepted, the final one counted (200)
    status, body = _post_txs(net, 2, [txs[0], b"fresh-after-restart"])
    assert status == 200 and body["accepted"] == 1 and body["already_final"] == 1
    start = max(h for h in (_height(net, i) for i in range(4)) if h is not None)
    assert _wait(lambda: all((_height(net, i) or 0) >= start + 8 for i in range(4)), 30)
    net.stop_all()
    _assert_each_finalized_once(net, ids)


def test_txs_of_a_node_killed_between_proposing_and_committing_are_finalized_once(
    network,
) -> None:
    """Issue (a): txs a node accepted and proposed just before it was killed were finalized
    by the others, then proposed again by the restarted node and finalized a second time."""
    # No tx forwarding: node 1 must be the one that proposes its txs (with forwarding the
    # next leaders usually propose them first and node 1 never does).
    net = network(node_test={1: {"crash_after_proposing_txs": 1}}, mempool=NO_FORWARDING)
    txs = [b"killed-leader-%d" % i for i in range(30)]
    ids = [tx_id(t) for t in txs]
    status, body = _post_txs(net, 1, txs)
    assert status == 200 and body["accepted"] == 30
    member = net.members[1]
    process = member.process
    assert process is not None
    assert _wait(lambda: process.poll() is not None, 30), "node 1 did not crash"
    assert process.returncode == CRASH_EXIT_CODE
    net._forget(1)
    # the other three finalized node 1's block, and move on without it
    assert _wait(lambda: all(_finalized_at(net, i, ids[0]) for i in (0, 2, 3)), 30)
    final_height = _finalized_at(net, 0, ids[0])
    assert final_height is not None
    assert _wait(lambda: (_height(net, 0) or 0) >= final_height + 20, 30)
    # the crash left the state of the defect: accepted, finalized elsewhere, pending here
    storage = Storage(member.dir / "data")
    try:
        assert storage.mempool_count() == 30
        assert storage.finalized_head()[0] < final_height
        assert storage.max_block_seq() >= final_height  # its own block is stored
    finally:
        storage.close()
    text = member.config.read_text().replace("crash_after_proposing_txs = 1", "")
    member.config.write_text(text)
    net.start(1)
    assert _wait(lambda: (_height(net, 1) or 0) >= (_height(net, 0) or 0) - 2, 60)
    caught_up = _height(net, 0) or 0
    # long enough for node 1 to lead several rounds (round-robin: every 4th)
    assert _wait(lambda: (_height(net, 1) or 0) >= caught_up + 24, 60)
    assert _get(net, 1, "/status")["mempool_txs"] == 0
    assert {_finalized_at(net, 1, t) for t in ids} == {final_height}
    net.stop_all()
    _assert_each_finalized_once(net, ids)


def test_a_leader_that_proposes_finalized_txs_again_is_refused(network) -> None:
    """A leader that proposes txs of its previous (finalized or pending) block again: honest
    validators refuse those blocks (TX-ONCE), so every tx is finalized exactly once."""
    # No tx forwarding: node 3 must propose its own txs to have a block to replay.
    net = network(node_test={3: {"byzantine": "replay_txs"}}, mempool=NO_FORWARDING)
    batches = [[b"replayed-%d-%d" % (b, i) for i in range(10)] for b in range(4)]
    ids: list[bytes] = []
    for batch in batches:
        status, body = _post_txs(net, 3, batch)
        assert status == 200 and body["accepted"] == len(batch)
        ids += [tx_id(t) for t in batch]
        assert _wait(lambda b=batch: _finalized_at(net, 0, tx_id(b[-1])) is not None, 30)
    start = _height(net, 0) or 0
    assert _wait(lambda: (_height(net, 0) or 0) >= start + 16, 40)  # node 3 leads again
    rejected = 0
    for index in (0, 1, 2):
        metrics = _metrics(net, index)
        rejected += sum(
            metrics.get(f'sedna_blocks_rejected_total{{reason="{reason}"}}', 0)
            for reason in ("tx_already_finalized", "tx_in_pending_ancestor")
        )
    assert rejected > 0  # the attack happened and was refused
    net.stop_all()
    _assert_each_finalized_once(net, ids)


def _metrics(net: Testnet, index: int) -> dict[str, float]:
    async def fetch() -> str:
        member = net.members[index]
        client = HttpClient(member.rpc_host, member.rpc_port, 5.0)
        try:
            return (await client.request("GET", "/metrics"))[1].decode()
        finally:
            await client.close()

    values: dict[str, float] = {}
    for line in asyncio.run(fetch()).splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values
