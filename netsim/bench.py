"""`sedna bench sim`: simulator speed, wall-clock time to 100 finalized blocks.

Happy path, constant 10 ms latency, Δ = 100 ms, vote pacing off, invariant checkers on,
for each n of `--sizes` (4..256) and each scheme of `--schemes` (real Ed25519 and the
cheap TRUSTED one), with the shared verification cache (`--verification shared`, the
default, netsim.verify_cache) or every node verifying every signature (`per_node`).
Prints the medians of `--repeats` runs per configuration, wall time and this process's
CPU time (the run is one thread, so CPU time is wall time on an idle machine and the
figure to compare on a shared one); `--csv` and `--png` write the rows and a log-log
figure of CPU time against n (`--from-csv A.csv B.csv --png F.png` plots saved rows).

    sedna bench sim --sizes 4 16 64 --schemes ed25519 --repeats 3
    sedna bench sim --sizes 4 8 16 32 64 128 256 --schemes trusted --csv sim.csv --png sim.png
    .venv/bin/python benchmarks/bench_sim.py ...   (the same, as a script)

Anchor: monad-bft's Rust mock swarm takes 14.1 ms (n=4), 81 ms (16), 723 ms (64).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from netsim.runner import run_scenario
from netsim.scenario import parse_scenario_text
from netsim.verify_cache import VERIFICATION_MODES

ANCHOR_MS = {4: 14.1, 16: 81.0, 64: 723.0}
MAX_SIZE = 256
CSV_FIELDS = (
    "n", "scheme", "verification", "blocks", "median_wall_ms", "median_cpu_ms", "runs_ms",
    "messages", "events", "sim_time_ms", "anchor_ms", "x_anchor", "x_anchor_cpu",
)  # fmt: skip


class BenchError(ValueError):
    """A run that did not finish cleanly, or bad arguments."""


def one_run(
    n: int, scheme: str, blocks: int, verification: str = "shared"
) -> tuple[float, float, dict]:
    """(wall ms, process CPU ms, report) of one run to `blocks` finalized blocks on every
    honest node. CPU time is the figure to compare on a shared machine (one thread)."""
    mode = "" if verification == "shared" else f'verification = "{verification}"\n'
    scenario = parse_scenario_text(
        f'validators = {n}\nscheme = "{scheme}"\n{mode}'
        f"until_ms = 600000\nuntil_blocks = {blocks}\n"
        "[network]\nlatency_ms = 10\ndelta_ms = 100\n"
    )
    start, start_cpu = time.perf_counter(), time.process_time()
    report = run_scenario(scenario).report()
    elapsed_ms = (time.perf_counter() - start) * 1000
    cpu_ms = (time.process_time() - start_cpu) * 1000
    honest_min = min(report["finalized"].values())
    if honest_min < blocks or report["violations"]:
        raise BenchError(f"n={n} {scheme}: run did not reach {blocks} blocks cleanly: {report}")
    return elapsed_ms, cpu_ms, report


def measure(
    sizes: list[int], schemes: list[str], repeats: int, blocks: int, verification: str,
    progress: Any = None,
) -> list[dict[str, Any]]:  # fmt: skip
    rows = []
    for n in sizes:
        for scheme in schemes:
            times, cpu, report = [], [], {}
            for _ in range(repeats):
                elapsed_ms, cpu_ms, report = one_run(n, scheme, blocks, verification)
                times.append(elapsed_ms)
                cpu.append(cpu_ms)
            median_ms = statistics.median(times)
            median_cpu = statistics.median(cpu)
            row = {
                "n": n,
                "scheme": scheme,
                "verification": verification,
                "blocks": blocks,
                "median_wall_ms": round(median_ms, 1),
                "runs_ms": [round(t, 1) for t in times],
                "median_cpu_ms": round(median_cpu, 1),
                "x_anchor_cpu": round(median_cpu / ANCHOR_MS[n], 1) if n in ANCHOR_MS else None,
                "sim_time_ms": report["sim_time_ms"],
                "messages": report["messages"],
                "events": report["events"],
                "anchor_ms": ANCHOR_MS.get(n),
                "x_anchor": round(median_ms / ANCHOR_MS[n], 1) if n in ANCHOR_MS else None,
            }
            rows.append(row)
            if progress is not None:
                progress(row)
    return rows


def describe(row: dict[str, Any]) -> str:
    return (
        f"n={row['n']:3d} {row['scheme']:8s} {row['verification']:8s} {row['blocks']} blocks: "
        f"median {row['median_wall_ms']:9.1f} ms wall, {row['median_cpu_ms']:9.1f} ms CPU "
        f"({row['messages']} messages, {row['events']} events, "
        f"{row['sim_time_ms']:.0f} ms simulated)"
        + (
            f", {row['x_anchor']}x (wall) / {row['x_anchor_cpu']}x (CPU) monad mock swarm"
            if row["x_anchor"]
            else ""
        )
    )


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "runs_ms": " ".join(str(t) for t in row["runs_ms"])})


def write_png(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for scheme in sorted({r["scheme"] for r in rows}):
        mine = sorted((r for r in rows if r["scheme"] == scheme), key=lambda r: r["n"])
        label = f"{scheme} ({mine[0]['verification']} verification)"
        ax.plot([r["n"] for r in mine], [r["median_cpu_ms"] for r in mine], "o-", label=label)
    anchor = sorted(ANCHOR_MS.items())
    ax.plot([n for n, _ in anchor], [ms for _, ms in anchor], "k--", label="monad-bft mock swarm")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("validators n")
    ax.set_ylabel(f"CPU ms to {rows[0]['blocks']} finalized blocks (median)")
    ax.set_title("netsim speed, happy path, invariant checkers on")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", type=int, nargs="+", default=[4, 16, 64])
    parser.add_argument(
        "--schemes", nargs="+", choices=("trusted", "ed25519"), default=["trusted", "ed25519"]
    )
    parser.add_argument("--verification", choices=VERIFICATION_MODES, default="shared")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--blocks", type=int, default=100)
    parser.add_argument("--csv", type=Path, help="write the rows as CSV")
    parser.add_argument("--png", type=Path, help="write CPU time against n as a PNG")
    parser.add_argument("--from-csv", type=Path, nargs="+", help="plot these CSVs (no runs)")


def read_csv(paths: list[Path]) -> list[dict[str, Any]]:
    rows = []
    for path in paths:
        with path.open(newline="") as handle:
            for raw in csv.DictReader(handle):
                row: dict[str, Any] = dict(raw)
                for key in ("n", "blocks", "messages", "events"):
                    row[key] = int(row[key])
                for key in ("median_wall_ms", "median_cpu_ms", "sim_time_ms"):
                    row[key] = float(row[key])
                rows.append(row)
    return rows


def run(args: argparse.Namespace) -> int:
    if args.from_csv:
        if args.png is None:
            print("sedna bench sim: --from-csv needs --png", file=sys.stderr)
            return 2
        try:
            write_png(read_csv(args.from_csv), args.png)
        except (OSError, KeyError, ValueError) as exc:
            print(f"sedna bench sim: cannot plot {args.from_csv}: {exc}", file=sys.stderr)
            return 2
        return 0
    if any(not 1 <= n <= MAX_SIZE for n in args.sizes) or args.repeats < 1 or args.blocks < 1:
        print(
            f"sedna bench sim: need 1 <= sizes <= {MAX_SIZE}, repeats >= 1, blocks >= 1",
            file=sys.stderr,
        )
        return 2
    as_json = getattr(args, "json", False)
    try:
        rows = measure(
            args.sizes, args.schemes, args.repeats, args.blocks, args.verification,
            progress=None if as_json else (lambda row: print(describe(row), flush=True)),
        )  # fmt: skip
    except BenchError as exc:
        print(f"sedna bench sim: {exc}", file=sys.stderr)
        return 1
    if args.csv is not None:
        write_csv(rows, args.csv)
    if args.png is not None:
        write_png(rows, args.png)
    if as_json:
        print(json.dumps(rows, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--json", action="store_true")
    return run(parser.parse_args(argv))
