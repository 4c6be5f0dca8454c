"""C heap tuning for the node and tool processes (glibc `mallopt`).

A finalized block's lane work allocates and frees buffers of hundreds of KiB at once:
the wide RaptorQ objects of a decode or encode batch (`codecs.repair_streams`,
`decode_bundles_batch`: n payloads' symbols side by side), decoded lane messages.
glibc serves such sizes with a fresh `mmap` once its dynamic threshold has not grown to
them, and gives freed memory at the top of the heap back to the kernel above 128 KiB,
so every batch page-faults its buffers in again: measured, about a third of the CPU of
`decode_payloads` and of the sender's `encode_payloads` (docs/performance.md, "Sedna").
`tune_malloc` keeps allocations below `MMAP_THRESHOLD_BYTES` on the heap and lets it
hold up to `TRIM_THRESHOLD_BYTES` of free memory before trimming: a bounded amount of
resident memory traded for no page faults in the hot path.

`SEDNA_MALLOC_TUNING=0` leaves glibc's defaults (for before/after measurements); on
other C libraries the call does nothing.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 16 << 20  # at most HEAP_MAX_SIZE / 2 (32 MiB on 64-bit glibc)
TRIM_THRESHOLD_BYTES = 64 << 20
ENV = "SEDNA_MALLOC_TUNING"


def tune_malloc() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; True if it took effect."""
    if os.environ.get(ENV, "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (no mallopt symbol)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success; both or neither matter, so report both
    mmap_ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    trim_ok = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
    return mmap_ok and trim_ok
