"""A real Prometheus server scrapes a real 4-node testnet under load; the test reads the
`sedna` series back through Prometheus's HTTP query API and evaluates every dashboard query.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from node.tools.observability import (
    DEPLOY_DASHBOARD,
    PROMETHEUS_CONFIG,
    ScrapeTarget,
    dashboard_queries,
    exported_sample_names,
    render_prometheus_config,
    unknown_metrics,
)
from node.tools.testnet import Testnet, generate_network

from .prometheus_server import PrometheusServer

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


async def _offer_load(net: Testnet, seconds: float) -> tuple[int, int]:
    """Plain txs and Sedna payloads for `seconds`, plus one malformed bundle on node 0."""
    from node.rpc import HttpClient
    from node.tools.loadgen import LoadGenerator, SednaLoadGenerator

    targets = [(m.index, m.rpc_host, m.rpc_port) for m in net.members]
    plain = LoadGenerator(targets, 200, tx_bytes=256)
    sedna = SednaLoadGenerator(targets, 20, payload_bytes=512)
    try:
        await asyncio.gather(plain.run(seconds), sedna.run(seconds))
        await sedna.settle(10.0)
    finally:
        await sedna.close()
    member = net.members[0]
    client = HttpClient(member.rpc_host, member.rpc_port, 5.0)
    try:
        status, _ = await client.post_json("/bundle", {"bundle": "bm90IGEgYnVuZGxl"})
    finally:
        await client.close()
    assert status == 400  # refused: counted as a rejected bundle (malformed)
    return plain.stats.accepted, sedna.offered


def _until(what: str, check: Callable[[], Any], timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def _by_node(result: list[dict[str, Any]]) -> dict[str, float]:
    return {r["metric"]["node"]: float(r["value"][1]) for r in result}


def test_prometheus_scrapes_a_testnet_and_answers_every_dashboard_query(tmp_path: Path) -> None:
    manifest = generate_network(tmp_path / "net", 4)
    # The launcher writes a scrape config for the network; the test scrapes every second.
    assert (tmp_path / "net" / PROMETHEUS_CONFIG).is_file()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        render_prometheus_config(
            [ScrapeTarget(m["name"], m["rpc_host"], m["rpc_port"]) for m in manifest["members"]],
            scrape_interval_s=1,
        )
    )
    net = Testnet(tmp_path / "net")
    prometheus = None
    try:
        net.start_all()
        assert asyncio.run(net.wait_ready(90.0)), "testnet not ready"
        prometheus = PrometheusServer(config, tmp_path / "prometheus")
        prometheus.wait_ready()
        _until(
            "every node target up",
            lambda: len([t for t in prometheus.targets() if t["health"] == "up"]) == 4,
        )
        accepted, sedna_offered = asyncio.run(_offer_load(net, 6.0))
        assert accepted > 0 and sedna_offered > 0

        # Height per node, read back through the query API.
        heights = _until(
            "four heights above 0",
            lambda: (
                h
                if len(h := _by_node(prometheus.query("sedna_finalized_height"))) == 4
                and min(h.values()) > 0
                else None
            ),
        )
        assert sorted(heights) == ["node0", "node1", "node2", "node3"]
        # Finalized txs and their latency histogram came through.
        committed = _until(
            "committed txs", lambda: _sum(prometheus.query("sum(sedna_committed_txs_total)"))
        )
        assert committed >= accepted * 0.5
        assert _sum(prometheus.query("sum(sedna_commit_latency_seconds_count)")) > 0
        # The rejected bundle's reason, on the node that refused it.
        malformed = _until(
            "the malformed bundle",
            lambda: _sum(
                prometheus.query('sedna_bundles_rejected_total{node="node0",reason="malformed"}')
            ),
        )
        assert malformed >= 1
        # Sedna decode delay: one observation per decided payload on every node.
        decided = _until(
            "decided payloads on every node",
            lambda: (
                d
                if len(
                    d := _by_node(prometheus.query("sum by (node) (sedna_payloads_decided_total)"))
                )
                == 4
                and min(d.values()) > 0
                else None
            ),
        )
        delays = _by_node(prometheus.query("sedna_lane_decode_delay_seconds_count"))
        for node, count in decided.items():
            # A scrape reads both at once; a later scrape may have counted a few more.
            assert count > 0 and delays[node] > 0
        equal = _until(
            "equal decode-delay and decided counts",
            lambda: _by_node(
                prometheus.query(
                    "sedna_lane_decode_delay_seconds_count - on (node) "
                    "sum by (node) (sedna_payloads_decided_total)"
                )
            ),
        )
        assert set(equal.values()) == {0.0}, equal

        # Every dashboard query evaluates and returns series (the variables substituted).
        dashboard = json.loads((ROOT / DEPLOY_DASHBOARD).read_text())
        empty = []
        for title, expr in dashboard_queries(dashboard):
            promql = expr.replace("$__rate_interval", "30s").replace("$node", ".*")
            if not prometheus.query(promql):
                empty.append(f"{title}: {promql}")
        assert empty == []
        # And every metric the dashboard names is in a live node's /metrics.
        member = net.members[0]
        url = f"http://{member.rpc_host}:{member.rpc_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            live = exported_sample_names(response.read().decode())
        assert unknown_metrics(dashboard, live) == []
    finally:
        if prometheus is not None:
            prometheus.stop()
        net.stop_all()


def _sum(result: list[dict[str, Any]]) -> float:
    return sum(float(r["value"][1]) for r in result)
