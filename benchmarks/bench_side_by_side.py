"""Side-by-side testnet throughput of two source trees (e.g. before and after a change).

Runs `sedna testnet run` from each tree in turn (A, B, A, B, ...), so both see the same
machine load, and prints the median finalized tx/s and finality p50 of each and their ratio.

    git archive <commit> | tar -x -C /tmp/before
    .venv/bin/python benchmarks/bench_side_by_side.py --tree before=/tmp/before --tree after=. \
        --rate 20000 --duration 10 --repeats 3

Each tree runs with this interpreter and `PYTHONPATH=<tree>`, so both use the same installed
packages. The load average is printed before and after: quote it with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path


def run_once(tree: Path, args: argparse.Namespace) -> dict[str, float | None]:
    command = [
        sys.executable, "-m", "node.cli", "testnet", "run", "--nodes", str(args.nodes),
        "--rate", str(args.rate), "--sedna-rate", "0", "--duration", str(args.duration),
        "--json",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(tree)}
    result = subprocess.run(
        command, cwd=tree, env=env, capture_output=True, text=True, timeout=args.duration + 240
    )
    if result.returncode not in (0, 1) or not result.stdout.strip():
        return {"tps": None, "p50": None}
    summary = json.loads(result.stdout)
    return {"tps": float(summary["tps"]), "p50": summary["finality_ms"]["p50"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", required=True, metavar="NAME=DIR")
    parser.add_argument("--rate", type=float, default=20_000)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    trees = []
    for spec in args.tree:
        name, sep, path = spec.partition("=")
        if not sep or not Path(path).is_dir():
            parser.error(f"--tree {spec!r}: expected NAME=DIR with an existing DIR")
        trees.append((name, Path(path).resolve()))
    print(f"load average before: {os.getloadavg()}", file=sys.stderr)
    results: dict[str, list[dict[str, float | None]]] = {name: [] for name, _ in trees}
    for repeat in range(args.repeats):
        for name, tree in trees:
            outcome = run_once(tree, args)
            results[name].append(outcome)
            print(f"run {repeat + 1} {name}: {outcome}", file=sys.stderr)
    print(f"load average after: {os.getloadavg()}", file=sys.stderr)
    medians = {}
    for name, runs in results.items():
        tps = [r["tps"] for r in runs if r["tps"] is not None]
        p50 = [r["p50"] for r in runs if r["p50"] is not None]
        medians[name] = {
            "tps_median": statistics.median(tps) if tps else None,
            "finality_p50_median_ms": statistics.median(p50) if p50 else None,
            "runs": runs,
        }
    first, *others = [name for name, _ in trees]
    for name in others:
        a, b = medians[first]["tps_median"], medians[name]["tps_median"]
        medians[name][f"tps_ratio_to_{first}"] = None if not a or b is None else round(b / a, 3)
    print(json.dumps(medians, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
