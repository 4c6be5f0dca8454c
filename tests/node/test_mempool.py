"""Mempool bounds, dedup, payload building and the plain payload format."""

from __future__ import annotations

from pathlib import Path

import pytest

from consensus.messages import BlockBody
from node.mempool import (
    PLAIN_FORMAT,
    Mempool,
    PayloadError,
    PlainPayloadValidator,
    decode_plain_payload,
    encode_plain_payload,
    tx_id,
)
from node.storage import Storage
from tests.node.helpers import make_block


def _pool(**overrides) -> Mempool:
    limits = {"max_txs": 5, "max_tx_bytes": 100, "max_block_txs": 3, "max_block_bytes": 1000}
    limits.update(overrides)
    return Mempool(**limits)


def test_submit_counts_every_outcome() -> None:
    pool = _pool()
    result = pool.submit([b"a", b"b", b"a", b"", b"x" * 101], now_ns=1)
    assert (result.accepted, result.duplicate, result.too_large) == (2, 1, 2)
    assert result.accepted_ids == [tx_id(b"a"), tx_id(b"b")]
    result = pool.submit([b"c", b"d", b"e", b"f"], now_ns=2)
    assert (result.accepted, result.full) == (3, 1)  # bound: max_txs = 5
    assert len(pool) == 5


def test_finalized_txs_leave_and_are_remembered() -> None:
    pool = _pool()
    pool.submit([b"a", b"b"], now_ns=10)
    assert pool.on_finalized([tx_id(b"a"), tx_id(b"zzz")]) == [10]
    assert tx_id(b"a") not in pool and len(pool) == 1
    assert pool.submit([b"a"], now_ns=11).already_final == 1
    assert pool.finalized_local_total == 1


def test_finalized_memory_is_bounded() -> None:
    pool = _pool(finalized_memory=2)
    pool.on_finalized([tx_id(b"1"), tx_id(b"2"), tx_id(b"3")])
    assert pool.submit([b"1"], now_ns=1).accepted == 1  # forgotten (oldest)
    assert pool.submit([b"3"], now_ns=1).already_final == 1


def test_build_payload_respects_limits_order_and_exclusions() -> None:
    pool = _pool(max_txs=10, max_block_txs=3)
    txs = [bytes([65 + i]) * 10 for i in range(6)]
    pool.submit(txs, now_ns=1)
    payload, ids = pool.build_payload(set())
    assert decode_plain_payload(payload, 3, 100) == txs[:3]
    assert ids == [tx_id(t) for t in txs[:3]]
    payload, ids = pool.build_payload(set(ids))  # txs in pending ancestors are skipped
    assert decode_plain_payload(payload, 3, 100) == txs[3:]
    small = _pool(max_txs=10, max_block_bytes=40)
    small.submit(txs, now_ns=1)
    _, ids = small.build_payload(set())
    assert len(ids) == 2  # 2 * (10 + 5) <= 40 < 3 * 15
    assert _pool().build_payload(set()) == (b"", [])
    txs_only, ids = pool.select(set())
    assert txs_only == txs[:3] and ids == [tx_id(t) for t in txs[:3]]


def test_mark_voted_reports_each_tx_once() -> None:
    pool = _pool()
    pool.submit([b"a"], now_ns=7)
    assert pool.mark_voted([tx_id(b"a"), tx_id(b"b")]) == [7]
    assert pool.mark_voted([tx_id(b"a")]) == []


def test_accepted_txs_survive_a_restart(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    pool = _pool(storage=storage)
    pool.submit([b"a", b"b"], now_ns=3)
    storage.close()
    storage = Storage(tmp_path)
    again = _pool(storage=storage)
    assert len(again) == 2 and tx_id(b"b") in again
    payload, _ = again.build_payload(set())
    assert decode_plain_payload(payload, 3, 100) == [b"a", b"b"]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (bytes([PLAIN_FORMAT + 1]) + b"\x92\x90\x90", "unsupported lane payload version"),
        (bytes([PLAIN_FORMAT]) + b"\xc1", "malformed"),
        (bytes([PLAIN_FORMAT]) + b"\x92\x91\x01\x90", "malformed"),  # an int, not bytes
        (bytes([PLAIN_FORMAT]) + b"\x92\x90\x90", "non-canonical empty"),
        (encode_plain_payload([b"a"] * 4), "exceed the block limit"),
        (encode_plain_payload([b"x" * 101]), "outside 1..100"),
        (bytes([PLAIN_FORMAT]) + b"\x92\x91\xc4\x00\x90", "outside 1..100"),  # an empty tx
    ],
)
def test_malformed_payloads_are_rejected(payload: bytes, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        decode_plain_payload(payload, 3, 100)
    _, tip, _ = make_block()
    assert not PlainPayloadValidator(3, 100, 1000).validate(tip.header, BlockBody(payload))


def test_validator_accepts_good_and_empty_payloads() -> None:
    _, tip, _ = make_block()
    validator = PlainPayloadValidator(3, 100, 1000)
    assert validator.validate(tip.header, BlockBody(b""))
    assert validator.validate(tip.header, BlockBody(encode_plain_payload([b"a", b"b"])))


def test_a_restart_forgets_no_finalized_tx(tmp_path: Path) -> None:
    """TX-ONCE: the finalized set lived in memory only; a restarted node accepted (and
    proposed) finalized txs again, and restored stored txs that were already final."""
    storage = Storage(tmp_path)
    pool = _pool(storage=storage)
    pool.submit([b"a", b"b", b"c"], now_ns=1)
    # b is finalized by a block; c is finalized too, but (a node killed between the
    # block's finality elsewhere and its own commit) still sits in the stored mempool
    storage._db.execute(
        "INSERT INTO finalized_txs (txid, height) VALUES (?, 1), (?, 1)",
        (tx_id(b"b"), tx_id(b"c")),
    )
    storage.mempool_remove([tx_id(b"b")])
    storage.close()
    storage = Storage(tmp_path)
    again = _pool(storage=storage)
    assert again.restored_already_final == 1 and len(again) == 1 and tx_id(b"a") in again
    assert [row[0] for row in storage.mempool_load(10)] == [tx_id(b"a")]  # dropped on disk
    result = again.submit([b"b", b"c", b"d", b"a"], now_ns=2)
    assert (result.already_final, result.accepted, result.duplicate) == (2, 1, 1)
    storage.close()
