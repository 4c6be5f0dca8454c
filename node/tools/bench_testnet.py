"""Testnet benchmark: saturation throughput and finality latency of local validators.

Plain sweep: for each transport, offer increasing plain-tx loads (512 B txs, no Sedna
load) to a fresh 4-node network on loopback for `--duration` seconds, `--repeats` times
per rate, and report the median finalized tx/s and finality p50/p99 per rate. The
saturation point is the highest offered rate whose median finalized throughput stays
>= 95 % of the offered rate (CometBFT's method: raise the offered rate until committed
falls below offered).

Sedna sweep (`--sedna-rates`): the same for Sedna payloads (`--sedna-bytes`, default
512 B, plain load `--sedna-plain-rate`, default 0). The throughput of a point is the
number of payloads decoded *on every node* during the load window per second (the
minimum over the nodes), and its latency is first bundle sent -> decoded, over every
(payload, node) pair. Payloads are encoded before the window (`sedna_preencode`) so the
sender's encoding does not compete with the nodes inside it; the nodes, the sender's
ticket signing and HTTP, and the launcher still share the machine.

    sedna bench testnet --transports tcp --rates 1000,4000,8000
    sedna bench testnet --transports tcp --rates "" \
        --sedna-rates 50,100,200,400,800,1200 --duration 10 --repeats 3
    sedna bench testnet --json > results.json
    sedna bench testnet --light --nodes 4,16 --transports tcp --repeats 3   light-load latency
    sedna bench testnet --nodes 4,8,16 --rates 1000,4000,10000 --csv c.csv --png c.png

Light-load mode (`--light`): every rate runs (default 100 tx/s), and each point reports
finality p50/p99, speculative p50 and the mean block interval. Node sweep (`--nodes`):
the sweep runs once per validator count; `--csv`/`--png` write the throughput-latency
curve (finality p50 against finalized tx/s, one line per node count, one panel per
transport). `--forward-fanout 0` runs the nodes without tx forwarding (node/txforward.py),
for before/after comparisons in one sitting.

`benchmarks/bench_testnet.py` runs the same benchmark as a script.
Numbers depend on the machine (2 cores here: the 4 nodes, the load generator and the
runner share them); compare runs on one machine only.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import statistics
import sys
from pathlib import Path
from typing import Any

DEFAULT_RATES = (1000, 2000, 4000, 6000, 8000, 10000)
DEFAULT_RATES_TEXT = ",".join(str(r) for r in DEFAULT_RATES)
LIGHT_RATE = 100.0  # tx/s of the light-load latency mode
MAX_BENCH_NODES = 16
SATURATION_FRACTION = 0.95


def _one_run(
    transport: str,
    rate: float,
    duration_s: float,
    tx_bytes: int,
    nodes: int = 4,
    forward_fanout: int | None = None,
) -> dict[str, Any]:
    from node.tools.testnet import RunOptions, TestnetRun

    options = RunOptions(
        nodes=nodes,
        duration_s=duration_s,
        rate_tps=rate,
        transport=transport,
        tx_bytes=tx_bytes,
        sedna_rate_pps=0.0,
        mempool={} if forward_fanout is None else {"forward_fanout": forward_fanout},
    )
    return asyncio.run(TestnetRun(options).execute())


def _sedna_run(
    transport: str,
    rate: float,
    duration_s: float,
    payload_bytes: int,
    plain_rate: float,
    dissemination: str = "certified",
    poa_signatures: str = "bls",
) -> dict[str, Any]:
    from node.tools.testnet import RunOptions, TestnetRun

    options = RunOptions(
        nodes=4,
        duration_s=duration_s,
        rate_tps=plain_rate,
        transport=transport,
        sedna_rate_pps=rate,
        sedna_bytes=payload_bytes,
        sedna_preencode=True,
        dissemination=dissemination,
        poa_signatures=poa_signatures,
    )
    return asyncio.run(TestnetRun(options).execute())


def _mean_cpu(run: dict[str, Any]) -> float | None:
    values = [v for v in run.get("node_cpu_s", {}).values() if v is not None]
    return round(sum(values) / len(values), 2) if values else None


DECODE_BATCH_PAYLOADS = 50  # payloads per finalized block in the cost model (~1,000/s)


def sedna_cost_model(payload_bytes: int, nodes: int = 4, samples: int = 320) -> dict[str, Any]:
    """CPU cost of one Sedna payload in the 4-node testnet, stage by stage (single thread,
    median of 5 passes over `samples` payloads), and the ceiling it implies on 2 cores.

    Stages per payload, as the node client and the nodes run them: the sender encodes
    once (the payloads it submits together in one batched call, `encode_payloads`;
    `encode_one_by_one_us` is the same work payload by payload) and signs its tickets in batches (`SednaPolicy.ticket_batch` tickets per
    signature); κ bundles are admitted by their lanes (decode + static rules + ticket
    path + Merkle proof); every node checks every bundle once more inside lane blocks
    (relayed lane blocks at the leader, proposals at the others; its own lane block is
    trusted, which this model ignores); each node verifies a batch signature once
    (`TicketVerifier`), i.e. κ/batch signatures per payload; every node decodes the
    payload and re-checks it against its commitment, batched per finalized block
    (`decode_payloads`, DECODE_BATCH_PAYLOADS payloads per block assumed). Consensus, HTTP, SQLite and Python
    glue come on top, so the measured ceiling is lower than this one.
    """
    import os
    import time

    from consensus.crypto import ED25519, KeyPair
    from consensus.lanes.encoding import decode_payloads, encode_payload, encode_payloads
    from consensus.lanes.proposer import check_entry_crypto, check_entry_static
    from consensus.lanes.tickets import TicketVerifier, make_ticket, sign_ticket_batch
    from consensus.lanes.wire import LaneEntry, decode_lane_entry, encode_lane_entry
    from node.lanes_node import NODE_LANE_PARAMS
    from node.tools.sedna_client import SednaPolicy

    params = NODE_LANE_PARAMS
    batch = SednaPolicy().ticket_batch
    key = KeyPair.from_seed(os.urandom(32))
    payloads = [os.urandom(payload_bytes) for _ in range(samples)]

    def timed(fn: Any, per: int = samples) -> float:
        runs = []
        for _ in range(5):
            start = time.perf_counter()
            fn()
            runs.append((time.perf_counter() - start) / per * 1e6)
        return statistics.median(runs)

    encoded: list[Any] = []
    encode_one_us = timed(
        lambda: [
            encode_payload(params, p, os.urandom(32), key.public, expiry_slot=9) for p in payloads
        ]
    )
    encode_us = timed(  # the sender encodes what it submits together in one batch
        lambda: encoded.__setitem__(
            slice(None),
            encode_payloads(params, [(p, os.urandom(32), key.public, 9) for p in payloads]),
        )
    )
    kappa = encoded[0].layout.kappa
    entries: list[bytes] = []

    def sign() -> None:  # one bundle per payload here: `batch` tickets per signature
        tickets = [make_ticket(e.commitment_id, 0, 9, 0, 1) for e in encoded]
        signed = [
            s
            for start in range(0, len(tickets), batch)
            for s in sign_ticket_batch(ED25519, key, tickets[start : start + batch])
        ]
        entries[:] = [
            encode_lane_entry(LaneEntry(e.bundles[0], t))
            for e, t in zip(encoded, signed, strict=True)
        ]

    sign_us = timed(sign)  # per ticket

    def admit() -> None:  # batch signatures cached: the per-bundle part of a check
        verifier = TicketVerifier(ED25519)
        for data in entries:
            entry = decode_lane_entry(data, 1 << 20)
            assert check_entry_static(params, entry, 0) is None
            assert check_entry_crypto(verifier, entry) is None

    admit_us = timed(admit)
    root_signature = ED25519.sign(key, b"x", b"y" * 32)  # a valid one: the full check
    signature_us = timed(
        lambda: [
            ED25519.verify(key.public, b"x", b"y" * 32, root_signature) for _ in range(samples)
        ]
    )
    decoded = [
        (e.layout, e.commitment, {i: e.bundles[i].symbols for i in range(kappa)}) for e in encoded
    ]
    per_block = DECODE_BATCH_PAYLOADS  # the tracker decodes a finalized block's payloads at once
    decode_us = timed(
        lambda: [
            decode_payloads(decoded[start : start + per_block])
            for start in range(0, len(decoded), per_block)
        ]
    )
    per_payload_us = (
        encode_us
        + kappa * sign_us
        + (1 + nodes) * kappa * admit_us
        + (1 + nodes) * signature_us * kappa / batch
        + nodes * decode_us
    )
    return {
        "payload_bytes": payload_bytes,
        "kappa": kappa,
        "ticket_batch": batch,
        "encode_us": round(encode_us, 1),
        "encode_one_by_one_us": round(encode_one_us, 1),
        "sign_ticket_us": round(sign_us, 1),
        "check_bundle_us": round(admit_us, 1),
        "verify_signature_us": round(signature_us, 1),
        "decode_us": round(decode_us, 1),
        "cpu_us_per_payload": round(per_payload_us, 1),
        "ceiling_pps_on_2_cores": round(2e6 / per_payload_us, 1),
        "ceiling_without_sender_pps": round(
            2e6 / (per_payload_us - encode_us - kappa * sign_us), 1
        ),
    }


def bench_sedna(
    transports: list[str],
    rates: list[float],
    duration_s: float,
    repeats: int,
    payload_bytes: int,
    plain_rate: float,
    dissemination: str = "certified",
    poa_signatures: str = "bls",
) -> dict[str, Any]:
    """Sedna saturation sweep: payloads/s decoded on every node, per offered rate."""
    results: dict[str, Any] = {
        "payload_bytes": payload_bytes,
        "plain_rate_tps": plain_rate,
        "dissemination": dissemination,
        "poa_signatures": poa_signatures,
    }
    for transport in transports:
        points = []
        saturation = None
        for rate in rates:
            runs = [
                _sedna_run(
                    transport,
                    rate,
                    duration_s,
                    payload_bytes,
                    plain_rate,
                    dissemination,
                    poa_signatures,
                )
                for _ in range(repeats)
            ]
            point = {
                "offered_pps": rate,
                "decoded_every_node_pps": _median(
                    [min(r["sedna_pps"].values(), default=0.0) for r in runs]
                ),
                "decode_p50_ms": _median([r["sedna_decode_ms"]["p50"] for r in runs]),
                "decode_p99_ms": _median([r["sedna_decode_ms"]["p99"] for r in runs]),
                "undecided": max(
                    r["sedna_offered"] - min(r["sedna_decoded"].values(), default=0) for r in runs
                ),
                "resends": _median([r["sedna_client"]["resends"] for r in runs]),
                "block_interval_ms": _median([r["block_interval_ms"]["mean"] for r in runs]),
                # mean node CPU seconds (whole life: start, load, drain), median over runs
                "node_cpu_s": _median([_mean_cpu(r) for r in runs]),
                "execution_order_agreement": all(r["execution_order_agreement"] for r in runs),
                "all_ok": all(r["ok"] for r in runs),
            }
            points.append(point)
            print(
                f"{transport:>6} {dissemination} sedna offered {rate:>6.0f}/s -> {point}",
                file=sys.stderr,
            )
            decoded = point["decoded_every_node_pps"] or 0.0
            if decoded >= SATURATION_FRACTION * rate and point["all_ok"]:
                saturation = point
            else:
                break  # decoded fell below offered: saturated
        results[transport] = {"points": points, "saturation": saturation}
    return results


def bench_sedna_modes(
    transports: list[str],
    rates: list[float],
    duration_s: float,
    repeats: int,
    payload_bytes: int,
    modes: list[str],
) -> dict[str, Any]:
    """Lane modes side by side: per rate, runs alternate between the modes (so a change of
    the machine's load hits both alike); medians over `repeats` runs per (mode, rate)."""
    results: dict[str, Any] = {"payload_bytes": payload_bytes, "modes": modes}
    for transport in transports:
        table: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
        for rate in rates:
            runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
            for _ in range(repeats):
                for mode in modes:
                    runs[mode].append(
                        _sedna_run(transport, rate, duration_s, payload_bytes, 0.0, mode)
                    )
            for mode in modes:
                done = runs[mode]
                point = {
                    "offered_pps": rate,
                    "decoded_every_node_pps": _median(
                        [min(r["sedna_pps"].values(), default=0.0) for r in done]
                    ),
                    "runs_pps": [min(r["sedna_pps"].values(), default=0.0) for r in done],
                    "decode_p50_ms": _median([r["sedna_decode_ms"]["p50"] for r in done]),
                    "decode_p99_ms": _median([r["sedna_decode_ms"]["p99"] for r in done]),
                    "undecided": max(
                        r["sedna_offered"] - min(r["sedna_decoded"].values(), default=0)
                        for r in done
                    ),
                    "resends": _median([r["sedna_client"]["resends"] for r in done]),
                    "execution_order_agreement": all(r["execution_order_agreement"] for r in done),
                    "all_ok": all(r["ok"] for r in done),
                }
                table[mode].append(point)
                print(
                    f"{transport:>6} {mode:>9} offered {rate:>6.0f}/s -> {point}", file=sys.stderr
                )
        results[transport] = table
    return results


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 2) if present else None


