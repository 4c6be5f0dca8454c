"""CPU per round of the node's runtime, n validators in one process (issue 16).

Builds `--nodes` real runtimes (core, SQLite storage, safety file, tcp transport on
loopback, certified lanes; `node.assembly.build_runtime`) on one event loop, submits
`--rate` plain txs per second through the nodes' RPC view (`rpc_submit`, round robin; the
HTTP server is not exercised), and after `--warmup` seconds measures for `--window`
seconds the process CPU time (`time.process_time`) per finalized block per node:

    CPU-us per round per node = process CPU / (blocks finalized by node 0) / nodes
    CPU-us per tx per node    = process CPU / (txs finalized by node 0) / nodes

All nodes share one core, so the figure does not depend on how many cores other jobs
leave free (unlike the testnet's block interval); it does depend on the CPU's speed. The
nodes' fsyncs run one after another on the one loop: with `--dir /dev/shm` (tmpfs) they
cost nothing and the run measures CPU alone.
`--profile` adds a cProfile of the window (CPU time) and prints the top functions.

    .venv/bin/python benchmarks/bench_node_round.py --nodes 16 --rate 1000 --repeats 3
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import logging
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path


async def one_run(
    nodes: int, rate: float, warmup: float, window: float, profile: bool, base: Path | None
) -> dict:
    from node.assembly import build_runtime
    from node.config import load_config, load_key
    from node.tools.testnet import generate_network

    logging.disable(logging.WARNING)  # the nodes' info lines are not part of the cost
    root = Path(tempfile.mkdtemp(prefix="sedna-round-", dir=base))
    manifest = generate_network(root, nodes)
    configs = [load_config(root / m["config"]) for m in manifest["members"]]
    runtimes = [build_runtime(c, load_key(c)) for c in configs]
    tasks = [asyncio.create_task(r.run()) for r in runtimes]
    stop = asyncio.Event()

    async def load() -> None:
        sent, start, target = 0, time.monotonic(), 0
        while not stop.is_set():
            await asyncio.sleep(0.01)
            due = int((time.monotonic() - start) * rate)
            batch = [b"round-bench-%d" % i for i in range(sent, due)]
            if batch:
                runtimes[target % nodes].view.rpc_submit(batch)
                target += 1
                sent = due

    loader = asyncio.create_task(load())
    profiler = cProfile.Profile(time.process_time) if profile else None
    try:
        await asyncio.sleep(warmup)
        height0 = runtimes[0].ledger.finalized_height
        txs0 = runtimes[0].metrics.committed_txs.total()
        cpu0 = time.process_time()
        if profiler is not None:
            profiler.enable()
        await asyncio.sleep(window)
        if profiler is not None:
            profiler.disable()
        cpu = time.process_time() - cpu0
        blocks = runtimes[0].ledger.finalized_height - height0
        txs = runtimes[0].metrics.committed_txs.total() - txs0
    finally:
        stop.set()
        loader.cancel()
        for runtime in runtimes:
            runtime.stop()
        await asyncio.gather(*tasks, loader, return_exceptions=True)
    result = {
        "blocks": blocks,
        "txs": int(txs),
        "cpu_s": round(cpu, 3),
        "block_interval_ms": round(1000 * window / blocks, 2) if blocks else None,
        "cpu_us_per_round_per_node": round(1e6 * cpu / blocks / nodes, 1) if blocks else None,
        "cpu_us_per_tx_per_node": round(1e6 * cpu / txs / nodes, 1) if txs else None,
    }
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(30)
        result["profile"] = out.getvalue()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=16)
    parser.add_argument("--rate", type=float, default=1000.0, help="plain tx/s offered")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--window", type=float, default=8.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="cProfile (CPU) of each window")
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="where the data dirs go; /dev/shm (tmpfs: fsync is free) measures CPU alone",
    )
    args = parser.parse_args(argv)
    if args.nodes < 1 or args.rate < 0 or args.window <= 0 or args.repeats < 1:
        print("bench_node_round: --nodes, --repeats >= 1; --rate >= 0; --window > 0",
              file=sys.stderr)  # fmt: skip
        return 2
    per_round, per_tx = [], []
    for repeat in range(args.repeats):
        result = asyncio.run(
            one_run(args.nodes, args.rate, args.warmup, args.window, args.profile, args.dir)
        )
        profile = result.pop("profile", None)
        print(f"run {repeat + 1}: {result}  load average {os.getloadavg()[0]:.2f}", flush=True)
        if profile:
            print(profile)
        if result["cpu_us_per_round_per_node"] is not None:
            per_round.append(result["cpu_us_per_round_per_node"])
        if result["cpu_us_per_tx_per_node"] is not None:
            per_tx.append(result["cpu_us_per_tx_per_node"])
    if per_round:
        print(
            f"n={args.nodes} rate={args.rate:g}: median {statistics.median(per_round):.0f} "
            f"CPU-us per round per node over {len(per_round)} runs"
            + (f", {statistics.median(per_tx):.1f} CPU-us per tx per node" if per_tx else "")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
