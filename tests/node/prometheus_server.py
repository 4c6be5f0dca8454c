"""A real Prometheus server (Debian package `prometheus`) for tests: start, query, stop.

CI installs the package (`scripts/install-system-deps.sh`, run by `.ci/run`); a test that
needs it fails, never skips, when it is missing, saying how to install it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from node.tools.testnet import default_port_base

PORT_OFFSET = 80  # base + 80 .. base + 99: between a testnet's peer and RPC port ranges


def prometheus_binary() -> str:
    path = os.environ.get("SEDNA_PROMETHEUS") or shutil.which("prometheus")
    if not path:
        pytest.fail(
            "the Prometheus server is not installed: run `bash scripts/install-system-deps.sh` "
            "(Debian package 'prometheus'; .ci/run does this)",
            pytrace=False,
        )
    return path


def free_port() -> int:
    """A free loopback port in this checkout's range (SEDNA_PORT_BASE), below 32768."""
    base = default_port_base()
    for port in range(base + PORT_OFFSET, base + PORT_OFFSET + 20):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {base + PORT_OFFSET}..{base + PORT_OFFSET + 19}")


class PrometheusServer:
    """`prometheus --config.file CONFIG` on 127.0.0.1, storage in `directory`."""

    def __init__(self, config: Path, directory: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = directory / "prometheus.log"
        directory.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    prometheus_binary(),
                    f"--config.file={config}",
                    f"--storage.tsdb.path={directory / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def get(self, path: str, timeout_s: float = 5.0) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=timeout_s) as response:
            return json.loads(response.read())

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2.0) as response:
                    if response.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"prometheus not ready after {timeout_s} s: {self.log.read_text()}")

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query through the HTTP API; raises on a PromQL error."""
        answer = self.get("/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        if answer.get("status") != "success":
            raise AssertionError(f"{expr}: {answer}")
        return list(answer["data"]["result"])

    def targets(self) -> list[dict[str, Any]]:
        return list(self.get("/api/v1/targets")["data"]["activeTargets"])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
