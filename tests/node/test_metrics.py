"""Prometheus rendering and the mergeable latency histogram."""

from __future__ import annotations

import ast
import random
from pathlib import Path

import numpy as np
import pytest

from node.metrics import (
    CORE_REJECT_CLASSES,
    OTHER,
    RPC_REFUSAL_REASONS,
    RUNTIME_DROP_REASONS,
    LatencyHistogram,
    NodeMetrics,
    Registry,
    core_reject_class,
)


def _families(text: str) -> dict[str, object]:
    from prometheus_client.parser import text_string_to_metric_families

    return {f.name: f for f in text_string_to_metric_families(text)}


def test_render_counters_gauges_and_histograms() -> None:
    registry = Registry()
    dropped = registry.counter("x_dropped", "drops", ("reason",), {"reason": ("a", "b", "other")})
    height = registry.gauge("x_height", "height")
    latency = registry.histogram("x_latency_seconds", "latency", (0.1, 1.0))
    dropped.inc(reason="a")
    dropped.inc(2, reason='we"ird\n')  # outside the fixed set: counted as "other"
    height.set(7)
    for value in (0.05, 0.5, 5.0):
        latency.observe(value)
    text = registry.render()
    assert "# TYPE x_dropped_total counter" in text
    assert 'x_dropped_total{reason="a"} 1.0' in text
    assert 'x_dropped_total{reason="b"} 0.0' in text  # present before it ever happened
    assert 'x_dropped_total{reason="other"} 2.0' in text and "we" not in text
    assert "x_height 7.0" in text
    assert 'x_latency_seconds_bucket{le="0.1"} 1.0' in text
    assert 'x_latency_seconds_bucket{le="1.0"} 2.0' in text  # cumulative
    assert 'x_latency_seconds_bucket{le="+Inf"} 3.0' in text
    assert "x_latency_seconds_count 3.0" in text
    families = _families(text)
    assert families["x_dropped"].type == "counter"  # type: ignore[attr-defined]
    assert families["x_latency_seconds"].type == "histogram"  # type: ignore[attr-defined]


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
    with pytest.raises(ValueError, match="never named _total"):
        registry.gauge("g_total", "a gauge")
    assert registry.counter("d_total", "the suffix is added once").name == "d"
    assert "# TYPE d_total counter" in registry.render()


def _node_exposition() -> str:
    metrics = NodeMetrics()
    metrics.observe_finality([12.0, 40.0])
    metrics.execution_order.set(height=7, hash="ab" * 32)
    metrics.core_dropped.inc(reason="proposal round N at or below the finalized round")
    return metrics.registry.render()


def test_node_metrics_follow_prometheus_conventions() -> None:
    text = _node_exposition()
    families = _families(text)  # parses: valid exposition
    types = {name: f.type for name, f in families.items()}  # type: ignore[attr-defined]
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            # counters end in _total, gauges never do
            assert name.endswith("_total") == (kind == "counter"), line
    running_counts = (
        "sedna_transport_frames_dropped", "sedna_peer_received_bytes", "sedna_peer_sent_bytes",
        "sedna_bundles_rejected", "sedna_lane_blocks", "sedna_transport_handshake_failures",
        "sedna_transport_connection_errors", "sedna_rpc_refused",
    )  # fmt: skip
    for name in running_counts:
        assert types[name] == "counter", name
    # No label whose values grow per block (the execution-order hash is a number now).
    for family in families.values():
        for sample in family.samples:  # type: ignore[attr-defined]
            assert not {"height", "hash", "block_id"} & set(sample.labels), sample
    assert "sedna_execution_order_info" not in text
    (prefix,) = families["sedna_lane_execution_order_hash_prefix"].samples  # type: ignore[attr-defined]
    assert prefix.value == 0xABABABABABAB  # 48 bits: exact in a float sample
    assert 'sedna_core_rejected_total{reason="stale"} 1.0' in text