def bench(
    transports: list[str],
    rates: list[float],
    duration_s: float,
    repeats: int,
    tx_bytes: int,
    nodes: int = 4,
    forward_fanout: int | None = None,
    stop_at_saturation: bool = True,
) -> dict[str, Any]:
    results: dict[str, Any] = {
        "duration_s": duration_s,
        "repeats": repeats,
        "tx_bytes": tx_bytes,
        "nodes": nodes,
        "forward_fanout": forward_fanout,
    }
    for transport in transports:
        points = []
        saturation = None
        for rate in rates:
            runs = [
                _one_run(transport, rate, duration_s, tx_bytes, nodes, forward_fanout)
                for _ in range(repeats)
            ]
            point = {
                "nodes": nodes,
                "offered_tps": rate,
                "finalized_tps": _median([r["tps"] for r in runs]),
                "finality_p50_ms": _median([r["finality_ms"]["p50"] for r in runs]),
                "finality_p99_ms": _median([r["finality_ms"]["p99"] for r in runs]),
                "speculative_p50_ms": _median([r["speculative_ms"]["p50"] for r in runs]),
                "block_interval_ms": _median([r["block_interval_ms"]["mean"] for r in runs]),
                "finality_p50_runs_ms": [r["finality_ms"]["p50"] for r in runs],
                "lost_tx": max(r["lost_tx"] for r in runs),
                "all_ok": all(r["ok"] for r in runs),
            }
            points.append(point)
            print(f"{transport:>6} n={nodes} offered {rate:>8.0f} -> {point}", file=sys.stderr)
            tps = point["finalized_tps"] or 0.0
            if tps >= SATURATION_FRACTION * rate and point["all_ok"]:
                saturation = point
            elif stop_at_saturation:
                break  # committed fell below offered: saturated
        results[transport] = {"points": points, "saturation": saturation}
    return results


