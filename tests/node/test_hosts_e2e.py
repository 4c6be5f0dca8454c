"""A 4-host network on real processes: 127.0.0.2..127.0.0.5 (all loopback on Linux) act as
four hosts. Each host gets a copy of its own bundle only and runs `sedna testnet up` in it;
every validator uses the same ports on its own address, which only distinct hosts allow.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from node.tools.testnet import default_port_base

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ADDRESSES = ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")


def _sedna(*args: str, cwd: Path, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def _free_on_every_address(start: int) -> int:
    """A port p such that p and p + 10 are free on every address."""
    for port in range(start, start + 40):
        try:
            for address in ADDRESSES:
                for candidate in (port, port + 10):
                    with socket.socket() as sock:
                        sock.bind((address, candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair on the loopback addresses")


def test_four_hosts_each_with_its_own_bundle(tmp_path: Path) -> None:
    p2p_port = _free_on_every_address(default_port_base() + 40)
    hosts_file = tmp_path / "hosts.toml"
    hosts_file.write_text(
        f"p2p_port = {p2p_port}\nrpc_port = {p2p_port + 10}\n"
        + "".join(
            f'[[host]]\nname = "h{k}"\naddress = "{address}"\n'
            for k, address in enumerate(ADDRESSES)
        )
    )
    net = tmp_path / "net"
    result = _sedna("testnet", "init", "--hosts", str(hosts_file), "--dir", str(net), cwd=ROOT)
    assert result.returncode == 0, result.stderr
    # "Copy each bundle to its host": a separate directory per host, nothing else.
    machines = {}
    for k in range(len(ADDRESSES)):
        machines[k] = tmp_path / f"machine{k}" / "sedna"
        shutil.copytree(net / "hosts" / f"h{k}", machines[k])
        assert sorted(p.name for p in machines[k].rglob("key.toml")) == ["key.toml"]
    started = []
    try:
        for k, machine in machines.items():
            result = _sedna("testnet", "up", "--dir", ".", "--timeout", "60", cwd=machine)
            assert result.returncode == 0, result.stderr[-2000:]
            started.append(machine)
            assert f"node{k}  rpc http://{ADDRESSES[k]}:{p2p_port + 10}" in result.stdout
        # Every validator listens on its own address only: the same port on 127.0.0.1 is free.
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", p2p_port))

        # From the machine that ran init: the whole network's status over the hosts' RPC.
        def statuses() -> list[dict]:
            out = _sedna("testnet", "status", "--dir", str(net), "--json", cwd=ROOT)
            assert out.returncode == 0, out.stderr
            return json.loads(out.stdout)

        deadline = time.monotonic() + 90
        rows = statuses()
        while time.monotonic() < deadline:
            if all(r.get("peers") == 3 and r.get("height", 0) >= 5 for r in rows):
                break
            time.sleep(1.0)
            rows = statuses()
        assert all(r.get("peers") == 3 and r.get("height", 0) >= 5 for r in rows), rows
        # A host's own view: its validator only, connected to the three others.
        out = _sedna("testnet", "status", "--dir", ".", "--json", cwd=machines[2])
        (own,) = json.loads(out.stdout)
        assert own["node"] == 2 and own["peers"] == 3
    finally:
        for machine in started:
            _sedna("testnet", "down", "--dir", ".", cwd=machine, timeout_s=60)
    for machine in started:
        assert not list(machine.rglob("pid"))
