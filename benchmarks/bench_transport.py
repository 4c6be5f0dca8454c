"""Transport benchmark: RTT and throughput over loopback, and the asyncio<->trio bridge cost.

Two validators in ONE process on 127.0.0.1 (so both ends share one GIL and the machine's
cores). For each configuration and frame size:

- RTT: node 0 sends a frame, node 1's on_frame echoes it back; median over the pings.
- throughput: node 0 enqueues a burst of frames at once; time until node 1 received the
  last one; MB/s of frame payload (1 MB = 10^6 bytes) and frames/s.

Bridge cost (no network): a ping that goes asyncio -> trio thread -> asyncio through the
same TrioWaker / AsyncioInbox the libp2p transport uses, against an asyncio-only
`call_soon` ping; plus a native-trio libp2p ping (two hosts, one trio loop, same framing)
against the libp2p transport's RTT.

Every number printed is the median over --runs runs (each run's own value is a median for
RTT). Usage:

    .venv/bin/python benchmarks/bench_transport.py            # 5 runs, ~1-2 min
    .venv/bin/python benchmarks/bench_transport.py --runs 3 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from node.transport.base import TransportLimits
from node.transport.testing import LocalMesh

SIZES_BYTES = (512, 16 * 1024)
# (pings, burst frames) per size, per transport family: libp2p is ~10-50x slower.
WORKLOAD = {
    "tcp": {512: (400, 20_000), 16 * 1024: (300, 3_000)},
    "libp2p": {512: (200, 3_000), 16 * 1024: (150, 600)},
}
LIMITS = TransportLimits(peer_queue_frames=25_000, connect_backoff_initial_ms=20)


def _run_on(loop_kind: str, coro_fn: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    if loop_kind == "uvloop":
        import uvloop

        return uvloop.run(coro_fn())
    return asyncio.run(coro_fn())


async def _one_transport_run(kind: str, size_bytes: int) -> dict[str, float]:
    pings, burst = WORKLOAD["libp2p" if kind == "libp2p" else "tcp"][size_bytes]
    loop = asyncio.get_running_loop()
    state: dict[str, Any] = {"echo": None, "received": 0, "target": -1, "done": None}
    nodes: dict[int, Any] = {}

    def handler(index: int) -> Callable[[int, bytes], None]:
        def on_frame(peer: int, frame: bytes) -> None:
            if frame[:1] == b"P":  # ping: node 1 echoes
                if index == 1:
                    nodes[1].send(0, frame)
                elif state["echo"] is not None and not state["echo"].done():
                    state["echo"].set_result(None)
            else:  # burst frame
                state["received"] += 1
                if state["received"] == state["target"] and state["done"] is not None:
                    state["done"].set_result(None)

        return on_frame

    mesh = LocalMesh(kind, 2, limits=LIMITS, on_frame=handler)
    await mesh.start()
    nodes.update(mesh.nodes)
    try:
        await mesh.wait_connected(20)
        ping = b"P" + bytes(size_bytes - 1)
        # Warm up (opens the libp2p streams, fills caches).
        for _ in range(20):
            state["echo"] = loop.create_future()
            nodes[0].send(1, ping)
            await asyncio.wait_for(state["echo"], 10)
        rtts_us = []
        for _ in range(pings):
            state["echo"] = loop.create_future()
            start = time.perf_counter()
            nodes[0].send(1, ping)
            await asyncio.wait_for(state["echo"], 10)
            rtts_us.append((time.perf_counter() - start) * 1e6)
        frame = b"B" + bytes(size_bytes - 1)
        state["received"] = 0
        state["target"] = burst
        state["done"] = loop.create_future()
        start = time.perf_counter()
        for _ in range(burst):
            nodes[0].send(1, frame)
        await asyncio.wait_for(state["done"], 120)
        elapsed_s = time.perf_counter() - start
        drops = sum(nodes[0].stats()["drops"].values())
        if drops:
            raise RuntimeError(f"benchmark dropped {drops} frames; raise peer_queue_frames")
    finally:
        await mesh.stop()
    return {
        "rtt_us": statistics.median(rtts_us),
        "rtt_p99_us": sorted(rtts_us)[int(0.99 * (len(rtts_us) - 1))],
        "mb_per_s": burst * size_bytes / elapsed_s / 1e6,
        "frames_per_s": burst / elapsed_s,
    }


async def _bridge_run(pings: int = 2000, burst: int = 50_000) -> dict[str, float]:
    """asyncio -> trio -> asyncio through TrioWaker + AsyncioInbox, no network."""
    import trio

    from node.transport.bridge import AsyncioInbox, TrioThread, TrioWaker

    loop = asyncio.get_running_loop()
    state: dict[str, Any] = {"future": None, "count": 0, "target": 0}

    def on_back(_item: int) -> None:
        state["count"] += 1
        if state["count"] >= state["target"] and not state["future"].done():
            state["future"].set_result(None)

    inbox: AsyncioInbox[int] = AsyncioInbox(loop, on_back, max_items=10**6)
    thread = TrioThread("bench-bridge")
    ready = threading.Event()
    pending = {"n": 0}
    lock = threading.Lock()
    holder: dict[str, Any] = {}

    def in_trio(_key: int) -> None:  # runs on the trio thread
        with lock:
            n, pending["n"] = pending["n"], 0
        for _ in range(n):
            inbox.put(1)

    async def trio_main() -> None:
        holder["stop"] = trio.Event()
        thread.token = trio.lowlevel.current_trio_token()
        holder["waker"] = TrioWaker(thread.token, in_trio)
        ready.set()
        await holder["stop"].wait()

    thread.start(trio_main)
    await asyncio.to_thread(ready.wait, 5)
    waker: TrioWaker = holder["waker"]

    async def cross(n: int) -> None:
        state["count"], state["target"] = 0, n
        state["future"] = loop.create_future()
        with lock:
            pending["n"] += n
        waker.wake(0)
        await state["future"]

    for _ in range(100):
        await cross(1)
    hops_us = []
    for _ in range(pings):
        start = time.perf_counter()
        await cross(1)
        hops_us.append((time.perf_counter() - start) * 1e6)
    # Throughput: items cross one by one (a wake per send, as send() does), batched drains.
    state["count"], state["target"] = 0, burst
    state["future"] = loop.create_future()
    start = time.perf_counter()
    for _ in range(burst):
        with lock:
            pending["n"] += 1
        waker.wake(0)
    await state["future"]
    burst_s = time.perf_counter() - start
    assert thread.token is not None
    thread.token.run_sync_soon(holder["stop"].set)
    await asyncio.to_thread(thread.join, 5)

    # Baseline: the same ping without leaving the asyncio loop.
    base_us = []
    for _ in range(pings):
        future = loop.create_future()
        start = time.perf_counter()
        loop.call_soon(future.set_result, None)
        await future
        base_us.append((time.perf_counter() - start) * 1e6)
    return {
        "bridge_rtt_us": statistics.median(hops_us),
        "asyncio_only_rtt_us": statistics.median(base_us),
        "bridge_items_per_s": burst / burst_s,
    }


def _native_libp2p_rtt(size_bytes: int, pings: int = 200) -> float:
    """Median RTT of the same framed echo between two libp2p hosts in one trio loop."""
    import multiaddr
    import trio
    from libp2p import new_host
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.crypto.x25519 import create_new_key_pair as x25519_key_pair
    from libp2p.peer.peerinfo import PeerInfo
    from libp2p.security.noise.transport import PROTOCOL_ID as NOISE
    from libp2p.security.noise.transport import Transport as Noise
    from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX
    from libp2p.stream_muxer.yamux.yamux import Yamux

    from node.transport.libp2p_transport import PROTOCOL_ID, _read_exactly

    def make(seed: bytes) -> Any:
        kp = create_new_key_pair(seed)
        return new_host(
            key_pair=kp,
            sec_opt={NOISE: Noise(kp, noise_privkey=x25519_key_pair().private_key)},
            muxer_opt={YAMUX: Yamux},
        )

    result: dict[str, float] = {}

    async def main() -> None:
        a, b = make(b"\x01" * 32), make(b"\x02" * 32)

        async def echo(stream: Any) -> None:
            while True:
                header = await _read_exactly(stream, 4)
                body = await _read_exactly(stream, int.from_bytes(header, "big"))
                await stream.write(header + body)

        b.set_stream_handler(PROTOCOL_ID, echo)
        listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
        async with a.run(listen), b.run(listen):
            await a.connect(PeerInfo(b.get_id(), b.get_addrs()))
            stream = await a.new_stream(b.get_id(), [PROTOCOL_ID])
            message = size_bytes.to_bytes(4, "big") + bytes(size_bytes)
            rtts = []
            for i in range(pings + 20):
                start = time.perf_counter()
                await stream.write(message)
                await _read_exactly(stream, len(message))
                if i >= 20:
                    rtts.append((time.perf_counter() - start) * 1e6)
            result["rtt_us"] = statistics.median(rtts)
            await a.close()
            await b.close()

    trio.run(main)
    return result["rtt_us"]


def _median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per configuration (>= 1)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--only", choices=["tcp", "libp2p", "bridge"], default=None, help="one part only"
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        print("error: --runs must be >= 1", file=sys.stderr)
        return 2
    configs = [("tcp", "asyncio"), ("tcp", "uvloop"), ("libp2p", "asyncio"), ("libp2p", "uvloop")]
    if args.only in ("tcp", "libp2p"):
        configs = [c for c in configs if c[0] == args.only]
    elif args.only == "bridge":
        configs = []
    results: dict[str, Any] = {"runs": args.runs, "transports": {}, "bridge": {}}
    for kind, loop_kind in configs:
        for size in SIZES_BYTES:
            runs = [
                _run_on(loop_kind, lambda k=kind, s=size: _one_transport_run(k, s))
                for _ in range(args.runs)
            ]
            key = f"{kind}/{loop_kind}/{size}B"
            results["transports"][key] = _median_of(runs)
            print(f"  done {key}", file=sys.stderr)
    if args.only in (None, "bridge", "libp2p"):
        for loop_kind in ("asyncio", "uvloop"):
            runs = [_run_on(loop_kind, _bridge_run) for _ in range(args.runs)]
            results["bridge"][loop_kind] = _median_of(runs)
        for size in SIZES_BYTES:
            native = [_native_libp2p_rtt(size) for _ in range(args.runs)]
            results["bridge"][f"native_libp2p_rtt_us/{size}B"] = statistics.median(native)
        print("  done bridge", file=sys.stderr)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"transport benchmark, loopback, both nodes in one process; medians of {args.runs} runs")
    print(f"{'config':28} {'RTT us':>9} {'p99 us':>9} {'MB/s':>9} {'frames/s':>10}")
    for key, row in results["transports"].items():
        print(
            f"{key:28} {row['rtt_us']:9.0f} {row['rtt_p99_us']:9.0f} "
            f"{row['mb_per_s']:9.2f} {row['frames_per_s']:10.0f}"
        )
    for loop_kind in ("asyncio", "uvloop"):
        row = results["bridge"].get(loop_kind)
        if row:
            print(
                f"bridge ({loop_kind}): asyncio->trio->asyncio {row['bridge_rtt_us']:.0f} us "
                f"(asyncio-only {row['asyncio_only_rtt_us']:.1f} us), "
                f"{row['bridge_items_per_s']:.0f} items/s one wake per item"
            )
    for size in SIZES_BYTES:
        native = results["bridge"].get(f"native_libp2p_rtt_us/{size}B")
        bridged = results["transports"].get(f"libp2p/asyncio/{size}B")
        if native and bridged:
            print(
                f"libp2p {size}B RTT: native trio {native:.0f} us, through the transport "
                f"{bridged['rtt_us']:.0f} us (+{bridged['rtt_us'] - native:.0f} us)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
