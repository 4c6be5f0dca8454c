"""SQLite storage: safety durability across a process kill, blocks, finalized chain, recovery."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from consensus.core import RecoveredState
from consensus.messages import GENESIS_BLOCK_ID
from consensus.safety import SafetyState
from node.storage import FinalizedRow, Storage, StorageError
from tests.node.helpers import fake_qc, make_block

ROOT = Path(__file__).resolve().parents[2]


def _row(height: int, block_id: bytes, txids: bytes = b"") -> FinalizedRow:
    return FinalizedRow(
        height, block_id, height, height * 10, height * 20, None, len(txids) // 8, txids
    )


def test_wal_mode_and_schema(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    mode = storage._db.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    assert storage.load_safety_bytes() is None
    assert storage.finalized_head() == (0, GENESIS_BLOCK_ID)
    assert storage.load_recovered() is None  # a fresh node
    storage.close()


def test_safety_write_survives_sigkill_of_the_writer(tmp_path: Path) -> None:
    """The writer dies (os._exit, no close, no checkpoint) right after save_safety returns."""
    state = SafetyState(highest_vote=41, highest_propose=40)
    script = (
        "import os, sys\n"
        "from consensus.safety import SafetyState\n"
        "from node.storage import Storage\n"
        "s = Storage(__import__('pathlib').Path(sys.argv[1]))\n"
        "s.save_safety(SafetyState(highest_vote=41, highest_propose=40))\n"
        "os._exit(9)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=ROOT, timeout=60)
    assert result.returncode == 9
    storage = Storage(tmp_path)
    stored = msgspec.msgpack.decode(storage.load_safety_bytes(), type=SafetyState)
    assert stored == state
    assert storage._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # back to NORMAL
    storage.close()


def test_safety_write_switches_to_full_sync_for_that_transaction(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    seen: list[str] = []
    storage._db.set_trace_callback(seen.append)
    storage.save_safety(SafetyState(highest_vote=3))
    statements = [s.strip().upper() for s in seen]
    full = statements.index("PRAGMA SYNCHRONOUS=FULL")
    commit = statements.index("COMMIT")
    normal = statements.index("PRAGMA SYNCHRONOUS=NORMAL")
    assert full < commit < normal
    storage.close()


def test_blocks_round_trip_and_recovery(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    id1, tip1, body1 = make_block(round=1, seq_num=1, payload=b"\x01x")
    id2, tip2, body2 = make_block(fake_qc(id1, 1), round=2, seq_num=2)
    storage.put_block(id1, tip1, body1)
    storage.put_block(id2, tip2, body2)
    storage.put_block(id2, tip2, body2)  # idempotent
    assert storage.block_count() == 2
    assert storage.get_block(id1) == (tip1, body1)
    assert storage.get_block(b"\x00" * 32) is None
    assert storage.certificate_count() == 2  # genesis QC and QC(1)
    storage.save_safety(SafetyState(highest_vote=2))
    storage.commit_blocks([_row(1, id1)], [])
    storage.close()

    reopened = Storage(tmp_path)
    recovered = reopened.load_recovered()
    assert isinstance(recovered, RecoveredState)
    assert recovered.safety.highest_vote == 2
    assert recovered.finalized_height == 1 and recovered.finalized_block_id == id1
    # blocks at or above the finalized height: the head itself and its child
    assert [tip.header.seq_num for tip, _ in recovered.blocks] == [1, 2]
    reopened.close()


def test_finalized_chain_is_append_only_and_consecutive(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    a, b, c = (bytes([i]) * 32 for i in (1, 2, 3))
    storage.commit_blocks([_row(1, a), _row(2, b)], [])
    storage.commit_blocks([_row(2, b)], [])  # a replay of a stored height is skipped
    assert storage.finalized_head() == (2, b)
    with pytest.raises(StorageError, match="differs"):
        storage.commit_blocks([_row(2, c)], [])
    with pytest.raises(StorageError, match="does not follow"):
        storage.commit_blocks([_row(4, c)], [])
    assert storage.finalized_head() == (2, b)  # failed commits changed nothing
    assert [r.height for r in storage.finalized_range(1, 10)] == [1, 2]
    assert storage.finalized_range(3, 10) == []


def test_commit_removes_finalized_txs_from_the_stored_mempool(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    storage.mempool_add([(b"t1" * 16, b"tx1", 5), (b"t2" * 16, b"tx2", 6)])
    assert storage.mempool_count() == 2
    storage.commit_blocks([_row(1, b"\x01" * 32, b"t1t1t1t1")], [b"t1" * 16])
    assert [row[0] for row in storage.mempool_load(10)] == [b"t2" * 16]


def test_corrupt_safety_state_is_a_storage_error(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    storage.save_safety_bytes(b"\xc1not msgpack")
    with pytest.raises(StorageError, match="unreadable"):
        storage.load_recovered()


def test_not_a_database_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "node.sqlite3").write_bytes(os.urandom(4096))
    with pytest.raises(StorageError):
        Storage(tmp_path)


def test_payloads_and_lane_data(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    storage.put_payload(b"p" * 32, b"decoded", 123)
    assert storage.get_payload(b"p" * 32) == (b"decoded", 123)
    assert storage.get_payload(b"q" * 32) is None
    storage.put_lane_data(b"lane/1", b"bundle")
    assert storage.get_lane_data(b"lane/1") == b"bundle"
    assert storage.get_lane_data(b"lane/2") is None
