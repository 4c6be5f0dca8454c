"""End-to-end transaction forwarding on real processes (node/txforward.py).

Txs submitted to one node are forwarded to the next leaders; with the next leader killed
(unreachable) or silent (Byzantine: it takes forwarded txs and sends nothing), every tx is
still finalized, exactly once, on every live node, and nothing stays queued.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from node.mempool import tx_id
from node.storage import short_id
from node.tools.testnet import Testnet, generate_network
from tests.node.test_e2e_durability import (
    _assert_each_finalized_once,
    _finalized_at,
    _get,
    _metrics,
    _occurrences,
    _post_txs,
    _wait,
)

pytestmark = pytest.mark.e2e

FORWARDED_SENT = 'sedna_txs_forwarded_total{result="sent"}'
FORWARDED_NOT_CONNECTED = 'sedna_txs_forwarded_total{result="not_connected"}'
RECEIVED_ACCEPTED = 'sedna_forwarded_txs_received_total{result="accepted"}'


@pytest.fixture
def net(tmp_path: Path, request):
    node_test, mempool = request.param
    generate_network(tmp_path / "net", 4, node_test=node_test, mempool=mempool)
    network = Testnet(tmp_path / "net")
    network.start_all()
    try:
        assert asyncio.run(network.wait_ready(30.0)), "network did not get ready"
        yield network
    finally:
        network.stop_all()


def _run_batches(net: Testnet, origin: int, live: list[int], tag: bytes) -> list[bytes]:
    ids: list[bytes] = []
    for batch in range(6):
        txs = [b"%s-%d-%d" % (tag, batch, i) for i in range(25)]
        status, body = _post_txs(net, origin, txs)
        assert status == 200 and body["accepted"] == len(txs), body
        ids += [tx_id(t) for t in txs]
    assert _wait(lambda: all(_finalized_at(net, i, t) for i in live for t in ids[-25:]), 40)
    assert _wait(lambda: all(_finalized_at(net, i, t) for i in live for t in ids), 20)
    return ids


@pytest.mark.parametrize("net", [(None, None)], indirect=True)
def test_forwarded_txs_are_finalized_once_with_no_queue_left(net: Testnet) -> None:
    ids = _run_batches(net, 0, [0, 1, 2, 3], b"fwd")
    sent = _metrics(net, 0).get(FORWARDED_SENT, 0)
    assert sent >= len(ids)  # every batch went to at least one next leader
    received = sum(_metrics(net, i).get(RECEIVED_ACCEPTED, 0) for i in (1, 2, 3))
    assert received > 0
    assert _wait(lambda: all(_get(net, i, "/status")["mempool_txs"] == 0 for i in range(4)), 20)
    net.stop_all()
    _assert_each_finalized_once(net, ids)


@pytest.mark.parametrize(
    "net", [({1: {"byzantine": "silent"}}, {"forward_fanout": 3})], indirect=True
)
def test_a_silent_next_leader_loses_no_tx(net: Testnet) -> None:
    """Node 1 receives node 0's forwarded txs (fanout 3: every other node) but sends
    nothing (no proposal, no vote): the txs are finalized by the others, once each."""
    ids = _run_batches(net, 0, [0, 2, 3], b"silent")
    assert _metrics(net, 1).get(RECEIVED_ACCEPTED, 0) > 0  # it did receive forwarded txs
    assert _wait(lambda: all(_get(net, i, "/status")["mempool_txs"] == 0 for i in (0, 2, 3)), 20)
    net.stop_all()
    wanted = {short_id(t) for t in ids}
    for index in (0, 2, 3):
        counts = _occurrences(net, index, wanted)
        assert set(counts) == wanted and set(counts.values()) == {1}, index


@pytest.mark.parametrize("net", [(None, {"forward_fanout": 3})], indirect=True)
def test_an_unreachable_next_leader_loses_no_tx(net: Testnet) -> None:
    """Node 1 is killed: node 0 skips it (not connected; fanout 3 makes it a target in
    every round), forwards to the others and keeps its own copies; every tx is finalized
    once on the three live nodes."""
    net.kill(1)
    assert _wait(lambda: 1 not in _connected(net, 0), 20)
    ids = _run_batches(net, 0, [0, 2, 3], b"unreachable")
    assert _metrics(net, 0).get(FORWARDED_NOT_CONNECTED, 0) > 0
    net.stop_all()
    wanted = {short_id(t) for t in ids}
    for index in (0, 2, 3):
        counts = _occurrences(net, index, wanted)
        assert set(counts) == wanted and set(counts.values()) == {1}, index


def _connected(net: Testnet, index: int) -> set[int]:
    status = _get(net, index, "/status")
    return set(range(len(net))) if status is None else set(status["peers"])