CURVE_FIELDS = (
    "transport", "nodes", "forward_fanout", "offered_tps", "finalized_tps", "finality_p50_ms",
    "finality_p99_ms", "speculative_p50_ms", "block_interval_ms", "lost_tx", "all_ok",
)  # fmt: skip


def curve_rows(sweep: list[dict[str, Any]], transports: list[str]) -> list[dict[str, Any]]:
    """One row per (nodes, transport, offered rate) of a `--nodes` sweep."""
    rows = []
    for result in sweep:
        for transport in transports:
            for point in result[transport]["points"]:
                row = {"transport": transport, "forward_fanout": result["forward_fanout"]}
                row.update({k: point.get(k) for k in CURVE_FIELDS if k in point})
                rows.append(row)
    return rows


def write_curve_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CURVE_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def write_curve_png(rows: list[dict[str, Any]], path: Path) -> None:
    """Throughput-latency curve (finality p50 against finalized tx/s), one line per
    (transport, nodes), one panel per transport."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    transports = sorted({r["transport"] for r in rows})
    fig, axes = plt.subplots(1, len(transports), figsize=(6 * len(transports), 4.5), squeeze=False)
    for ax, transport in zip(axes[0], transports, strict=True):
        for nodes in sorted({r["nodes"] for r in rows if r["transport"] == transport}):
            mine = [r for r in rows if r["transport"] == transport and r["nodes"] == nodes]
            mine = [r for r in mine if r["finality_p50_ms"] is not None]
            ax.plot(
                [r["finalized_tps"] for r in mine],
                [r["finality_p50_ms"] for r in mine],
                "o-",
                label=f"{nodes} nodes",
            )
        ax.set_xlabel("finalized tx/s (median)")
        ax.set_ylabel("finality p50 ms (median)")
        ax.set_yscale("log")
        ax.set_title(f"{transport}: throughput vs latency")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--transports", default="tcp,libp2p", help="comma list (tcp,libp2p)")
    parser.add_argument("--rates", default=DEFAULT_RATES_TEXT, help="offered tx/s, comma list")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per rate (median)")
    parser.add_argument("--tx-bytes", type=int, default=512)
    parser.add_argument(
        "--sedna-rates", default="", help="offered Sedna payloads/s, comma list (empty: skip)"
    )
    parser.add_argument("--sedna-bytes", type=int, default=512)
    parser.add_argument(
        "--sedna-cost", action="store_true", help="print the per-stage CPU cost model of a payload"
    )
    parser.add_argument(
        "--sedna-plain-rate", type=float, default=0.0, help="plain tx/s alongside (default 0)"
    )
    parser.add_argument(
        "--nodes", default="4", help="validator counts, comma list: a sweep (e.g. 4,8,16)"
    )
    parser.add_argument(
        "--light",
        action="store_true",
        help=f"light-load latency mode: --rates {LIGHT_RATE:.0f} unless given, every rate run "
        "(no stop at saturation), block interval and speculative finality printed",
    )
    parser.add_argument(
        "--forward-fanout",
        type=int,
        default=None,
        help="[mempool] forward_fanout of every node (default: the node's, 2; 0 = no forwarding)",
    )
    parser.add_argument("--csv", type=Path, help="write the throughput-latency rows as CSV")
    parser.add_argument("--png", type=Path, help="write the throughput-latency curve as PNG")
    parser.add_argument(
        "--dissemination",
        default="certified",
        help="lane modes of the Sedna sweep, comma list of certified, carried (default "
        "certified); several modes are run side by side, alternating per rate",
    )
    parser.add_argument(
        "--poa-signatures",
        default="bls",
        help="[lanes] poa_signatures of certified lanes: bls (one aggregate per proof of "
        "availability, the default) or ed25519 (f+1 signatures)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        transports = [t for t in args.transports.split(",") if t]
        rates = sorted(float(r) for r in args.rates.split(",") if r)
        sedna_rates = sorted(float(r) for r in args.sedna_rates.split(",") if r)
        node_counts = [int(n) for n in args.nodes.split(",") if n]
    except ValueError:
        print("bench testnet: --rates, --sedna-rates and --nodes must be numbers", file=sys.stderr)
        return 2
    if args.light and args.rates == DEFAULT_RATES_TEXT:
        rates = [LIGHT_RATE]
    if not node_counts or any(not 1 <= n <= MAX_BENCH_NODES for n in node_counts):
        print(f"bench testnet: --nodes must be in 1..{MAX_BENCH_NODES}", file=sys.stderr)
        return 2
    if args.forward_fanout is not None and not 0 <= args.forward_fanout <= 8:
        print("bench testnet: --forward-fanout must be in 0..8", file=sys.stderr)
        return 2
    if (
        not (rates or sedna_rates or args.sedna_cost)
        or any(r <= 0 for r in rates + sedna_rates)
        or args.repeats < 1
        or args.duration <= 0
        or args.sedna_plain_rate < 0
    ):
        print("bench testnet: rates, --repeats and --duration must be positive", file=sys.stderr)
        return 2
    if not 24 <= args.sedna_bytes <= 64 * 1024:
        print("bench testnet: --sedna-bytes must be in 24..65536", file=sys.stderr)
        return 2
    if any(t not in ("tcp", "libp2p") for t in transports):
        print("bench testnet: transports are tcp and libp2p", file=sys.stderr)
        return 2
    from node.config import DISSEMINATION_MODES

    modes = [m for m in args.dissemination.split(",") if m]
    if not modes or any(m not in DISSEMINATION_MODES for m in modes):
        print(
            f"bench testnet: --dissemination takes {', '.join(DISSEMINATION_MODES)} "
            f"(comma list), got {args.dissemination!r}",
            file=sys.stderr,
        )
        return 2
    from node.config import POA_SIGNATURES

    if args.poa_signatures not in POA_SIGNATURES:
        print(
            f"bench testnet: --poa-signatures takes one of {', '.join(POA_SIGNATURES)}, "
            f"got {args.poa_signatures!r}",
            file=sys.stderr,
        )
        return 2
    results: dict[str, Any] = {}
    if args.sedna_cost:
        results["sedna_cost"] = sedna_cost_model(args.sedna_bytes)
        print(json.dumps(results["sedna_cost"]), file=sys.stderr)
    sweep: list[dict[str, Any]] = []
    for nodes in node_counts if rates else []:
        sweep.append(
            bench(
                transports,
                rates,
                args.duration,
                args.repeats,
                args.tx_bytes,
                nodes=nodes,
                forward_fanout=args.forward_fanout,
                stop_at_saturation=not args.light,
            )
        )
    if sweep:
        results.update(sweep[0])  # the first node count at the top level, as before
        results["sweep"] = sweep
        rows = curve_rows(sweep, transports)
        if args.csv is not None:
            write_curve_csv(rows, args.csv)
        if args.png is not None:
            write_curve_png(rows, args.png)
    if sedna_rates and len(modes) == 1:
        results["sedna"] = bench_sedna(
            transports,
            sedna_rates,
            args.duration,
            args.repeats,
            args.sedna_bytes,
            args.sedna_plain_rate,
            modes[0],
            args.poa_signatures,
        )
    elif sedna_rates:
        results["sedna_modes"] = bench_sedna_modes(
            transports, sedna_rates, args.duration, args.repeats, args.sedna_bytes, modes
        )
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    if "sedna_modes" in results:
        for transport in transports:
            print(f"{transport} sedna ({args.sedna_bytes} B payloads), decoded on every node/s:")
            for mode, points in results["sedna_modes"][transport].items():
                for p in points:
                    print(
                        f"  {mode:>9} offered {p['offered_pps']:>6.0f}/s  "
                        f"decoded {p['decoded_every_node_pps']}/s (runs {p['runs_pps']})  "
                        f"decode p50 {p['decode_p50_ms']} ms  p99 {p['decode_p99_ms']} ms"
                    )
    if "sedna" in results:
        for transport in transports:
            print(f"{transport} sedna ({args.sedna_bytes} B payloads):")
            for p in results["sedna"][transport]["points"]:
                print(
                    f"  offered {p['offered_pps']:>6.0f}/s  decoded on every node "
                    f"{p['decoded_every_node_pps']}/s  decode p50 {p['decode_p50_ms']} ms  "
                    f"p99 {p['decode_p99_ms']} ms"
                )
            sat = results["sedna"][transport]["saturation"]
            best = sat["decoded_every_node_pps"] if sat else "below the lowest rate"
            print(f"  saturation: {best} payloads/s decoded on every node")
    for result in sweep:
        for transport in transports:
            print(f"{transport}, {result['nodes']} nodes:")
            for p in result[transport]["points"]:
                print(
                    f"  offered {p['offered_tps']:>8.0f} tx/s  finalized {p['finalized_tps']:>8} tx/s"
                    f"  finality p50 {p['finality_p50_ms']} ms  p99 {p['finality_p99_ms']} ms"
                    f"  speculative p50 {p['speculative_p50_ms']} ms"
                    f"  block interval {p['block_interval_ms']} ms"
                )
            sat = result[transport]["saturation"]
            print(f"  saturation: {sat['finalized_tps'] if sat else 'below the lowest rate'} tx/s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
