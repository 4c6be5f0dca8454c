"""Catch-up benchmark: how long a node far behind takes to reach the network's height.

Three validators of a 4-node local testnet start on a database holding a real signed chain
of `--blocks` finalized blocks (`benchmarks/catchup_chain.py`, built once and cached), wait
until their decode trackers replayed it, and keep finalizing. Then the fourth validator
starts with an empty database, `--blocks` behind, and must fetch everything through the
real sync path (block sync, then chain sync) over the real transport. While it catches up,
its `/status` is polled every 0.25 s: the time until its height reaches the network's,
the worst `/status` latency (RPC keeps answering), and its sync progress fields.

    python benchmarks/bench_catchup.py --blocks 100000 --runs 3

Prints one line per run and a JSON summary (median over runs) with the `uptime` load.
`cpu_s` is the CPU time the catching-up process used until it caught up (start-up
included): on a shared, loaded machine it says more than the wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.catchup_chain import build_chain_database, install_chain  # noqa: E402
from consensus.crypto import DEFAULT_CHAIN_ID, derive_keys  # noqa: E402
from node.tools.testnet import Testnet, generate_network  # noqa: E402

KEY_SEED = b"bench-catchup"
POLL_S = 0.25


def _signing_tag() -> str:
    """Changes whenever what a signature covers changes (domains, chain id, encoding), so a
    cached chain signed the old way is never reused."""
    import hashlib

    from consensus.crypto import Domain, scheme_by_name

    signature = scheme_by_name("ed25519").sign(derive_keys(1, KEY_SEED)[0], Domain.TIP, b"tag")
    return hashlib.sha256(signature).hexdigest()[:12]


def cached_chain(cache_dir: Path, blocks: int, txs_per_block: int) -> Path:
    """The directory of a chain database for these parameters (built on first use)."""
    target = cache_dir / f"chain-{blocks}-{txs_per_block}-{_signing_tag()}"
    if not (target / "node.sqlite3").exists():
        building = cache_dir / f"building-{os.getpid()}"
        building.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        build_chain_database(
            building, derive_keys(4, KEY_SEED), blocks, txs_per_block=txs_per_block
        )
        building.rename(target)
        print(
            f"built a {blocks}-block chain in {time.monotonic() - started:.1f} s", file=sys.stderr
        )
    return target


def _cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds a process has used (Linux /proc), None if unknown."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _status(net: Testnet, index: int) -> tuple[dict[str, Any] | None, float]:
    started = time.monotonic()
    status = await net.rpc_json(index, "/status", timeout_s=5.0)
    return status, time.monotonic() - started


async def catch_up_once(
    chain_dir: Path, blocks: int, root: Path, timeout_s: float
) -> dict[str, Any]:
    # the cached chain is signed for the default chain id
    generate_network(root, 4, keys=derive_keys(4, KEY_SEED), chain_id=DEFAULT_CHAIN_ID)
    net = Testnet(root)
    install_chain(chain_dir, [m.dir / "data" for m in net.members[:3]])
    try:
        for index in range(3):
            net.start(index)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:  # peers recovered, replayed and finalizing
            statuses = [(await _status(net, i))[0] for i in range(3)]
            if all(
                s is not None and s["height"] > blocks and s["lane_tracker_height"] >= blocks
                for s in statuses
            ):
                break
            await asyncio.sleep(0.5)
        else:
            raise RuntimeError("the three peers did not resume on the prebuilt chain")
        started = time.monotonic()
        net.start(3)
        behind = min(s["height"] for s in statuses if s is not None)
        worst_rpc_s = 0.0
        answered = 0
        syncing_seen = False
        samples: list[tuple[float, int]] = []
        while time.monotonic() - started < timeout_s:
            status, latency_s = await _status(net, 3)
            peers = [(await _status(net, i))[0] for i in range(3)]
            if status is not None:
                answered += 1
                worst_rpc_s = max(worst_rpc_s, latency_s)
                syncing_seen |= bool(status.get("syncing"))
                samples.append((time.monotonic() - started, int(status["height"])))
                network = min(int(p["height"]) for p in peers if p is not None)
                if int(status["height"]) >= network - 2 and status["height"] > blocks:
                    elapsed = time.monotonic() - started
                    return {
                        "cpu_s": _cpu_s(net.pid(3)),
                        "blocks_behind": behind,
                        "catch_up_s": round(elapsed, 2),
                        "blocks_per_s": round(status["height"] / elapsed),
                        "worst_status_latency_s": round(worst_rpc_s, 3),
                        "status_answers": answered,
                        "syncing_reported": syncing_seen,
                        "tracker_height_at_catch_up": status.get("lane_tracker_height"),
                    }
            await asyncio.sleep(POLL_S)
        raise RuntimeError(f"node 3 did not catch up within {timeout_s} s (last: {samples[-3:]})")
    finally:
        net.stop_all()


async def apply_in_process(chain_dir: Path, root: Path) -> dict[str, Any]:
    """CPU cost per block of catching up, without processes or sockets: a fresh node's
    runtime (not started) sees the network's latest proposal and gets every sync request
    it makes answered from the prebuilt database by a peer's ledger, until it asks for
    nothing more. The real protocol path (on an event loop, for the timer room, which it
    never yields to); CPU time split between applying and serving."""
    import logging

    from consensus.certificates import Signer
    from consensus.codec import decode_message, encode_message
    from consensus.crypto import ED25519
    from consensus.events import MessageReceived, Start
    from consensus.messages import BlockSyncRequest, ChainSyncRequest
    from node.assembly import build_runtime
    from node.config import load_config, load_key
    from node.ledger import Ledger
    from node.metrics import NodeMetrics
    from node.storage import Storage

    keys = derive_keys(4, KEY_SEED)
    generate_network(root, 4, keys=keys, chain_id=DEFAULT_CHAIN_ID)  # the cached chain's
    config = load_config(root / "node3" / "config.toml")
    node = build_runtime(config, load_key(config))
    peer = Ledger(
        Storage(chain_dir), NodeMetrics(), logging.getLogger("bench"), max_block_txs=5_000,
        max_tx_bytes=65_536,
    )  # fmt: skip
    outbox: list[bytes] = []
    node.transport.send = lambda to, frame: outbox.append(frame)  # type: ignore[method-assign]
    node.transport.broadcast = lambda frame: None  # type: ignore[method-assign]
    top = peer.storage.blocks_from_height(peer.storage.max_block_seq(), 1)[0]
    _, tip, body = top
    author = tip.header.author
    proposal = Signer(author, keys[author], ED25519).proposal(
        tip.header.block_round, 1, tip, body, None
    )
    apply_s = serve_s = 0.0
    started = time.process_time()
    node._handle(Start(now_ns=0))
    node._handle(MessageReceived(now_ns=1, sender=author, message=proposal))
    apply_s += time.process_time() - started
    while outbox:
        requests = [
            m
            for m in map(decode_message, outbox)
            if isinstance(m, BlockSyncRequest | ChainSyncRequest)
        ]
        outbox.clear()
        for request in requests:
            started = time.process_time()
            frame = encode_message(peer.answer_sync(request))
            serve_s += time.process_time() - started
            started = time.process_time()
            node._handle(MessageReceived(now_ns=2, sender=author, message=decode_message(frame)))
            apply_s += time.process_time() - started
    height = node.ledger.finalized_height
    if node.exit_code or height < peer.finalized_height - 2:
        raise RuntimeError(f"in-process catch-up stopped at {height} (exit {node.exit_code})")
    node.ledger.storage.close()
    peer.storage.close()
    return {
        "finalized_height": height,
        "apply_us_per_block": round(apply_s / height * 1e6, 1),
        "serve_us_per_block": round(serve_s / height * 1e6, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--txs-per-block", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per run")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "sedna-bench-catchup",
        help="where built chains are kept between runs",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="measure CPU per block applied and served, without processes (apply_in_process)",
    )
    args = parser.parse_args(argv)
    if args.blocks < 1 or args.runs < 1:
        print("bench_catchup: --blocks and --runs must be positive", file=sys.stderr)
        return 2
    chain_dir = cached_chain(args.cache_dir, args.blocks, args.txs_per_block)
    if args.in_process:
        for run in range(args.runs):
            load = [round(x, 2) for x in os.getloadavg()]
            with tempfile.TemporaryDirectory(prefix="bench-catchup-") as tmp:
                result = asyncio.run(apply_in_process(chain_dir, Path(tmp) / "net"))
            print(json.dumps({"run": run + 1, **result, "load_before": load}))
        return 0
    results = []
    for run in range(args.runs):
        load = os.getloadavg()
        with tempfile.TemporaryDirectory(prefix="bench-catchup-") as tmp:
            result = asyncio.run(
                catch_up_once(chain_dir, args.blocks, Path(tmp) / "net", args.timeout)
            )
        result["load_before"] = [round(x, 2) for x in load]
        results.append(result)
        print(f"run {run + 1}: {json.dumps(result)}", file=sys.stderr)
    summary = {
        "blocks": args.blocks,
        "runs": args.runs,
        "catch_up_s_median": statistics.median(r["catch_up_s"] for r in results),
        "catch_up_s_all": [r["catch_up_s"] for r in results],
        "worst_status_latency_s": max(r["worst_status_latency_s"] for r in results),
        "results": results,
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
