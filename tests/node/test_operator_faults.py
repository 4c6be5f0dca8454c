"""What operators do to nodes, on real processes: corrupt storage, testnet control by
several spellings of one directory, a one-validator network.

Each test starts its own one-validator network (the cheapest real node) in a temporary
directory and stops every process it started, even when it fails.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest

from consensus.crypto import derive_keys
from consensus.safety import SafetyState
from node.config import load_config
from node.rpc import HttpClient
from node.safety_file import read_latest
from node.tools.testnet import Testnet, generate_network

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def _sedna(*args: str, cwd: Path = ROOT, timeout_s: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def _status(net: Testnet) -> dict | None:
    return asyncio.run(net.rpc_json(0, "/status", timeout_s=2.0))


def _wait(predicate, timeout_s: float, step_s: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return bool(predicate())


def _stop_everything(root: Path) -> None:
    if (root / "network.json").exists():
        Testnet(root).stop_all()


def test_one_validator_network_runs_without_spinning() -> None:
    """n = 1, f = 0: it finalizes the load, and its paced votes keep it from spinning."""
    started = time.monotonic()
    result = _sedna(
        "testnet", "run", "--nodes", "1", "--duration", "4", "--rate", "200",
        "--sedna-rate", "10", "--json",
    )  # fmt: skip
    elapsed_s = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["ok"] and summary["committed_tx"] == summary["accepted_tx"] > 0
    assert summary["sedna_decoded"]["0"] == summary["sedna_offered"] > 0
    height = summary["heights"]["0"]
    # Paced at 20 ms per vote: at most 50 blocks/s (unpaced it was ~1,000/s, its RPC
    # starved and `run` waited 30 s for it). The whole run takes well under a minute.
    assert 0 < height <= 50 * elapsed_s, (height, elapsed_s)
    assert elapsed_s < 60


def test_testnet_control_knows_one_directory_by_any_spelling(tmp_path: Path) -> None:
    root = tmp_path / "net"
    try:
        up = _sedna("testnet", "up", "--nodes", "1", "--dir", str(root))
        assert up.returncode == 0, up.stderr
        pid_file = root / "node0" / "pid"
        pid = int(pid_file.read_text())
        # `up` again through another spelling of the live directory: refused, pid kept.
        again = _sedna("testnet", "up", "--nodes", "1", "--dir", "./net/../net", cwd=tmp_path)
        assert again.returncode == 2 and "already running" in again.stderr, again.stderr
        assert int(pid_file.read_text()) == pid
        # Starting the live node directly is refused too (the pid file stays its own).
        with pytest.raises(Exception, match="already running"):
            Testnet(tmp_path / "." / "net").start(0, detach=True)
        assert int(pid_file.read_text()) == pid
        # `down` through a relative spelling finds and stops it.
        down = _sedna("testnet", "down", "--dir", "net", cwd=tmp_path)
        assert down.returncode == 0 and "stopped nodes [0]" in down.stderr, down.stderr
        assert _wait(lambda: not Path(f"/proc/{pid}").exists(), 15)
        assert not pid_file.exists()
    finally:
        _stop_everything(root)


def _overwrite_pages(path: Path, count: int, seed: int) -> None:
    page_bytes = 4096
    pages = path.stat().st_size // page_bytes
    assert pages > count  # non-vacuous: the database has more pages than we overwrite
    rng = random.Random(seed)
    with path.open("r+b") as handle:
        for page in rng.sample(range(1, pages), count):
            handle.seek(page * page_bytes)
            handle.write(rng.randbytes(page_bytes))


def _refused(config: Path, db: Path, problem: str) -> None:
    """`sedna node run` exits 1 with one stderr line naming the file and the problem."""
    result = _sedna("node", "run", "--config", str(config), timeout_s=60)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, result.stderr[-2000:]
    assert len(lines) == 1, lines
    assert str(db) in lines[0] and problem in lines[0], lines[0]


def test_corrupt_storage_is_refused_and_reset_starts_fresh(tmp_path: Path) -> None:
    root = tmp_path / "net"
    try:
        assert _sedna("testnet", "up", "--nodes", "1", "--dir", str(root)).returncode == 0
        net = Testnet(root)
        assert _wait(lambda: (_status(net) or {}).get("height", 0) >= 30, 60)
        assert _sedna("testnet", "down", "--dir", str(root)).returncode == 0
        data = root / "node0" / "data"
        db = data / "node.sqlite3"
        config = root / "node0" / "config.toml"
        safety = data / "node.safety"
        voted = msgspec.msgpack.decode(read_latest(safety)[1], type=SafetyState)
        assert voted.highest_vote > 0  # it voted: forgetting that would allow a double vote
        pristine = tmp_path / "pristine"
        shutil.copytree(data, pristine)

        def restore() -> None:
            shutil.rmtree(data)
            shutil.copytree(pristine, data)

        # 1. Truncated to 0 bytes: refused (it used to start at height 0, votes forgotten).
        db.write_bytes(b"")
        _refused(config, db, "the database file is empty (0 bytes)")
        # ... and `up` reports the failed start at once instead of waiting for readiness.
        up = _sedna("testnet", "up", "--nodes", "1", "--dir", str(root), "--timeout", "60")
        assert up.returncode == 1, up.stderr
        assert "node0 exited with code 1" in up.stderr and "empty (0 bytes)" in up.stderr
        assert not (root / "node0" / "pid").exists()

        # 2. 20 random pages overwritten: refused (it used to start with recovered: true).
        restore()
        _overwrite_pages(db, 20, seed=4)
        result = _sedna("node", "run", "--config", str(config), timeout_s=60)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and len(lines) == 1, result.stderr[-2000:]
        assert str(db) in lines[0]
        assert any(p in lines[0] for p in ("integrity check failed", "malformed")), lines[0]

        # 3. The safety file's slots overwritten: neither passes its checksum; the file
        # deleted: missing.
        restore()
        safety.write_bytes(bytes(safety.stat().st_size))
        _refused(config, safety, "no valid safety state in the safety file")
        safety.unlink()
        _refused(config, safety, "the safety file is missing")

        # The untouched copy still starts and recovers (so the refusals above were the
        # corruption's doing), and --reset starts a refused node fresh, on purpose.
        restore()
        assert _sedna("testnet", "up", "--nodes", "1", "--dir", str(root)).returncode == 0
        status = _status(net)
        assert status is not None and status["recovered"] is True
        assert _sedna("testnet", "down", "--dir", str(root)).returncode == 0
        db.write_bytes(b"")
        node = subprocess.Popen(
            [sys.executable, "-m", "node.cli", "node", "run", "--config", str(config), "--reset"],
            cwd=ROOT, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert _wait(lambda: (_status(net) or {}).get("height", 0) >= 3, 60)
            assert _status(net)["recovered"] is False  # type: ignore[index]
        finally:
            node.send_signal(signal.SIGTERM)
            _, err = node.communicate(timeout=30)
        assert node.returncode == 0, err
        assert f"--reset: deleted {db}" in err
    finally:
        _stop_everything(root)


def _metric(text: str, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    raise KeyError(name)


def test_a_live_nodes_metrics_follow_prometheus_conventions(tmp_path: Path) -> None:
    """The exposition of a running node (every collector its rooms register, not only
    NodeMetrics'): valid, `_total` exactly on counters, no per-block label, reason labels
    from fixed vocabularies (no sentences, no numbers)."""
    import re

    from prometheus_client.parser import text_string_to_metric_families

    generate_network(tmp_path / "net", 1)
    net = Testnet(tmp_path / "net")
    try:
        net.start_all()
        assert asyncio.run(net.wait_ready(60))
        member = net.members[0]

        async def get() -> str:
            client = HttpClient(member.rpc_host, member.rpc_port, 5.0)
            try:
                status, body = await client.request("GET", "/metrics")
                assert status == 200
                return body.decode()
            finally:
                await client.close()

        text = asyncio.run(get())
    finally:
        net.stop_all()
    families = list(text_string_to_metric_families(text))
    assert len(families) > 40  # non-vacuous: the rooms' collectors are there
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name.endswith("_total") == (kind == "counter"), line
    for family in families:
        for sample in family.samples:
            assert not {"height", "hash", "block_id", "txid"} & set(sample.labels), sample
            for key in ("reason", "result", "event", "stage"):
                value = sample.labels.get(key)
                assert value is None or re.fullmatch(r"[a-z][a-z0-9_]*", value), sample


def test_a_wrong_peer_key_is_logged_once_and_counted(tmp_path: Path) -> None:
    """Node 0's config names a wrong public key for validator 1: node 0 logs one warning
    per kind (not one per redial) and exports every failure as a metric."""
    root = tmp_path / "net"
    generate_network(root, 2)
    config = root / "node0" / "config.toml"
    wrong = derive_keys(1, b"not validator 1")[0].public.hex()
    text = config.read_text()
    right = load_config(config).validators[1].public_key.hex()
    config.write_text(text.replace(right, wrong))
    net = Testnet(root)
    try:
        net.start_all()

        def metrics(index: int) -> str | None:
            member = net.members[index]

            async def get() -> str | None:
                client = HttpClient(member.rpc_host, member.rpc_port, 2.0)
                try:
                    status, body = await client.request("GET", "/metrics")
                    return body.decode() if status == 200 else None
                except OSError:
                    return None
                finally:
                    await client.close()

            return asyncio.run(get())

        def failures() -> float:
            text = metrics(0)
            if text is None:
                return 0.0
            return _metric(
                text, "sedna_transport_handshake_failures_total", reason="wrong_peer_key"
            )

        assert _wait(lambda: failures() >= 3, 60)  # node 0 redialed at least 3 times
        text0 = metrics(0)
        assert text0 is not None  # node 1's real key is unknown to node 0 when node 1 dials
        assert _metric(text0, "sedna_transport_handshake_failures_total", reason="unknown_key") >= 1
    finally:
        net.stop_all()
    records = [
        json.loads(line)
        for line in (root / "node0" / "node.log").read_text().splitlines()
        if line.startswith("{")
    ]
    mismatch = [r for r in records if r["event"] == "peer_key_mismatch"]
    assert len(mismatch) == 1, mismatch
    assert mismatch[0]["level"] == "warning" and mismatch[0]["peer"] == 1
    assert (
        mismatch[0]["configured_key"] == wrong[:16] and mismatch[0]["presented_key"] == right[:16]
    )
    assert sum(r["event"] == "unknown_peer_key" for r in records) == 1
