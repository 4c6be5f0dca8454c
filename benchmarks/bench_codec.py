"""Codec pipeline throughput vs raw raptorq (issue 4: goal ratio >= 0.25).

Pipeline = package transform + RaptorQ encode of the capped stream + Merkle commitment
(sender) + per-bundle proof verification of κ bundles (lane proposers) + decode from κ
bundles + commitment re-check by re-encoding the capped stream + inverse transform
(every node). Raw = raptorq encode of K + h repair symbols + decode from those repair-only
packets, on the same payload bytes with the same symbol size, from the same number of
repair symbols the pipeline decodes from (κ·s_b = K + h).

Each run times raw then pipeline back to back (interleaved, so machine noise hits both
alike) with two clocks: wall time (perf_counter) and this process's CPU time
(process_time, which excludes time the scheduler gives other processes). MB/s = payload
bytes / median time; ratio = median over runs of raw_time / pipeline_time per clock.
The CPU-time ratio is the robust one on a shared machine; the wall ratio is what a
quiet machine shows. The load average before and after is printed.

    .venv/bin/python benchmarks/bench_codec.py --runs 9 [--sizes 65536,262144,1048576]
        [--cap-factor 2] [--cap-extra-bundles 24] [--symbol-size 1024] [--symbols-per-bundle 8]

Defaults are the chain defaults of `LaneParams` (cap = 2·κ + 24 bundles).

    .venv/bin/python benchmarks/bench_codec.py --cap-model [--trials 4000]

prints the stream-cap sizing model instead (docs/lanes.md, "Why a cap, and its cost"):
bundles a sender addresses before it learns its payload decoded, with a cartel of β = 1/3
of N lanes withholding everything, fresh lanes (m per slot), and a finality lag of 2 slots
(the sender keeps sending m per slot until the decode is finalized); with and without the
ratchet (a lane that withheld is excluded once that slot is final). It reports quantiles
of that count and P(count > cap) for several caps.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import raptorq

from consensus.lanes.encoding import bundle_proof_ok, decode_payload, encode_payload
from consensus.lanes.params import (
    DEFAULT_CAP_EXTRA_BUNDLES,
    DEFAULT_CAP_FACTOR,
    LaneParams,
    LaneParamsError,
    layout_for,
)

Clocks = dict[str, float]  # clock name -> seconds
_CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


def _now() -> Clocks:
    return {name: clock() for name, clock in _CLOCKS.items()}


def _since(start: Clocks) -> Clocks:
    end = _now()
    return {name: end[name] - start[name] for name in start}


def _bytes(seed: str, n: int) -> bytes:
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}/{i}".encode()).digest()
        i += 1
    return bytes(out[:n])


def raw_raptorq(data: bytes, symbol_size: int, repair: int) -> Clocks:
    """Encode `repair` repair symbols and decode from them alone."""
    start = _now()
    source = -(-len(data) // symbol_size)
    packets = raptorq.Encoder.with_defaults(data, symbol_size).get_encoded_packets(repair)
    decoder = raptorq.Decoder.with_defaults(len(data), symbol_size)
    result = None
    for packet in packets[source:]:
        result = decoder.decode(packet)
        if result is not None:
            break
    elapsed = _since(start)
    if result != data:
        raise SystemExit("raw raptorq did not round-trip")
    return elapsed


def pipeline(params: LaneParams, payload: bytes, key: bytes) -> dict[str, Clocks]:
    """The lane pipeline on one payload, from κ bundles (not the first: index 1..κ)."""
    t0 = _now()
    encoded = encode_payload(params, payload, key, bytes(32), expiry_slot=1)
    chosen = encoded.bundles[1 : encoded.layout.kappa + 1]  # the bundles that get sent
    encode = _since(t0)
    t1 = _now()
    if not all(bundle_proof_ok(b) for b in chosen):
        raise SystemExit("a bundle failed its proof")
    verify = _since(t1)
    t2 = _now()
    result = decode_payload(
        encoded.layout, encoded.commitment, {b.bundle_index: b.symbols for b in chosen}
    )
    decode = _since(t2)
    if result.payload != payload:
        raise SystemExit(f"pipeline did not round-trip: {result.status}")
    total = {c: encode[c] + verify[c] + decode[c] for c in encode}
    return {"encode": encode, "verify": verify, "decode": decode, "total": total}


def _median(values: list[float]) -> float:
    return statistics.median(values)


def bundles_needed(
    rng: np.random.Generator, kappa: int, m: int, lanes: int, lag: int, ratchet: bool
) -> int:
    """Bundles one sender addresses until it learns its payload decoded (β = 1/3 cartel)."""
    cartel = set(rng.choice(lanes, round(lanes / 3), replace=False).tolist())
    excluded: set[int] = set()
    withheld_by_slot: list[list[int]] = []
    redeemed = sent = slot = 0
    while redeemed < kappa and slot < 64 * kappa:  # bounded: ends long before in practice
        allowed = [lane for lane in range(lanes) if lane not in excluded]
        chosen = rng.choice(allowed, min(m, len(allowed)), replace=False).tolist()
        sent += len(chosen)
        redeemed += sum(lane not in cartel for lane in chosen)
        withheld_by_slot.append([lane for lane in chosen if lane in cartel])
        slot += 1
        if ratchet and slot > lag:  # slot − 1 − lag is final: its withholders are excluded
            excluded.update(withheld_by_slot[slot - 1 - lag])
    return sent + m * lag  # the sender keeps sending during the finality lag


def cap_model(trials: int) -> None:
    rng = np.random.default_rng(2024)
    lag = 2
    print(
        f"cap model: beta = 1/3 withholding, fresh lanes, finality lag {lag} slots, {trials} trials"
    )
    print(
        f"{'kappa':>5} {'m':>2} {'N':>3} {'ratchet':>7} {'p50':>6} {'p99':>6} {'p99.9':>6} |"
        " P(addressed > cap) for cap = 4k, 2k, 2k+16, 2k+24, 2k+32"
    )
    for kappa, m, lanes in (
        (8, 4, 12),
        (9, 8, 32),
        (20, 8, 32),
        (33, 8, 32),
        (64, 8, 32),
        (129, 8, 32),
    ):
        for ratchet in (False, True):
            counts = np.array(
                [bundles_needed(rng, kappa, m, lanes, lag, ratchet) for _ in range(trials)]
            )
            q50, q99, q999 = np.quantile(counts, [0.5, 0.99, 0.999]) / kappa
            caps = (4 * kappa, 2 * kappa, 2 * kappa + 16, 2 * kappa + 24, 2 * kappa + 32)
            over = " ".join(f"{(counts > cap).mean():.4f}" for cap in caps)
            print(
                f"{kappa:>5} {m:>2} {lanes:>3} {ratchet!s:>7} {q50:>5.2f}k {q99:>5.2f}k"
                f" {q999:>5.2f}k | {over}"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--sizes", default="65536,262144,1048576")
    parser.add_argument("--symbol-size", type=int, default=1024)
    parser.add_argument("--symbols-per-bundle", type=int, default=8)
    parser.add_argument("--cap-factor", type=int, default=DEFAULT_CAP_FACTOR)
    parser.add_argument("--cap-extra-bundles", type=int, default=DEFAULT_CAP_EXTRA_BUNDLES)
    parser.add_argument("--cap-model", action="store_true", help="print the cap sizing model")
    parser.add_argument("--trials", type=int, default=4000, help="trials for --cap-model")
    args = parser.parse_args()
    if args.cap_model:
        if not 1 <= args.trials <= 1_000_000:
            print("error: need 1 <= trials <= 1000000", file=sys.stderr)
            return 2
        cap_model(args.trials)
        return 0
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
        if not 1 <= args.runs <= 1000 or any(s < 1 for s in sizes):
            raise ValueError("need 1 <= runs <= 1000 and positive sizes")
        params = LaneParams(
            symbol_size_bytes=args.symbol_size,
            symbols_per_bundle=args.symbols_per_bundle,
            cap_factor=args.cap_factor,
            cap_extra_bundles=args.cap_extra_bundles,
            max_payload_bytes=8 * 1024 * 1024,
        )
        layouts = [layout_for(params, size) for size in sizes]
    except (ValueError, LaneParamsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"params: {params}")
    print(f"load average before: {os.getloadavg()[0]:.2f}, runs: {args.runs}")
    print(
        f"{'size':>9} {'K':>5} {'kappa':>5} {'cap':>4} | {'raw MB/s':>8} {'pipe MB/s':>9}"
        f" {'ratio':>5} | {'cpu raw':>7} {'cpu pipe':>8} {'ratio':>5} |"
        f" {'encode':>6} {'verify':>6} {'decode':>6} ms (cpu)"
    )
    for size, layout in zip(sizes, layouts, strict=True):
        payload = _bytes(f"payload/{size}", size)
        key = _bytes(f"key/{size}", 32)
        repair = layout.source_symbols + params.decode_margin_symbols
        raws: list[Clocks] = []
        runs: list[dict[str, Clocks]] = []
        pipeline(params, payload, key)  # warm-up (imports, allocator), not timed
        for _ in range(args.runs):  # interleaved, so machine noise hits both alike
            raws.append(raw_raptorq(payload, params.symbol_size_bytes, repair))
            runs.append(pipeline(params, payload, key))
        line = f"{size:>9} {layout.source_symbols:>5} {layout.kappa:>5} {layout.cap_bundles:>4} |"
        for clock in ("wall", "cpu"):
            raw = _median([r[clock] for r in raws])
            pipe = _median([r["total"][clock] for r in runs])
            ratio = _median([a[clock] / r["total"][clock] for a, r in zip(raws, runs, strict=True)])
            if clock == "wall":
                line += f" {size / raw / 1e6:>8.1f} {size / pipe / 1e6:>9.1f} {ratio:>5.2f} |"
            else:
                line += f" {size / raw / 1e6:>7.1f} {size / pipe / 1e6:>8.1f} {ratio:>5.2f} |"
        for stage in ("encode", "verify", "decode"):
            line += f" {_median([r[stage]['cpu'] for r in runs]) * 1e3:>6.2f}"
        print(line)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print("MB/s = payload bytes / median time; ratio = median of per-run raw/pipeline times")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
