"""CPU cost of the RPC server per request, for two source trees side by side.

Starts `node.rpc.RpcServer` of each tree in its own process (uvloop, a backend that parses
and counts the txs as `rpc_submit` does its JSON answer), sends it `--requests` POST /tx
requests of `--batch` binary 512-byte txs over 4 keep-alive connections (the load
generator's request shape: at 20,000 tx/s it posts ~200 such batches per second), and reads
the server process's CPU time (/proc) before and after. CPU time per request is much less
sensitive to other load on the machine than throughput is.

    git archive <commit> | tar -x -C /tmp/before
    .venv/bin/python benchmarks/bench_rpc_server.py --tree before=/tmp/before --tree after=.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SERVER = r"""
import asyncio, sys, uvloop
from node.rpc import RpcServer, parse_binary_txs

class Backend:
    def rpc_submit(self, txs):
        return {"accepted": len(txs), "duplicate": 0, "already_final": 0, "too_large": 0,
                "full": 0, "txids": []}
    def rpc_status(self):
        return {"height": 1}

async def main():
    server = RpcServer(Backend(), "127.0.0.1", 0)
    await server.start()
    print(server.port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.stop()

uvloop.run(main())
"""


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _drive(port: int, requests: int, batch: int) -> None:
    from node.rpc import HttpClient, encode_binary_txs

    body = encode_binary_txs([os.urandom(512) for _ in range(batch)])
    clients = [HttpClient("127.0.0.1", port, 30.0) for _ in range(4)]

    async def worker(client: HttpClient, count: int) -> None:
        for _ in range(count):
            status, _ = await client.request("POST", "/tx", body, "application/octet-stream")
            assert status == 200, status

    await asyncio.gather(*(worker(c, requests // 4) for c in clients))
    for client in clients:
        await client.close()


def measure(tree: Path, requests: int, batch: int) -> float:
    """Server CPU microseconds per request."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER], cwd=tree, env=env, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        asyncio.run(_drive(port, 200, batch))  # warm-up
        before = _cpu_s(server.pid)
        asyncio.run(_drive(port, requests, batch))
        after = _cpu_s(server.pid)
    finally:
        server.communicate("", timeout=30)
    return (after - before) / requests * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", required=True, metavar="NAME=DIR")
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=100, help="txs per request")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    trees = [(s.partition("=")[0], Path(s.partition("=")[2]).resolve()) for s in args.tree]
    print(f"load average before: {os.getloadavg()}", file=sys.stderr)
    runs: dict[str, list[float]] = {name: [] for name, _ in trees}
    started = time.monotonic()
    for _ in range(args.repeats):
        for name, tree in trees:
            runs[name].append(round(measure(tree, args.requests, args.batch), 1))
    print(
        f"load average after: {os.getloadavg()} ({time.monotonic() - started:.0f} s)",
        file=sys.stderr,
    )
    medians = {name: statistics.median(values) for name, values in runs.items()}
    first = trees[0][0]
    report = {
        "cpu_us_per_request": runs,
        "median_cpu_us_per_request": medians,
        "ratio_to_" + first: {n: round(m / medians[first], 3) for n, m in medians.items()},
        "cpu_share_at_20000_tps": {
            n: round(m * 20_000 / args.batch / 1e6, 4) for n, m in medians.items()
        },
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
