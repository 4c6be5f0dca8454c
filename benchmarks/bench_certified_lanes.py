"""Certified vs carried lanes at scale, in netsim with per-node bandwidth (issue 11).

    .venv/bin/python benchmarks/bench_certified_lanes.py --validators 16 64 100
    .venv/bin/python benchmarks/bench_certified_lanes.py --omission

Throughput table (default): for each validator count n and lane mode, the highest
payload rate (64 KiB payloads arriving at a steady rate, 1 Gbit/s up- and downlinks per
node, latency U(1, 20) ms) that **every honest node** executes within 1 s at the 99th
percentile (a payload some node never executed counts as infinitely late). The search
doubles the rate from a start value while it passes, then bisects twice between the
last pass and the first failure. Each row also gives, at that rate, the decode latency
(p50 / p99, arrival to the last honest node executing it), the leader's upload per
executed payload (proposal bytes sent by all leaders / payloads), the cut delay and the
simulator's CPU time. Senders send κ = 8 bundles + 2 spare to 10 lanes once
(`sending = "one_shot"`), so every payload costs the same bytes in both modes.
Certified rows use `--poa-signatures` (default bls: one 96-byte aggregate per PoA, the
netsim stand-in of BLS under the `trusted` scheme; ed25519: f+1 signatures per PoA).

Each row also gives the median validator's download per executed payload and the
downlink ceiling of any design in which every validator executes every payload: at
most downlink / (bytes each validator must download per payload) payloads/s. With full
replication of κ + 2 bundles those bytes are at least the bundles' symbol bytes,
(κ + 2) · bundle bytes (docs/lanes.md, "Throughput at scale").

Omission table (`--omission`): 10 validators, certified lanes, k = 0..3 consecutive
censoring leaders (`drop_lane_blocks` on nodes 3 .. 3 + k − 1, round-robin): the largest
lane-block cut delay measured against the bound (honest maximum + k, docs/lanes.md "The
omission bound"), and whether anything was lost.

Everything is simulated time: the figures do not depend on the machine's load, only the
CPU seconds do.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from typing import Any

from netsim.runner import run_scenario
from netsim.scenario import parse_scenario_text

PAYLOAD_BYTES = 65_536
KAPPA = 8
BUNDLES = 10  # κ + 2 spare, one shot
BANDWIDTH_MBPS = 1000
DEADLINE_MS = 1000.0
START_RATE = {"carried": 8.0, "certified": 100.0}


def throughput_scenario(
    n: int, mode: str, rate: float, seconds: float, drain_ms: float, poa: str = "bls"
) -> str:
    payloads = max(1, round(rate * seconds))
    return f"""
