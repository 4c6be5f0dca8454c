"""Cost of one durable safety-state write on this disk, per method (issue 16).

Each method writes a ~600-byte record (an encoded safety state with a tip) `--writes`
times into a fresh directory and prints the median and p90 latency of one write:

- `sqlite_full`: the old path: one `synchronous=FULL` SQLite transaction (WAL) that
  replaces the meta row and its checksum, as `Storage.save_safety_bytes` did before;
- `file_fsync`: `pwrite` into one of two fixed slots of a small file, then `os.fsync`;
- `file_fdatasync`: the same with `os.fdatasync` (what `node/safety_file.py` does);
- `sqlite_normal`: a `synchronous=NORMAL` transaction (not durable against a power cut;
  the cost of a plain SQLite write, for scale).

    .venv/bin/python benchmarks/bench_safety_write.py --writes 400 --repeats 3

The methods run interleaved per repeat, so a noisy machine affects them alike; numbers
depend on the disk and on everything else running on it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

RECORD = os.urandom(600)
SLOT = 16 * 1024


def _sqlite(directory: Path, full: bool) -> Callable[[], None]:
    db = sqlite3.connect(directory / "node.sqlite3", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL)")

    def write() -> None:
        if full:
            db.execute("PRAGMA synchronous=FULL")
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('safety', ?)", (RECORD,))
        db.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('safety_sum', ?)",
            (hashlib.sha256(RECORD).digest(),),
        )
        db.execute("COMMIT")
        if full:
            db.execute("PRAGMA synchronous=NORMAL")

    return write


def _file(directory: Path, sync: Callable[[int], None]) -> Callable[[], None]:
    fd = os.open(directory / "safety", os.O_RDWR | os.O_CREAT, 0o600)
    os.ftruncate(fd, 2 * SLOT)
    os.fsync(fd)
    counter = [0]

    def write() -> None:
        counter[0] += 1
        data = counter[0].to_bytes(8, "big") + RECORD + hashlib.sha256(RECORD).digest()
        os.pwrite(fd, data, (counter[0] % 2) * SLOT)
        sync(fd)

    return write


METHODS: dict[str, Callable[[Path], Callable[[], None]]] = {
    "sqlite_full": lambda d: _sqlite(d, True),
    "file_fsync": lambda d: _file(d, os.fsync),
    "file_fdatasync": lambda d: _file(d, os.fdatasync),
    "sqlite_normal": lambda d: _sqlite(d, False),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: cwd)")
    args = parser.parse_args(argv)
    if args.writes < 1 or args.repeats < 1:
        print("--writes and --repeats must be >= 1", file=sys.stderr)
        return 2
    samples: dict[str, list[float]] = {name: [] for name in METHODS}
    base = args.dir or Path.cwd()
    for _ in range(args.repeats):
        for name, make in METHODS.items():
            with tempfile.TemporaryDirectory(dir=base) as tmp:
                write = make(Path(tmp))
                for _ in range(args.writes):
                    start = time.perf_counter()
                    write()
                    samples[name].append(time.perf_counter() - start)
    print(f"load average {os.getloadavg()[0]:.2f}; {args.repeats} x {args.writes} writes")
    print(f"{'method':<16} {'median us':>10} {'p90 us':>10}")
    for name, values in samples.items():
        values.sort()
        p90 = values[int(0.9 * (len(values) - 1))]
        print(f"{name:<16} {statistics.median(values) * 1e6:>10.0f} {p90 * 1e6:>10.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
