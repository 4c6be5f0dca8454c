"""Embedded SQLite storage (WAL mode) of one validator.

Tables
- `meta`         key/value: `schema_version`, `safety_store` (`file`: the safety state is in
                 `node.safety`, node/safety_file.py), `tx_index_height`, `integrity`. A
                 database from before the safety file held the encoded `SafetyState` under
                 `safety` (and its checksum under `safety_sum`): it is moved to the file
                 at the first start.
- `blocks`       every block that entered the block tree (encoded Tip and BlockBody).
- `certificates` QCs carried by stored blocks, keyed by (kind, round, block id).
- `finalized`    the finalized chain: height -> block id, round, header time, local commit
                 time, local "Voted" time, tx count and the 8-byte short ids of its txs.
- `finalized_txs` every finalized tx id (full 32 bytes) -> the height it was finalized at,
                 written in the same transaction as the `finalized` rows. Meta key
                 `tx_index_height` is the highest height indexed (a database written
                 before this table existed is indexed from its stored blocks at start).
- `mempool`      transactions accepted over RPC and not yet finalized.
- `lane_data`    opaque lane records (bundles, lane blocks) keyed by bytes.
- `lane_events`  Sedna payloads decided by the decode tracker: status (executed, rejected,
                 expired), decision height, execution position (-1 unless executed),
                 local decision time, κ, finalized bundles and the decoded bytes.
- `lane_chain`   certified lanes (docs/lanes.md, "Certified lanes"): every lane chain block
                 the availability layer stored (`StoreLaneBlock`: its own, the ones it voted
                 for, fetched ones), by digest, with lane, height, slot and whether this node
                 voted for it. Written before the vote or broadcast that depends on it;
                 served to peers that fetch; read back at restart.
- `lane_heights` per finalized height the tracker processed: the execution-order hash
                 after that height and the counts decided in it. Its highest row is the
                 tracker's durable height; a restarted node replays the finalized chain
                 through a fresh tracker and checks each replayed hash against this table.
- `lane_ledger`  with a `[ledger]`: at every ledger checkpoint (tracker heights divisible
                 by LEDGER_CHECKPOINT_HEIGHTS), the lanes' ledger digest after it and the
                 running totals (fees charged, bounties paid, burned), written with the
                 `lane_heights` row; a replay must reproduce each digest.

Durability. The connection runs `journal_mode=WAL, synchronous=NORMAL`: a committed
transaction is in the OS page cache before `commit()` returns, so it survives the death of
the process (SIGKILL) but not necessarily a power cut (after one, SQLite rolls the database
back to a consistent earlier commit; the node re-fetches what it lost from its peers). The
safety state is different: the vote it protects is about to leave the machine, so
`save_safety` writes it to its own file and `fdatasync`s it before returning
(node/safety_file.py: two checksummed slots written in turn, so a torn write leaves the
previous state valid). Before the safety file, a `synchronous=FULL` SQLite commit per
round did this at ~3x the cost (docs/performance.md, "Latency and scale").

Opening (`Storage(data_dir)`) refuses what would make the node forget what it did
(docs/operations.md, "Storage faults"): an existing database file that is empty (0 bytes),
is not SQLite, holds no sedna schema or fails `PRAGMA quick_check`; database side files
(`-wal`, `-shm`) without the database; a safety file that is missing, not two slots
long or without a valid slot (or, before the move to the file, a safety row whose checksum
does not match); a database another process holds open (an exclusive `flock` while open). Each
refusal is a `StorageError` whose text starts with the file and says the problem. Only a
data dir that is absent or empty starts a fresh database; `reset_data_dir` (the node's
`--reset`) is the explicit way to start over.

Safety checksums. Each slot of the safety file carries SHA-256 over a domain, its sequence
number, length and data; a database from before the file kept the same kind of sum under
`safety_sum`, checked once more when its state is moved. They catch truncated,
overwritten, torn or edited records; they are not secrets (whoever can write the files can
also recompute them).

Every method runs on the caller's thread (the node's event loop) and is bounded by the size of
its arguments or by an explicit `limit`, except the open-time integrity check, which reads
the whole file once.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from consensus.codec import encode
from consensus.messages import GENESIS_BLOCK_ID, BlockBody, Tip
from node.safety_file import SAFETY_FILE, TMP_SUFFIX, SafetyFile, SafetyFileError, read_latest

if TYPE_CHECKING:  # pragma: no cover
    from consensus.core import RecoveredState
    from consensus.safety import SafetyState

SCHEMA_VERSION = 2  # 2 added lane_events / lane_heights (a v1 database is migrated)
DATABASE_FILE = "node.sqlite3"
SIDE_FILE_SUFFIXES = ("-wal", "-shm", "-journal")
SAFETY_SUM_DOMAIN = b"sedna/safety-sum/1\x00"
NO_SAFETY_MARKER = b"\x00no safety state stored"
INTEGRITY_VERSION = b"1"  # meta `integrity`: the database carries a safety checksum
SAFETY_STORE_FILE = b"file"  # meta `safety_store`: the safety state is in SAFETY_FILE
SHORT_ID_BYTES = 8
MAX_RANGE_ROWS = 1000
MAX_EVENT_ROWS = 20_000
LOOKUP_CHUNK = 500  # ids per `IN (...)` query (SQLite's variable limit is far above)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (
    block_id BLOB PRIMARY KEY, seq_num INTEGER NOT NULL, block_round INTEGER NOT NULL,
    tip BLOB NOT NULL, body BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS blocks_by_seq ON blocks (seq_num);
CREATE TABLE IF NOT EXISTS certificates (
    kind TEXT NOT NULL, round INTEGER NOT NULL, block_id BLOB NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (kind, round, block_id));
CREATE TABLE IF NOT EXISTS finalized (
    height INTEGER PRIMARY KEY, block_id BLOB NOT NULL UNIQUE, block_round INTEGER NOT NULL,
    timestamp_ns INTEGER NOT NULL, committed_ns INTEGER NOT NULL, voted_ns INTEGER,
    n_tx INTEGER NOT NULL, txids BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS finalized_txs (
    txid BLOB PRIMARY KEY, height INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mempool (
    txid BLOB PRIMARY KEY, tx BLOB NOT NULL, accepted_ns INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS lane_data (key BLOB PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS lane_events (
    payload_id BLOB PRIMARY KEY, status TEXT NOT NULL, height INTEGER NOT NULL,
    position INTEGER NOT NULL, decided_ns INTEGER NOT NULL, kappa INTEGER NOT NULL,
    finalized_bundles INTEGER NOT NULL, first_slot INTEGER NOT NULL, data BLOB);
CREATE INDEX IF NOT EXISTS lane_events_by_height ON lane_events (height, position);
CREATE TABLE IF NOT EXISTS lane_chain (
    digest BLOB PRIMARY KEY, lane INTEGER NOT NULL, height INTEGER NOT NULL,
    slot INTEGER NOT NULL, voted INTEGER NOT NULL, data BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS lane_chain_by_lane ON lane_chain (lane, height);
CREATE TABLE IF NOT EXISTS lane_heights (
    height INTEGER PRIMARY KEY, exec_hash BLOB NOT NULL, executed INTEGER NOT NULL,
    rejected INTEGER NOT NULL, expired INTEGER NOT NULL, redeemed INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS lane_ledger (
    height INTEGER PRIMARY KEY, ledger_hash BLOB NOT NULL, fees_charged INTEGER NOT NULL,
    bounties_paid INTEGER NOT NULL, burned INTEGER NOT NULL);
"""