validators = {n}
seed = 1
until_ms = {seconds * 1000 + drain_ms}
[network]
latency_ms = [1, 20]
delta_ms = 100
bandwidth_mbps = {BANDWIDTH_MBPS}
[core]
round_timeout_ms = 2000
[lanes]
dissemination = "{mode}"
poa_signatures = "{poa}"
payloads = {payloads}
payload_rate_per_s = {rate}
payload_bytes = {PAYLOAD_BYTES}
kappa = {KAPPA}
bundles_per_slot = {BUNDLES}
sending = "one_shot"
senders = 8
"""


@dataclass
class Point:
    n: int
    mode: str
    rate: float
    passed: bool
    p50_ms: float | None
    p99_ms: float | None
    executed: int
    submitted: int
    leader_bytes_per_payload: float | None
    download_per_payload: float | None  # median validator's download / executed payload
    replication_bytes: int  # (κ + 2) bundles' symbol bytes: the least a validator downloads
    cut_delay_p50: float | None
    height: int
    cpu_s: float

    def row(self) -> dict[str, Any]:
        return self.__dict__.copy()


def measure(
    n: int, mode: str, rate: float, seconds: float, drain_ms: float, poa: str = "bls"
) -> Point:
    started = time.process_time()
    text = throughput_scenario(n, mode, rate, seconds, drain_ms, poa)
    run = run_scenario(parse_scenario_text(text))
    report = run.report()
    lanes = report["lanes"]
    executed = sum(1 for v in lanes["payload_status"].values() if v == "executed")
    submitted = len(run.lanes.records)
    p99 = lanes["decode_all_ms_p99"]
    passed = (
        report["violations"] == []
        and p99 is not None
        and p99 <= DEADLINE_MS
        and lanes["payloads_unstarted"] == 0
    )
    leader_bytes = sum(report["leader_upload_bytes"].values())
    sim = run.lanes.sim
    downloads = sorted(sim.bandwidth.download_bytes) if sim.bandwidth is not None else []
    median_download = downloads[len(downloads) // 2] if downloads else None
    return Point(
        n=n,
        mode=mode,
        rate=rate,
        passed=passed,
        p50_ms=lanes["decode_all_ms_p50"],
        p99_ms=p99,
        executed=executed,
        submitted=submitted,
        leader_bytes_per_payload=round(leader_bytes / executed) if executed else None,
        download_per_payload=round(median_download / executed)
        if executed and median_download is not None
        else None,
        replication_bytes=BUNDLES * run.lanes.layout.bundle_bytes,
        cut_delay_p50=lanes["cut_delay"]["p50"],
        height=min(report["finalized"].values()),
        cpu_s=round(time.process_time() - started, 1),
    )


def search(
    n: int,
    mode: str,
    seconds: float,
    drain_ms: float,
    start: float,
    steps: int,
    log,
    poa: str = "bls",
) -> tuple[Point | None, list[Point]]:
    """Double from `start` while passing, then bisect `steps` times."""
    points: list[Point] = []
    best: Point | None = None
    rate, failed = start, None
    for _ in range(12):  # bounded: 2^12 × start
        point = measure(n, mode, rate, seconds, drain_ms, poa)
        points.append(point)
        log(point)
        if not point.passed:
            failed = rate
            break
        best = point
        rate *= 2
    if failed is None:
        return best, points
    low = best.rate if best is not None else 0.0
    high = failed
    for _ in range(steps):
        rate = high / 2 if best is None and low == 0.0 else round((low + high) / 2, 1)
        point = measure(n, mode, rate, seconds, drain_ms, poa)
        points.append(point)
        log(point)
        if point.passed:
            best, low = point, rate
        else:
            high = rate
    return best, points


def omission_scenario(censors: list[int]) -> str:
    attack = "".join(
        f'[[byzantine]]\nnode = {node}\nbehaviour = "drop_lane_blocks"\n' for node in censors
    )
    return (
        """
