"""Task functions for the executor tests (importable by worker processes)."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path


def seeded_value(item: tuple[int, float, str | None]) -> tuple[int, float, int]:
    """(i, a number drawn from seed i, i*i) after `delay_s`; leaves start/end markers
    (`<dir>/start-<i>-<pid>-<n>`) so a test can see where and how often it ran."""
    index, delay_s, marker_dir = item
    nonce = os.urandom(4).hex()
    if marker_dir is not None:
        Path(marker_dir, f"start-{index}-{os.getpid()}-{nonce}").touch()
    time.sleep(delay_s)
    if marker_dir is not None:
        Path(marker_dir, f"end-{index}-{os.getpid()}-{nonce}").touch()
    return index, random.Random(index).random(), index * index


def fails_on(item: int) -> int:
    if item == 3:
        raise ValueError("item 3 is bad")
    return item
