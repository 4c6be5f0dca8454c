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
from node.storage import FinalizedRow, LaneEventRow, LaneHeightRow, Storage, StorageError
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


def _event(pid: bytes, height: int, position: int, status: str = "executed") -> LaneEventRow:
    data = b"payload-" + pid if status == "executed" else None
    return LaneEventRow(pid, status, height, position, 1000 + height, 2, 2, height, data)


def _lane_row(height: int, tag: bytes = b"h") -> LaneHeightRow:
    return LaneHeightRow(height, tag * 32, 1, 0, 0, 2)


def test_lane_records_are_consecutive_idempotent_and_never_executed_twice(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    assert storage.lane_height() == 0
    storage.lane_record([_lane_row(1), _lane_row(2)], [_event(b"a" * 32, 2, 5)])
    assert storage.lane_height() == 2
    # A replay of stored heights changes nothing, and a payload is recorded at most once.
    storage.lane_record([_lane_row(2, b"x")], [_event(b"a" * 32, 2, 9)])
    assert storage.lane_hash_at(2) == b"h" * 32
    assert storage.lane_event(b"a" * 32) == _event(b"a" * 32, 2, 5)
    # Rule: heights are recorded consecutively; a gap rolls the whole batch back.
    with pytest.raises(StorageError, match="does not follow"):
        storage.lane_record([_lane_row(3), _lane_row(5)], [_event(b"b" * 32, 3, 0)])
    assert storage.lane_height() == 2 and storage.lane_event(b"b" * 32) is None
    storage.lane_record(
        [_lane_row(3)],
        [_event(b"d" * 32, 3, -1, "rejected"), _event(b"c" * 32, 3, 1), _event(b"b" * 32, 3, 0)],
    )
    events = storage.lane_events(1, 3)
    # execution order: by height, then position; decided-but-not-executed after them
    assert [(e.payload_id[:1], e.position) for e in events] == [
        (b"a", 5), (b"b", 0), (b"c", 1), (b"d", -1)
    ]  # fmt: skip
    assert all(e.data is None for e in events)  # bytes only on request
    assert storage.lane_events(3, 3, with_data=True)[0].data == b"payload-" + b"b" * 32
    assert storage.lane_event_count() == 4 and storage.lane_event_count("rejected") == 1
    assert [r.height for r in storage.lane_heights(1, 10)] == [1, 2, 3]
    storage.close()


def test_schema_v1_database_is_migrated(tmp_path: Path) -> None:
    import sqlite3

    db = sqlite3.connect(tmp_path / "node.sqlite3")
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL)")
    db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (b"1",))
    db.commit()
    db.close()
    storage = Storage(tmp_path)
    assert storage._meta("schema_version") == b"2"
    assert storage.lane_height() == 0
    storage.close()
    db = sqlite3.connect(tmp_path / "node.sqlite3")
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (b"7",))
    db.commit()
    db.close()
    with pytest.raises(StorageError, match="schema version 7"):
        Storage(tmp_path)