class StorageError(RuntimeError):
    """The database is unusable or contradicts itself (e.g. two blocks at one height)."""


@dataclass(frozen=True, slots=True)
class FinalizedRow:
    height: int
    block_id: bytes
    block_round: int
    timestamp_ns: int
    committed_ns: int
    voted_ns: int | None
    n_tx: int
    txids: bytes  # concatenated SHORT_ID_BYTES-byte tx id prefixes


@dataclass(frozen=True, slots=True)
class LaneHeightRow:
    height: int
    exec_hash: bytes  # execution-order hash after this height
    executed: int
    rejected: int
    expired: int
    redeemed: int  # tickets redeemed in this height's lane blocks


@dataclass(frozen=True, slots=True)
class LedgerHeightRow:
    """The lanes' ledger after one tracker height (totals are running sums)."""

    height: int
    ledger_hash: bytes
    fees_charged: int
    bounties_paid: int
    burned: int


@dataclass(frozen=True, slots=True)
class LaneEventRow:
    payload_id: bytes  # commitment id
    status: str  # "executed" | "rejected" | "expired"
    height: int
    position: int  # execution index in the block (-1 unless executed)
    decided_ns: int  # local wall clock when this node's tracker decided it
    kappa: int
    finalized_bundles: int
    first_slot: int
    data: bytes | None  # decoded payload (executed only; None when not requested)


