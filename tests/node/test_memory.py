"""node/memory.py: the C heap keeps batch-sized buffers instead of page-faulting them in
again for every block (checked in fresh processes: mallopt is process-wide)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

PROBE = """
import resource, sys
from node.memory import tune_malloc
applied = tune_malloc()
blob = bytes(400 << 10)
def batch():  # a decode batch: a few 400 KiB buffers alive at once, then all freed
    return [bytearray(blob) for _ in range(4)]
for _ in range(20):  # warm up: the heap (or glibc's dynamic mmap threshold) settles
    batch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(100):
    batch()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(int(applied), faults)
"""


def _probe(tuning: str) -> tuple[bool, int]:
    env = {**os.environ, "SEDNA_MALLOC_TUNING": tuning}
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    env.pop("MALLOC_MMAP_THRESHOLD_", None)
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0] == "1", int(out[1])


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="mallopt thresholds are glibc's",
)
def test_tuned_heap_reuses_batch_buffers_without_page_faults() -> None:
    applied, faults = _probe("1")
    assert applied
    assert faults < 100  # 160 MiB allocated and freed: reused, not faulted in again
    not_applied, default_faults = _probe("0")
    assert not not_applied
    assert default_faults > 20 * faults + 1000  # glibc's defaults: trimmed and re-faulted


def test_every_sedna_command_tunes_the_heap(monkeypatch: pytest.MonkeyPatch) -> None:
    """`sedna` (node/cli.py) tunes the heap before running a command, so the nodes a
    testnet launches and the load generator get it."""
    import node.memory
    from node.cli import main

    calls: list[bool] = []
    monkeypatch.setattr(node.memory, "tune_malloc", lambda: calls.append(True) or True)
    assert main(["bench", "testnet", "--nodes", "0"]) == 2  # bad input: exits 2 after
    assert calls == [True]
