"""Prometheus rendering and the mergeable latency histogram."""

from __future__ import annotations

import random

import numpy as np
import pytest

from node.metrics import LatencyHistogram, NodeMetrics, Registry


def test_render_counters_gauges_and_histograms() -> None:
    registry = Registry()
    dropped = registry.counter("x_dropped_total", "drops", ("reason",))
    height = registry.gauge("x_height", "height")
    latency = registry.histogram("x_latency_seconds", "latency", (0.1, 1.0))
    dropped.inc(reason="malformed")
    dropped.inc(2, reason='we"ird\n')
    height.set(7)
    for value in (0.05, 0.5, 5.0):
        latency.observe(value)
    text = registry.render()
    assert "# TYPE x_dropped_total counter" in text
    assert 'x_dropped_total{reason="malformed"} 1' in text
    assert 'x_dropped_total{reason="we\\"ird\\n"} 2' in text
    assert "x_height 7" in text
    assert 'x_latency_seconds_bucket{le="0.1"} 1' in text
    assert 'x_latency_seconds_bucket{le="1"} 2' in text  # cumulative
    assert 'x_latency_seconds_bucket{le="+Inf"} 3' in text
    assert "x_latency_seconds_count 3" in text
    assert text.endswith("\n")


def test_info_metric_keeps_only_the_current_label_set() -> None:
    registry = Registry()
    info = registry.info("x_hash_info", "hash", ("height", "hash"))
    assert registry.render().splitlines()[-1] == "# TYPE x_hash_info gauge"  # nothing yet
    info.set(height=1, hash="aa")
    info.set(height=2, hash="bb")
    text = registry.render()
    assert 'x_hash_info{height="2",hash="bb"} 1' in text and '"aa"' not in text
    with pytest.raises(ValueError, match="labels"):
        info.set(height=3)


def test_metric_misuse_is_refused() -> None:
    registry = Registry()
    counter = registry.counter("c", "c", ("peer",))
    with pytest.raises(ValueError, match="only goes up"):
        counter.inc(-1, peer=1)
    with pytest.raises(ValueError, match="labels"):
        counter.inc(1, other=1)
    with pytest.raises(ValueError, match="twice"):
        registry.counter("c", "again")
    with pytest.raises(ValueError, match="increasing"):
        registry.histogram("h", "h", (1.0, 0.5))


def test_node_metrics_render_every_required_family() -> None:
    metrics = NodeMetrics()
    metrics.observe_finality([12.0, 40.0])
    text = metrics.registry.render()
    for name in (
        "sedna_finalized_height",
        "sedna_current_round",
        "sedna_timeout_certificates_total",
        "sedna_reproposals_total",
        "sedna_no_endorsement_certificates_total",
        "sedna_commit_latency_seconds_bucket",
        "sedna_messages_dropped_total",
        "sedna_peer_bytes_received",
        "sedna_peer_bytes_sent",
        "sedna_bundles_accepted_total",
        "sedna_bundles_rejected_total",
        "sedna_payloads_decided_total",
        "sedna_lane_tracker_height",
        "sedna_execution_order_info",
    ):
        assert f"# TYPE {name.removesuffix('_bucket')}" in text
    assert "sedna_commit_latency_seconds_count 2" in text


@pytest.mark.parametrize("q", [0.5, 0.9, 0.99])
def test_latency_quantiles_are_within_two_percent(q: float) -> None:
    rng = random.Random(7)
    samples = [rng.lognormvariate(3.0, 1.0) for _ in range(20_000)]
    hist = LatencyHistogram()
    hist.observe_many(samples)
    exact = float(np.quantile(samples, q, method="inverted_cdf"))
    assert hist.quantile(q) == pytest.approx(exact, rel=0.021)


def test_merged_histograms_equal_one_histogram_of_all_samples() -> None:
    rng = random.Random(3)
    parts = [[rng.uniform(1, 500) for _ in range(1000)] for _ in range(3)]
    merged = LatencyHistogram()
    whole = LatencyHistogram()
    for part in parts:
        h = LatencyHistogram()
        h.observe_many(part)
        merged.merge(LatencyHistogram.from_dict(h.to_dict()))  # through the wire form
        whole.observe_many(part)
    assert merged.bins == whole.bins and merged.count == whole.count == 3000
    assert merged.quantile(0.99) == whole.quantile(0.99)
    assert merged.min_ms == whole.min_ms and merged.max_ms == whole.max_ms


def test_empty_histogram_and_bad_input() -> None:
    hist = LatencyHistogram()
    assert hist.quantile(0.5) is None
    with pytest.raises(ValueError):
        hist.quantile(1.5)
    with pytest.raises(ValueError):
        LatencyHistogram.from_dict({"bins": {"99999": 1}})
    with pytest.raises(ValueError):
        LatencyHistogram.from_dict({"bins": {"3": -1}})
    hist.observe(0.0)
    assert hist.quantile(0.5) == 0.0