_EVENT_COLUMNS = (
    "payload_id, status, height, position, decided_ns, kappa, finalized_bundles, first_slot, data"
)


def _event_row(r: Sequence[object]) -> LaneEventRow:
    return LaneEventRow(
        bytes(r[0]),  # type: ignore[arg-type]
        str(r[1]),
        *(int(v) for v in r[2:8]),  # type: ignore[call-overload]
        None if r[8] is None else bytes(r[8]),  # type: ignore[arg-type]
    )


class Storage:
    """One node's database. Open with `Storage(data_dir)`, close with `close()`."""

    def __init__(self, data_dir: Path, *, read_only: bool = False):
        """Open (or, in an absent or empty `data_dir`, create) the node's database.

        Raises StorageError naming the file and the problem when the database is missing
        from a data dir that holds other files, empty, not SQLite, without the sedna schema,
        corrupt (`PRAGMA quick_check`) or when its safety state fails its checksum.
        `read_only` opens an existing database for tools (no creation, no writes, no
        integrity check).
        """
        self.path = data_dir / DATABASE_FILE
        self.safety_path = data_dir / SAFETY_FILE
        self.safety_writes = 0
        self._lock_fd = None
        self._safety: SafetyFile | None = None
        if read_only:
            self._db = _open_read_only(self.path)
            return
        fresh = _check_data_dir(data_dir, self.path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: cannot open the database ({exc})") from None
        try:
            self._lock_fd: int | None = _lock_exclusive(self.path)
        except StorageError:
            self._db.close()
            raise
        try:
            if not fresh:
                self._check_existing()
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            version = self._meta(b"schema_version")
            if version is None or int(version) == 1:  # v1 -> v2 only added tables
                self._set_meta("schema_version", str(SCHEMA_VERSION).encode())
            elif int(version) != SCHEMA_VERSION:
                raise StorageError(f"{self.path}: schema version {int(version)} is not supported")
            self._open_safety_file()
        except sqlite3.DatabaseError as exc:
            self.close()
            raise StorageError(
                f"{self.path}: {exc}; restore the database or start over with --reset"
            ) from None
        except StorageError:
            self.close()
            raise

    def _check_existing(self) -> None:
        """An existing file must be a sedna database that passes SQLite's quick check."""
        db = self._db
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        # Rule: an existing database carries the sedna schema (never re-created over).
        if (
            "meta" not in tables
            or db.execute("SELECT 1 FROM meta WHERE key = 'schema_version'").fetchone() is None
        ):
            raise StorageError(
                f"{self.path}: holds no sedna schema (no schema_version); "
                "restore the database or start over with --reset"
            )
        # Rule: a database that fails SQLite's structural check is not used.
        problems = [str(r[0]) for r in db.execute("PRAGMA quick_check(3)")]
        if problems != ["ok"]:
            lines = [ln for p in problems for ln in p.splitlines() if not ln.startswith("***")]
            raise StorageError(
                f"{self.path}: integrity check failed ({'; '.join(lines)[:300]}); "
                "restore the database or start over with --reset"
            )

    def _open_safety_file(self) -> None:
        """Open the safety file, or move the safety state there from the database.

        Meta `safety_store = file` says the state lives in `node.safety` (then a missing or
        invalid file is refused). Without it (a fresh database, or one written when the
        state was a meta row): the row is checked against its checksum, written to a new
        safety file (durably), and only then the database says `file` and drops the row,
        in a `synchronous=FULL` transaction: a crash before that commit leaves the row in
        charge and the move is redone at the next start (no vote was sent in between).
        """
        if self._meta("safety_store") == SAFETY_STORE_FILE:
            try:
                self._safety = SafetyFile.open(self.safety_path)
            except SafetyFileError as exc:
                raise StorageError(str(exc)) from None
            return
        self._check_safety_sum()
        legacy = self._meta("safety")
        self._safety = SafetyFile.create(self.safety_path, legacy or b"")
        db = self._db
        db.execute("PRAGMA synchronous=FULL")
        try:
            db.execute("BEGIN IMMEDIATE")
            self._set_meta("safety_store", SAFETY_STORE_FILE)
            self._set_meta("integrity", INTEGRITY_VERSION)
            db.execute("DELETE FROM meta WHERE key IN ('safety', 'safety_sum')")
            db.execute("COMMIT")
        finally:
            db.execute("PRAGMA synchronous=NORMAL")

    def _check_safety_sum(self) -> None:
        """Verify (or, in a database from before the checksum, add) the safety checksum of
        a safety state still stored as a meta row (before it moves to the safety file)."""
        data = self._meta("safety")
        if self._meta("integrity") is None:
            return  # created now, or written before the checksum existed: adopted as it is
        stored = self._meta("safety_sum")
        # Rule: the stored safety state matches its checksum (S-PERSIST survives the disk).
        if stored is None:
            raise StorageError(f"{self.path}: the safety state's checksum is missing")
        if stored != _safety_sum(data):
            what = "missing" if data is None else "does not match its checksum"
            raise StorageError(
                f"{self.path}: the safety state (last vote and timeout rounds) is {what}; "
                "the node could vote twice in a round: restore the database or use --reset"
            )

    def close(self) -> None:
        if self._safety is not None:
            self._safety.close()
            self._safety = None
        self._db.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock
            self._lock_fd = None

    # ------------------------------------------------------------------ meta

    def _meta(self, key: bytes | str) -> bytes | None:
        key = key.decode() if isinstance(key, bytes) else key
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def _set_meta(self, key: str, value: bytes) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # ------------------------------------------------------------------ safety

    def save_safety(self, state: SafetyState) -> None:
        """Durably store the safety state (`fdatasync` of the safety file before returning)."""
        self.save_safety_bytes(encode(state))

    def save_safety_bytes(self, data: bytes) -> None:
        if self._safety is None:
            raise StorageError(f"{self.safety_path}: the safety file is not open (read-only?)")
        if not data:
            raise ValueError("an empty safety state cannot be stored")
        self._safety.write(data)
        self.safety_writes += 1

    def load_safety_bytes(self) -> bytes | None:
        """The stored safety state (None: nothing stored yet, a fresh node)."""
        if self._safety is not None:
            data = self._safety.data
        elif self._meta("safety_store") == SAFETY_STORE_FILE:  # read-only
            try:
                data = read_latest(self.safety_path)[1]
            except SafetyFileError as exc:
                raise StorageError(str(exc)) from None
        else:  # a read-only open of a database from before the safety file
            data = self._meta("safety") or b""
        return data or None

    # ------------------------------------------------------------------ blocks

    def put_block(self, block_id: bytes, tip: Tip, body: BlockBody) -> None:
        """Store a block of the tree and the QC its header carries (idempotent)."""
        header = tip.header
        qc = header.qc
        db = self._db
        db.execute("BEGIN")
        db.execute(
            "INSERT OR IGNORE INTO blocks (block_id, seq_num, block_round, tip, body) "
            "VALUES (?, ?, ?, ?, ?)",
            (block_id, header.seq_num, header.block_round, encode(tip), encode(body)),
        )
        db.execute(
            "INSERT OR IGNORE INTO certificates (kind, round, block_id, data) VALUES (?, ?, ?, ?)",
            ("qc", qc.round, qc.block_id, encode(qc)),
        )
        db.execute("COMMIT")

    def put_blocks(self, blocks: Sequence[tuple[bytes, Tip, BlockBody]]) -> None:
        """`put_block` for several blocks in one transaction (idempotent)."""
        if not blocks:
            return
        db = self._db
        db.execute("BEGIN")
        try:
            db.executemany(
                "INSERT OR IGNORE INTO blocks (block_id, seq_num, block_round, tip, body) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    (block_id, tip.header.seq_num, tip.header.block_round, encode(tip),
                     encode(body))
                    for block_id, tip, body in blocks
                ),
            )  # fmt: skip
            db.executemany(
                "INSERT OR IGNORE INTO certificates (kind, round, block_id, data) "
                "VALUES (?, ?, ?, ?)",
                (
                    ("qc", tip.header.qc.round, tip.header.qc.block_id, encode(tip.header.qc))
                    for _, tip, _ in blocks
                ),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def get_block(self, block_id: bytes) -> tuple[Tip, BlockBody] | None:
        row = self._db.execute(
            "SELECT tip, body FROM blocks WHERE block_id = ?", (block_id,)
        ).fetchone()
        if row is None:
            return None
        return _decode_block(row[0], row[1])

    def block_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM blocks").fetchone()[0])

    def blocks_from_height(self, seq_num: int, limit: int) -> list[tuple[bytes, Tip, BlockBody]]:
        """Blocks with seq_num >= `seq_num`, lowest first (at most `limit`)."""
        rows = self._db.execute(
            "SELECT block_id, tip, body FROM blocks WHERE seq_num >= ? "
            "ORDER BY seq_num, block_round LIMIT ?",
            (seq_num, limit),
        ).fetchall()
        return [(bytes(r[0]), *_decode_block(r[1], r[2])) for r in rows]

    def certificate_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM certificates").fetchone()[0])

    # ------------------------------------------------------------------ finalized chain

    def commit_blocks(
        self, rows: Sequence[FinalizedRow], finalized_txs: Sequence[tuple[bytes, int]] = ()
    ) -> int:
        """Append finalized blocks, index their txs (`(txid, height)` pairs) and drop them
        from the stored mempool, atomically. Returns how many of those txs were already in
        the index (a tx finalized twice; the first height is kept).

        Heights already stored with the same block id are skipped (a replay after restart);
        a different block id at a stored height raises StorageError (divergence).
        """
        head_height, _ = self.finalized_head()
        first_new = head_height + 1
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            fresh_rows: list[FinalizedRow] = []
            for row in rows:
                if row.height <= head_height:
                    stored = db.execute(
                        "SELECT block_id FROM finalized WHERE height = ?", (row.height,)
                    ).fetchone()
                    # Rule: the finalized chain never changes below its head.
                    if stored is not None and bytes(stored[0]) != row.block_id:
                        raise StorageError(
                            f"finalized block at height {row.height} differs from the stored one"
                        )
                    continue
                # Rule: finalized heights are consecutive.
                if row.height != head_height + 1:
                    raise StorageError(
                        f"finalized height {row.height} does not follow head {head_height}"
                    )
                fresh_rows.append(row)
                head_height = row.height
            db.executemany(
                "INSERT INTO finalized (height, block_id, block_round, timestamp_ns, "
                "committed_ns, voted_ns, n_tx, txids) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    (r.height, r.block_id, r.block_round, r.timestamp_ns, r.committed_ns,
                     r.voted_ns, r.n_tx, r.txids)
                    for r in fresh_rows
                ),
            )  # fmt: skip
            fresh = [(t, h) for t, h in finalized_txs if first_new <= h <= head_height]
            repeated = self._index_txs(fresh)
            if head_height >= first_new:
                self._set_meta("tx_index_height", str(head_height).encode())
            db.executemany("DELETE FROM mempool WHERE txid = ?", ((t,) for t, _ in finalized_txs))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return repeated

    def _index_txs(self, entries: Sequence[tuple[bytes, int]]) -> int:
        """Insert (txid, height) pairs, keeping the first height of a known id; returns how
        many were already indexed. Runs inside the caller's transaction."""
        if not entries:
            return 0
        cursor = self._db.executemany(
            "INSERT OR IGNORE INTO finalized_txs (txid, height) VALUES (?, ?)", entries
        )
        return len(entries) - max(0, cursor.rowcount)

    def index_finalized_txs(self, entries: Sequence[tuple[bytes, int]], height: int) -> None:
        """Index the txs of finalized heights up to `height` (the backfill of a database
        written before `finalized_txs` existed), atomically with `tx_index_height`."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            self._index_txs(entries)
            self._set_meta("tx_index_height", str(height).encode())
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def tx_index_height(self) -> int:
        """Highest finalized height whose txs are in `finalized_txs` (0: none)."""
        value = self._meta("tx_index_height")
        return 0 if value is None else int(value)

    def finalized_tx_height(self, txid: bytes) -> int | None:
        """The height a tx was finalized at, or None."""
        row = self._db.execute(
            "SELECT height FROM finalized_txs WHERE txid = ?", (txid,)
        ).fetchone()
        return None if row is None else int(row[0])

    def finalized_among(self, txids: Sequence[bytes]) -> set[bytes]:
        """Which of these tx ids are finalized (bounded by len(txids) lookups)."""
        found: set[bytes] = set()
        for start in range(0, len(txids), LOOKUP_CHUNK):
            chunk = txids[start : start + LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT txid FROM finalized_txs WHERE txid IN ({marks})", chunk
            ).fetchall()
            found.update(bytes(r[0]) for r in rows)
        return found

    def finalized_head(self) -> tuple[int, bytes]:
        row = self._db.execute(
            "SELECT height, block_id FROM finalized ORDER BY height DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return 0, GENESIS_BLOCK_ID
        return int(row[0]), bytes(row[1])

    def finalized_height_of(self, block_id: bytes) -> int | None:
        """The height of a finalized block (0 for genesis), or None if it is not finalized."""
        if block_id == GENESIS_BLOCK_ID:
            return 0
        row = self._db.execute(
            "SELECT height FROM finalized WHERE block_id = ?", (block_id,)
        ).fetchone()
        return None if row is None else int(row[0])

    def finalized_range(self, first: int, last: int) -> list[FinalizedRow]:
        """Finalized rows with first <= height <= last, at most MAX_RANGE_ROWS of them."""
        rows = self._db.execute(
            "SELECT height, block_id, block_round, timestamp_ns, committed_ns, voted_ns, n_tx, "
            "txids FROM finalized WHERE height BETWEEN ? AND ? ORDER BY height LIMIT ?",
            (first, last, MAX_RANGE_ROWS),
        ).fetchall()
        return [
            FinalizedRow(
                height=int(r[0]),
                block_id=bytes(r[1]),
                block_round=int(r[2]),
                timestamp_ns=int(r[3]),
                committed_ns=int(r[4]),
                voted_ns=None if r[5] is None else int(r[5]),
                n_tx=int(r[6]),
                txids=bytes(r[7]),
            )
            for r in rows
        ]

    # ------------------------------------------------------------------ mempool

    def mempool_add(self, entries: Sequence[tuple[bytes, bytes, int]]) -> None:
        """Store accepted txs (txid, tx, accepted_ns) in one transaction."""
        if not entries:
            return
        db = self._db
        db.execute("BEGIN")
        db.executemany(
            "INSERT OR IGNORE INTO mempool (txid, tx, accepted_ns) VALUES (?, ?, ?)", entries
        )
        db.execute("COMMIT")

    def mempool_load(self, limit: int) -> list[tuple[bytes, bytes, int]]:
        rows = self._db.execute(
            "SELECT txid, tx, accepted_ns FROM mempool ORDER BY accepted_ns LIMIT ?", (limit,)
        ).fetchall()
        return [(bytes(r[0]), bytes(r[1]), int(r[2])) for r in rows]

    def mempool_remove(self, txids: Sequence[bytes]) -> None:
        if not txids:
            return
        db = self._db
        db.execute("BEGIN")
        db.executemany("DELETE FROM mempool WHERE txid = ?", ((t,) for t in txids))
        db.execute("COMMIT")

    def mempool_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM mempool").fetchone()[0])

    # ------------------------------------------------------------------ lanes and payloads

    def put_lane_data(self, key: bytes, data: bytes) -> None:
        self._db.execute("INSERT OR REPLACE INTO lane_data (key, data) VALUES (?, ?)", (key, data))

    def get_lane_data(self, key: bytes) -> bytes | None:
        row = self._db.execute("SELECT data FROM lane_data WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def put_lane_chain_block(
        self, digest: bytes, lane: int, height: int, slot: int, voted: bool, data: bytes
    ) -> None:
        """Store a certified-lane block (idempotent; `voted` is only ever raised)."""
        self._db.execute(
            "INSERT INTO lane_chain (digest, lane, height, slot, voted, data) "
            "VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(digest) DO UPDATE SET voted = MAX(voted, excluded.voted)",
            (digest, lane, height, slot, int(voted), data),
        )

    def get_lane_chain_block(self, digest: bytes) -> bytes | None:
        row = self._db.execute("SELECT data FROM lane_chain WHERE digest = ?", (digest,)).fetchone()
        return None if row is None else bytes(row[0])

    def lane_chain_blocks_above(
        self, lane: int, height: int, limit: int
    ) -> list[tuple[bytes, bool, bytes]]:
        """(digest, voted, data) of `lane`'s stored blocks above `height`, lowest first."""
        rows = self._db.execute(
            "SELECT digest, voted, data FROM lane_chain WHERE lane = ? AND height > ? "
            "ORDER BY height LIMIT ?",
            (lane, height, limit),
        ).fetchall()
        return [(bytes(r[0]), bool(r[1]), bytes(r[2])) for r in rows]

    def lane_chain_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM lane_chain").fetchone()[0])

    def finalized_blocks(self, first: int, limit: int) -> list[tuple[Tip, BlockBody]]:
        """Finalized blocks from height `first` upwards, in height order (at most `limit`)."""
        rows = self._db.execute(
            "SELECT b.tip, b.body FROM finalized f JOIN blocks b ON b.block_id = f.block_id "
            "WHERE f.height >= ? ORDER BY f.height LIMIT ?",
            (first, limit),
        ).fetchall()
        return [_decode_block(r[0], r[1]) for r in rows]

    def max_block_seq(self) -> int:
        """Highest height of any stored block (finalized or not); 0 when there is none."""
        row = self._db.execute("SELECT MAX(seq_num) FROM blocks").fetchone()
        return 0 if row is None or row[0] is None else int(row[0])

    def lane_record(
        self,
        heights: Sequence[LaneHeightRow],
        events: Sequence[LaneEventRow],
        ledger: Sequence[LedgerHeightRow] = (),
    ) -> None:
        """Store the tracker's result for consecutive heights, atomically.

        Heights at or below the stored lane height are skipped (a replay after restart), and
        an event whose payload is already stored is ignored: a payload is recorded (and so
        executed) at most once.
        """
        if not heights:
            return
        head = self.lane_height()
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for row in heights:
                if row.height <= head:
                    continue
                # Rule: tracker heights are recorded consecutively.
                if head and row.height != head + 1:
                    raise StorageError(f"lane height {row.height} does not follow {head}")
                db.execute(
                    "INSERT INTO lane_heights (height, exec_hash, executed, rejected, expired, "
                    "redeemed) VALUES (?, ?, ?, ?, ?, ?)",
                    (row.height, row.exec_hash, row.executed, row.rejected, row.expired,
                     row.redeemed),
                )  # fmt: skip
                head = row.height
            db.executemany(
                "INSERT OR IGNORE INTO lane_events (payload_id, status, height, position, "
                "decided_ns, kappa, finalized_bundles, first_slot, data) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    (e.payload_id, e.status, e.height, e.position, e.decided_ns, e.kappa,
                     e.finalized_bundles, e.first_slot, e.data)
                    for e in events
                ),
            )  # fmt: skip
            db.executemany(
                "INSERT OR IGNORE INTO lane_ledger (height, ledger_hash, fees_charged, "
                "bounties_paid, burned) VALUES (?, ?, ?, ?, ?)",
                ((r.height, r.ledger_hash, r.fees_charged, r.bounties_paid, r.burned)
                 for r in ledger),
            )  # fmt: skip
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def lane_height(self) -> int:
        """Highest height the decode tracker's results are stored for (0: none)."""
        row = self._db.execute("SELECT MAX(height) FROM lane_heights").fetchone()
        return 0 if row is None or row[0] is None else int(row[0])

    def lane_heights(self, first: int, last: int) -> list[LaneHeightRow]:
        rows = self._db.execute(
            "SELECT height, exec_hash, executed, rejected, expired, redeemed FROM lane_heights "
            "WHERE height BETWEEN ? AND ? ORDER BY height LIMIT ?",
            (first, last, MAX_RANGE_ROWS),
        ).fetchall()
        return [LaneHeightRow(int(r[0]), bytes(r[1]), *(int(v) for v in r[2:])) for r in rows]

    def ledger_at(self, height: int) -> LedgerHeightRow | None:
        """The lanes' ledger digest and totals stored after tracker height `height`."""
        row = self._db.execute(
            "SELECT height, ledger_hash, fees_charged, bounties_paid, burned FROM lane_ledger "
            "WHERE height = ?",
            (height,),
        ).fetchone()
        if row is None:
            return None
        return LedgerHeightRow(int(row[0]), bytes(row[1]), *(int(v) for v in row[2:]))

    def lane_hash_at(self, height: int) -> bytes | None:
        row = self._db.execute(
            "SELECT exec_hash FROM lane_heights WHERE height = ?", (height,)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def lane_event(self, payload_id: bytes) -> LaneEventRow | None:
        row = self._db.execute(
            f"SELECT {_EVENT_COLUMNS} FROM lane_events WHERE payload_id = ?", (payload_id,)
        ).fetchone()
        return None if row is None else _event_row(row)

    def lane_events(
        self, first: int, last: int, limit: int = MAX_EVENT_ROWS, with_data: bool = False
    ) -> list[LaneEventRow]:
        """Decided payloads with first <= height <= last in execution order (height,
        position; non-executed ones after the executed of their height), at most `limit`."""
        columns = _EVENT_COLUMNS if with_data else _EVENT_COLUMNS.replace("data", "NULL")
        rows = self._db.execute(
            f"SELECT {columns} FROM lane_events WHERE height BETWEEN ? AND ? "
            "ORDER BY height, position < 0, position, payload_id LIMIT ?",
            (first, last, min(limit, MAX_EVENT_ROWS)),
        ).fetchall()
        return [_event_row(r) for r in rows]

    def lane_event_count(self, status: str | None = None) -> int:
        if status is None:
            row = self._db.execute("SELECT COUNT(*) FROM lane_events").fetchone()
        else:
            row = self._db.execute(
                "SELECT COUNT(*) FROM lane_events WHERE status = ?", (status,)
            ).fetchone()
        return int(row[0])

    # ------------------------------------------------------------------ recovery

    def load_recovered(self, max_blocks: int = 100_000) -> RecoveredState | None:
        """What a restarted core is built from, or None for a fresh node.

        Blocks are those at or above the finalized height (the finalized head and every
        block that may still extend it); older blocks stay on disk for sync and RPC.
        """
        from consensus.core import RecoveredState
        from consensus.safety import SafetyState

        data = self.load_safety_bytes()
        if data is None:
            return None
        try:
            safety = msgspec.msgpack.decode(data, type=SafetyState)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise StorageError(f"{self.path}: stored safety state is unreadable ({exc})") from None
        height, block_id = self.finalized_head()
        blocks = [(tip, body) for _, tip, body in self.blocks_from_height(height, max_blocks)]
        return RecoveredState(
            safety=safety, blocks=blocks, finalized_block_id=block_id, finalized_height=height
        )


def _safety_sum(data: bytes | None) -> bytes:
    return hashlib.sha256(SAFETY_SUM_DOMAIN + (NO_SAFETY_MARKER if data is None else data)).digest()


def _check_data_dir(data_dir: Path, path: Path) -> bool:
    """True when a fresh database may be created (the data dir is absent or empty).

    Raises StorageError when the data dir cannot hold a database, when the database file is
    empty, or when side files or other files are there without the database.
    """
    if data_dir.exists() and not data_dir.is_dir():
        raise StorageError(f"{data_dir}: data_dir is not a directory")
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        entries = sorted(p.name for p in data_dir.iterdir())
    except OSError as exc:
        raise StorageError(f"{data_dir}: cannot use the data dir ({exc.strerror})") from None
    if path.exists():
        # Rule: an existing database file is never silently re-created (a 0-byte file is
        # what a truncation leaves; SQLite would open it as a new, empty database).
        if not path.is_file():
            raise StorageError(f"{path}: is not a regular file")
        if path.stat().st_size == 0:
            raise StorageError(
                f"{path}: the database file is empty (0 bytes): truncated or never written; "
                "restore it or start over with --reset"
            )
        return False
    # Rule: never start fresh over an existing data dir unless told (--reset).
    if entries:
        raise StorageError(
            f"{path}: missing, but {data_dir} holds {', '.join(entries[:5])}; "
            "restore the database or start over with --reset"
        )
    return True


def _lock_exclusive(path: Path) -> int:
    """Hold an exclusive `flock` on the database file while it is open (SQLite's own locks
    are `fcntl` locks and independent of it). Raises StorageError when another process
    holds it: two nodes on one data dir would sign with one key from two safety states."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StorageError(
            f"{path}: in use by another process (is this node already running?)"
        ) from None
    return fd


def _open_read_only(path: Path) -> sqlite3.Connection:
    if not path.is_file() or path.stat().st_size == 0:
        raise StorageError(f"{path}: no database")
    try:
        return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise StorageError(f"{path}: cannot open the database ({exc})") from None


def reset_data_dir(data_dir: Path) -> list[Path]:
    """Delete the node's database and its side files (the node's `--reset`); returns them.

    Only files the database owns are removed; anything else in the data dir stays, so a
    data dir that holds foreign files is still refused at open.
    """
    removed = []
    owned = [f"{DATABASE_FILE}{suffix}" for suffix in ("", *SIDE_FILE_SUFFIXES)]
    for name in (*owned, SAFETY_FILE, SAFETY_FILE + TMP_SUFFIX):
        path = data_dir / name
        if path.is_file() or path.is_symlink():
            path.unlink()
            removed.append(path)
    return removed


def _decode_block(tip: bytes, body: bytes) -> tuple[Tip, BlockBody]:
    try:
        return (
            msgspec.msgpack.decode(tip, type=Tip),
            msgspec.msgpack.decode(body, type=BlockBody),
        )
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise StorageError(f"stored block is unreadable ({exc})") from None


def short_id(txid: bytes) -> bytes:
    """The prefix of a tx id stored with finalized blocks (accounting, not identity)."""
    return txid[:SHORT_ID_BYTES]
