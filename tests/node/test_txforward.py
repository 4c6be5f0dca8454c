"""Transaction forwarding (node/txforward.py) and the mempool's forwarded txs, pure parts.

The real-process checks (no loss, no duplicate, an unreachable next leader) are in
tests/node/test_e2e_forwarding.py.
"""

from __future__ import annotations

import logging

import pytest

from consensus.validators import RoundRobinSchedule, ValidatorSet
from node.mempool import Mempool, tx_id
from node.metrics import NodeMetrics
from node.txforward import (
    TX_FRAME_TAG,
    TxForwarder,
    TxFrameError,
    decode_tx_frame,
    encode_tx_frame,
    is_tx_frame,
)
from node.txpool import TxPool


class RecordingTransport:
    """The two transport queries the forwarder makes, with settable answers."""

    def __init__(self, connected: set[int], queued: dict[int, int] | None = None):
        self.connected = connected
        self.depth = queued or {}

    def connected_peers(self) -> set[int]:
        return set(self.connected)

    def queued(self, peer: int) -> int:
        return self.depth.get(peer, 0)


def _schedule(n: int) -> RoundRobinSchedule:
    return RoundRobinSchedule(ValidatorSet.from_keys([bytes([i]) * 32 for i in range(n)]))


def _forwarder(index=0, n=4, fanout=2, connected=None, queued=None, **kw):
    sent: list[tuple[int, bytes]] = []
    metrics = NodeMetrics()
    forwarder = TxForwarder(
        index=index,
        leader_of=_schedule(n).leader,
        validators=n,
        send_frame=lambda peer, frame, kind: sent.append((peer, frame)),
        transport=RecordingTransport(set(range(n)) if connected is None else connected, queued),
        metrics=metrics,
        fanout=fanout,
        **kw,
    )
    return forwarder, sent, metrics


def _count(metrics: NodeMetrics, name: str, result: str) -> float:
    text = metrics.registry.render()
    for line in text.splitlines():
        if line.startswith(f'{name}{{result="{result}"}}'):
            return float(line.split()[-1])
    return 0.0


def test_targets_are_the_distinct_next_leaders_without_this_node() -> None:
    leader = _schedule(4).leader
    forwarder, _, _ = _forwarder(index=0, n=4, fanout=2)
    assert forwarder.targets(5) == [leader(6), leader(7)]
    assert 0 not in forwarder.targets(2)  # round 4 is led by node 0: skipped
    assert forwarder.targets(2) == [leader(3), leader(5)]
    wide, _, _ = _forwarder(index=0, n=4, fanout=8)
    assert sorted(wide.targets(0)) == [1, 2, 3]  # at most n - 1, each once
    single, _, _ = _forwarder(index=0, n=1, fanout=2)
    assert single.targets(0) == []


def test_frames_round_trip_and_bad_frames_are_refused() -> None:
    txs = [b"a", b"bb" * 100, bytes(range(256))]
    frame = encode_tx_frame(txs)
    assert is_tx_frame(frame) and frame[0] == TX_FRAME_TAG
    assert decode_tx_frame(frame, 3) == txs
    with pytest.raises(TxFrameError, match="exceed"):
        decode_tx_frame(frame, 2)  # FWD-BOUND at the receiver
    for bad in (b"", b"\x07xx", bytes([TX_FRAME_TAG]) + b"\xff\x00", encode_tx_frame([])):
        with pytest.raises(TxFrameError):
            decode_tx_frame(bad, 10)
    with pytest.raises(TxFrameError):  # an array of something else than byte strings
        decode_tx_frame(bytes([TX_FRAME_TAG]) + b"\x91\x01", 10)


def test_forward_sends_one_frame_per_target_and_splits_large_batches() -> None:
    forwarder, sent, metrics = _forwarder(index=0, n=4, fanout=2, max_frame_txs=2)
    forwarder.current_round = lambda: 5
    txs = [b"t%d" % i for i in range(5)]
    assert forwarder.forward(txs) == 6  # 3 frames (2 + 2 + 1) to each of 2 targets
    assert sorted({peer for peer, _ in sent}) == sorted(forwarder.targets(5))
    for peer in forwarder.targets(5):
        got = [tx for p, f in sent if p == peer for tx in decode_tx_frame(f, 2)]
        assert got == txs
    assert _count(metrics, "sedna_txs_forwarded_total", "sent") == 10
    assert forwarder.forward([]) == 0


def test_unconnected_and_backed_up_targets_are_skipped() -> None:
    leader = _schedule(4).leader
    first, second = leader(6), leader(7)
    forwarder, sent, metrics = _forwarder(
        index=0, n=4, connected={second}, max_queued_frames=4, queued={second: 4}
    )
    forwarder.current_round = lambda: 5
    assert forwarder.forward([b"x"]) == 0 and sent == []
    assert _count(metrics, "sedna_txs_forwarded_total", "not_connected") == 1
    assert _count(metrics, "sedna_txs_forwarded_total", "backpressure") == 1
    forwarder.transport.depth[second] = 3  # room for one more frame
    assert forwarder.forward([b"x"]) == 1 and [p for p, _ in sent] == [second]
    assert first not in {p for p, _ in sent}


