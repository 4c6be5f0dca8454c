"""Simulator speed: wall-clock time to 100 finalized blocks for n = 4, 16, 64.

Happy path, constant 10 ms latency, Δ = 100 ms, vote pacing off, invariant checkers on,
with real Ed25519 signatures and with the cheap TRUSTED scheme. Prints the median of
`--repeats` runs per configuration (numbers, not a pass/fail test).

    .venv/bin/python benchmarks/bench_sim.py [--sizes 4 16 64] [--repeats 3] [--blocks 100]

Anchor: monad-bft's Rust mock swarm takes 14.1 ms (n=4), 81 ms (16), 723 ms (64).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netsim.runner import run_scenario
from netsim.scenario import parse_scenario_text

ANCHOR_MS = {4: 14.1, 16: 81.0, 64: 723.0}


def one_run(n: int, scheme: str, blocks: int) -> tuple[float, dict]:
    scenario = parse_scenario_text(
        f'validators = {n}\nscheme = "{scheme}"\nuntil_ms = 600000\nuntil_blocks = {blocks}\n'
        "[network]\nlatency_ms = 10\ndelta_ms = 100\n"
    )
    start = time.perf_counter()
    report = run_scenario(scenario).report()
    elapsed_ms = (time.perf_counter() - start) * 1000
    honest_min = min(report["finalized"].values())
    if honest_min < blocks or report["violations"]:
        raise SystemExit(f"n={n} {scheme}: run did not reach {blocks} blocks cleanly: {report}")
    return elapsed_ms, report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4, 16, 64])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--blocks", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    for n in args.sizes:
        for scheme in ("trusted", "ed25519"):
            times, report = [], {}
            for _ in range(args.repeats):
                elapsed_ms, report = one_run(n, scheme, args.blocks)
                times.append(elapsed_ms)
            median_ms = statistics.median(times)
            row = {
                "n": n,
                "scheme": scheme,
                "blocks": args.blocks,
                "median_wall_ms": round(median_ms, 1),
                "runs_ms": [round(t, 1) for t in times],
                "sim_time_ms": report["sim_time_ms"],
                "messages": report["messages"],
                "events": report["events"],
                "anchor_ms": ANCHOR_MS.get(n),
                "x_anchor": round(median_ms / ANCHOR_MS[n], 1) if n in ANCHOR_MS else None,
            }
            rows.append(row)
            if not args.json:
                print(
                    f"n={n:3d} {scheme:8s} {args.blocks} blocks: median {median_ms:9.1f} ms wall "
                    f"({row['messages']} messages, {row['events']} events, "
                    f"{row['sim_time_ms']:.0f} ms simulated)"
                    + (f", {row['x_anchor']}x monad mock swarm" if row["x_anchor"] else "")
                )
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
