"""Testnet benchmark: saturation throughput and finality latency of 4 local validators.

For each transport, offer increasing plain-tx loads (512 B txs) to a fresh 4-node network
on loopback for `--duration` seconds, `--repeats` times per rate, and report the median
finalized tx/s and finality p50/p99 per rate. The saturation point is the highest offered
rate whose median finalized throughput stays >= 95 % of the offered rate (CometBFT's
method: raise the offered rate until committed falls below offered).

    .venv/bin/python benchmarks/bench_testnet.py --transports tcp --rates 1000,4000,8000
    .venv/bin/python benchmarks/bench_testnet.py --json > results.json

`register(subparsers)` adds the same benchmark as `sedna bench testnet` to a bench group.
Numbers depend on the machine (2 cores here: the 4 nodes, the load generator and the
runner share them); compare runs on one machine only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from typing import Any

DEFAULT_RATES = (1000, 2000, 4000, 6000, 8000, 10000)
SATURATION_FRACTION = 0.95


def _one_run(transport: str, rate: float, duration_s: float, tx_bytes: int) -> dict[str, Any]:
    from node.testnet import RunOptions, TestnetRun

    options = RunOptions(
        nodes=4, duration_s=duration_s, rate_tps=rate, transport=transport, tx_bytes=tx_bytes
    )
    return asyncio.run(TestnetRun(options).execute())


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 2) if present else None


def bench(
    transports: list[str], rates: list[float], duration_s: float, repeats: int, tx_bytes: int
) -> dict[str, Any]:
    results: dict[str, Any] = {"duration_s": duration_s, "repeats": repeats, "tx_bytes": tx_bytes}
    for transport in transports:
        points = []
        saturation = None
        for rate in rates:
            runs = [_one_run(transport, rate, duration_s, tx_bytes) for _ in range(repeats)]
            point = {
                "offered_tps": rate,
                "finalized_tps": _median([r["tps"] for r in runs]),
                "finality_p50_ms": _median([r["finality_ms"]["p50"] for r in runs]),
                "finality_p99_ms": _median([r["finality_ms"]["p99"] for r in runs]),
                "speculative_p50_ms": _median([r["speculative_ms"]["p50"] for r in runs]),
                "lost_tx": max(r["lost_tx"] for r in runs),
                "all_ok": all(r["ok"] for r in runs),
            }
            points.append(point)
            print(f"{transport:>6} offered {rate:>8.0f} -> {point}", file=sys.stderr)
            tps = point["finalized_tps"] or 0.0
            if tps >= SATURATION_FRACTION * rate and point["all_ok"]:
                saturation = point
            else:
                break  # committed fell below offered: saturated
        results[transport] = {"points": points, "saturation": saturation}
    return results


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--transports", default="tcp,libp2p", help="comma list (tcp,libp2p)")
    parser.add_argument(
        "--rates", default=",".join(str(r) for r in DEFAULT_RATES), help="offered tx/s, comma list"
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per rate (median)")
    parser.add_argument("--tx-bytes", type=int, default=512)
    parser.add_argument("--json", action="store_true")


def _handler(args: argparse.Namespace) -> int:
    try:
        transports = [t for t in args.transports.split(",") if t]
        rates = sorted(float(r) for r in args.rates.split(",") if r)
    except ValueError:
        print("bench testnet: --rates must be numbers", file=sys.stderr)
        return 2
    if not rates or any(r <= 0 for r in rates) or args.repeats < 1 or args.duration <= 0:
        print("bench testnet: rates, --repeats and --duration must be positive", file=sys.stderr)
        return 2
    if any(t not in ("tcp", "libp2p") for t in transports):
        print("bench testnet: transports are tcp and libp2p", file=sys.stderr)
        return 2
    results = bench(transports, rates, args.duration, args.repeats, args.tx_bytes)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for transport in transports:
            print(f"{transport}:")
            for p in results[transport]["points"]:
                print(
                    f"  offered {p['offered_tps']:>8.0f} tx/s  finalized {p['finalized_tps']:>8} tx/s"
                    f"  finality p50 {p['finality_p50_ms']} ms  p99 {p['finality_p99_ms']} ms"
                )
            sat = results[transport]["saturation"]
            print(f"  saturation: {sat['finalized_tps'] if sat else 'below the lowest rate'} tx/s")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `testnet` to a `sedna bench` subparser group."""
    parser = subparsers.add_parser(
        "testnet", help="4-validator saturation throughput and finality latency"
    )
    _add_arguments(parser)
    parser.set_defaults(func=_handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _add_arguments(parser)
    return _handler(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