def test_lane_data_and_finalized_blocks(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    storage.put_lane_data(b"lane/1", b"bundle")
    assert storage.get_lane_data(b"lane/1") == b"bundle"
    assert storage.get_lane_data(b"lane/2") is None
    id1, tip1, body1 = make_block(round=1, seq_num=1, payload=b"\x01x")
    id2, tip2, body2 = make_block(fake_qc(id1, 1), round=2, seq_num=2)
    storage.put_block(id1, tip1, body1)
    storage.put_block(id2, tip2, body2)
    assert storage.max_block_seq() == 2
    assert storage.finalized_blocks(1, 10) == []  # stored but not finalized
    storage.commit_blocks([_row(1, id1), _row(2, id2)], [])
    assert storage.finalized_blocks(1, 10) == [(tip1, body1), (tip2, body2)]
    assert storage.finalized_blocks(2, 1) == [(tip2, body2)]
    storage.close()


# --------------------------------------------------------------------------- refusals at open


def _stored_node(tmp_path: Path) -> Path:
    """A database that voted (highest_vote 7) and finalized a block, closed cleanly."""
    storage = Storage(tmp_path)
    id1, tip1, body1 = make_block(round=1, seq_num=1, payload=b"\x01x")
    storage.put_block(id1, tip1, body1)
    storage.save_safety(SafetyState(highest_vote=7, highest_propose=5))
    storage.commit_blocks([_row(1, id1)], [])
    storage.close()
    return tmp_path / "node.sqlite3"


def test_an_empty_database_file_is_refused_not_recreated(tmp_path: Path) -> None:
    path = _stored_node(tmp_path)
    path.write_bytes(b"")
    with pytest.raises(StorageError, match=r"node\.sqlite3: the database file is empty"):
        Storage(tmp_path)
    assert path.stat().st_size == 0  # nothing was written over it


def test_a_database_without_the_sedna_schema_is_refused(tmp_path: Path) -> None:
    import sqlite3

    db = sqlite3.connect(tmp_path / "node.sqlite3")
    db.execute("CREATE TABLE other (x)")
    db.commit()
    db.close()
    with pytest.raises(StorageError, match="holds no sedna schema"):
        Storage(tmp_path)


def test_side_files_without_the_database_are_refused(tmp_path: Path) -> None:
    path = _stored_node(tmp_path)
    path.rename(tmp_path / "elsewhere")
    with pytest.raises(StorageError, match="missing, but"):
        Storage(tmp_path)


def test_a_fresh_database_needs_an_absent_or_empty_data_dir(tmp_path: Path) -> None:
    Storage(tmp_path / "new").close()  # absent: created
    (tmp_path / "empty").mkdir()
    Storage(tmp_path / "empty").close()  # empty: created
    assert (tmp_path / "empty" / "node.sqlite3").stat().st_size > 0
    (tmp_path / "file").write_text("x")
    with pytest.raises(StorageError, match="not a directory"):
        Storage(tmp_path / "file")


def test_overwritten_pages_fail_the_integrity_check(tmp_path: Path) -> None:
    import random

    storage = Storage(tmp_path)
    for i in range(1, 200):
        storage.mempool_add([(i.to_bytes(32, "big"), os.urandom(600), i)])
    storage.close()
    path = tmp_path / "node.sqlite3"
    page_bytes = 4096
    pages = path.stat().st_size // page_bytes
    assert pages > 30  # non-vacuous: there are pages besides the header page
    rng = random.Random(0)  # spares the schema and meta pages: only quick_check sees it
    with path.open("r+b") as handle:
        for page in rng.sample(range(1, pages), 20):  # page 0 holds the file header
            handle.seek(page * page_bytes)
            handle.write(rng.randbytes(page_bytes))
    with pytest.raises(StorageError, match=r"node\.sqlite3: integrity check failed") as caught:
        Storage(tmp_path)
    assert "\n" not in str(caught.value)  # one line for the operator


def test_a_tampered_or_deleted_safety_row_is_refused(tmp_path: Path) -> None:
    import sqlite3

    from consensus.codec import encode

    path = _stored_node(tmp_path)
    storage = Storage(tmp_path)
    assert storage.load_recovered().safety.highest_vote == 7  # type: ignore[union-attr]
    storage.close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = ? WHERE key = 'safety'", (encode(SafetyState()),))
    db.commit()
    db.close()
    with pytest.raises(StorageError, match="does not match its checksum"):
        Storage(tmp_path)
    db = sqlite3.connect(path)
    db.execute("DELETE FROM meta WHERE key = 'safety'")
    db.commit()
    db.close()
    with pytest.raises(StorageError, match=r"safety state .* is missing"):
        Storage(tmp_path)
    db = sqlite3.connect(path)
    db.execute("DELETE FROM meta WHERE key = 'safety_sum'")
    db.commit()
    db.close()
    with pytest.raises(StorageError, match="checksum is missing"):
        Storage(tmp_path)


def test_a_database_from_before_the_checksum_gets_one(tmp_path: Path) -> None:
    import sqlite3

    path = _stored_node(tmp_path)
    db = sqlite3.connect(path)
    db.execute("DELETE FROM meta WHERE key IN ('safety_sum', 'integrity')")
    db.commit()
    db.close()
    storage = Storage(tmp_path)  # adopted as it is
    assert storage.load_recovered().safety.highest_vote == 7  # type: ignore[union-attr]
    storage.close()
    db = sqlite3.connect(path)
    db.execute("DELETE FROM meta WHERE key = 'safety'")
    db.commit()
    db.close()
    with pytest.raises(StorageError, match="is missing"):
        Storage(tmp_path)  # from now on it is checked


def test_reset_removes_only_the_database_files(tmp_path: Path) -> None:
    from node.storage import reset_data_dir

    _stored_node(tmp_path)
    (tmp_path / "notes.txt").write_text("operator's")
    removed = reset_data_dir(tmp_path)
    assert tmp_path / "node.sqlite3" in removed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_read_only_open_never_creates(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="no database"):
        Storage(tmp_path / "absent", read_only=True)
    assert not (tmp_path / "absent").exists()
    _stored_node(tmp_path)
    storage = Storage(tmp_path, read_only=True)
    assert storage.finalized_head()[0] == 1
    storage.close()


def test_a_database_open_in_another_process_is_refused(tmp_path: Path) -> None:
    _stored_node(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, pathlib; from node.storage import Storage; "
         "s = Storage(pathlib.Path(sys.argv[1])); print('open', flush=True); sys.stdin.read()",
         str(tmp_path)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        with pytest.raises(StorageError, match="in use by another process"):
            Storage(tmp_path)
    finally:
        holder.communicate("", timeout=30)
    Storage(tmp_path).close()  # free again once the holder has exited
