"""Codec pipeline throughput vs raw raptorq (issue 4).

Pipeline = package transform + RaptorQ encode of the capped stream + Merkle commitment
(sender) + per-bundle proof verification of κ bundles (lane proposers) + decode from κ
bundles + commitment re-check by re-encoding + inverse transform (every node).
Raw = raptorq encode of K + h repair symbols + decode from those repair-only packets.
Both on the same payloads (raw uses the pipeline's padded K, so it is never slower);
MB/s = payload bytes / time; medians over --runs interleaved runs; ratio = median of
per-run raw_time / pipeline_time.

    .venv/bin/python benchmarks/bench_codec.py [--runs 7] [--sizes 65536,262144,1048576]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import time

import raptorq

from consensus.lanes.aont import package_transform
from consensus.lanes.encoding import bundle_proof_ok, decode_payload, encode_payload
from consensus.lanes.params import LaneParams, layout_for


def _bytes(seed: str, n: int) -> bytes:
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}/{i}".encode()).digest()
        i += 1
    return bytes(out[:n])


def raw_raptorq(data: bytes, symbol_size: int, repair: int) -> float:
    start = time.perf_counter()
    source = -(-len(data) // symbol_size)
    packets = raptorq.Encoder.with_defaults(data, symbol_size).get_encoded_packets(repair)
    decoder = raptorq.Decoder.with_defaults(len(data), symbol_size)
    result = None
    for packet in packets[source:]:
        result = decoder.decode(packet)
        if result is not None:
            break
    elapsed = time.perf_counter() - start
    assert result == data
    return elapsed


def pipeline(params: LaneParams, payload: bytes, key: bytes) -> dict[str, float]:
    t0 = time.perf_counter()
    encoded = encode_payload(params, payload, key, bytes(32))
    t1 = time.perf_counter()
    kappa = encoded.layout.kappa
    chosen = encoded.bundles[1 : kappa + 1]
    assert all(bundle_proof_ok(b) for b in chosen)
    t2 = time.perf_counter()
    result = decode_payload(
        encoded.layout, encoded.commitment, {b.bundle_index: b.symbols for b in chosen}
    )
    t3 = time.perf_counter()
    assert result.payload == payload
    return {"encode+commit": t1 - t0, "verify": t2 - t1, "decode+check": t3 - t2, "total": t3 - t0}


def transform_only(params: LaneParams, payload: bytes, key: bytes) -> float:
    layout = layout_for(params, len(payload))
    start = time.perf_counter()
    package_transform(payload, key, layout.transformed_len)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--sizes", default="65536,262144,1048576")
    parser.add_argument("--symbol-size", type=int, default=1024)
    parser.add_argument("--symbols-per-bundle", type=int, default=8)
    parser.add_argument("--cap-factor", type=int, default=4)
    args = parser.parse_args()
    params = LaneParams(
        symbol_size_bytes=args.symbol_size,
        symbols_per_bundle=args.symbols_per_bundle,
        cap_factor=args.cap_factor,
        max_payload_bytes=8 * 1024 * 1024,
    )
    print(f"params: {params}")
    print(
        f"{'size':>9} {'K':>5} {'kappa':>5} {'raw MB/s':>9} {'pipe MB/s':>9} {'ratio':>6}"
        f" {'enc+commit ms':>13} {'verify ms':>9} {'dec+check ms':>12} {'aont ms':>7}"
    )
    for size in (int(s) for s in args.sizes.split(",")):
        payload = _bytes(f"payload/{size}", size)
        key = _bytes(f"key/{size}", 32)
        layout = layout_for(params, size)
        repair = layout.source_symbols + params.decode_margin_symbols
        raws, runs = [], []
        for _ in range(args.runs):  # interleaved, so machine noise hits both alike
            raws.append(raw_raptorq(payload, params.symbol_size_bytes, repair))
            runs.append(pipeline(params, payload, key))
        raw = statistics.median(raws)
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        ratio = statistics.median(a / r["total"] for a, r in zip(raws, runs, strict=True))
        aont = statistics.median(transform_only(params, payload, key) for _ in range(args.runs))
        raw_mbs = size / raw / 1e6
        pipe_mbs = size / med["total"] / 1e6
        print(
            f"{size:>9} {layout.source_symbols:>5} {layout.kappa:>5} {raw_mbs:>9.1f} {pipe_mbs:>9.1f}"
            f" {ratio:>6.2f} {med['encode+commit'] * 1e3:>13.2f}"
            f" {med['verify'] * 1e3:>9.2f} {med['decode+check'] * 1e3:>12.2f} {aont * 1e3:>7.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
