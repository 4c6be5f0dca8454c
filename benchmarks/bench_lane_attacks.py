"""Lanes under attack in netsim: each issue-10 adversary against its honest baseline.

For every seed, runs the same scenario without and with the attack and prints, side by
side: the honest chain height reached (the consensus rate), the honest payloads' decode
latency p50 (simulated ms from a payload's first planned slot to the senders learning it
executed), and the attack's own counts. Figures are in *simulated* time, so they do not
depend on the machine's load (the load is printed anyway, for the wall-clock column).

The headline is `junk_commitments` at 10x the honest payload rate (2 senders x 1 payload
per slot honest, 20 junk commitments per slot) with the default tracker capacity (4,096
pending payloads per tracker): the run is long enough for the junk to fill every tracker
(20 per slot for ~205 slots), and honest payloads keep arriving after that. Printed:
honest decode p50 with and without spam (goal: within 20 %) and the honest bundles every
tracker dropped (goal: 0).

    .venv/bin/python benchmarks/bench_lane_attacks.py                 # every attack, 3 seeds
    .venv/bin/python benchmarks/bench_lane_attacks.py --attacks junk_commitments --seeds 1 2 3
    .venv/bin/python benchmarks/bench_lane_attacks.py --json
    .venv/bin/python benchmarks/bench_lane_attacks.py --dissemination certified

The default lane mode here is `carried` (the mode of the issue-10 table in docs/lanes.md);
`--dissemination certified` runs the same adversaries against certified lanes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netsim.runner import run_scenario
from netsim.scenario import parse_scenario_text

BASE = """
validators = {validators}
seed = {seed}
until_ms = {until_ms}
[network]
latency_ms = [1, 20]
delta_ms = 100
[lanes]
dissemination = "{dissemination}"
payloads = {payloads}
payload_bytes = 1024
kappa = 6
bundles_per_slot = 3
senders = 2
[ledger]
bounty = 6
"""

ATTACKS: dict[str, dict[str, Any]] = {
    "junk_commitments": {
        "validators": 4,
        "until_ms": 14_000,
        "payloads": 600,
        "attack": '[[sender_attack]]\nkind = "junk_commitments"\nfrom_slot = 4\ncount = 20\n',
    },
    "duplicate_across_lanes": {
        "validators": 4,
        "until_ms": 6_000,
        "payloads": 150,
        "attack": '[[sender_attack]]\nkind = "duplicate_across_lanes"\nfrom_slot = 4\ncount = 2\n',
    },
    "replay_after_decide": {
        "validators": 4,
        "until_ms": 6_000,
        "payloads": 150,
        "attack": '[[sender_attack]]\nkind = "replay_after_decide"\nfrom_slot = 6\ncount = 6\n',
    },
    "drop_lane_blocks": {
        "validators": 7,
        "until_ms": 6_000,
        "payloads": 150,
        "attack": "".join(
            f'[[byzantine]]\nnode = {n}\nbehaviour = "drop_lane_blocks"\n' for n in (2, 5)
        ),
    },
}


def _run(text: str) -> tuple[dict[str, Any], float]:
    start = time.perf_counter()
    report = run_scenario(parse_scenario_text(text)).report()
    if report["violations"]:
        raise SystemExit(f"violations: {report['violations'][:3]}")
    return report, time.perf_counter() - start


def _honest_height(report: dict[str, Any]) -> int:
    byzantine = {str(i) for i in report["byzantine"]}
    return min(h for n, h in report["finalized"].items() if n not in byzantine)


def _delayed_fraction(report: dict[str, Any]) -> float:
    delays = list(report["decode_slot_delay"].values())
    return sum(d is None or d > 0 for d in delays) / max(1, len(delays))


def measure(name: str, seed: int, dissemination: str = "carried") -> dict[str, Any]:
    spec = ATTACKS[name]
    text = BASE.format(
        dissemination=dissemination,
        validators=spec["validators"],
        seed=seed,
        until_ms=spec["until_ms"],
        payloads=spec["payloads"],
    )
    base, base_s = _run(text)
    attacked, attacked_s = _run(text + spec["attack"])
    lanes, base_lanes = attacked["lanes"], base["lanes"]
    executed = sum(v == "executed" for v in lanes["payload_status"].values())
    row = {
        "attack": name,
        "seed": seed,
        "height_base": _honest_height(base),
        "height_attacked": _honest_height(attacked),
        "decode_ms_p50_base": base_lanes["decode_ms_p50"],
        "decode_ms_p50_attacked": lanes["decode_ms_p50"],
        "honest_payloads": len(lanes["payload_status"]),
        "honest_executed": executed,
        "delayed_fraction_base": round(_delayed_fraction(base), 4),
        "delayed_fraction_attacked": round(_delayed_fraction(attacked), 4),
        "honest_bundles_dropped": lanes["honest_bundles_dropped"],
        "wall_s": round(base_s + attacked_s, 1),
    }
    row["height_ratio"] = round(row["height_attacked"] / row["height_base"], 4)
    if row["decode_ms_p50_base"]:
        row["decode_p50_ratio"] = round(
            row["decode_ms_p50_attacked"] / row["decode_ms_p50_base"], 4
        )
    if name == "junk_commitments":
        row["evicted"] = lanes["payloads_evicted"]
        row["junk_dropped"] = {
            n: b.get("tracker_full", 0) for n, b in lanes["bundles_ignored"].items()
        }
        row["burned"] = lanes["ledger"]["burned"]
    elif name == "duplicate_across_lanes":
        row["duplicate_bundles"] = lanes["duplicate_bundles"]
    elif name == "replay_after_decide":
        (stats,) = lanes["sender_attacks"]
        row["replay_status"] = stats["payload_status"]
        row["late_bundles"] = lanes["late_bundles"]
        row["payload_expired_rejections"] = attacked["bundles_rejected"].get("payload_expired", 0)
    elif name == "drop_lane_blocks":
        row["lane_blocks_omitted"] = lanes["lane_blocks_omitted"]
        delays = [d for d in attacked["decode_slot_delay"].values() if d is not None]
        row["mean_delay_slots"] = round(statistics.mean(delays), 3) if delays else None
        row["cut_delay"] = {"base": base_lanes["cut_delay"], "attacked": lanes["cut_delay"]}
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attacks", nargs="+", choices=sorted(ATTACKS), default=list(ATTACKS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument(
        "--dissemination",
        choices=["carried", "certified"],
        default="carried",
        help="lane mode (carried: the mode the issue-10 table was measured in)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    rows = [measure(name, seed, args.dissemination) for name in args.attacks for seed in args.seeds]
    summary = {}
    for name in args.attacks:
        mine = [r for r in rows if r["attack"] == name]
        summary[name] = {
            "height_ratio_median": statistics.median(r["height_ratio"] for r in mine),
            "decode_p50_ratio_median": statistics.median(
                r["decode_p50_ratio"] for r in mine if "decode_p50_ratio" in r
            ),
            "honest_bundles_dropped_max": max(
                max(r["honest_bundles_dropped"].values()) for r in mine
            ),
            "all_honest_executed": all(r["honest_executed"] == r["honest_payloads"] for r in mine),
        }
    result = {"load_1min": round(load, 2), "rows": rows, "summary": summary}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"load (1 min) at start: {load:.2f}; all figures in simulated time")
    for row in rows:
        print(json.dumps(row))
    print()
    for name, s in summary.items():
        print(
            f"{name:24s} height attacked/base {s['height_ratio_median']:.3f}  "
            f"honest decode p50 attacked/base {s['decode_p50_ratio_median']:.3f}  "
            f"honest bundles dropped (max over trackers) {s['honest_bundles_dropped_max']}  "
            f"all honest executed {s['all_honest_executed']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
