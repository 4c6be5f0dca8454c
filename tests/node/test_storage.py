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
    """The writer dies (os._exit, no close) right after save_safety returns."""
    state = SafetyState(highest_vote=41, highest_propose=40)
    script = (
        "import os, sys\n"
        "from consensus.safety import SafetyState\n"
        "from node.storage import Storage\n"
        "s = Storage(__import__('pathlib').Path(sys.argv[1]))\n"
        "s.save_safety(SafetyState(highest_vote=40, highest_propose=40))\n"
        "s.save_safety(SafetyState(highest_vote=41, highest_propose=40))\n"
        "os._exit(9)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=ROOT, timeout=60)
    assert result.returncode == 9
    storage = Storage(tmp_path)
    stored = msgspec.msgpack.decode(storage.load_safety_bytes(), type=SafetyState)
    assert stored == state
    storage.close()


def test_a_safety_write_is_a_pwrite_then_fdatasync_of_the_safety_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Durable before it returns: the record is written and then synced (no SQLite
    statement runs); the slots alternate. Mutation: without the fdatasync this fails."""
    import node.safety_file as safety_file

    storage = Storage(tmp_path)
    calls: list[tuple[str, int]] = []
    real_pwrite, real_sync = os.pwrite, os.fdatasync

    def pwrite(fd: int, data: bytes, offset: int) -> int:
        calls.append(("pwrite", offset))
        return real_pwrite(fd, data, offset)

    def fdatasync(fd: int) -> None:
        calls.append(("fdatasync", fd))
        real_sync(fd)

    monkeypatch.setattr(safety_file.os, "pwrite", pwrite)
    monkeypatch.setattr(safety_file.os, "fdatasync", fdatasync)
    seen: list[str] = []
    storage._db.set_trace_callback(seen.append)
    storage.save_safety(SafetyState(highest_vote=3))
    storage.save_safety(SafetyState(highest_vote=4))
    fd = storage._safety._fd  # type: ignore[union-attr]
    slot = storage._safety.slot_bytes  # type: ignore[union-attr]
    # the fresh file holds record 1 in slot 1: writes 2 and 3 go to slots 0 and 1
    assert calls == [("pwrite", 0), ("fdatasync", fd), ("pwrite", slot), ("fdatasync", fd)]
    assert seen == [] and storage.safety_writes == 2
    storage.close()


def _slots(path: Path) -> list[bytes]:
    data = path.read_bytes()
    half = len(data) // 2
    return [data[:half], data[half:]]


def test_a_torn_newest_slot_leaves_the_previous_state(tmp_path: Path) -> None:
    """A write torn (or lost) in its slot: the other slot, the previous write, wins."""
    storage = Storage(tmp_path)
    storage.save_safety(SafetyState(highest_vote=5))  # record 2, slot 0
    storage.save_safety(SafetyState(highest_vote=6))  # record 3, slot 1
    storage.close()
    path = tmp_path / "node.safety"
    slots = _slots(path)
    torn = slots[1][:70] + bytes(len(slots[1]) - 70)  # the record's tail never reached disk
    path.write_bytes(slots[0] + torn)
    storage = Storage(tmp_path)
    assert storage.load_recovered().safety.highest_vote == 5  # type: ignore[union-attr]
    storage.save_safety(SafetyState(highest_vote=6))  # rewrites the torn slot
    storage.close()
    storage = Storage(tmp_path)
    assert storage.load_recovered().safety.highest_vote == 6  # type: ignore[union-attr]
    storage.close()


def test_the_newest_valid_slot_wins_whichever_slot_it_is_in(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    for vote in range(1, 6):
        storage.save_safety(SafetyState(highest_vote=vote))
        storage.close()
        storage = Storage(tmp_path)
        assert storage.load_recovered().safety.highest_vote == vote  # type: ignore[union-attr]
    storage.close()


def test_a_safety_file_without_a_valid_slot_is_refused(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    storage.save_safety(SafetyState(highest_vote=5))
    storage.close()
    path = tmp_path / "node.safety"
    slots = _slots(path)
    flipped = [bytearray(s) for s in slots]
    for slot in flipped:
        slot[30] ^= 0x01  # one bit of each record's checksum
    path.write_bytes(bytes(flipped[0] + flipped[1]))
    with pytest.raises(StorageError, match="no valid safety state in the safety file"):
        Storage(tmp_path)
    path.write_bytes(slots[0][:100])
    with pytest.raises(StorageError, match="not two slots"):
        Storage(tmp_path)
    path.unlink()
    with pytest.raises(StorageError, match="the safety file is missing"):
        Storage(tmp_path)
    path.write_bytes(b"".join(slots))  # restored: it starts again
    storage = Storage(tmp_path)
    assert storage.load_recovered().safety.highest_vote == 5  # type: ignore[union-attr]
    storage.close()


def test_a_large_safety_state_grows_the_slots(tmp_path: Path) -> None:
    from node.safety_file import MIN_SLOT_BYTES

    storage = Storage(tmp_path)
    big = SafetyState(highest_vote=9, highest_no_endorse_tip_id=bytes(3 * MIN_SLOT_BYTES))
    storage.save_safety(big)
    storage.save_safety(SafetyState(highest_vote=10, highest_no_endorse_tip_id=b"x"))
    storage.close()
    assert (tmp_path / "node.safety").stat().st_size == 2 * 4 * MIN_SLOT_BYTES
    assert not (tmp_path / "node.safety.tmp").exists()
    storage = Storage(tmp_path)
    assert storage.load_recovered().safety.highest_vote == 10  # type: ignore[union-attr]
    storage.close()


def test_a_leftover_tmp_file_is_ignored(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    storage.save_safety(SafetyState(highest_vote=5))
    storage.close()
    (tmp_path / "node.safety.tmp").write_bytes(b"half a new file")
    storage = Storage(tmp_path)
    assert storage.load_recovered().safety.highest_vote == 5  # type: ignore[union-attr]
    assert not (tmp_path / "node.safety.tmp").exists()
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
    storage.commit_blocks([_row(1, b"\x01" * 32, b"t1t1t1t1")], [(b"t1" * 16, 1)])
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


def test_finalized_txs_are_indexed_durably_with_their_first_height(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    a, b, c = (bytes([i]) * 32 for i in (1, 2, 3))
    t1, t2 = b"\x11" * 32, b"\x22" * 32
    assert storage.commit_blocks([_row(1, a), _row(2, b)], [(t1, 1), (t2, 2)]) == 0
    assert storage.tx_index_height() == 2
    # a replay of a stored height indexes nothing and is not a repeat
    assert storage.commit_blocks([_row(2, b)], [(t2, 2)]) == 0
    # a tx finalized again at a new height is reported and keeps its first height
    assert storage.commit_blocks([_row(3, c)], [(t1, 3)]) == 1
    storage.close()
    storage = Storage(tmp_path)  # durable: survives a reopen
    assert storage.finalized_tx_height(t1) == 1 and storage.finalized_tx_height(t2) == 2
    assert storage.finalized_tx_height(b"\x33" * 32) is None
    many = [bytes([9]) * 30 + i.to_bytes(2, "big") for i in range(1200)]  # several IN chunks
    assert storage.finalized_among([*many, t2, t1]) == {t1, t2}
    storage.index_finalized_txs([(many[0], 3)], 3)
    assert storage.finalized_among(many) == {many[0]} and storage.tx_index_height() == 3
    storage.close()


def test_mempool_rows_can_be_removed(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    storage.mempool_add([(b"\x01" * 32, b"a", 1), (b"\x02" * 32, b"b", 2)])
    storage.mempool_remove([b"\x01" * 32])
    assert [row[0] for row in storage.mempool_load(10)] == [b"\x02" * 32]
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


def _legacy(tmp_path: Path) -> Path:
    """`_stored_node` as a database from before the safety file: the state in meta rows."""
    import sqlite3

    from consensus.codec import encode
    from node.storage import _safety_sum

    path = _stored_node(tmp_path)
    data = encode(SafetyState(highest_vote=7, highest_propose=5))
    db = sqlite3.connect(path)
    db.execute("DELETE FROM meta WHERE key = 'safety_store'")
    db.executemany(
        "INSERT INTO meta (key, value) VALUES (?, ?)",
        [("safety", data), ("safety_sum", _safety_sum(data))],
    )
    db.commit()
    db.close()
    (tmp_path / "node.safety").unlink()
    return path


def test_a_database_with_the_safety_row_moves_it_to_the_safety_file(tmp_path: Path) -> None:
    import sqlite3

    path = _legacy(tmp_path)
    storage = Storage(tmp_path)
    assert storage.load_recovered().safety.highest_vote == 7  # type: ignore[union-attr]
    storage.save_safety(SafetyState(highest_vote=8))
    storage.close()
    db = sqlite3.connect(path)
    keys = {r[0] for r in db.execute("SELECT key FROM meta")}
    db.close()
    assert "safety" not in keys and "safety_sum" not in keys and "safety_store" in keys
    storage = Storage(tmp_path)  # from now on the file is the state
    assert storage.load_recovered().safety.highest_vote == 8  # type: ignore[union-attr]
    storage.close()
    (tmp_path / "node.safety").unlink()
    with pytest.raises(StorageError, match="the safety file is missing"):
        Storage(tmp_path)


def test_a_tampered_or_deleted_safety_row_is_refused(tmp_path: Path) -> None:
    """Before the move to the safety file, the row is checked against its checksum."""
    import sqlite3

    from consensus.codec import encode

    path = _legacy(tmp_path)
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = ? WHERE key = 'safety'", (encode(SafetyState()),))
    db.commit()
    db.close()
    with pytest.raises(StorageError, match="does not match its checksum"):
        Storage(tmp_path)
    assert not (tmp_path / "node.safety").exists()  # nothing moved
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


def test_a_database_from_before_the_checksum_is_adopted(tmp_path: Path) -> None:
    import sqlite3

    path = _legacy(tmp_path)
    db = sqlite3.connect(path)
    db.execute("DELETE FROM meta WHERE key IN ('safety_sum', 'integrity')")
    db.commit()
    db.close()
    storage = Storage(tmp_path)  # adopted as it is, and moved to the safety file
    assert storage.load_recovered().safety.highest_vote == 7  # type: ignore[union-attr]
    storage.close()


def test_reset_removes_only_the_database_files(tmp_path: Path) -> None:
    from node.storage import reset_data_dir

    _stored_node(tmp_path)
    (tmp_path / "notes.txt").write_text("operator's")
    removed = reset_data_dir(tmp_path)
    assert tmp_path / "node.sqlite3" in removed and tmp_path / "node.safety" in removed
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
