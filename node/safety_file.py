"""The safety state's own file: two checksummed slots, written in turn, `fdatasync`ed.

The safety state (the rounds this validator voted, timed out, proposed in; the tip it last
voted for) must be on disk before the vote it protects leaves the process ("persist before
send"), once per round. A `synchronous=FULL` SQLite commit did that at ~3x the cost of a
plain file write (benchmarks/bench_safety_write.py); this file does it with one `pwrite`
and one `fdatasync`.

Layout (`data_dir/node.safety`): two slots of `slot_bytes` each (file size 2 x slot_bytes;
the slot size is the file size / 2). A slot holds one record:

    magic (16) | sequence u64 | length u32 | SHA-256 (32) | data (length bytes)

the checksum covering the domain, sequence, length and data. Write number `s` goes to slot
`s % 2` and is followed by `fdatasync` before `write` returns, so:

- a torn or lost write damages only the slot being written; the other slot holds the
  previous write, which completed (and was synced) before any message it did not cover
  could be sent: the newest valid slot at open is at least as new as every sent message
  needs;
- a file with no valid slot, a missing file (once the database says the state lives here)
  or a file whose size is not two slots is corrupt storage: `SafetyFileError` (the node
  refuses to start, as for a corrupt database).

Empty data means "no safety state stored yet" (a fresh node). A record larger than a slot
(a tip carrying a certificate of a large validator set) re-creates the file with larger
slots: written to `node.safety.tmp`, fsynced, renamed over the file, directory fsynced.
A `.tmp` left by a crash during that was never the file and is removed at open.
"""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

SAFETY_FILE = "node.safety"
TMP_SUFFIX = ".tmp"
MAGIC = b"sedna-safety/1\x00\x00"
DOMAIN = b"sedna/safety-file/1\x00"
_HEADER = struct.Struct("!16sQI32s")
MIN_SLOT_BYTES = 16 * 1024
MAX_SLOT_BYTES = 64 * 1024 * 1024  # bound: a file claiming larger slots is not read


class SafetyFileError(RuntimeError):
    """The safety file is missing, unreadable or holds no valid slot."""


def _checksum(sequence: int, data: bytes) -> bytes:
    return hashlib.sha256(DOMAIN + struct.pack("!QI", sequence, len(data)) + data).digest()


def _record(sequence: int, data: bytes) -> bytes:
    return _HEADER.pack(MAGIC, sequence, len(data), _checksum(sequence, data)) + data


def _slot_bytes_for(data: bytes) -> int:
    slot = MIN_SLOT_BYTES
    while slot < _HEADER.size + len(data):
        slot *= 2
    return slot


def _parse(slot: bytes) -> tuple[int, bytes] | None:
    """(sequence, data) of a valid record, or None."""
    if len(slot) < _HEADER.size:
        return None
    magic, sequence, length, checksum = _HEADER.unpack_from(slot)
    if magic != MAGIC or length > len(slot) - _HEADER.size:
        return None
    data = bytes(slot[_HEADER.size : _HEADER.size + length])
    if checksum != _checksum(sequence, data):
        return None
    return sequence, data


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_latest(path: Path) -> tuple[int, bytes, int]:
    """(sequence, data, slot_bytes) of the newest valid slot. Raises SafetyFileError."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise SafetyFileError(f"{path}: the safety file is missing") from None
    except OSError as exc:
        raise SafetyFileError(f"{path}: cannot open the safety file ({exc.strerror})") from None
    try:
        size = os.fstat(fd).st_size
        slot_bytes = size // 2
        # Rule: the file is exactly two slots (a truncated or extended file is not trusted).
        if size % 2 or not MIN_SLOT_BYTES <= slot_bytes <= MAX_SLOT_BYTES:
            raise SafetyFileError(
                f"{path}: the safety file has {size} bytes, not two slots; "
                "restore it or start over with --reset"
            )
        slots = [os.pread(fd, slot_bytes, i * slot_bytes) for i in (0, 1)]
    finally:
        os.close(fd)
    valid = [r for r in map(_parse, slots) if r is not None]
    # Rule: at least one slot is valid (a torn write damages only one of them).
    if not valid:
        raise SafetyFileError(
            f"{path}: no valid safety state in the safety file (both slots fail their "
            "checksum); the node could vote twice in a round: restore it or use --reset"
        )
    sequence, data = max(valid, key=lambda r: r[0])  # the newest valid slot wins
    return sequence, data, slot_bytes


class SafetyFile:
    """The open safety file of one node (open it with `open` or `create`)."""

    def __init__(self, path: Path, fd: int, slot_bytes: int, sequence: int, data: bytes):
        self.path = path
        self._fd: int | None = fd
        self.slot_bytes = slot_bytes
        self.sequence = sequence
        self.data = data

    @classmethod
    def open(cls, path: Path) -> SafetyFile:
        """Open an existing safety file (its newest valid slot). Raises SafetyFileError."""
        _remove_tmp(path)
        sequence, data, slot_bytes = read_latest(path)
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError as exc:
            raise SafetyFileError(f"{path}: cannot open the safety file ({exc.strerror})") from None
        return cls(path, fd, slot_bytes, sequence, data)

    @classmethod
    def create(cls, path: Path, data: bytes, sequence: int = 1) -> SafetyFile:
        """Write a new file holding `data` as record `sequence`, durably, then open it."""
        _write_new(path, data, sequence, _slot_bytes_for(data))
        return cls.open(path)

    def write(self, data: bytes) -> None:
        """Durably store `data` as the newest record: `pwrite` into the older slot, then
        `fdatasync` before returning (callers send only after this returns)."""
        sequence = self.sequence + 1
        record = _record(sequence, data)
        if len(record) > self.slot_bytes:  # grow: a new file with larger slots
            self.close()
            _write_new(self.path, data, sequence, _slot_bytes_for(data))
            reopened = SafetyFile.open(self.path)
            self._fd, self.slot_bytes = reopened._fd, reopened.slot_bytes
            reopened._fd = None
        else:
            fd = self._require_fd()
            written = os.pwrite(fd, record, (sequence % 2) * self.slot_bytes)
            if written != len(record):
                raise OSError(f"{self.path}: short write ({written} of {len(record)} bytes)")
            os.fdatasync(fd)
        self.sequence = sequence
        self.data = data

    def _require_fd(self) -> int:
        if self._fd is None:
            raise SafetyFileError(f"{self.path}: the safety file is closed")
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _remove_tmp(path: Path) -> None:
    tmp = path.with_name(path.name + TMP_SUFFIX)
    if tmp.exists():
        tmp.unlink()


def _write_new(path: Path, data: bytes, sequence: int, slot_bytes: int) -> None:
    """Create the file with slot 0 = (sequence, data) atomically: temp file, fsync, rename,
    directory fsync. The other slot is zeros (invalid) until the next write."""
    tmp = path.with_name(path.name + TMP_SUFFIX)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.ftruncate(fd, 2 * slot_bytes)
        record = _record(sequence, data)
        # slot `sequence % 2`, as every later write alternates from there
        os.pwrite(fd, record, (sequence % 2) * slot_bytes)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)