def test_every_reason_is_exported_from_the_start() -> None:
    from node.transport.base import CONN_ERROR_REASONS, HANDSHAKE_FAILURE_REASONS

    text = NodeMetrics().registry.render()
    expected = {
        "sedna_transport_handshake_failures_total": HANDSHAKE_FAILURE_REASONS,
        "sedna_transport_connection_errors_total": CONN_ERROR_REASONS,
        "sedna_messages_dropped_total": RUNTIME_DROP_REASONS,
        "sedna_core_rejected_total": CORE_REJECT_CLASSES,
        "sedna_rpc_refused_total": RPC_REFUSAL_REASONS,
    }
    for name, reasons in expected.items():
        assert reasons, name
        for reason in reasons:
            assert f'{name}{{reason="{reason}"}} 0.0' in text, (name, reason)
    assert "wrong_peer_key" in HANDSHAKE_FAILURE_REASONS


def _sentences(path: Path, pattern: str) -> list[str]:
    """String literals passed to `pattern(` in a source file (f-string fields as N)."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == pattern and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.append(arg.value)
            elif isinstance(arg, ast.JoinedStr):
                found.append(
                    "".join(v.value if isinstance(v, ast.Constant) else "N" for v in arg.values)
                )
    return found


def _refusal_returns(path: Path) -> list[str]:
    """Sentences `return`ed by the safety module's refusal functions."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Return) and isinstance(node.value, ast.Constant):
            if isinstance(node.value.value, str):
                found.append(node.value.value)
        elif isinstance(node, ast.Return) and isinstance(node.value, ast.JoinedStr):
            found.append(
                "".join(v.value if isinstance(v, ast.Constant) else "N" for v in node.value.values)
            )
    return found


def test_every_core_refusal_sentence_has_a_class() -> None:
    consensus = Path(__file__).resolve().parents[2] / "consensus"
    sentences = (
        _sentences(consensus / "core.py", "_Dropped")
        + _sentences(consensus / "certificates.py", "InvalidMessage")
        + _refusal_returns(consensus / "safety.py")
    )
    assert len(sentences) > 60  # non-vacuous: the sources were found and read
    unclassified = [s for s in sentences if core_reject_class(s) == OTHER]
    assert unclassified == []
    assert core_reject_class("qc: invalid signature by validator N") == "bad_signature"
    assert core_reject_class("timeout: tip from a future round") == "invalid"
    assert core_reject_class("proposal for future round N") == "future_round"
    assert core_reject_class("something new") == OTHER


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


def test_decode_delay_counts_each_payload_of_a_block_finalized_in_this_process() -> None:
    """`sedna_lane_decode_delay_seconds`: one observation per payload decided in a block,
    timed from that block's finalization here; a restart's replayed heights have no time."""
    metrics = NodeMetrics()
    metrics.height.set(10)  # first commit after a (re)start: heights 1..9 were final before
    metrics.payloads_decided.inc(2, status="executed")
    metrics.execution_order.set(height=3, hash="00" * 32)  # replay of an old height
    assert metrics.decode_delay.count == 0
    metrics.execution_order.set(height=9, hash="00" * 32)
    assert metrics.decode_delay.count == 0
    metrics.payloads_decided.inc(3, status="executed")
    metrics.payloads_decided.inc(1, status="expired")
    metrics.execution_order.set(height=10, hash="00" * 32)
    assert metrics.decode_delay.count == 4  # decided in height 10, final in this process
    metrics.height.set(13)  # three blocks final at once: 11, 12, 13 are all stamped
    for height in (11, 12, 13):
        metrics.payloads_decided.inc(1, status="executed")
        metrics.execution_order.set(height=height, hash="00" * 32)
    assert metrics.decode_delay.count == 7
    assert 0.0 <= metrics.decode_delay.sum < 60.0
    text = metrics.registry.render()
    assert "sedna_lane_decode_delay_seconds_count 7.0" in text
    assert len(metrics.height.final_at_s) == 0  # every stamp was used once and dropped
