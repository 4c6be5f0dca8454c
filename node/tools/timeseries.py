"""Per-second time series of a testnet run (`sedna testnet run --out DIR`): CSV and PNG.

The launcher reads every node's `/stats` once a second; `SeriesRecorder` turns consecutive
snapshots into one row per interval:

| column | meaning |
|---|---|
| `t_s` | seconds since the load started, at the end of the interval |
| `height`, `round` | the highest finalized height and round any node reported |
| `tps` | txs finalized per second in the interval: the median over nodes of each node's increase of `committed_txs` (every node finalizes the same chain; the median is not moved by one node that lags or catches up) |
| `finality_p50_ms`, `finality_p99_ms` | quantiles of acceptance → finalization of the txs finalized in the interval, all nodes merged (the difference of each node's cumulative log-binned histogram, so within 2 %); empty when none was |
| `finalized_samples` | how many txs those quantiles are over |
| `tcs` | timeout certificates formed in the interval, summed over nodes |
| `sedna_decoded_ps` | Sedna payloads executed per second (the median over nodes, likewise; a restarted node's tracker replays the chain from height 1, which the median leaves out) |
| `nodes_up` | nodes that answered |

A node counts in a row only when it answered at both ends of the interval; one that
restarted reports counters from zero, so its first interval after the restart is left out
too (no negative rates).
"""

from __future__ import annotations

import csv
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.metrics import LatencyHistogram

SERIES_COLUMNS = (
    "t_s",
    "height",
    "round",
    "tps",
    "finality_p50_ms",
    "finality_p99_ms",
    "finalized_samples",
    "tcs",
    "sedna_decoded_ps",
    "nodes_up",
)
MAX_ROWS = 86_400  # bound: a day of one-second rows


@dataclass
class _NodeSnapshot:
    committed_txs: int
    tcs: int
    executed: int
    finality: LatencyHistogram


@dataclass
class SeriesRecorder:
    rows: list[dict[str, Any]] = field(default_factory=list)
    _last_t_s: float | None = None
    _last: dict[int, _NodeSnapshot] = field(default_factory=dict)

    def add(self, t_s: float, stats: Sequence[Mapping[str, Any] | None]) -> dict[str, Any] | None:
        """Record the snapshot taken at `t_s`; returns the row of the interval it closes."""
        current: dict[int, _NodeSnapshot] = {}
        heights, rounds = [], []
        for index, node in enumerate(stats):
            if node is None:
                continue
            try:
                current[index] = _NodeSnapshot(
                    committed_txs=int(node["committed_txs"]),
                    tcs=int(node["tcs"]),
                    executed=int(node.get("lanes", {}).get("decided", {}).get("executed", 0)),
                    finality=LatencyHistogram.from_dict(node["finality_ms"]),
                )
            except (KeyError, TypeError, ValueError):
                continue  # a malformed answer counts as no answer
            heights.append(int(node.get("height", 0)))
            rounds.append(int(node.get("round", 0)))
        previous, previous_t = self._last, self._last_t_s
        self._last, self._last_t_s = current, t_s
        if previous_t is None or t_s <= previous_t or len(self.rows) >= MAX_ROWS:
            return None
        dt = t_s - previous_t
        tx_deltas, tcs, executed = [], 0, []
        finality = LatencyHistogram()
        for index, now in current.items():
            before = previous.get(index)
            if before is None or now.committed_txs < before.committed_txs:
                continue  # no earlier snapshot, or the node restarted
            tx_deltas.append(now.committed_txs - before.committed_txs)
            tcs += max(0, now.tcs - before.tcs)
            executed.append(max(0, now.executed - before.executed))
            finality.merge(histogram_difference(now.finality, before.finality))

        def quantile(q: float) -> float | None:
            value = finality.quantile(q)
            return None if value is None else round(value, 2)

        row = {
            "t_s": round(t_s, 3),
            "height": max(heights, default=None),
            "round": max(rounds, default=None),
            "tps": round(statistics.median(tx_deltas) / dt, 1) if tx_deltas else None,
            "finality_p50_ms": quantile(0.5),
            "finality_p99_ms": quantile(0.99),
            "finalized_samples": finality.count,
            "tcs": tcs,
            "sedna_decoded_ps": round(statistics.median(executed) / dt, 1) if executed else None,
            "nodes_up": len(current),
        }
        self.rows.append(row)
        return row


def histogram_difference(later: LatencyHistogram, earlier: LatencyHistogram) -> LatencyHistogram:
    """The samples `later` holds beyond `earlier` (the same node's cumulative histogram)."""
    diff = LatencyHistogram()
    for index, count in later.bins.items():
        extra = count - earlier.bins.get(index, 0)
        if extra > 0:
            diff.bins[index] = extra
    diff.count = sum(diff.bins.values())
    if diff.count:
        diff.sum_ms = max(0.0, later.sum_ms - earlier.sum_ms)
        low, high = min(diff.bins), max(diff.bins)
        diff.min_ms = 0.0 if low == 0 else diff.FLOOR_MS * diff.GROWTH ** (low - 1)
        diff.max_ms = diff.FLOOR_MS * diff.GROWTH**high
    return diff


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=SERIES_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in SERIES_COLUMNS})


def write_png(path: Path, rows: Sequence[Mapping[str, Any]], title: str) -> None:
    """Three stacked panels: height, finalized tx/s (and Sedna payloads/s), finality."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def column(name: str) -> tuple[list[float], list[float]]:
        pairs = [(r["t_s"], r[name]) for r in rows if r.get(name) is not None]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    figure, (top, middle, bottom) = plt.subplots(3, 1, sharex=True, figsize=(9, 8))
    top.plot(*column("height"), color="tab:blue")
    top.set_ylabel("finalized height")
    middle.plot(*column("tps"), color="tab:green", label="txs finalized/s")
    if any(r.get("sedna_decoded_ps") for r in rows):
        middle.plot(*column("sedna_decoded_ps"), color="tab:purple", label="Sedna decoded/s")
    middle.set_ylabel("per second")
    middle.legend(loc="upper left")
    bottom.plot(*column("finality_p50_ms"), color="tab:orange", label="p50")
    bottom.plot(*column("finality_p99_ms"), color="tab:red", label="p99")
    bottom.set_ylabel("finality (ms)")
    bottom.set_xlabel("seconds since the load started")
    bottom.legend(loc="upper left")
    for axis in (top, middle, bottom):
        axis.grid(True, alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
