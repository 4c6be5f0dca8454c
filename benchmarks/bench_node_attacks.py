"""Sender attacks on real node processes: each against the same run's honest baseline.

Per run: a fresh 4-node tcp testnet (lanes' ledger on, votes paced so the block rate is
the protocol's), an honest Sedna sender at `--honest-pps` for a baseline phase, then the
same sender plus netsim's attacking sender driven over RPC (benchmarks/node_attacks.py)
for an attack phase of the same length. Printed per (mode, attack): medians over the runs
of the chain's blocks/s and the honest decode p50 (first send -> decided on node 0) in
each phase, the ratio attacked / baseline, honest payloads not decoded, and the bundles
any tracker dropped because it was full (the goal for junk at 10x: 0).

`drop_lane_blocks` (a censoring leader, node 3) is set when a network starts, so its
baseline is a second fresh network under the same load (honest sender plus 40 plain
tx/s), not a phase of the same run; its "attack" column counts the censor's omissions.

    .venv/bin/python benchmarks/bench_node_attacks.py                       # all, 3 runs
    .venv/bin/python benchmarks/bench_node_attacks.py --attacks junk_commitments --runs 5
    .venv/bin/python benchmarks/bench_node_attacks.py --modes carried --json

Wall-clock figures: the machine's load average is printed with them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.node_attacks import (  # noqa: E402
    CENSOR,
    RpcAttackDriver,
    decided_ns,
    decode_p50_ms,
    leader_network,
    node_json,
    run_phase,
    settle,
)
from consensus.crypto import ED25519  # noqa: E402
from node.tools.sedna_client import SednaClient, SednaPolicy  # noqa: E402
from node.tools.testnet import Testnet, generate_network, load_senders  # noqa: E402

COUNTS = {"duplicate_across_lanes": 2, "junk_commitments": 10, "replay_after_decide": 40}
LEADER_ATTACKS = ("drop_lane_blocks",)
MAX_RUNS = 20


async def _censor(root: Path, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    phase = {"phase_s": args.phase_s, "honest_pps": args.honest_pps, "pace_ms": args.pace_ms}
    base = await leader_network(root / "honest", mode, censor=False, **phase)
    hit = await leader_network(root / "censored", mode, censor=True, **phase)
    return {
        "blocks_per_s": (base["blocks_per_s"], hit["blocks_per_s"]),
        "decode_p50_ms": (base["decode_p50_ms"], hit["decode_p50_ms"]),
        "honest_undecoded": max(base["undecoded"]) + max(hit["undecoded"]),
        "tracker_full": base["tracker_full"] + hit["tracker_full"],
        "attack_bundles": hit["omitted"][CENSOR],
    }


async def _one(root: Path, kind: str, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    if kind in LEADER_ATTACKS:
        return await _censor(root, mode, args)
    manifest = generate_network(
        root,
        4,
        consensus={"delta_ms": 50.0, "vote_pace_ms": args.pace_ms},
        dissemination=mode,
        ledger={"sender_balance": 10**12, "fee": 1, "bounty": 5, "senders": 2},
    )
    honest_key, attacker_key = load_senders(root)
    net = Testnet(root)
    net.start_all()
    try:
        if not await net.wait_ready(30.0):
            raise RuntimeError("network did not get ready")
        targets = [(m.index, m.rpc_host, m.rpc_port) for m in net.members]
        honest = SednaClient(targets, key=honest_key, policy=SednaPolicy(extra_bundles=1))
        attack = RpcAttackDriver(
            targets,
            kind,
            COUNTS[kind],
            key=attacker_key,
            scheme=ED25519.for_chain(manifest["chain_id"]),
            fee=1,
            seed=len(str(root)),
            t_star_slots=40,
        )
        try:
            base = await run_phase(net, honest, args.phase_s, args.honest_pps)
            hit = await run_phase(net, honest, args.phase_s, args.honest_pps, attack)
            await settle(honest, 40)
            decided = await decided_ns(net)
            not_counted = (await node_json(net, 0, "/stats"))["lanes"]["bundles_not_counted"]
        finally:
            await honest.close()
            await attack.close()
    finally:
        net.stop_all()
    return {
        "blocks_per_s": (base["blocks_per_s"], hit["blocks_per_s"]),
        "decode_p50_ms": (
            decode_p50_ms(honest, base["submitted"], decided),
            decode_p50_ms(honest, hit["submitted"], decided),
        ),
        "honest_undecoded": honest.stats.offered - honest.stats.decided["decoded"],
        "tracker_full": not_counted["tracker_full"],
        "attack_bundles": attack.answers["accepted"],
    }


def _median(values: list[float | None], digits: int = 1) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), digits) if present else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    kinds = [*sorted(COUNTS), *LEADER_ATTACKS]
    parser.add_argument("--attacks", nargs="+", choices=kinds, default=kinds)
    parser.add_argument("--modes", nargs="+", choices=("certified", "carried"),
                        default=["certified", "carried"])  # fmt: skip
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--phase-s", type=float, default=6.0)
    parser.add_argument("--honest-pps", type=float, default=10.0)
    parser.add_argument("--pace-ms", type=float, default=60.0, help="consensus.vote_pace_ms")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not 1 <= args.runs <= MAX_RUNS:
        print(f"--runs must be in 1..{MAX_RUNS}", file=sys.stderr)
        return 2
    if args.phase_s <= 0 or args.honest_pps <= 0 or args.pace_ms <= 0:
        print("--phase-s, --honest-pps and --pace-ms must be > 0", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-node-attacks-") as tmp:
        for mode in args.modes:
            for kind in args.attacks:
                runs = []
                for run in range(args.runs):
                    root = Path(tmp) / f"{mode}-{kind}-{run}"
                    runs.append(asyncio.run(_one(root, kind, mode, args)))
                    print(f"  {mode} {kind} run {run + 1}: {runs[-1]}", file=sys.stderr)
                base = _median([r["blocks_per_s"][0] for r in runs])
                hit = _median([r["blocks_per_s"][1] for r in runs])
                rows.append(
                    {
                        "mode": mode,
                        "attack": kind,
                        "runs": args.runs,
                        "blocks_per_s": [base, hit],
                        "rate_ratio": _median(
                            [r["blocks_per_s"][1] / r["blocks_per_s"][0] for r in runs], 3
                        ),
                        "honest_decode_p50_ms": [
                            _median([r["decode_p50_ms"][0] for r in runs]),
                            _median([r["decode_p50_ms"][1] for r in runs]),
                        ],
                        "honest_undecoded": sum(r["honest_undecoded"] for r in runs),
                        "tracker_full": sum(r["tracker_full"] for r in runs),
                        "attack_bundles": _median([r["attack_bundles"] for r in runs]),
                    }
                )
    load = os.getloadavg()[0]
    if args.json:
        print(json.dumps({"load_average": load, "rows": rows}, indent=2))
        return 0
    print(
        f"lane attacks on 4 real nodes, votes paced at {args.pace_ms:g} ms, phases of "
        f"{args.phase_s:g} s, honest {args.honest_pps:g} payloads/s, medians of {args.runs} "
        f"runs (load average {load:.1f})"
    )
    print(
        f"{'mode':<10} {'attack':<24} {'blocks/s base→attack':>22} {'ratio':>6} "
        f"{'honest p50 ms':>18} {'undecoded':>9} {'full':>5}"
    )
    for r in rows:
        rate = f"{r['blocks_per_s'][0]} → {r['blocks_per_s'][1]}"
        p50 = f"{r['honest_decode_p50_ms'][0]} → {r['honest_decode_p50_ms'][1]}"
        print(
            f"{r['mode']:<10} {r['attack']:<24} {rate:>22} {r['rate_ratio']:>6} "
            f"{p50:>18} {r['honest_undecoded']:>9} {r['tracker_full']:>5}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