validators = 10
seed = 3
until_ms = 8000
[network]
latency_ms = [1, 20]
delta_ms = 100
[lanes]
dissemination = "certified"
payloads = 30
payload_bytes = 1024
kappa = 6
bundles_per_slot = 3
senders = 2
"""
        + attack
    )


def omission_table() -> list[dict[str, Any]]:
    rows = []
    honest_max = None
    for k in range(4):
        censors = list(range(3, 3 + k))
        report = run_scenario(parse_scenario_text(omission_scenario(censors))).report()
        delays = {int(d): c for d, c in report["lanes"]["lane_block_cut_delay"].items()}
        statuses = report["lanes"]["payload_status"].values()
        measured = max(delays)
        if k == 0:
            honest_max = measured
        assert honest_max is not None
        rows.append(
            {
                "k": k,
                "censors": censors,
                "lane_blocks_cut": sum(delays.values()),
                "cut_delay_histogram": dict(sorted(delays.items())),
                "max_cut_delay": measured,
                "bound": honest_max + k,
                "within_bound": measured <= honest_max + k,
                "payloads_executed": sum(1 for s in statuses if s == "executed"),
                "payloads": len(report["lanes"]["payload_status"]),
                "decode_slot_delay_max": max(
                    (d for d in report["decode_slot_delay"].values() if d is not None), default=None
                ),
                "omitted": report["lanes"]["lane_blocks_omitted"],
                "violations": len(report["violations"]),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--validators", type=int, nargs="+", default=[16, 64, 100])
    parser.add_argument("--modes", nargs="+", default=["carried", "certified"])
    parser.add_argument("--seconds", type=float, default=2.0, help="arrival window (simulated)")
    parser.add_argument("--drain-ms", type=float, default=1500.0)
    parser.add_argument("--rates", type=float, nargs="+", help="measure these rates only")
    parser.add_argument("--bisect", type=int, default=2, help="bisection steps after doubling")
    parser.add_argument(
        "--start", type=float, nargs="+", help="start rate per mode (order of --modes)"
    )
    parser.add_argument("--omission", action="store_true", help="the omission-bound table")
    parser.add_argument(
        "--poa-signatures",
        choices=("bls", "ed25519"),
        default="bls",
        help="certified lanes' PoA format (default bls)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    for mode in args.modes:
        if mode not in START_RATE:
            parser.error(f"unknown mode {mode!r}; choose from {sorted(START_RATE)}")

    def log(point: Point) -> None:
        print(
            f"  n={point.n} {point.mode} rate={point.rate:g}/s: "
            f"{'pass' if point.passed else 'FAIL'} p50={point.p50_ms} p99={point.p99_ms} "
            f"executed={point.executed}/{point.submitted} height={point.height} "
            f"cpu={point.cpu_s}s",
            file=sys.stderr,
            flush=True,
        )

    if args.omission:
        rows = omission_table()
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        print(
            "| k consecutive censors | max cut delay (heights) | bound (honest max + k) | "
            "lane blocks cut | payloads executed | max decode-slot delay |"
        )
        print("|---|---|---|---|---|---|")
        for row in rows:
            print(
                f"| {row['k']} | {row['max_cut_delay']} | {row['bound']} | "
                f"{row['lane_blocks_cut']} | {row['payloads_executed']}/{row['payloads']} | "
                f"{row['decode_slot_delay_max']} |"
            )
        return 0

    results = []
    for n in args.validators:
        for position, mode in enumerate(args.modes):
            if args.rates:
                points = [
                    measure(n, mode, r, args.seconds, args.drain_ms, args.poa_signatures)
                    for r in args.rates
                ]
                for point in points:
                    log(point)
                passing = [p for p in points if p.passed]
                best = max(passing, key=lambda p: p.rate) if passing else None
            else:
                start = args.start[position] if args.start else START_RATE[mode]
                best, points = search(
                    n,
                    mode,
                    args.seconds,
                    args.drain_ms,
                    start,
                    args.bisect,
                    log,
                    args.poa_signatures,
                )
            results.append(
                {
                    "n": n,
                    "mode": mode,
                    "poa_signatures": args.poa_signatures if mode == "certified" else None,
                    "best": best.row() if best else None,
                    "points": [p.row() for p in points],
                }
            )
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    downlink = BANDWIDTH_MBPS * 1e6 / 8  # bytes/s
    print(
        "| n | mode | max rate within 1 s p99 (payloads/s) | decode p50 / p99 (ms) | "
        "leader upload per payload (bytes) | validator download per payload (bytes) | "
        "downlink ceiling (payloads/s): replication / payload bytes | rate / replication "
        "ceiling | cut delay p50 (heights) | CPU s (all points) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for result in results:
        best = result["best"]
        cpu = round(sum(p["cpu_s"] for p in result["points"]))
        mode = result["mode"]
        if result["poa_signatures"]:
            mode = f"{mode} ({result['poa_signatures']})"
        if best is None:
            print(f"| {result['n']} | {mode} | none passed | | | | | | | {cpu} |")
            continue
        replication = downlink / best["replication_bytes"]
        any_design = downlink / PAYLOAD_BYTES
        print(
            f"| {result['n']} | {mode} | {best['rate']:g} | "
            f"{best['p50_ms']:.0f} / {best['p99_ms']:.0f} | {best['leader_bytes_per_payload']:,} | "
            f"{best['download_per_payload']:,} | {replication:,.0f} / {any_design:,.0f} | "
            f"{best['rate'] / replication:.0%} | {best['cut_delay_p50']:g} | {cpu} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
