"""End-to-end: real validator processes on loopback, both transports, bounded in time.

Each test starts its own network in a temporary directory and stops every process it
started (SIGTERM, then SIGKILL) even when it fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from node.faults import CRASH_EXIT_CODE
from node.runtime import FATAL_ERROR_EXIT_CODE
from node.tools.testnet import Testnet, generate_network

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def _sedna(*args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def _heights(net: Testnet) -> list[int | None]:
    statuses = asyncio.run(net.statuses(timeout_s=1.0))
    return [None if s is None else int(s["height"]) for s in statuses]


def _wait(predicate, timeout_s: float, step_s: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return bool(predicate())


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


@pytest.mark.parametrize("transport", ["tcp", "libp2p"])
def test_bounded_run_survives_kill_and_restart(transport: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = _sedna(
        "testnet", "run", "--nodes", "4", "--duration", "6", "--rate", "300",
        "--transport", transport, "--perturb", "kill:1:1.5@1.5", "--json", "--out", str(out),
        timeout_s=150,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    _check_series(out, summary)
    assert summary["ok"] and summary["agreement"] and summary["progress"]
    assert summary["committed_tx"] > 0 and summary["lost_tx"] == 0
    assert summary["duplicate_tx"] == 0  # TX-ONCE, checked from every node's chain
    assert summary["committed_tx"] == summary["accepted_tx"]
    (kill,) = summary["perturbations"]
    assert kill["action"] == "kill" and kill["recovered"] and kill["recovery_s"] < 20
    assert min(summary["heights"].values()) > 0
    for key in ("finality_ms", "speculative_ms"):
        assert 0 < summary[key]["p50"] <= summary[key]["p99"]
    assert summary["block_interval_ms"]["min"] <= summary["block_interval_ms"]["mean"]


def _check_series(out: Path, summary: dict[str, Any]) -> None:
    """--out: one CSV row per second of the run, a PNG of them, and the summary."""
    import csv

    with (out / "series.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) >= 6  # 6 s of load plus the drain, one row a second
    heights = [int(r["height"]) for r in rows if r["height"]]
    assert heights == sorted(heights) and heights[-1] >= max(summary["heights"].values()) - 5
    assert sum(float(r["tps"] or 0) for r in rows) > 0
    assert any(r["finality_p50_ms"] for r in rows)
    for r in rows:
        if r["finality_p50_ms"]:
            assert 0 < float(r["finality_p50_ms"]) <= float(r["finality_p99_ms"])
    assert min(int(r["nodes_up"]) for r in rows) < 4  # node 1 was down for a while
    assert (out / "series.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "summary.json").read_text())["heights"] == summary["heights"]


def test_bounded_run_survives_a_paused_leader() -> None:
    """Round-robin leaders: a node paused for 3 s misses its leader slots; rounds time out."""
    result = _sedna(
        "testnet", "run", "--nodes", "4", "--duration", "6", "--rate", "200",
        "--perturb", "pause:2:3@1", "--json",
        timeout_s=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["ok"] and summary["agreement"] and summary["lost_tx"] == 0
    assert summary["tcs"] > 0  # the paused leader's rounds ended in timeout certificates
    assert summary["perturbations"][0]["recovered"]


@pytest.fixture
def network(tmp_path: Path):
    nets: list[Testnet] = []

    def make(
        nodes: int = 4, node_test: dict[int, dict[str, Any]] | None = None, wait: bool = True
    ) -> Testnet:
        generate_network(tmp_path / "net", nodes, node_test=node_test)
        net = Testnet(tmp_path / "net")
        nets.append(net)
        net.start_all()
        if wait:
            assert asyncio.run(net.wait_ready(30.0)), "network did not get ready"
        return net

    yield make
    for net in nets:
        net.stop_all()


def test_malformed_frame_flood_from_an_unauthenticated_client(network) -> None:
    net = network()
    config = net.members[0].config
    port = int(config.read_text().split("listen_port = ")[1].split()[0])
    before = _heights(net)
    floods = [
        b"\x00" * 4096,  # zero-length frames and zero bytes
        b"\xff\xff\xff\xff" + os.urandom(512),  # a 4 GiB length prefix
        os.urandom(64 * 1024),  # random bytes
        b"GET / HTTP/1.1\r\n\r\n" * 100,  # the wrong protocol entirely
    ]
    deadline = time.monotonic() + 4.0
    connections = 0
    while time.monotonic() < deadline:
        for data in floods:
            with socket.socket() as sock:
                sock.settimeout(1.0)
                try:
                    sock.connect(("127.0.0.1", port))
                    sock.sendall(data)
                    connections += 1
                except OSError:
                    pass  # the node may drop us mid-write: that is the point
    assert connections > 20
    assert all(net.is_running(i) for i in range(4))
    assert _wait(lambda: all(h is not None and h > max(before) + 5 for h in _heights(net)), 20)
    stats = asyncio.run(net.rpc_json(0, "/stats"))
    failures = stats["transport"]["handshake_failures"]
    assert sum(failures.values()) >= connections // 2, failures
    assert stats["transport"]["connected_peers"] == [1, 2, 3]  # real peers stayed connected


def test_crash_between_persisting_a_vote_and_sending_it_never_double_votes(network) -> None:
    crash_at = 8  # the 8th safety write that protects a vote
    # No readiness wait: node 2 may crash (by design) before every node reports all peers.
    net = network(
        node_test={i: {"log_votes": True} for i in (0, 1, 3)}
        | {2: {"log_votes": True, "crash_after_persist_safety": crash_at}},
        wait=False,
    )
    member = net.members[2]
    process = member.process
    assert process is not None
    assert _wait(lambda: process.poll() is not None, 30), "node 2 never crashed"
    assert process.returncode == CRASH_EXIT_CODE
    log_path = member.dir / "node.log"
    crash = next(r for r in _records(log_path) if r["event"] == "test_crash_after_persist_safety")
    crashed_round, crashed_block = crash["round"], crash["block_id"]
    # restart without the hook; it must not vote again in any round it persisted a vote for
    text = member.config.read_text().replace(f"crash_after_persist_safety = {crash_at}", "")
    member.config.write_text(text)
    net._forget(2)
    net.start(2)
    assert _wait(lambda: (h := _heights(net))[2] is not None and h[2] >= max(h) - 2, 30)
    restarted_at = len(_records(log_path))
    assert _wait(
        lambda: sum(r["event"] == "vote_sent" for r in _records(log_path)[restarted_at:]) >= 10, 20
    )
    net.stop_all()
    records = _records(log_path)
    starts = [i for i, r in enumerate(records) if r["event"] == "node_started"]
    assert len(starts) == 2 and records[starts[1]]["recovered"] is True
    after = [r for r in records[starts[1] :] if r["event"] == "vote_sent"]
    assert after and min(r["round"] for r in after) > crashed_round
    # what every peer received from node 2: never two different blocks in one round
    votes: dict[int, set[str]] = {}
    for index in (0, 1, 3):
        for r in _records(net.members[index].dir / "node.log"):
            if r["event"] == "vote_received" and r["author"] == 2:
                votes.setdefault(r["round"], set()).add(r["block_id"])
    assert votes and all(len(blocks) == 1 for blocks in votes.values())
    # the persisted-but-unsent vote never left the process
    assert crashed_block not in votes.get(crashed_round, set())
    # and the network agrees on one chain
    chains = []
    from node.storage import Storage

    for m in net.members:
        storage = Storage(m.dir / "data")
        chains.append([r.block_id for r in storage.finalized_range(1, 100_000)])
        storage.close()
    longest = max(chains, key=len)
    assert all(c == longest[: len(c)] for c in chains)


def test_a_core_exception_stops_the_node_process_with_its_own_exit_code(network) -> None:
    """Defect: a core exception was logged and the node kept driving a half-changed core."""
    net = network(node_test={1: {"core_error_after_events": 60}}, wait=False)
    member = net.members[1]
    process = member.process
    assert process is not None
    assert _wait(lambda: process.poll() is not None, 60), "node 1 kept running"
    assert process.returncode == FATAL_ERROR_EXIT_CODE
    records = _records(member.dir / "node.log")
    fatal = [r for r in records if r["event"] == "fatal_error"]
    assert len(fatal) == 1  # logged once
    assert fatal[0]["stage"] == "core" and fatal[0]["exit_code"] == FATAL_ERROR_EXIT_CODE
    assert "InjectedCoreError" in fatal[0]["traceback"]
    events = [r["event"] for r in records]
    assert events.index("node_stopped") > events.index("fatal_error")  # a clean shutdown
    # the other three (a quorum) go on finalizing without it
    heights = _heights(net)
    assert heights[1] is None
    assert _wait(
        lambda: (
            min(h for i, h in enumerate(_heights(net)) if i != 1)
            > max(h for h in heights if h is not None) + 3
        ),
        30,
    )


def test_up_status_down_cli(tmp_path: Path) -> None:
    target = tmp_path / "net"
    try:
        up = _sedna("testnet", "up", "--nodes", "4", "--dir", str(target), timeout_s=60)
        assert up.returncode == 0, up.stderr
        assert up.stdout.count("rpc http://127.0.0.1:") == 4
        again = _sedna("testnet", "up", "--nodes", "4", "--dir", str(target), timeout_s=30)
        assert again.returncode == 2 and "already running" in again.stderr
        time.sleep(1.0)
        status = _sedna("testnet", "status", "--dir", str(target), "--json", timeout_s=30)
        rows = json.loads(status.stdout)
        assert [r["state"] for r in rows] == ["up"] * 4 and all(r["peers"] == 3 for r in rows)
        logs = _sedna("testnet", "logs", "--dir", str(target), "--lines", "2", timeout_s=30)
        assert logs.returncode == 0 and "node0| {" in logs.stdout
    finally:
        down = _sedna("testnet", "down", "--dir", str(target), timeout_s=60)
    assert down.returncode == 0 and "stopped nodes [0, 1, 2, 3]" in down.stderr
    assert Testnet(target).running() == []


def test_node_with_a_taken_port_exits_with_a_clear_message(tmp_path: Path) -> None:
    generate_network(tmp_path, 4)
    config = tmp_path / "node0" / "config.toml"
    port = int(config.read_text().split("listen_port = ")[1].split()[0])
    with socket.socket() as busy:
        # SO_REUSEADDR as the launcher checks ports: the port may be in TIME_WAIT.
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", port))
        busy.listen()
        result = _sedna("node", "run", "--config", str(config), timeout_s=60)
    assert result.returncode == 1
    assert "cannot start" in result.stderr
