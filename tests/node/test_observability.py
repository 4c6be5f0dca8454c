"""Prometheus configuration, Grafana provisioning and the dashboard, without processes
(except `promtool`, Prometheus's own config checker). A real Prometheus scraping a real
testnet is `test_observability_e2e.py`."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from node.metrics import NodeMetrics
from node.tools.observability import (
    DATASOURCE_UID,
    DEPLOY_DASHBOARD,
    DEPLOY_DASHBOARD_PROVIDER,
    DEPLOY_DATASOURCE,
    DEPLOY_PROMETHEUS,
    GRAFANA_DASHBOARDS,
    GRAFANA_PROVISIONING,
    PROMETHEUS_CONFIG_PATH,
    ScrapeTarget,
    dashboard_queries,
    deploy_files,
    exported_sample_names,
    promql_metric_names,
    render_prometheus_config,
    unknown_metrics,
)
from node.tools.testnet import DOCKER_RPC_PORT, compose_document

from .prometheus_server import prometheus_binary

ROOT = Path(__file__).resolve().parents[2]

# What a provisioned Grafana dashboard must look like for this project: every panel has a
# type, a title, a grid position inside 24 columns and (rows aside) a Prometheus data
# source and at least one PromQL target with a refId.
_DATASOURCE = {
    "type": "object",
    "required": ["type", "uid"],
    "properties": {"type": {"const": "prometheus"}, "uid": {"const": DATASOURCE_UID}},
}
_GRID = {
    "type": "object",
    "required": ["h", "w", "x", "y"],
    "properties": {
        "h": {"type": "integer", "minimum": 1},
        "w": {"type": "integer", "minimum": 1, "maximum": 24},
        "x": {"type": "integer", "minimum": 0, "maximum": 23},
        "y": {"type": "integer", "minimum": 0},
    },
}
_TARGET = {
    "type": "object",
    "required": ["refId", "expr", "datasource"],
    "properties": {
        "refId": {"type": "string", "pattern": "^[A-Z]$"},
        "expr": {"type": "string", "minLength": 1},
        "legendFormat": {"type": "string"},
        "datasource": _DATASOURCE,
    },
}
_PANEL = {
    "type": "object",
    "required": ["id", "type", "title", "gridPos"],
    "properties": {
        "id": {"type": "integer", "minimum": 1},
        "type": {"enum": ["row", "timeseries", "stat", "gauge", "table"]},
        "title": {"type": "string", "minLength": 1},
        "gridPos": _GRID,
    },
    "if": {"properties": {"type": {"const": "row"}}},
    "then": {"required": ["panels", "collapsed"]},
    "else": {
        "required": ["datasource", "targets", "fieldConfig"],
        "properties": {
            "datasource": _DATASOURCE,
            "targets": {"type": "array", "minItems": 1, "items": _TARGET},
        },
    },
}
DASHBOARD_SCHEMA = {
    "type": "object",
    "required": ["uid", "title", "schemaVersion", "panels", "templating", "time"],
    "properties": {
        "uid": {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,40}$"},
        "schemaVersion": {"type": "integer", "minimum": 36},
        "panels": {"type": "array", "minItems": 1, "items": _PANEL},
        "templating": {
            "type": "object",
            "required": ["list"],
            "properties": {"list": {"type": "array"}},
        },
    },
}


def _load_dashboard() -> dict[str, Any]:
    return json.loads((ROOT / DEPLOY_DASHBOARD).read_text())


def test_deploy_files_are_what_the_generator_writes() -> None:
    """deploy/ == node.tools.observability.deploy_files() (regenerate with
    `python -m node.tools.observability`)."""
    for relative, text in deploy_files().items():
        assert (ROOT / relative).read_text() == text, f"{relative} is stale"


def test_dashboard_loads_and_matches_the_schema() -> None:
    dashboard = _load_dashboard()
    jsonschema.validate(dashboard, DASHBOARD_SCHEMA)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        area = {
            (grid["y"] + dy, grid["x"] + dx) for dy in range(grid["h"]) for dx in range(grid["w"])
        }
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area
        refs = [t["refId"] for t in panel.get("targets", [])]
        assert len(refs) == len(set(refs)), panel["title"]
    # The schema rejects what it should (it is not vacuous).
    broken = copy.deepcopy(dashboard)
    del next(p for p in broken["panels"] if p["type"] != "row")["targets"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, DASHBOARD_SCHEMA)


def test_every_dashboard_query_names_a_metric_the_node_exports() -> None:
    """Checked against the node's metrics registry (every sample name it can export,
    including series that only appear once they have a value, e.g. per-peer bytes)."""
    dashboard = _load_dashboard()
    exported = NodeMetrics().registry.sample_names()
    queries = dashboard_queries(dashboard)
    assert len(queries) >= 20
    assert unknown_metrics(dashboard, exported) == []
    # What the dashboard is for: each of these is in some query.
    named = set().union(*(promql_metric_names(expr) for _, expr in queries))
    for required in (
        "sedna_finalized_height",
        "sedna_current_round",
        "sedna_commit_latency_seconds_bucket",
        "sedna_timeout_certificates_total",
        "sedna_no_endorsement_certificates_total",
        "sedna_reproposals_total",
        "sedna_lane_decode_delay_seconds_bucket",
        "sedna_bundles_rejected_total",
        "sedna_peer_sent_bytes_total",
        "sedna_peer_received_bytes_total",
    ):
        assert required in named, required
    # The check fails on a misspelled metric or a query without one.
    typo = copy.deepcopy(dashboard)
    panel = next(p for p in typo["panels"] if p.get("targets"))
    panel["targets"][0]["expr"] = 'rate(sedna_finalised_height{node=~"$node"}[5m])'
    panel["targets"].append({"refId": "Z", "expr": "vector(1)"})
    assert unknown_metrics(typo, exported) == [
        f"{panel['title']}: sedna_finalised_height",
        f"{panel['title']}: <no metric> in 'vector(1)'",
    ]


def test_exposition_names_are_in_the_registry_names() -> None:
    """`sample_names()` covers what a rendered exposition holds (the two views agree)."""
    metrics = NodeMetrics()
    metrics.peer_bytes_out.set(10, peer=1)
    metrics.received.inc(peer=1, type="Vote")
    rendered = exported_sample_names(metrics.registry.render())
    assert "sedna_peer_sent_bytes_total" in rendered
    assert rendered <= metrics.registry.sample_names()


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sedna_finalized_height{node=~"$node"}', {"sedna_finalized_height"}),
        (
            'histogram_quantile(0.99, sum by (node, le) (rate(x_bucket{a="b,c}"}[$__rate_interval])))',
            {"x_bucket"},
        ),
        ("a - on (node) group_left (peer) b", {"a", "b"}),
        ("sum without (instance) (rate(c_total[5m] offset 1m)) > bool 3", {"c_total"}),
        ('label_replace(up, "x", "$1", "instance", "(.*)")', {"up"}),
        ("vector(1) + scalar(time())", set()),
        ("max_over_time(d[1h:5m]) or e:recorded_rule", {"d", "e:recorded_rule"}),
    ],
)
def test_promql_metric_names(expr: str, names: set[str]) -> None:
    assert promql_metric_names(expr) == names


def test_generated_yaml_parses_to_the_documents() -> None:
    """The hand-rolled YAML writer, read back by a real YAML parser."""
    files = deploy_files()
    prometheus = yaml.safe_load(files[DEPLOY_PROMETHEUS])
    (job,) = prometheus["scrape_configs"]
    assert [c["labels"]["node"] for c in job["static_configs"]] == [f"node{i}" for i in range(4)]
    assert [c["targets"] for c in job["static_configs"]] == [
        [f"node{i}:{DOCKER_RPC_PORT}"] for i in range(4)
    ]
    datasource = yaml.safe_load(files[DEPLOY_DATASOURCE])["datasources"][0]
    assert datasource["uid"] == DATASOURCE_UID and datasource["url"] == "http://prometheus:9090"
    provider = yaml.safe_load(files[DEPLOY_DASHBOARD_PROVIDER])["providers"][0]
    assert provider["options"]["path"] == GRAFANA_DASHBOARDS
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert compose == json.loads(json.dumps(compose_document(4)))


def test_compose_wires_prometheus_and_grafana_to_the_generated_files() -> None:
    document = compose_document(4)
    services = document["services"]
    validators = sorted(k for k in services if k.startswith("node"))
    prometheus, grafana = services["prometheus"], services["grafana"]
    # Rule: the observability ports are published on the host's loopback only.
    for service in (prometheus, grafana):
        for port in service["ports"]:
            assert port.startswith("127.0.0.1:"), port
    mounts = {v.split(":")[1]: v.split(":")[0] for v in prometheus["volumes"]}
    assert mounts[PROMETHEUS_CONFIG_PATH] == f"./{DEPLOY_PROMETHEUS}"
    assert f"--config.file={PROMETHEUS_CONFIG_PATH}" in prometheus["command"]
    # Prometheus scrapes exactly the compose file's validators on their RPC port.
    config = yaml.safe_load((ROOT / DEPLOY_PROMETHEUS).read_text())
    targets = [t for c in config["scrape_configs"][0]["static_configs"] for t in c["targets"]]
    assert targets == [f"{name}:{DOCKER_RPC_PORT}" for name in validators]
    # Grafana mounts the provisioning folder and the folder the provider reads.
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"]}
    assert (ROOT / mounts[GRAFANA_PROVISIONING] / "datasources" / "sedna.yml").is_file()
    assert (ROOT / mounts[GRAFANA_DASHBOARDS] / Path(DEPLOY_DASHBOARD).name).is_file()
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    for volume in ("prometheus", "grafana"):
        assert volume in document["volumes"]


def test_promtool_accepts_the_generated_configs(tmp_path: Path) -> None:
    """Prometheus's own checker reads the compose config and a local testnet's config."""
    promtool = Path(prometheus_binary()).with_name("promtool")
    local = tmp_path / "prometheus.yml"
    local.write_text(render_prometheus_config([ScrapeTarget("node0", "127.0.0.1", 26700)], 1))
    for path in (ROOT / DEPLOY_PROMETHEUS, local):
        result = subprocess.run(
            [str(promtool), "check", "config", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr
    bad = tmp_path / "bad.yml"
    bad.write_text(local.read_text().replace("scrape_interval", "scrape_intervall"))
    result = subprocess.run(
        [str(promtool), "check", "config", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