def test_fanout_zero_forwards_nothing_and_limits_are_checked() -> None:
    forwarder, sent, _ = _forwarder(fanout=0)
    assert forwarder.forward([b"x"]) == 0 and sent == []
    with pytest.raises(ValueError):
        _forwarder(fanout=-1)
    with pytest.raises(ValueError):
        _forwarder(max_frame_txs=0)


def _pool(**overrides) -> Mempool:
    limits = {"max_txs": 10, "max_tx_bytes": 100, "max_block_txs": 5, "max_block_bytes": 1000}
    limits.update(overrides)
    return Mempool(**limits)


def test_forwarded_txs_are_bounded_not_timed_and_deduplicated() -> None:
    pool = _pool(max_forwarded=3)
    result = pool.submit([b"f1", b"f2", b"f3", b"f4"], now_ns=5, forwarded=True)
    assert (result.accepted, result.full) == (3, 1)  # FWD-BOUND: the forwarded share
    assert pool.forwarded_pending == 3 and pool.accepted_total == 0
    # a local tx still finds room; a local copy of a forwarded tx is a duplicate
    local = pool.submit([b"l1", b"f1"], now_ns=6)
    assert (local.accepted, local.duplicate) == (1, 1)
    assert pool.submit([b"l1"], now_ns=7, forwarded=True).duplicate == 1
    # forwarded txs are proposed like any other ...
    assert pool.select(set())[1][:3] == [tx_id(b"f1"), tx_id(b"f2"), tx_id(b"f3")]
    # ... but are not this node's: no speculative or final latency is reported for them
    ids = [tx_id(t) for t in (b"f1", b"f2", b"l1")]
    assert pool.mark_voted(ids) == [6]
    assert pool.on_finalized(ids) == [6]
    assert pool.forwarded_pending == 1 and len(pool) == 1
    assert pool.submit([b"f1"], now_ns=8, forwarded=True).already_final == 1  # TX-ONCE
    assert pool.submit([b"f5", b"f6", b"f7"], now_ns=9, forwarded=True).accepted == 2


def _txpool(pool: Mempool, forwarder: TxForwarder | None) -> TxPool:
    return TxPool(
        mempool=pool,
        lanes=None,  # type: ignore[arg-type]  (submit and on_tx_frame do not use lanes)
        ledger=None,  # type: ignore[arg-type]
        metrics=forwarder.metrics if forwarder else NodeMetrics(),
        logger=logging.getLogger("test"),
        push_internal=lambda event: None,
        forwarder=forwarder,
    )


def test_rpc_txs_are_forwarded_once_and_forwarded_txs_never_again() -> None:
    forwarder, sent, metrics = _forwarder(index=0, n=4, fanout=2)
    forwarder.current_round = lambda: 1
    txpool = _txpool(_pool(), forwarder)
    txpool.submit([b"a", b"b", b"a"])
    assert len(sent) == 2
    assert all(decode_tx_frame(f, 10) == [b"a", b"b"] for _, f in sent)  # accepted ones only
    txpool.submit([b"a"])  # a duplicate is not forwarded again
    assert len(sent) == 2
    # FWD-ONCE: txs received in a frame are admitted but never forwarded
    result = txpool.on_tx_frame(2, encode_tx_frame([b"c", b"a"]))
    assert result is not None and (result.accepted, result.duplicate) == (1, 1)
    assert len(sent) == 2
    assert _count(metrics, "sedna_forwarded_txs_received_total", "accepted") == 1
    assert _count(metrics, "sedna_forwarded_txs_received_total", "duplicate") == 1
    assert txpool.on_tx_frame(2, b"\xf7garbage") is None
    assert _count(metrics, "sedna_forwarded_txs_received_total", "malformed") == 1
    too_many = encode_tx_frame([b"x%d" % i for i in range(6)])  # > max_block_txs = 5
    assert txpool.on_tx_frame(2, too_many) is None


def test_a_busy_node_does_not_forward() -> None:
    """FWD-LOAD: with max_pending txs already waiting, nothing is forwarded (counted)."""
    forwarder, sent, metrics = _forwarder(index=0, n=4, fanout=2, max_pending=3)
    forwarder.current_round = lambda: 1
    txpool = _txpool(_pool(max_txs=10), forwarder)
    txpool.submit([b"a", b"b", b"c"])  # 0 pending before: forwarded
    assert len(sent) == 2
    txpool.submit([b"d"])  # 3 pending before: busy
    assert len(sent) == 2
    assert _count(metrics, "sedna_txs_forwarded_total", "busy") == 2  # 1 tx x 2 targets
    txpool.mempool.on_finalized([tx_id(b"a"), tx_id(b"b")])
    txpool.submit([b"e"])  # 2 pending before: forwarded again
    assert len(sent) == 4
    with pytest.raises(ValueError):
        _forwarder(max_pending=0)
