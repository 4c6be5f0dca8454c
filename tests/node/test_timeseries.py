"""Per-second series of a testnet run, from synthetic /stats snapshots (the real run is in
test_e2e.py's kill-and-restart run, with --out)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from node.metrics import LatencyHistogram
from node.tools.timeseries import (
    SERIES_COLUMNS,
    SeriesRecorder,
    histogram_difference,
    write_csv,
    write_png,
)


def _stats(
    height: int, committed: int, latencies_ms: list[float], tcs: int = 0, executed: int = 0
) -> dict[str, Any]:
    histogram = LatencyHistogram()
    histogram.observe_many(latencies_ms)
    return {
        "height": height,
        "round": height + 1,
        "committed_txs": committed,
        "tcs": tcs,
        "finality_ms": histogram.to_dict(),
        "lanes": {"decided": {"executed": executed}},
    }


def test_each_row_holds_only_its_own_second() -> None:
    recorder = SeriesRecorder()
    slow = [1000.0] * 100
    fast = [10.0] * 100
    assert recorder.add(0.0, [_stats(5, 100, slow), _stats(5, 100, [])]) is None  # no interval yet
    row = recorder.add(1.0, [_stats(9, 300, slow + fast), _stats(9, 300, [], tcs=2)])
    assert row is not None
    assert row["height"] == 9 and row["round"] == 10
    assert row["tps"] == 200.0
    # Only the 100 txs finalized in this second (all at 10 ms), not the earlier 1 s ones.
    assert row["finalized_samples"] == 100
    assert 9.8 <= row["finality_p50_ms"] <= 10.2 and 9.8 <= row["finality_p99_ms"] <= 10.2
    assert row["tcs"] == 2 and row["nodes_up"] == 2


def test_a_restarted_or_silent_node_does_not_make_negative_rates() -> None:
    recorder = SeriesRecorder()
    recorder.add(0.0, [_stats(10, 1000, [5.0] * 10), _stats(10, 1000, [], executed=50)])
    # node 1 restarted: its counters start again from zero; node 0 did not answer
    row = recorder.add(2.0, [None, _stats(11, 20, [], executed=3)])
    assert row is not None
    assert row["tps"] is None and row["finalized_samples"] == 0 and row["nodes_up"] == 1
    assert row["finality_p50_ms"] is None
    row = recorder.add(3.0, [_stats(12, 1400, [5.0] * 30), _stats(12, 420, [], executed=13)])
    assert row is not None
    # node 1 compares with its restart snapshot; node 0 has none from the interval before
    # (its increase spans 3 s, which is not this row's second), so it is left out
    assert row["tps"] == 400.0 and row["sedna_decoded_ps"] == 10.0
    assert row["finalized_samples"] == 0
    row = recorder.add(4.0, [_stats(13, 1500, [5.0] * 40), _stats(13, 520, [], executed=14)])
    assert row is not None
    assert row["tps"] == 100.0 and row["sedna_decoded_ps"] == 0.5  # median of 1 and 0
    assert row["finalized_samples"] == 10


def test_histogram_difference_keeps_quantiles_of_the_new_samples() -> None:
    earlier = LatencyHistogram()
    earlier.observe_many([1.0, 2.0, 3.0])
    later = LatencyHistogram()
    later.observe_many([1.0, 2.0, 3.0, 50.0, 60.0])
    diff = histogram_difference(later, earlier)
    assert diff.count == 2
    assert 49.0 <= diff.quantile(0.5) <= 51.0  # type: ignore[operator]
    assert 58.8 <= diff.quantile(1.0) <= 61.2  # type: ignore[operator]
    assert histogram_difference(earlier, earlier).count == 0


def test_csv_and_png_are_written(tmp_path: Path) -> None:
    recorder = SeriesRecorder()
    for second in range(5):
        recorder.add(float(second), [_stats(second * 10, second * 300, [20.0] * second * 300)])
    write_csv(tmp_path / "series.csv", recorder.rows)
    with (tmp_path / "series.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == SERIES_COLUMNS and len(rows) == 4
    assert [float(r["tps"]) for r in rows] == [300.0] * 4
    write_png(tmp_path / "series.png", recorder.rows, "test")
    assert (tmp_path / "series.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
