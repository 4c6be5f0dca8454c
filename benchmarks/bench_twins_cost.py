"""What an exhaustive Twins run of depth D costs: CPU seconds per arrangement, measured on a
seeded sample of canonical arrangements, times the number of canonical arrangements.

Each run times the same sample (`--sample` arrangements of `--depth`, drawn by `--seed`)
with this process's CPU time (`process_time`: robust on a shared machine, and what a
cluster bills), and prints the median over `--runs` runs. The canonical count comes from
Burnside's lemma (`ArrangementSpace.canonical_count`, tested against the enumeration).

    .venv/bin/python benchmarks/bench_twins_cost.py --depth 4 --sample 200 --runs 3
    .venv/bin/python benchmarks/bench_twins_cost.py --depth 4 --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from netsim.twins import ArrangementSpace, TwinsConfig, run_arrangement


def measure(depth: int, sample: int, seed: int, runs: int, protocol: str) -> dict[str, object]:
    config = TwinsConfig(protocol=protocol)
    space = ArrangementSpace(config.validators, config.twin, config.max_blocks)
    chosen = [space.arrangement(a) for a in space.sample(depth, sample, seed)]
    per_arrangement_s = []
    for _ in range(runs):
        started = time.process_time()
        for arrangement in chosen:
            run_arrangement(arrangement, config)
        per_arrangement_s.append((time.process_time() - started) / len(chosen))
    cost_s = statistics.median(per_arrangement_s)
    canonical = space.canonical_count(depth)
    core_hours = canonical * cost_s / 3600
    return {
        "depth": depth,
        "protocol": protocol,
        "sample": len(chosen),
        "runs": runs,
        "cpu_s_per_arrangement": [round(v, 5) for v in per_arrangement_s],
        "median_cpu_s_per_arrangement": round(cost_s, 5),
        "raw_arrangements": space.raw_count(depth),
        "canonical_arrangements": canonical,
        "core_hours": round(core_hours, 1),
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--sample", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--protocol", default="monadbft")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = measure(args.depth, args.sample, args.seed, args.runs, args.protocol)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"twins depth {result['depth']} ({result['protocol']}): "
            f"{result['median_cpu_s_per_arrangement'] * 1000:.1f} ms CPU per arrangement "
            f"(median of {result['runs']} runs of {result['sample']}: "
            f"{result['cpu_s_per_arrangement']}), {result['canonical_arrangements']:,} "
            f"canonical of {result['raw_arrangements']:,} raw arrangements: "
            f"{result['core_hours']} core-hours; load {result['load_average']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
